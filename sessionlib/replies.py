"""Late and lost replies to a hand-out: a session is never held by nobody, nor by two.

A hand-out is one ``findAndModify``; the network between it and the server
can delay or lose the reply. Two rules keep the hold true:

* **A late reply is not handed over as held.** On the server's clock the
  hold is measured by the server from the moment it takes the session
  (``$$NOW`` plus the hold, see :meth:`~sessionlib.now.Now.hold_end`),
  lengthened by twice the median round trip of the pool's recent hand-outs,
  the time its reply is expected to take. When the
  reply arrives with less than :data:`LATE_SHARE` of the hold left (the
  server stalled, the network was slow, or the hold is shorter than the
  round trip), the session is held again with a write fenced by the
  hand-out's lease token, once, for the hold plus twice the time the reply
  took; if that reply is late too, the session is given back, fenced the
  same way, and the caller gets ``None``. Either way, no other worker can be
  holding it when the caller gets it.
* **A lost reply gives the session back.** When the hand-out's command times
  out or its connection is lost, the server may still apply it, later: the
  session would then be held for its whole hold by nobody. The pool
  remembers the lease tokens of such hand-outs and, at each of its next
  hand-outs and at ``close()``, gives back (fenced by the token, so a later
  holder is never touched) whatever session a lost command took, until a
  give-back found it or :data:`LOST_GRACE` past the hold has gone by.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from . import updates
from .core import PoolCore
from .exceptions import SessionPoolError
from .holds import LOST_GRACE, LostHolds
from .updates import LEASE, Record

__all__ = ["LATE_SHARE", "LOST_GRACE", "LostHolds", "give_back", "held_enough", "hold_again"]

log = logging.getLogger(__name__)

LATE_SHARE = 0.25
"""The share of its hold a hand-out's reply must leave, or it counts as late."""

REASON = "the reply to its hand-out was lost"


async def give_back(core: PoolCore, lost: LostHolds) -> int:
    """Give back the sessions that hand-outs with lost replies took; return how many.

    A failure is left for the next contact (the tokens are kept).
    """
    given = 0
    for token in lost.pending(core.name):
        try:
            result = await release(core, token)
        except SessionPoolError as exc:
            log.debug("could not give back a session whose hand-out was lost: %s", exc)
            return given
        if result:
            lost.forget(core.name, token)
            given += 1
            log.info("gave back a session of %s.%s whose hand-out's reply was lost", *core.name)
    return given


async def release(core: PoolCore, token: str, reason: str = REASON) -> bool:
    """Release the session held under *token*, if it still is; return whether it was."""
    now = core.read_now()
    record = Record(
        at=now.written, kind="released", reason=reason, fence=None, by=core.options.app_name
    )
    update = updates.with_record(updates.release(core.connection, now=now), record)
    result = await core.connection.update_one({LEASE: token}, update)
    return result.modified_count > 0


def held_enough(core: PoolCore, document: Mapping[str, Any], hold: timedelta) -> bool:
    """Whether at least :data:`LATE_SHARE` of *hold* is left of the hold *document* shows."""
    end = document.get(core.connection.next_use)
    if not isinstance(end, datetime):
        return False
    now = core.read_now()
    return now.load(end) - now.latest >= hold * LATE_SHARE


async def hold_again(
    core: PoolCore,
    token: str,
    hold: timedelta,
    took: timedelta,
    projection: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """After a reply that took *took*: hold the session again (fenced), or give it back.

    The new hold is *hold* plus twice *took*, so that a reply as slow as the
    first still leaves the whole hold. Returns the session, or ``None``.
    """
    now = core.read_now()
    again = await core.connection.find_one_and_update(
        {LEASE: token},
        updates.extend_hold(core.connection, now=now, hold=hold + 2 * took),
        projection=projection,
        return_document=True,
    )
    if again is not None and held_enough(core, again, hold):
        log.info("a hand-out of %s.%s replied late; its session is held again", *core.name)
        return dict(again)
    await release(core, token, "the reply to its hand-out came too late")
    log.warning(
        "a hand-out of %s.%s replied after its hold had (nearly) ended; the session was given "
        "back and no session handed out",
        *core.name,
    )
    return None
