"""The pool core: what every verb module takes.

:class:`~sessionlib.client.MongoSessions` is a façade: each public method
checks its arguments and hands the work to a verb module
(:mod:`~sessionlib.handout`, :mod:`~sessionlib.reports`,
:mod:`~sessionlib.reading`, :mod:`~sessionlib.maintenance`,
:mod:`~sessionlib.poolmeta`), passing a :class:`PoolCore`. The core holds,
under public names:

* ``connection`` — the seed's connection object: field names (which
  subclasses may override), the bound collections, the driver operations
  (:mod:`sessionlib.operations`, the one place that talks to the driver);
* ``hooks`` — the seed's overridable filter hooks and order;
* the pool's options, its stored-time conversion, its metadata handle, its
  breaker at work;
* :meth:`PoolCore.now` — the operation's one reading of the clock.

A core is cheap: the façade makes one per call, so a copy made by
``with_collection`` never shares another pool's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from .connection import MongoConnectionInterface
from .holds import LostHolds
from .metadata import METADATA_COLLECTION
from .now import Now
from .options import PoolOptions
from .states import Filter, combine
from .storedtime import StoredTime
from .watching import PoolWatch, change_filter

if TYPE_CHECKING:
    from .breaker import BreakerGuard
    from .metrics import PoolMetrics

__all__ = ["Hooks", "PoolCore"]


class Hooks(Protocol):
    """The seed's overridable hooks (``MongoSessions`` has them; subclasses override them)."""

    @property
    def default_sort(self) -> list[tuple[str, int]]: ...
    def _filter_exclude_lock(self, offset: float = 0) -> Filter: ...
    def _filter_include_lock(self, offset: float = 0) -> Filter: ...
    def _filter_one(self, session: Any) -> Filter: ...


class PoolCore:
    """A pool's names, settings, collections and clock, for the verb modules.

    Args:
        connection: The pool's connection (field names, collections, operations).
        hooks: Its filter hooks and order.
        breaker: Its circuit breaker at work, if it has one.
        lost: The hand-outs whose replies it lost (see :mod:`sessionlib.replies`).
        order_key: Whether hand-outs and statistics follow :mod:`sessionlib.states`
            and the order key (not when a subclass replaced the hooks or the
            default filter was changed: the seed's behaviour then).
    """

    __slots__ = ("breaker", "connection", "hooks", "lost", "order_key")

    def __init__(
        self,
        connection: MongoConnectionInterface,
        hooks: Hooks,
        *,
        breaker: BreakerGuard | None = None,
        lost: LostHolds | None = None,
        order_key: bool = True,
    ) -> None:
        self.connection = connection
        self.hooks = hooks
        self.breaker = breaker
        self.lost = lost
        self.order_key = order_key

    @property
    def options(self) -> PoolOptions:
        """The pool's validated settings."""
        return self.connection.options

    @property
    def time(self) -> StoredTime:
        """How the pool's documents hold instants."""
        return self.connection.options.stored_time

    @property
    def metrics(self) -> PoolMetrics | None:
        """The worker telemetry to count in, if any."""
        return self.connection.options.metrics

    @property
    def name(self) -> tuple[str, str]:
        """The pool's database and collection names."""
        return self.connection.db_name, self.connection.collection_name

    async def now(self) -> Now:
        """Read the operation's now: the server's clock, synced first if the reading is old."""
        await self.connection.sync_clock()
        return self.read_now()

    @property
    def on_server(self) -> bool:
        """Whether the pool decides on the server's clock (no clock passed in, a real server)."""
        connector = self.connection.connector
        return self.options.clock is None and connector is not None and connector.has_server_clock

    def read_now(self) -> Now:
        """The current now without syncing the clock (for the seed's synchronous hooks)."""
        return Now.read(self.connection.clock, self.time, on_server=self.on_server)

    def watch(self) -> PoolWatch | None:
        """The pool's change stream that waiters share, or ``None``: they poll.

        Only a pool on a real server's clock, pausing with ``asyncio.sleep``,
        whose server has change streams (see :mod:`sessionlib.watching`).
        """
        connector = self.connection.connector
        if connector is None or not self.on_server or self.options.sleep is not asyncio.sleep:
            return None
        fields = self.connection
        key = (*self.name, fields.next_use, fields.active, fields.lock_kind, self.time)
        found = connector.watches.get(key)
        if found is None:
            found = connector.watches[key] = PoolWatch(
                fields.sessions,
                [change_filter(fields.next_use, fields.active, fields.lock_kind)],
                next_use=fields.next_use,
                load=self.time.load,
                clock=fields.clock,
            )
        return None if found.supported is False else found

    async def encrypt(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """*data* with the pool's encrypted fields encrypted (a copy; as it is without encryption).

        Raises:
            InvalidPayloadError: *data* sets part of an encrypted field.
        """
        connector = self.connection.connector
        encrypter = connector.encrypter if connector is not None else None
        return dict(data) if encrypter is None else await encrypter.encrypt(data)

    def metadata(self) -> MongoConnectionInterface:
        """The pool's connection bound to its database's metadata collection (no I/O)."""
        return self.connection.bound_to(self.connection.db_name, METADATA_COLLECTION)

    def load(self, document: dict[str, Any]) -> dict[str, Any]:
        """*document* with true, aware UTC instants in its time fields (changed in place)."""
        self.time.load_fields(document, self.connection.time_fields)
        return document

    @contextmanager
    def at(self, now: Now) -> Iterator[Now]:
        """Make *now* current while the hooks build a command (see :mod:`sessionlib.now`)."""
        with now.current():
            yield now

    def not_locked(self, now: Now, offset: float = 0) -> Filter:
        """The pool's filter of sessions it may hand out at *now* + *offset*: the hooks'."""
        with self.at(now):
            return combine(self.connection.default_filter, self.hooks._filter_exclude_lock(offset))

    def locked(self, now: Now, offset: float = 0) -> Filter:
        """The pool's filter of locked sessions at *now* + *offset*: the hooks'."""
        with self.at(now):
            return combine(self.connection.default_filter, self.hooks._filter_include_lock(offset))

    def one(self, session: Mapping[str, Any]) -> Filter:
        """The filter of *session* alone (the hook's).

        Raises:
            InvalidSessionError: *session* has no plain ``_id``.
        """
        return self.hooks._filter_one(session)
