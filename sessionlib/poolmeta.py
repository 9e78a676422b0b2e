"""A pool's own metadata at work: its alert target and its circuit breaker.

The documents these verbs read and write are described in
:mod:`sessionlib.metadata`, the breaker's rules in :mod:`sessionlib.breaker`.
"""

from __future__ import annotations

from typing import Any

from .breaker import reset_update
from .core import PoolCore
from .exceptions import InvalidInputError
from .metadata import BreakerState, Target
from .validation import check_reason

__all__ = ["breaker_state", "reset_breaker", "set_target", "target"]


async def _document(core: PoolCore) -> dict[str, Any]:
    document = await core.metadata().find_one({"_id": core.connection.collection_name})
    return document or {}


async def target(core: PoolCore) -> Target | None:
    """The pool's alert target, or ``None`` if it has none (or a broken one)."""
    return Target.from_document((await _document(core)).get("target"))


async def set_target(core: PoolCore, chosen: Target | None, by: str | None) -> None:
    """Set (or with ``None`` remove) the pool's alert target.

    Raises:
        InvalidInputError: *chosen* is not a :class:`Target` or ``None``, or
            *by* is not a short text; nothing was written.
    """
    if chosen is not None and not isinstance(chosen, Target):
        raise InvalidInputError(f"target must be a Target or None, not {chosen!r}")
    check_reason(by)
    name = core.connection.collection_name
    metadata = core.metadata()
    if chosen is None:
        await metadata.update_one({"_id": name}, {"$unset": {"target": ""}})
        return
    now = await core.now()
    stored = {**chosen.as_document(), "updated_at": now.written, "by": by or core.options.app_name}
    await metadata.update_one(
        {"_id": name}, [{"$set": {"target": {"$literal": stored}}}], upsert=True
    )


async def breaker_state(core: PoolCore) -> BreakerState:
    """The state of the pool's circuit breaker now (closed if it never tripped)."""
    now = await core.now()
    return BreakerState.from_document((await _document(core)).get("breaker"), now)


async def reset_breaker(core: PoolCore) -> None:
    """Close the pool's circuit breaker and forget its failures, for every worker."""
    await core.metadata().update_one({"_id": core.connection.collection_name}, reset_update())
    if core.breaker is not None:
        core.breaker.forget(core)
