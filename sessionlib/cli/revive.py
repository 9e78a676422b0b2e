"""``sessionpool revive``: try the sessions that are out, and bring back those that pass.

For each session in the chosen states (``blocked`` and ``inactive`` by
default), the user's check (``--check module:function``, a function taking
the session document and returning true when it works: async, or plain and
then run in a thread of its own) is run, *concurrency* at a time, each within
a time limit. Without ``--apply`` it is a
dry run: the checks run, nothing is written, and the summary says what would
be done. With ``--apply``, each session is first *claimed*, leased and fenced
like a hand-out but left in its state (so no worker gets it meanwhile and
a change made meanwhile is noticed); a session that passes is then released
(``blocked``, ``locked``) or activated (``inactive``) through that lease,
with the reason ``revive: check passed``. A session whose state changed in
between is left alone and counted as ``changed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import secrets
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pymongo import ReturnDocument

from ..client import MongoSessions
from ..exceptions import StaleLeaseError
from ..states import State, number_or_zero, state_filter, state_of
from ..updates import FENCE, LEASE
from .output import Progress

__all__ = ["REVIVABLE", "Outcome", "revive"]

REVIVABLE = (State.BLOCKED.value, State.INACTIVE.value, State.LOCKED.value)
"""The states ``revive`` may bring sessions back from."""

REASON = "revive: check passed"

Check = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one session."""

    id: Any
    state: str
    verdict: str
    """``passed``, ``failed``, ``error`` (the check raised or timed out) or ``changed``."""
    action: str | None
    """``released`` or ``activated`` (``would release`` ... in a dry run), or ``None``."""
    detail: str | None = None


def _action(state: str, *, apply: bool) -> str:
    if state == State.INACTIVE.value:
        return "activated" if apply else "would activate"
    return "released" if apply else "would release"


def _settle(answer: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if answer.done():  # timed out meanwhile: nobody waits for it any more
        return
    if error is not None:
        answer.set_exception(error)
    else:
        answer.set_result(result)


async def _in_thread(check: Check, session: dict[str, Any]) -> Any:
    """Run a plain (blocking) *check* in a thread of its own and await its result.

    A daemon thread, not the loop's executor: a check that never returns must
    neither block the loop nor keep the command from exiting.
    """
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[Any] = loop.create_future()

    def run() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (check(session), None)
        except BaseException as exc:  # handed to the loop, which reports it
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop is closed: the command is over
            loop.call_soon_threadsafe(_settle, answer, *outcome)

    threading.Thread(target=run, name="sessionpool-revive-check", daemon=True).start()
    return await answer


async def _verdict(
    check: Check, session: dict[str, Any], check_timeout: float
) -> tuple[str, str | None]:
    async def call() -> Any:
        # An async check runs on the loop; a plain one in a thread, so that
        # a blocking check is bounded by the time limit too.
        result = (
            check(session) if inspect.iscoroutinefunction(check) else _in_thread(check, session)
        )
        result = await result
        return await result if inspect.isawaitable(result) else result

    try:
        passed = bool(await asyncio.wait_for(call(), check_timeout))
    except TimeoutError:
        return "error", f"no answer within {check_timeout:g} s"
    except Exception as exc:  # the user's check failed: this session is not revived
        return "error", f"{type(exc).__name__}: {exc}"[:200]
    return ("passed", None) if passed else ("failed", None)


async def _claim(
    pool: MongoSessions, document: dict[str, Any], state: str
) -> dict[str, Any] | None:
    """Lease *document* without changing its state; ``None`` if it left *state* meanwhile."""
    now = (await pool.core.now()).at
    query = {"$and": [{"_id": document["_id"]}, state_filter(pool, State(state), now)]}
    update = [
        {"$set": {LEASE: secrets.token_hex(12), FENCE: {"$add": [number_or_zero(f"${FENCE}"), 1]}}}
    ]
    claimed: dict[str, Any] | None = await pool.find_one_and_update(
        query, update, return_document=ReturnDocument.AFTER
    )
    return claimed


async def _one(
    pool: MongoSessions,
    document: dict[str, Any],
    check: Check,
    *,
    apply: bool,
    check_timeout: float,
) -> Outcome:
    core = pool.core
    state = state_of(core.load(dict(document)), pool.clock(), pool).value
    session_id = document["_id"]
    if apply:
        claimed = await _claim(pool, document, state)
        if claimed is None:
            return Outcome(session_id, state, "changed", None, "its state changed meanwhile")
        document = claimed
    verdict, detail = await _verdict(check, core.load(dict(document)), check_timeout)
    if verdict != "passed":
        return Outcome(session_id, state, verdict, None, detail)
    if apply:
        report = pool.session_activate if state == State.INACTIVE.value else pool.session_release
        try:
            await report(document, reason=REASON, lease_checked=True)
        except StaleLeaseError:
            return Outcome(session_id, state, "changed", None, "handed out meanwhile")
    return Outcome(session_id, state, verdict, _action(state, apply=apply), detail)


async def revive(
    pool: MongoSessions,
    check: Check,
    *,
    states: Sequence[str],
    concurrency: int,
    apply: bool,
    check_timeout: float,
    limit: int,
    progress: bool,
) -> list[Outcome]:
    """Run *check* on the sessions of *pool* in *states*; with *apply*, bring back those that pass.

    Raises:
        DatabaseError: the server failed (outcomes so far are lost; what was
            written stays written, each session's change being one command).
    """
    now = (await pool.core.now()).at
    query = {"$or": [state_filter(pool, State(state), now) for state in states]}
    documents = await pool.find(filter=query, sort=[("_id", 1)], limit=limit)
    bar = Progress(len(documents), sys.stderr, label="checking", enabled=progress)
    semaphore = asyncio.Semaphore(concurrency)
    finished = 0

    async def guarded(document: dict[str, Any]) -> Outcome:
        nonlocal finished
        async with semaphore:
            outcome = await _one(pool, document, check, apply=apply, check_timeout=check_timeout)
        finished += 1
        bar.update(finished)
        return outcome

    try:
        return list(await asyncio.gather(*(guarded(document) for document in documents)))
    finally:
        bar.done()


def summary(outcomes: Sequence[Outcome], *, apply: bool) -> dict[str, Any]:
    """Counts by verdict and action, and every outcome, for the report."""
    counts = {
        verdict: sum(1 for o in outcomes if o.verdict == verdict)
        for verdict in ("passed", "failed", "error", "changed")
    }
    actions = {
        action: sum(1 for o in outcomes if o.action == action)
        for action in ("released", "activated", "would release", "would activate")
    }
    return {
        "dry_run": not apply,
        "checked": len(outcomes),
        **counts,
        **{action.replace(" ", "_"): count for action, count in actions.items()},
        "sessions": [asdict(outcome) for outcome in outcomes],
    }
