"""The update documents of a hand-out and of every report, built without I/O.

Each function returns what one ``update``/``findAndModify`` command sends, so
the rules are tested without a server.

Every write that changes whether a session can be handed out ends with the
order key's stage (see :mod:`sessionlib.order`); the hand-out, the hottest
write, sets the key the rule gives in its own stage
(:func:`~sessionlib.order.held_key`). Instants come from the operation's
:class:`~sessionlib.now.Now`, read once and stored once. Counters are added
with pipeline updates that read a counter which is not a number (written by
another program) as 0, so one malformed document can never make hand-outs
fail. Every report may record a reason, and appends an entry to the
session's capped history, in the same write.

A spent usage budget outlasts any report (see :func:`keep_budget_lock`): a
success, a shorter lock or a release never frees a session whose budget
still holds it, whichever pool or tool sends it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .budgets import BUDGETS, Budget, budget_updates
from .escalation import STRIKES, EscalationPolicy
from .fields import MongoFields
from .now import Now
from .order import held_key, key_stage
from .scopes import SCOPES, scope_field
from .states import LockKind, is_document_expression, number_or_zero

__all__ = [
    "FENCE",
    "HISTORY",
    "HISTORY_LENGTH",
    "LEASE",
    "REASON",
    "Pipeline",
    "Record",
    "activate",
    "as_document",
    "deactivate",
    "escalated_lock",
    "extend_hold",
    "hand_out",
    "keep_budget_lock",
    "lock",
    "release",
    "release_expired",
    "requeue",
    "scoped_lock",
    "set_payload",
    "success",
    "with_key",
    "with_record",
]

LEASE = "lease"
"""Field holding the token of the current hand-out."""
FENCE = "fence"
"""Field counting the hand-outs of a session (monotonic: a fencing token for other systems)."""
REASON = "reason"
"""Field holding the reason of the last report that gave one."""
HISTORY = "history"
"""Field holding the session's last state changes, newest last."""
HISTORY_LENGTH = 20
"""How many state changes a session keeps."""

Pipeline = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Record:
    """One state change, as the history keeps it.

    Its strings never start with ``$`` (checked where they come from), so it
    is a literal inside a pipeline update too.
    """

    at: datetime
    kind: str
    reason: str | None
    fence: int | None
    by: str

    def entry(self) -> dict[str, Any]:
        """The history entry."""
        return {
            "at": self.at,
            "kind": self.kind,
            "reason": self.reason,
            "fence": self.fence,
            "by": self.by,
        }


def _literal(value: Any) -> dict[str, Any]:
    # A value inside a pipeline update must never read as a field path or operator.
    return {"$literal": value}


def _history_stage(record: Record) -> dict[str, Any]:
    history = f"${HISTORY}"
    kept = {"$cond": [{"$isArray": history}, history, []]}
    entries = {"$concatArrays": [kept, [record.entry()]]}
    changes: dict[str, Any] = {HISTORY: {"$slice": [entries, -HISTORY_LENGTH]}}
    if record.reason is not None:
        changes[REASON] = _literal(record.reason)
    return {"$set": changes}


def with_record(update: Pipeline, record: Record | None) -> Pipeline:
    """*update*, also recording *record* (its reason and a history entry) in the same write."""
    if record is None:
        return update
    return [*update, _history_stage(record)]


def with_key(fields: MongoFields, update: Pipeline, now: Now) -> Pipeline:
    """*update*, then the order key's stage: the one writer of ``ready_at``."""
    return [*update, key_stage(fields, now.written)]


def keep_budget_lock(fields: MongoFields, *, now: Now, pipeline: Pipeline) -> Pipeline:
    """*pipeline*, except that a budget lock ending later than its new hold stays.

    The first stage that sets ``next_use`` (and ``lock_kind``, and maybe
    ``locked_at``) is rewritten to read the session's lock as it was: if it
    is a ``budget`` lock still running now and ending after the new
    ``next_use``, the budget lock is kept. The hand-out's filter counts the
    budget's uses in any case; keeping the lock keeps the state the
    statistics show true to it.
    """
    stages = list(pipeline)
    for index, stage in enumerate(stages):
        changes = stage.get("$set", {})
        if fields.next_use not in changes:
            continue
        running = {
            "$and": [
                {"$eq": [f"${fields.lock_kind}", LockKind.BUDGET.value]},
                {"$gt": [f"${fields.next_use}", _literal(now.at)]},
            ]
        }
        end = {"$cond": [running, f"${fields.next_use}", None]}
        held = changes[fields.next_use]
        kept = {"$gt": [end, held]}
        rewritten = {
            **changes,
            fields.next_use: {"$max": [held, end]},
            fields.lock_kind: {"$cond": [kept, LockKind.BUDGET.value, changes[fields.lock_kind]]},
        }
        if fields.locked_at in changes:
            rewritten[fields.locked_at] = {
                "$cond": [kept, f"${fields.locked_at}", changes[fields.locked_at]]
            }
        stages[index] = {"$set": rewritten}
        break
    return stages


def _held(end: datetime | dict[str, Any]) -> dict[str, Any]:
    """A hold's end in a pipeline: a literal instant, or the server's expression as it is."""
    return _literal(end) if isinstance(end, datetime) else end


def _hold(fields: MongoFields, kind: LockKind, now: Now, until: Any) -> dict[str, Any]:
    return {
        fields.next_use: until,
        fields.lock_kind: _literal(kind.value),
        fields.locked_at: _held(now.stamp()),
    }


def hand_out(
    fields: MongoFields,
    *,
    now: Now,
    hold: timedelta,
    count_use: int,
    token: str,
    budgets: Sequence[Budget] = (),
    scope: str | None = None,
) -> Pipeline:
    """The hand-out: held for *hold* (or its budget), used now, counted, fenced.

    With *budgets*, the ones that apply to *scope* record this use; a spent
    pool-wide budget holds the session (lock kind ``budget``) until its
    oldest use leaves the window, a spent scoped one locks its scope.
    """
    until = _held(now.hold_end(hold))
    count = f"${fields.count_use}"
    counters = {
        fields.last_use: _held(now.stamp()),
        LEASE: _literal(token),
        fields.count_use: {"$add": [number_or_zero(count), count_use]},
        FENCE: {"$add": [number_or_zero(f"${FENCE}"), 1]},
    }
    entries, spent, scoped = budget_updates(budgets, scope=scope, now=now, weight=count_use)
    if not entries:
        hold_fields = _hold(fields, LockKind.IN_USE, now, until)
        return [{"$set": {**counters, **hold_fields, fields.ready_at: held_key(until)}}]
    held: Any = until
    kind: Any = LockKind.IN_USE.value
    if spent is not None:
        held = {"$max": [until, spent]}
        kind = {"$cond": [{"$gt": [spent, until]}, LockKind.BUDGET.value, kind]}
    return [
        as_document(BUDGETS),
        *([as_document(SCOPES)] if scoped else []),
        {"$set": entries},
        {
            "$set": {
                **counters,
                **scoped,
                fields.next_use: held,
                fields.lock_kind: kind,
                fields.locked_at: _held(now.stamp()),
                fields.ready_at: held_key(held),
            }
        },
    ]


def success(
    fields: MongoFields,
    *,
    now: Now,
    hold: timedelta,
    count_success: int,
    escalation: EscalationPolicy | None,
) -> Pipeline:
    """A success: counted, held for *hold*; with escalation, strikes decay."""
    counter = f"${fields.count_success}"
    changes: dict[str, Any] = {
        **_hold(fields, LockKind.IN_USE, now, _held(now.hold_end(hold))),
        fields.count_success: {"$add": [number_or_zero(counter), count_success]},
    }
    if escalation is not None:
        changes[STRIKES] = escalation.decay_expression()
    update = keep_budget_lock(fields, now=now, pipeline=[{"$set": changes}])
    return with_key(fields, update, now)


def extend_hold(fields: MongoFields, *, now: Now, hold: timedelta) -> Pipeline:
    """The hold renewed for *hold* from now (a longer hold, a spent budget's, stays)."""
    next_use = f"${fields.next_use}"
    renewed = {"$max": [next_use, _held(now.hold_end(hold))]}
    return with_key(fields, [{"$set": {fields.next_use: renewed}}], now)


def lock(fields: MongoFields, *, kind: LockKind, now: Now, until: datetime) -> Pipeline:
    """A lock or block of *kind* until the stored *until* (a spent budget's longer lock stays)."""
    update = [{"$set": _hold(fields, kind, now, _literal(until))}]
    return with_key(fields, keep_budget_lock(fields, now=now, pipeline=update), now)


def escalated_lock(
    fields: MongoFields, *, now: Now, policy: EscalationPolicy, block_period: timedelta
) -> Pipeline:
    """A lock whose period grows with the session's strikes (see :mod:`sessionlib.escalation`)."""
    pipeline = policy.lock_pipeline(now=now, block_period=block_period, fields=fields)
    return with_key(fields, keep_budget_lock(fields, now=now, pipeline=pipeline), now)


def as_document(field: str) -> dict[str, Any]:
    """A stage leaving *field* as it is if it holds a document, else ``{}``.

    It goes before a stage that writes ``field.<name>``: a pipeline's
    ``$set`` of a dotted path writes nothing into an array, a string or null,
    so a budget would go unrecorded and a scoped lock unwritten.
    """
    path = f"${field}"
    return {"$set": {field: {"$cond": [is_document_expression(path), path, {"$literal": {}}]}}}


def scoped_lock(scope: str, *, until: datetime) -> Pipeline:
    """A lock for hand-outs with *scope* only, until *until*; the session stays free for others."""
    return [as_document(SCOPES), {"$set": {scope_field(scope): _literal(until)}}]


def release(fields: MongoFields, *, now: Now) -> Pipeline:
    """Available at once, whatever lock it had but a spent budget's; it joins the queue now.

    Scoped locks stay (they are cooldowns for one purpose, not holds).
    """
    changes = {fields.next_use: None, fields.lock_kind: None, fields.locked_at: None}
    update = keep_budget_lock(fields, now=now, pipeline=[{"$set": changes}])
    return with_key(fields, update, now)


def deactivate(fields: MongoFields, *, now: Now) -> Pipeline:
    """Disabled for good: out of the hand-out's way for ever."""
    return with_key(fields, [{"$set": {fields.active: False}}], now)


def activate(fields: MongoFields, *, now: Now) -> Pipeline:
    """Enabled again; it joins the queue now, or when a lock it still has ends."""
    return with_key(fields, [{"$set": {fields.active: True}}], now)


def release_expired(
    fields: MongoFields, *, kinds: Sequence[LockKind], now: Now
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The filter and update that tidy expired locks of *kinds* (their order key stays).

    An expired lock no longer keeps its session from being handed out, so
    this changes no availability and leaves the key where the lock's end put it.
    """
    return (
        {
            fields.lock_kind: {"$in": [kind.value for kind in kinds]},
            fields.next_use: {"$lt": now.at},
        },
        {"$set": {fields.next_use: None}, "$unset": {fields.lock_kind: "", fields.locked_at: ""}},
    )


def requeue(
    fields: MongoFields, *, available: dict[str, Any], now: Now
) -> tuple[dict[str, Any], Pipeline]:
    """The filter and update that put back in the queue sessions changed by hand.

    Such a session is *available* (the hand-out's own filter) but its order
    key still says later: it was deactivated or locked when someone edited
    it. The hand-out takes it anyway, after every session keyed earlier; this
    puts it where the key's rule says.
    """
    query = {"$and": [available, {fields.ready_at: {"$gt": now.at}}]}
    return query, [key_stage(fields, now.written)]


def set_payload(
    fields: MongoFields,
    to_set: Mapping[str, Any],
    to_unset: Sequence[str],
    *,
    now: Now,
) -> dict[str, Any] | Pipeline:
    """The update of ``session_update``: *to_set* set, *to_unset* removed.

    A classic update, which keeps MongoDB's meaning of dotted paths; unless it
    writes ``active``, ``next_use`` or ``ready_at`` by name, which can change
    availability: then a pipeline update of literals, ending with the order
    key's stage (a payload that writes ``ready_at`` itself keeps its value).
    """
    names = {fields.active, fields.next_use, fields.ready_at}
    if not names & (set(to_set) | set(to_unset)):
        update: dict[str, Any] = {}
        if to_set:
            update["$set"] = dict(to_set)
        if to_unset:
            update["$unset"] = dict.fromkeys(to_unset, "")
        return update
    pipeline: Pipeline = []
    if to_set:
        pipeline.append({"$set": {name: _literal(value) for name, value in to_set.items()}})
    if to_unset:
        pipeline.append({"$unset": list(to_unset)})
    if fields.ready_at in to_set or fields.ready_at in to_unset:
        return pipeline
    return with_key(fields, pipeline, now)
