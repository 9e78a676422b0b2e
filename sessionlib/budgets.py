"""Usage budgets: at most *uses* hand-outs of a session in any window of length *per*.

A pool created with ``budgets=[Budget(uses=50, per={"minutes": 15})]`` never
hands a session out more than 50 times (weighted by ``count_use``) in any 15
minutes. The windows roll: each hand-out records, in the session, the instant
its use leaves the window (``budgets.<key>``: one entry per use), and:

* the hand-out's filter admits a session only if the uses still in the window
  plus this one fit the budget (the server counts them in the same command:
  no extra round trip, no race between processes);
* the hand-out's update drops the entries that left the window, adds its own,
  and when the budget is spent, holds the session until its oldest entry
  leaves the window: the lock kind ``budget``, under which statistics count it.

A budget with a ``scope`` counts only hand-outs with that scope, and its
exhaustion locks the session for that scope only (see :mod:`sessionlib.scopes`).
Entries are stored as instants, so only comparisons run on the server; a
session keeps at most *uses* of them per budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .exceptions import ConfigurationError, InvalidInputError
from .now import Now
from .scopes import check_scope, scope_field
from .states import is_date_expression

__all__ = [
    "BUDGETS",
    "Budget",
    "budget_filter",
    "budget_updates",
    "check_budgets",
    "room_expression",
    "spent_expression",
]

BUDGETS = "budgets"
"""The field holding each budget's entries."""

MAX_USES = 10_000
"""The largest budget: a session keeps one entry per use in the window."""


@dataclass(frozen=True, slots=True)
class Budget:
    """At most *uses* hand-outs in any window of *per*; only for *scope* if given.

    *per* is a timedelta or a dict of its keywords (``{"minutes": 15}``).

    Raises:
        ConfigurationError: a value is out of range.
    """

    uses: int
    per: timedelta | Mapping[str, float]
    scope: str | None = None

    def __post_init__(self) -> None:
        from .validation import period_to_timedelta

        uses = self.uses
        if isinstance(uses, bool) or not isinstance(uses, int) or not 1 <= uses <= MAX_USES:
            raise ConfigurationError(
                f"Budget uses must be an int from 1 to {MAX_USES}, not {uses!r}"
            )
        try:
            per = (
                self.per
                if isinstance(self.per, timedelta)
                else period_to_timedelta(self.per, timedelta(), name="Budget per")
            )
            check_scope(self.scope, "Budget scope")
        except InvalidInputError as exc:
            raise ConfigurationError(str(exc)) from None
        if not timedelta(seconds=1) <= per <= timedelta(days=366):
            raise ConfigurationError(f"Budget per must be from 1 second to a year, not {per}")
        object.__setattr__(self, "per", per)

    @property
    def window(self) -> timedelta:
        """The window's length."""
        assert isinstance(self.per, timedelta)  # made one in __post_init__
        return self.per

    @property
    def key(self) -> str:
        """The name of this budget's entries in the session: scope and window."""
        return f"{self.scope or 'all'}-{int(self.window.total_seconds())}s"

    @property
    def path(self) -> str:
        """The dotted path of this budget's entries."""
        return f"{BUDGETS}.{self.key}"

    def applies(self, scope: str | None) -> bool:
        """Whether hand-outs with *scope* count against this budget."""
        return self.scope is None or self.scope == scope


def check_budgets(budgets: Iterable[object] | None) -> tuple[Budget, ...]:
    """Return *budgets* as a tuple, each a :class:`Budget` with its own window and scope.

    Raises:
        ConfigurationError: an item is no Budget, or two share a window and scope.
    """
    checked: list[Budget] = []
    for budget in budgets or ():
        if not isinstance(budget, Budget):
            raise ConfigurationError(f"budgets must hold Budget(...) items, not {budget!r}")
        if any(other.key == budget.key for other in checked):
            raise ConfigurationError(f"two budgets with the same window and scope: {budget.key}")
        checked.append(budget)
    return tuple(checked)


def _entries(path: str) -> dict[str, Any]:
    """The entries at *path* ("$x"), or none when it holds no array."""
    return {"$cond": [{"$isArray": path}, path, []]}


def _live(path: str, at: datetime) -> dict[str, Any]:
    """The entries at *path* still in the window at the stored instant *at*.

    An entry that is not a date (a BSON ``Timestamp``, a string another
    program wrote) has left the window: it would otherwise sort above every
    date and hold the session for ever, while counted available.
    """
    entry = "$$this"
    return {
        "$filter": {
            "input": _entries(path),
            "cond": {"$and": [is_date_expression(entry), {"$gt": [entry, at]}]},
        }
    }


def room_expression(
    budgets: Sequence[Budget], *, scope: str | None, now: Now, weight: int = 1
) -> dict[str, Any] | None:
    """An expression: the budgets that apply to *scope* take *weight* more uses now.

    ``None`` when no budget applies. The hand-out's filter and the statistics'
    ``budget`` state both read it.
    """
    conditions = [
        {"$lte": [{"$add": [{"$size": _live(f"${b.path}", now.at)}, weight]}, b.uses]}
        for b in budgets
        if b.applies(scope)
    ]
    return {"$and": conditions} if conditions else None


def spent_expression(
    budgets: Sequence[Budget], *, scope: str | None, now: Now
) -> dict[str, Any] | None:
    """An expression: the budgets that apply to *scope* admit no hand-out now (statistics).

    ``None`` when no budget applies. A session with no budget entries has
    room, so the budgets are evaluated only for the sessions that have some.
    """
    room = room_expression(budgets, scope=scope, now=now)
    if room is None:
        return None
    recorded = {"$ne": [{"$ifNull": [f"${BUDGETS}", None]}, None]}
    return {"$cond": [recorded, {"$not": room}, False]}


def budget_filter(
    budgets: Sequence[Budget], *, scope: str | None, now: Now, weight: int
) -> dict[str, Any] | None:
    """The filter admitting sessions whose budgets take *weight* more uses now."""
    room = room_expression(budgets, scope=scope, now=now, weight=weight)
    return None if room is None else {"$expr": room}


def _spent_until(budget: Budget) -> dict[str, Any]:
    """When a spent budget lets the session go again: its oldest entry; else null."""
    path = f"${budget.path}"
    return {"$cond": [{"$gte": [{"$size": _entries(path)}, budget.uses]}, {"$min": path}, None]}


def budget_updates(
    budgets: Sequence[Budget], *, scope: str | None, now: Now, weight: int
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
    """What a hand-out writes for the budgets that apply to it.

    Returns ``(entries, until, scoped)``: the ``$set`` of the new entries
    (a first pipeline stage), the expression of the instant the spent
    pool-wide budgets hold the session until (``None`` without such budgets;
    read in a later stage), and the ``$set`` that locks spent scoped budgets
    for their scope. Each new entry is when its use leaves the window,
    counted from the latest the clock can show (stored once, by *now*).
    """
    entries: dict[str, Any] = {}
    pool_wide: list[dict[str, Any]] = []
    scoped: dict[str, Any] = {}
    for budget in budgets:
        if not budget.applies(scope):
            continue
        leaves = now.until(budget.window)
        entries[budget.path] = {
            "$concatArrays": [_live(f"${budget.path}", now.at), [leaves] * weight]
        }
        if budget.scope is None:
            pool_wide.append(_spent_until(budget))
        else:
            field = scope_field(budget.scope)
            scoped[field] = {"$max": [f"${field}", _spent_until(budget)]}
    until = {"$max": pool_wide} if pool_wide else None
    return entries, until, scoped
