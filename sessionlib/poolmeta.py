"""A pool's own view of its metadata: its alert target and its circuit breaker.

:class:`~sessionlib.client.MongoSessions` inherits these methods; the
documents they read and write are described in :mod:`sessionlib.metadata`,
the breaker's rules in :mod:`sessionlib.breaker`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from .breaker import BreakerGuard, reset_update
from .clock import Clock, latest
from .connection import MongoConnectionInterface
from .metadata import METADATA_COLLECTION, BreakerState, Target
from .validation import check_reason

__all__ = ["PoolMetadataMixin"]


class PoolMetadataMixin(MongoConnectionInterface):
    """Target and breaker methods of a pool."""

    _breaker_guard: BreakerGuard | None = None

    @property
    def clock(self) -> Clock:
        """The clock decisions are made on (see :class:`~sessionlib.client.MongoSessions`)."""
        raise NotImplementedError

    def _metadata(self) -> Self:
        """This pool's settings, bound to its database's metadata collection (no I/O)."""
        return self._rebound(self.db_name, METADATA_COLLECTION)

    def _load(self, instant: datetime) -> datetime:
        return self.options.stored_time.load(instant)

    def _store(self, instant: datetime) -> datetime:
        return self.options.stored_time.store(instant)

    async def _handed_out_since(self, instant: datetime) -> int:
        """Sessions handed out after *instant* (each counted once, by its last hand-out)."""
        return await self.count_stats({self.last_use: {"$gte": self._store(instant)}})

    async def _metadata_document(self) -> dict[str, Any]:
        document = await self._metadata().find_one({"_id": self.collection_name})
        return document or {}

    async def target(self) -> Target | None:
        """Return the pool's alert target, or ``None`` if it has none (or a broken one).

        Raises:
            DatabaseError: the server failed.
        """
        return Target.from_document((await self._metadata_document()).get("target"))

    async def set_target(self, target: Target | None, *, by: str | None = None) -> None:
        """Set the pool's alert target (exported by the exporter); ``None`` removes it.

        *by* names who set it (default: the pool's ``app_name``).

        Raises:
            InvalidInputError: *target* is not a :class:`Target` or ``None``,
                or *by* is not a short text; nothing was written.
            DatabaseError: the server failed.
        """
        from .exceptions import InvalidInputError

        if target is not None and not isinstance(target, Target):
            raise InvalidInputError(f"target must be a Target or None, not {target!r}")
        check_reason(by)
        metadata = self._metadata()
        if target is None:
            await metadata.update_one({"_id": self.collection_name}, {"$unset": {"target": ""}})
            return
        stored = {
            **target.as_document(),
            "updated_at": self._store(latest(self.clock)),
            "by": by or self.options.app_name,
        }
        await metadata.update_one(
            {"_id": self.collection_name}, [{"$set": {"target": {"$literal": stored}}}], upsert=True
        )

    async def breaker_state(self) -> BreakerState:
        """Return the state of the pool's circuit breaker (closed if it never tripped).

        Raises:
            DatabaseError: the server failed.
        """
        document = await self._metadata_document()
        return BreakerState.from_document(document.get("breaker"), self._load)

    async def reset_breaker(self) -> None:
        """Close the pool's circuit breaker and forget its failures, for every worker.

        Raises:
            DatabaseError: the server failed.
        """
        await self._metadata().update_one({"_id": self.collection_name}, reset_update())
        if self._breaker_guard is not None:
            self._breaker_guard.forget(self)

    async def _spares(self, error: BaseException, session_id: Any) -> bool:
        """Whether the breaker has a failure with *error* release its session instead.

        False without a breaker. Records the failure otherwise (see
        :meth:`~sessionlib.breaker.BreakerGuard.spares`).
        """
        if self._breaker_guard is None:
            return False
        return await self._breaker_guard.spares(self, type(error).__name__, session_id)

    async def _paused_until(self) -> datetime | None:
        """When hand-outs resume, if the breaker pauses them now; else ``None``."""
        if self._breaker_guard is None:
            return None
        return await self._breaker_guard.paused_until(self)
