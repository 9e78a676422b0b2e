"""A pool's circuit breaker: when many sessions fail the same way at once, blame the client.

A worker's ``lease(on_error={LoginFailed: Block()})`` blames the session for
the error. When the fault is the client's (a bug, an expired API key, the
source down for everyone), every session it touches gets blocked: a whole
pool can be lost in minutes. With ``MongoSessions(...,
breaker=CircuitBreaker())`` each failure that ``on_error`` maps to a lock,
block or deactivation is first recorded in the pool's metadata document
(see :mod:`sessionlib.metadata`), shared by every worker of the pool, and:

* the breaker **trips** when, within ``window``, at least ``min_sessions``
  distinct sessions failed with the same error class, and they are at least
  ``min_share`` of the sessions handed out within that window;
* while it is **open** (for ``cooldown``, or until ``reset_breaker()``), a
  failure of that class *releases* its session instead of the mapped report,
  with the reason ``breaker: <class>``; other error classes are reported as
  mapped;
* with ``pause=True``, hand-outs also return no session while it is open (each
  process re-reads the breaker at most every ``check_interval`` seconds).

The statistics read by :class:`~sessionlib.store.SessionStore` carry its
state, the exporter exports ``sessionpool_breaker_open``, an alert fires on
it, and ``sessionpool breaker POOL [--reset]`` shows or resets it.

Recording a failure is one ``findAndModify`` on the metadata document; only
when ``min_sessions`` distinct sessions have failed does the breaker count the
pool's recent hand-outs (one count) and, if it trips, write its state (one
update). Hand-outs and successes cost nothing more.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from pymongo import ReturnDocument

from .exceptions import ConfigurationError, InvalidInputError
from .metadata import CLOSED, BreakerState
from .now import Now
from .states import is_date_expression, number_or_zero

__all__ = [
    "FAILURES",
    "BreakerGuard",
    "BreakerPool",
    "CircuitBreaker",
    "MetadataCollection",
    "PoolCounts",
    "distinct_failed",
    "failure_update",
    "reset_update",
    "trip_update",
]

log = logging.getLogger(__name__)

FAILURES = "failures"
"""The metadata field holding the recent failures (``{at, error, session}``), oldest first."""

Pipeline = list[dict[str, Any]]


def _period(name: str, value: timedelta | Mapping[str, float]) -> timedelta:
    from .validation import period_to_timedelta

    try:
        period = (
            value
            if isinstance(value, timedelta)
            else period_to_timedelta(value, timedelta(), name=name)
        )
    except InvalidInputError as exc:
        raise ConfigurationError(str(exc)) from None
    if not timedelta(seconds=1) <= period <= timedelta(days=7):
        raise ConfigurationError(
            f"CircuitBreaker {name} must be from 1 second to 7 days, not {period}"
        )
    return period


@dataclass(frozen=True, slots=True)
class CircuitBreaker:
    """When a pool's breaker trips, how long it stays open, and what it pauses.

    *window* and *cooldown* are timedeltas or dicts of their keywords.

    Raises:
        ConfigurationError: a value is out of range.
    """

    min_sessions: int = 5
    """Distinct sessions that must fail with one error class within *window*."""
    min_share: float = 0.5
    """Their least share of the sessions handed out within *window* (0 to 1)."""
    window: timedelta | Mapping[str, float] = field(default=timedelta(minutes=1))
    cooldown: timedelta | Mapping[str, float] = field(default=timedelta(minutes=5))
    pause: bool = False
    """Whether hand-outs return no session while the breaker is open."""
    check_interval: float = 5.0
    """Seconds a process trusts what it last read of the breaker (for *pause*)."""
    keep: int = 1000
    """Failures kept in the metadata document (the oldest go first)."""

    def __post_init__(self) -> None:
        sessions = self.min_sessions
        if isinstance(sessions, bool) or not isinstance(sessions, int) or not 1 <= sessions <= 1000:
            raise ConfigurationError(
                f"min_sessions must be an int from 1 to 1000, not {sessions!r}"
            )
        share = self.min_share
        if (
            isinstance(share, bool)
            or not isinstance(share, int | float)
            or not math.isfinite(share)
            or not 0 <= share <= 1
        ):
            raise ConfigurationError(f"min_share must be a number from 0 to 1, not {share!r}")
        object.__setattr__(self, "window", _period("window", self.window))
        object.__setattr__(self, "cooldown", _period("cooldown", self.cooldown))
        if not isinstance(self.pause, bool):
            raise ConfigurationError(f"pause must be True or False, not {self.pause!r}")
        interval = self.check_interval
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not 0 <= interval <= 3600
        ):
            raise ConfigurationError(f"check_interval must be 0 to 3600 seconds, not {interval!r}")
        keep = self.keep
        if isinstance(keep, bool) or not isinstance(keep, int) or not sessions <= keep <= 100_000:
            raise ConfigurationError(
                f"keep must be an int from min_sessions to 100000, not {keep!r}"
            )

    @property
    def window_period(self) -> timedelta:
        """The window, as a timedelta."""
        assert isinstance(self.window, timedelta)  # made one in __post_init__
        return self.window

    @property
    def cooldown_period(self) -> timedelta:
        """The cool-down, as a timedelta."""
        assert isinstance(self.cooldown, timedelta)
        return self.cooldown


def _text(value: str) -> str:
    """*value* as a string no pipeline reads as a field path or variable."""
    return value.lstrip("$")


def failure_update(
    error: str, session_id: Any, *, now: datetime, since: datetime, keep: int
) -> Pipeline:
    """The update recording a failure: drops those before *since*, keeps the last *keep*.

    The session is recorded by its ``repr`` (``'a'``, ``5``,
    ``ObjectId('…')``): distinct for distinct ids, and never a ``$`` string
    that a pipeline would read as a field path.
    """
    path = f"${FAILURES}"
    kept = {"$cond": [{"$isArray": path}, path, []]}
    recent = {"$filter": {"input": kept, "cond": {"$gt": ["$$this.at", since]}}}
    entry = {"at": now, "error": _text(error), "session": repr(session_id)}
    return [{"$set": {FAILURES: {"$slice": [{"$concatArrays": [recent, [entry]]}, -keep]}}}]


def distinct_failed(
    document: Mapping[str, Any] | None,
    error: str,
    since: datetime,
    load: Callable[[datetime], datetime],
) -> int:
    """How many distinct sessions failed with *error* after *since*, per *document*.

    *load* turns the stored instants into true ones.
    """
    failures = (document or {}).get(FAILURES)
    if not isinstance(failures, list):
        return 0
    sessions = {
        repr(entry.get("session"))
        for entry in failures
        if isinstance(entry, Mapping)
        and entry.get("error") == _text(error)
        and isinstance(entry.get("at"), datetime)
        and load(entry["at"]) > since
    }
    return len(sessions)


def trip_update(
    error: str, *, now: datetime, until: datetime, sessions: int, share: float
) -> tuple[dict[str, Any], Pipeline]:
    """The filter and update that open the breaker, unless it is open already.

    Open as :meth:`BreakerState.from_document` reads it, in an expression: a
    query on ``breaker.open`` would walk into an array and find it open, and
    such a breaker would never trip.
    """
    still_open = {
        "$and": [
            {"$eq": ["$breaker.open", True]},
            is_date_expression("$breaker.until"),
            {"$gt": ["$breaker.until", now]},
        ]
    }
    state = {
        "open": True,
        "error": _text(error),
        "opened_at": now,
        "until": until,
        "sessions": sessions,
        "share": share,
        "trips": {"$add": [number_or_zero("$breaker.trips"), 1]},
    }
    return {"$expr": {"$not": still_open}}, [{"$set": {"breaker": state}}]


def reset_update() -> Pipeline:
    """The update that closes the breaker and forgets the failures (its trip count stays)."""
    state = {"open": False, "trips": number_or_zero("$breaker.trips")}
    return [{"$set": {"breaker": state, FAILURES: []}}]


class MetadataCollection(Protocol):
    """The operations the breaker needs on the metadata collection (a pool bound to it has them)."""

    def find_one(self, *args: Any, **kwargs: Any) -> Awaitable[dict[str, Any] | None]: ...
    def find_one_and_update(
        self, *args: Any, **kwargs: Any
    ) -> Awaitable[dict[str, Any] | None]: ...
    def update_one(self, *args: Any, **kwargs: Any) -> Awaitable[Any]: ...


class PoolCounts(Protocol):
    """What the breaker counts in the pool: its hand-outs since an instant."""

    @property
    def last_use(self) -> str: ...
    def count_stats(self, *args: Any, **kwargs: Any) -> Awaitable[int]: ...


class BreakerPool(Protocol):
    """What the breaker needs of a pool (:class:`~sessionlib.core.PoolCore` has it)."""

    @property
    def name(self) -> tuple[str, str]: ...
    @property
    def connection(self) -> PoolCounts: ...
    def metadata(self) -> MetadataCollection: ...


class BreakerGuard:
    """A pool's breaker at work: records failures, trips, answers whether to spare a session.

    One guard serves a pool and its :meth:`with_collection` copies, so what it
    last read is kept per pool.
    """

    def __init__(self, policy: CircuitBreaker) -> None:
        self.policy = policy
        self._seen: dict[tuple[str, str], tuple[float, BreakerState]] = {}

    def _remember(self, pool: BreakerPool, state: BreakerState) -> BreakerState:
        self._seen[pool.name] = (time.monotonic(), state)
        return state

    async def spares(self, pool: BreakerPool, error: str, session_id: Any, now: Now) -> bool:
        """Record that *session_id* failed with *error* at *now*; return whether to release it.

        True while the breaker is open for *error*, including when this
        failure is the one that trips it.

        Raises:
            DatabaseError: the server failed.
        """
        policy = self.policy
        since = now.shifted(-policy.window_period)
        _, collection = pool.name
        document = await pool.metadata().find_one_and_update(
            {"_id": collection},
            failure_update(error, session_id, now=now.written, since=since.at, keep=policy.keep),
            upsert=True,
            projection={FAILURES: 1, "breaker": 1},
            return_document=ReturnDocument.AFTER,
        )
        state = self._remember(
            pool, BreakerState.from_document((document or {}).get("breaker"), now)
        )
        if state.open:
            return state.error == _text(error)
        failed = distinct_failed(document, error, since.earliest, now.load)
        if failed < policy.min_sessions:
            return False
        used = await pool.connection.count_stats({pool.connection.last_use: {"$gte": since.at}})
        share = failed / max(used, failed)
        if share < policy.min_share:
            return False
        until = now.shifted(policy.cooldown_period)
        query, update = trip_update(
            error, now=now.written, until=until.written, sessions=failed, share=share
        )
        await pool.metadata().update_one({"_id": collection, **query}, update)
        log.warning(
            "circuit breaker of %s.%s opened: %d sessions (%.0f%% of those handed out in %s) "
            "failed with %s; such failures release their session until %s",
            *pool.name,
            failed,
            share * 100,
            policy.window_period,
            error,
            until.latest.isoformat(timespec="seconds"),
        )
        self._remember(
            pool,
            BreakerState(True, error, now.latest, until.latest, failed, share, state.trips + 1),
        )
        return True

    async def paused_until(self, pool: BreakerPool, now: Now) -> datetime | None:
        """When hand-outs resume, if the policy pauses them and the breaker is open; else None.

        Reads the breaker at most every ``check_interval`` seconds.

        Raises:
            DatabaseError: the server failed.
        """
        if not self.policy.pause:
            return None
        seen = self._seen.get(pool.name)
        if seen is None or time.monotonic() - seen[0] >= self.policy.check_interval:
            _, collection = pool.name
            document = await pool.metadata().find_one(
                {"_id": collection}, projection={"breaker": 1}
            )
            state = BreakerState.from_document((document or {}).get("breaker"), now)
            seen = (time.monotonic(), self._remember(pool, state))
        state = seen[1]
        return state.until if state.is_open(now.earliest) else None

    def forget(self, pool: BreakerPool) -> None:
        """Drop what was read of *pool*'s breaker (after a reset)."""
        self._remember(pool, CLOSED)
