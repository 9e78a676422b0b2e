"""Leases: a hand-out that only its holder can report on.

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
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pymongo.results import UpdateResult

from .clock import as_utc

if TYPE_CHECKING:
    from .client import MongoSessions

__all__ = ["FENCE", "LEASE", "Block", "Deactivate", "Lease", "Lock", "Release", "Report"]

LEASE = "lease"
"""Field holding the token of the current hand-out."""
FENCE = "fence"
"""Field counting the hand-outs of a session (monotonic: a fencing token for other systems)."""


class Report:
    """What to report about a leased session; see :class:`Lock`, :class:`Block`, ..."""

    async def apply(self, lease: Lease) -> UpdateResult:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Lock(Report):
    """Lock the session for *period* (a timedelta-keyword dict; default: the pool's)."""

    period: dict[str, float] | None = None

    async def apply(self, lease: Lease) -> UpdateResult:
        return await lease.lock(self.period)


@dataclass(frozen=True, slots=True)
class Block(Report):
    """Block the session for *period* (default: the pool's ``block_time``)."""

    period: dict[str, float] | None = None

    async def apply(self, lease: Lease) -> UpdateResult:
        return await lease.block(self.period)


@dataclass(frozen=True, slots=True)
class Deactivate(Report):
    """Disable the session for good (``active=False``)."""

    async def apply(self, lease: Lease) -> UpdateResult:
        return await lease.deactivate()


@dataclass(frozen=True, slots=True)
class Release(Report):
    """Make the session available again at once."""

    async def apply(self, lease: Lease) -> UpdateResult:
        return await lease.release()


class Lease(Mapping[str, Any]):
    """A session handed out to this holder; reports on it are lease-checked.

    It reads like the session dict (``lease["session"]``, ``lease["_id"]``).

    Attributes:
        session: The document as handed out.
        reported: The last report made through this lease (``"success"``,
            ``"lock"``, ...), or ``None``.
    """

    def __init__(self, pool: MongoSessions, session: dict[str, Any]) -> None:
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
        return int(self.session.get(FENCE, 0))

    @property
    def held_until(self) -> datetime | None:
        """When the hold expires and the session may be handed to someone else."""
        value = self.session.get(self.pool.next_use)
        return as_utc(value) if isinstance(value, datetime) else None

    async def success(
        self, count_success: int = 1, next_use_delay: float | None = None
    ) -> UpdateResult:
        """Report a success (see :meth:`MongoSessions.session_success`).

        Raises:
            StaleLeaseError: the session was handed out again; nothing written.
        """
        result = await self.pool.session_success(
            self.session, count_success, next_use_delay, lease_checked=True
        )
        self.reported = "success"
        return result

    async def lock(self, period: dict[str, float] | None = None) -> UpdateResult:
        """Lock the session (see :meth:`MongoSessions.session_lock`).

        Raises:
            StaleLeaseError: the session was handed out again; nothing written.
        """
        result = await self.pool.session_lock(self.session, period, lease_checked=True)
        self.reported = "lock"
        return result

    async def block(self, period: dict[str, float] | None = None) -> UpdateResult:
        """Block the session (see :meth:`MongoSessions.session_block`).

        Raises:
            StaleLeaseError: the session was handed out again; nothing written.
        """
        result = await self.pool.session_block(self.session, period, lease_checked=True)
        self.reported = "block"
        return result

    async def deactivate(self) -> UpdateResult:
        """Disable the session for good (see :meth:`MongoSessions.session_inactive`).

        Raises:
            StaleLeaseError: the session was handed out again; nothing written.
        """
        result = await self.pool.session_inactive(self.session, lease_checked=True)
        self.reported = "deactivate"
        return result

    async def release(self) -> UpdateResult:
        """Make the session available now (see :meth:`MongoSessions.session_release`).

        Raises:
            StaleLeaseError: the session was handed out again; nothing written.
        """
        result = await self.pool.session_release(self.session, lease_checked=True)
        self.reported = "release"
        return result


def report_for(
    on_error: Mapping[type[BaseException] | tuple[type[BaseException], ...], Report],
    error: BaseException,
) -> Report | None:
    """Return the report mapped to *error*'s type: the first entry it is an instance of."""
    for types, report in on_error.items():
        if isinstance(error, types):
            return report
    return None
