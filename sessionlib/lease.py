"""Leases: a hand-out that only its holder can report on, and waiting for one.

Every hand-out writes a fresh random ``lease`` token and increments a
per-session ``fence`` counter, in the same ``findAndModify``. A lease-checked
report (``success``, ``lock``, ``block``, ``deactivate``, ``release``) adds
the token to its update filter, so once the session has been handed out
again, a late report from the previous holder matches nothing, writes
nothing, and raises :class:`~sessionlib.exceptions.StaleLeaseError`.

Workers use it through :meth:`MongoSessions.lease`::

    on_error = {RateLimitedError: Lock({"minutes": 10}), BannedError: Block(),
                BadLoginError: Deactivate()}
    async with pool.lease(wait=30, on_error=on_error) as lease:
        await fetch(lease["session"])
    # normal exit: success reported; a mapped exception: its report, then it propagates

or :meth:`MongoSessions.acquire`, which returns the :class:`Lease` to report on
by hand. Seed-style calls with plain ``{"_id": ...}`` dicts are never
lease-checked; dicts from ``get_session`` are when the pool is created with
``fenced=True``.

Waiting asks again when the pool's change stream says something may have
freed a session, or the earliest lock ends (see :mod:`sessionlib.watching`).
Without change streams it polls with :data:`~sessionlib.backoff.WAITING`
backoff, never sleeping past the moment the earliest locked session frees up,
nor past the deadline. Time comes from the pool's clock and pauses from its
``sleep``, so tests move a clock instead of sleeping (and poll). This module
knows the pool only through the :class:`LeasingPool` protocol.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from pymongo.results import UpdateResult

from . import handout
from .backoff import WAITING
from .clock import as_utc
from .core import PoolCore
from .exceptions import InvalidInputError, NoSessionAvailableError, SessionPoolError
from .isphere import adapt
from .updates import FENCE, LEASE
from .validation import delay_to_timedelta
from .watching import UNLOCK, Ticket

__all__ = [
    "Block",
    "Deactivate",
    "Lease",
    "LeaseReport",
    "LeasingPool",
    "Lock",
    "OnError",
    "Release",
    "Report",
    "check_on_error",
    "hold_lease",
    "open_lease",
    "wait_for_session",
]

log = logging.getLogger(__name__)

ErrorTypes = type[BaseException] | tuple[type[BaseException], ...]


class LeasingPool(Protocol):
    """What leasing needs of a pool (:class:`~sessionlib.client.MongoSessions` has it)."""

    @property
    def core(self) -> PoolCore: ...
    @property
    def next_use(self) -> str: ...
    @property
    def next_use_delay(self) -> float: ...
    @property
    def clock(self) -> Callable[[], datetime]: ...
    @property
    def sleep(self) -> Callable[[float], Awaitable[None]]: ...

    async def acquire(
        self,
        count_use: int = 1,
        hold: float | None = None,
        *,
        scope: str | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> Lease | None: ...
    async def next_available_at(self) -> datetime | None: ...
    async def session_success(
        self,
        session: dict[str, Any],
        count_success: int = 1,
        next_use_delay: float | None = None,
        *,
        reason: str | None = None,
        lease_checked: bool | None = None,
    ) -> UpdateResult: ...
    async def session_lock(
        self,
        session: dict[str, Any],
        period: dict[str, float] | None = None,
        *,
        until: datetime | None = None,
        scope: str | None = None,
        reason: str | None = None,
        lease_checked: bool | None = None,
    ) -> UpdateResult: ...
    async def session_block(
        self,
        session: dict[str, Any],
        period: dict[str, float] | None = None,
        *,
        until: datetime | None = None,
        scope: str | None = None,
        reason: str | None = None,
        lease_checked: bool | None = None,
    ) -> UpdateResult: ...
    async def session_inactive(
        self,
        session: dict[str, Any],
        *,
        reason: str | None = None,
        lease_checked: bool | None = None,
    ) -> UpdateResult: ...
    async def session_release(
        self,
        session: dict[str, Any],
        *,
        reason: str | None = None,
        lease_checked: bool | None = None,
    ) -> UpdateResult: ...


@runtime_checkable
class Report(Protocol):
    """What to report about a leased session: :class:`Lock`, :class:`Block`, ..."""

    async def apply(self, lease: Lease, reason: str | None = None) -> UpdateResult:
        """Report it through *lease*, with *reason*."""
        ...


OnError = Mapping[Any, Report]
"""Exception types (or tuples of them) mapped to the report each deserves.

The keys are typed loosely because a mapping's key type is invariant: a dict
literal of exception classes would not pass for ``type[BaseException]`` keys.
:func:`check_on_error` checks them when the lease is created.
"""


class LeaseReport:
    """Base of the built-in reports, so a mapping of several kinds has one value type."""

    __slots__ = ()

    async def apply(self, lease: Lease, reason: str | None = None) -> UpdateResult:
        """Report it through *lease*, with *reason*."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Lock(LeaseReport):
    """Lock the session for *period* (a timedelta-keyword dict; default: the pool's).

    With *scope*, for hand-outs with that scope only.
    """

    period: dict[str, float] | None = None
    scope: str | None = None

    async def apply(self, lease: Lease, reason: str | None = None) -> UpdateResult:
        """Lock the session through *lease*."""
        return await lease.lock(self.period, scope=self.scope, reason=reason)


@dataclass(frozen=True, slots=True)
class Block(LeaseReport):
    """Block the session for *period* (default: the pool's ``block_time``); *scope* as for Lock."""

    period: dict[str, float] | None = None
    scope: str | None = None

    async def apply(self, lease: Lease, reason: str | None = None) -> UpdateResult:
        """Block the session through *lease*."""
        return await lease.block(self.period, scope=self.scope, reason=reason)


@dataclass(frozen=True, slots=True)
class Deactivate(LeaseReport):
    """Disable the session for good (``active=False``)."""

    async def apply(self, lease: Lease, reason: str | None = None) -> UpdateResult:
        """Disable the session through *lease*."""
        return await lease.deactivate(reason=reason)


@dataclass(frozen=True, slots=True)
class Release(LeaseReport):
    """Make the session available again at once."""

    async def apply(self, lease: Lease, reason: str | None = None) -> UpdateResult:
        """Release the session through *lease*."""
        return await lease.release(reason=reason)


class Lease(Mapping[str, Any]):
    """A session handed out to this holder; reports on it are lease-checked.

    It reads like the session dict (``lease["session"]``, ``lease["_id"]``).

    Attributes:
        session: The document as handed out.
        reported: The last report made through this lease (``"success"``,
            ``"lock"``, ...), or ``None``.
    """

    def __init__(self, pool: LeasingPool, session: dict[str, Any]) -> None:
        self.pool = pool
        self.session = session
        self.reported: str | None = None

    def __getitem__(self, key: str) -> Any:
        return self.session[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.session)

    def __len__(self) -> int:
        return len(self.session)

    def __repr__(self) -> str:
        return f"<Lease of {self.session.get('_id')!r} fence={self.fence}>"

    @property
    def token(self) -> str:
        """The lease token written at hand-out."""
        token: str = self.session[LEASE]
        return token

    @property
    def fence(self) -> int:
        """How many times this session had been handed out, this hand-out included."""
        value = self.session.get(FENCE, 0)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    @property
    def held_until(self) -> datetime | None:
        """When the hold expires and the session may be handed to someone else."""
        value = self.session.get(self.pool.next_use)
        return as_utc(value) if isinstance(value, datetime) else None

    async def success(
        self,
        count_success: int = 1,
        next_use_delay: float | None = None,
        *,
        reason: str | None = None,
    ) -> UpdateResult:
        """Report a success (see :meth:`MongoSessions.session_success`).

        Raises:
            StaleLeaseError: the session was handed out again; nothing written.
        """
        result = await self.pool.session_success(
            self.session, count_success, next_use_delay, reason=reason, lease_checked=True
        )
        self.reported = "success"
        return result

    async def lock(
        self,
        period: dict[str, float] | None = None,
        *,
        until: datetime | None = None,
        scope: str | None = None,
        reason: str | None = None,
    ) -> UpdateResult:
        """Lock the session (see :meth:`MongoSessions.session_lock`).

        Raises:
            StaleLeaseError: the session was handed out again; nothing written.
        """
        result = await self.pool.session_lock(
            self.session, period, until=until, scope=scope, reason=reason, lease_checked=True
        )
        self.reported = "lock"
        return result

    async def block(
        self,
        period: dict[str, float] | None = None,
        *,
        until: datetime | None = None,
        scope: str | None = None,
        reason: str | None = None,
    ) -> UpdateResult:
        """Block the session (see :meth:`MongoSessions.session_block`).

        Raises:
            StaleLeaseError: the session was handed out again; nothing written.
        """
        result = await self.pool.session_block(
            self.session, period, until=until, scope=scope, reason=reason, lease_checked=True
        )
        self.reported = "block"
        return result

    async def deactivate(self, *, reason: str | None = None) -> UpdateResult:
        """Disable the session for good (see :meth:`MongoSessions.session_inactive`).

        Raises:
            StaleLeaseError: the session was handed out again; nothing written.
        """
        result = await self.pool.session_inactive(self.session, reason=reason, lease_checked=True)
        self.reported = "deactivate"
        return result

    async def release(self, *, reason: str | None = None) -> UpdateResult:
        """Make the session available now (see :meth:`MongoSessions.session_release`).

        Raises:
            StaleLeaseError: the session was handed out again; nothing written.
        """
        result = await self.pool.session_release(self.session, reason=reason, lease_checked=True)
        self.reported = "release"
        return result


def check_on_error(on_error: object) -> dict[Any, Report]:
    """Return *on_error* as a dict after checking every entry.

    Raises:
        InvalidInputError: it is not a mapping of exception types (or tuples
            of them) to reports such as ``Lock()``.
    """
    if on_error is None:
        return {}
    if not isinstance(on_error, Mapping):
        raise InvalidInputError(
            f"on_error must map exception types to reports, not {type(on_error).__name__}"
        )
    checked: dict[Any, Report] = {}
    for types, report in on_error.items():
        members = types if isinstance(types, tuple) else (types,)
        if not members or not all(
            isinstance(member, type) and issubclass(member, BaseException) for member in members
        ):
            raise InvalidInputError(
                f"on_error: {types!r} is not an exception type or a tuple of them"
            )
        if not isinstance(report, Report):
            raise InvalidInputError(
                f"on_error[{types!r}] must be a report such as Lock() or Block(), not {report!r}"
            )
        checked[types] = report
    return checked


def report_for(on_error: OnError, error: BaseException) -> Report | None:
    """Return the report mapped to *error*'s type: the first entry it is an instance of."""
    for types, report in on_error.items():
        if isinstance(error, types):
            return report
    return None


def _describe(
    pool: LeasingPool, next_at: datetime | None, now: datetime, paused: datetime | None = None
) -> str:
    where = "{}.{}".format(*pool.core.name)
    if paused is not None:
        seconds = max(0.0, (paused - now).total_seconds())
        return (
            f"no session handed out from {where}: its circuit breaker is open and pauses "
            f"hand-outs until {paused.isoformat(timespec='seconds')} (in {seconds:.0f} s); "
            "see `sessionpool breaker`"
        )
    if next_at is None:
        return (
            f"no session available in {where}, and none is locked either: "
            "the pool is empty or all its sessions are inactive"
        )
    seconds = max(0.0, (next_at - now).total_seconds())
    return (
        f"no session available in {where}; the next one frees up at "
        f"{next_at.isoformat(timespec='seconds')} (in {seconds:.0f} s)"
    )


def _waited(core: PoolCore, seconds: float) -> None:
    """Observe a wait for a session in the pool's metrics, if any."""
    if core.metrics is not None:
        core.metrics.waited(*core.name, seconds)


async def _paused_until(core: PoolCore) -> datetime | None:
    """When hand-outs resume, if the pool's breaker pauses them now; else ``None``."""
    if core.breaker is None:
        return None
    return await core.breaker.paused_until(core, await core.now())


async def _spares(core: PoolCore, error: BaseException, session_id: Any) -> bool:
    """Whether the pool's breaker, having recorded *error*, has its session released instead."""
    if core.breaker is None:
        return False
    return await core.breaker.spares(core, type(error).__name__, session_id, await core.now())


async def wait_for_session(
    pool: LeasingPool,
    *,
    wait: float,
    count_use: int = 1,
    hold: float | None = None,
    scope: str | None = None,
    where: Mapping[str, Any] | None = None,
) -> Lease:
    """Return a lease on a session of *pool*, waiting for up to *wait* seconds.

    On a server with change streams, a waiter asks when something may have
    freed a session (see :mod:`sessionlib.watching`); else, and with a
    *scope* or *where*, it polls.

    Raises:
        NoSessionAvailableError: none became available in time (its
            ``next_available_at`` is when to try again: the end of the circuit
            breaker's pause, if it pauses hand-outs now).
        InvalidInputError: *wait* is negative or not a number.
    """
    budget = delay_to_timedelta(wait, 0, name="wait")
    core = pool.core
    started = pool.clock()
    ask = Ask(count_use, hold, scope, where)
    watch = core.watch() if budget and scope is None and where is None else None
    if watch is not None:
        ticket = watch.join()  # in the queue before asking: no change is missed
        try:
            opening = min(budget.total_seconds(), core.options.timeout)
            if await watch.ready(opening):
                lease = await _streamed(pool, ticket, ask, started + budget)
                if lease is not None:
                    _waited(core, (pool.clock() - started).total_seconds())
                    return lease
        finally:
            watch.leave(ticket)
    return await _polled(pool, ask, started, started + budget)


@dataclass(frozen=True, slots=True)
class Ask:
    """What a waiter asks for: :meth:`LeasingPool.acquire`'s arguments."""

    count_use: int
    hold: float | None
    scope: str | None
    where: Mapping[str, Any] | None

    async def of(self, pool: LeasingPool) -> Lease | None:
        """One hand-out attempt."""
        return await pool.acquire(self.count_use, self.hold, scope=self.scope, where=self.where)


async def _streamed(
    pool: LeasingPool, ticket: Ticket, ask: Ask, deadline: datetime
) -> Lease | None:
    """Ask when woken, until a lease, the deadline, or the stream is lost (``None``: poll)."""
    watch = ticket.watch
    reason: str | None = None
    while True:
        lease = await ask.of(pool)
        if reason == UNLOCK or not watch.known:
            watch.probed(await pool.next_available_at())  # the next lock to end
            if lease is not None and reason == UNLOCK:
                watch.leave(ticket)
                watch.wake(UNLOCK)  # locks that ended at the same instant freed more
        if lease is not None:
            return lease
        if not watch.open or await _paused_until(pool.core) is not None:
            return None  # poll: until the stream is back, or the breaker's pause ends
        remaining = (deadline - pool.clock()).total_seconds()
        if remaining <= 0:
            return None
        reason = await ticket.wait(remaining)
        if reason is None:
            return None  # the deadline: the last attempt polls, to say when to try again


async def _polled(pool: LeasingPool, ask: Ask, started: datetime, deadline: datetime) -> Lease:
    """Poll with :data:`~sessionlib.backoff.WAITING` backoff until a lease or the deadline."""
    core = pool.core
    attempt = 0
    while True:
        lease = await ask.of(pool)
        if lease is not None:
            _waited(core, (pool.clock() - started).total_seconds())
            return lease
        next_at = await pool.next_available_at()
        paused = await _paused_until(core)
        if paused is not None:
            next_at = paused  # nothing is handed out before the breaker's pause ends: try then
        now = pool.clock()
        remaining = (deadline - now).total_seconds()
        if remaining <= 0:
            _waited(core, (now - started).total_seconds())
            message = _describe(pool, next_at, now, paused)
            raise adapt(NoSessionAvailableError(message, next_available_at=next_at))
        pause = WAITING.pause(attempt)
        if next_at is not None:
            # Wake when the next session frees up, if that is sooner.
            pause = min(pause, max((next_at - now).total_seconds(), 0.0) + 0.001)
        await pool.sleep(min(pause, remaining))
        attempt += 1


def open_lease(
    pool: LeasingPool,
    hold: float | None,
    count_use: int,
    wait: float | None,
    on_error: OnError | None,
    success_delay: float | None,
    scope: str | None,
    where: Mapping[str, Any] | None,
) -> AbstractAsyncContextManager[Lease]:
    """Check the arguments of ``MongoSessions.lease`` now, and return its context manager.

    Raises:
        InvalidInputError: an argument is invalid (before any hand-out).
    """
    default = pool.next_use_delay
    handout.check(default, count_use, hold, scope, where)
    delay_to_timedelta(wait, 0, name="wait")
    delay_to_timedelta(success_delay, default, name="success_delay")
    return hold_lease(
        pool,
        hold=hold,
        count_use=count_use,
        wait=wait,
        on_error=check_on_error(on_error),
        success_delay=success_delay,
        scope=scope,
        where=where,
    )


@asynccontextmanager
async def hold_lease(
    pool: LeasingPool,
    *,
    hold: float | None,
    count_use: int,
    wait: float | None,
    on_error: OnError,
    success_delay: float | None,
    scope: str | None = None,
    where: Mapping[str, Any] | None = None,
) -> AsyncIterator[Lease]:
    """The context manager behind :meth:`MongoSessions.lease` (arguments already checked)."""
    lease = await wait_for_session(
        pool, wait=wait or 0, count_use=count_use, hold=hold, scope=scope, where=where
    )
    try:
        yield lease
    except BaseException as error:
        report = report_for(on_error, error)
        if report is not None and lease.reported is None:
            reason = type(error).__name__[:200]  # the exception's class is the reason on record
            try:
                spared = not isinstance(report, Release) and await _spares(
                    pool.core, error, lease.get("_id")
                )
                if spared:
                    # The pool's circuit breaker is open for this error: the
                    # client is at fault, not the session.
                    report, reason = Release(), f"breaker: {reason}"[:200]
                await report.apply(lease, reason=reason)
            except SessionPoolError as exc:
                # The body's exception is what the caller must see; say why the report failed.
                log.warning(
                    "could not report %s for session %r after %s: %s",
                    type(report).__name__,
                    lease.get("_id"),
                    type(error).__name__,
                    exc,
                )
        raise
    if lease.reported is None:
        await lease.success(next_use_delay=success_delay)
