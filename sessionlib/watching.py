"""Waiting without polling: one change stream per pool per process, shared by its waiters.

A worker waiting for a session (``lease(wait=...)``, ``wait_for_session``)
asks for one when something may have freed one, not on a timer:

* **a change**: the server sends, on the pool's change stream, the changes
  that can make a session available now (filtered on the server by
  :func:`change_filter`: a new or replaced session, a lock removed, a session
  enabled). Each wakes one waiter;
* **an unlock**: a lock that ends frees its session without a write. The
  watch knows the earliest one (a waiter reads it once, with one ``find``,
  and the stream announces earlier ones as they are written) and wakes one
  waiter when it passes; that waiter reads the next one.

Waiters wake in the order they came, the longest first. A waiter joins the
queue (:meth:`PoolWatch.join`) before it asks, so a change between its ask
and its wait is never missed: the wake is kept for it. A waiter that leaves
with a wake it did not use passes it on. So waiting sends at most one
hand-out attempt per change and per unlock, and none while nothing changes.

A server without change streams (a standalone ``mongod``) refuses the
stream: that is logged once and its waiters poll (see :mod:`sessionlib.lease`).
A stream that breaks is opened again after its last change (its resume
token); meanwhile its waiters poll. Pools on a moved or local clock (tests)
and waiters with a scope or a ``where`` filter poll too: a change they cannot
use would otherwise be a wake another waiter missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pymongo.errors import OperationFailure, PyMongoError

from . import driver

__all__ = ["CHANGE", "LINGER", "UNLOCK", "PoolWatch", "Ticket", "change_filter"]

CHANGE = "change"
"""A waiter's wake: a change that may have made a session available."""
UNLOCK = "unlock"
"""A waiter's wake: the earliest known lock has ended."""

LINGER = 30.0
"""Seconds a stream stays open after its last waiter left, for the next one."""

REFUSED = frozenset({13, 115, 40324, 40573})
"""Server errors that mean no change streams here: not allowed (the user's role has no
``changeStream``), not supported, an unknown stage, not a replica set."""

HISTORY_LOST = 286
"""The resume token is older than the server's history: start afresh."""

REOPEN_PAUSE = 1.0
"""Seconds between attempts to open a broken stream again."""

log = logging.getLogger(__name__)


def change_filter(next_use: str, active: str, lock_kind: str) -> dict[str, Any]:
    """The stream's ``$match``: changes that can free a session now, or announce when."""
    updated = "updateDescription.updatedFields"
    return {
        "$match": {
            "$or": [
                {"operationType": {"$in": ["insert", "replace", "invalidate", "drop"]}},
                {f"{updated}.{next_use}": {"$exists": True}},
                {"updateDescription.removedFields": {"$in": [next_use, lock_kind]}},
                {f"{updated}.{active}": True},
            ]
        }
    }


class Ticket:
    """A waiter's place in its pool's queue."""

    __slots__ = ("_woken", "reason", "watch")

    def __init__(self, watch: PoolWatch) -> None:
        self.watch = watch
        self.reason: str | None = None
        """Why it was woken and has not yet waited again (:data:`CHANGE`, :data:`UNLOCK`)."""
        self._woken = asyncio.Event()

    @property
    def woken(self) -> bool:
        """Whether a wake is kept for it."""
        return self._woken.is_set()

    def wake(self, reason: str) -> None:
        """Keep a wake for it (its next :meth:`wait` returns at once)."""
        self.reason = reason
        self._woken.set()

    async def wait(self, seconds: float) -> str | None:
        """Wait for a wake for at most *seconds*; return its reason, or ``None`` at the end."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, seconds)):
                await self._woken.wait()
        if not self._woken.is_set():
            return None
        self._woken.clear()
        reason, self.reason = self.reason, None
        return reason


class PoolWatch:
    """A pool's change stream in this process, and the queue of its waiters.

    Args:
        collection: The pool's collection (the driver's).
        pipeline: The stream's pipeline (:func:`change_filter`).
        next_use: The name of the field that holds when a lock ends.
        load: Turns a stored instant into a true one.
        clock: Returns now, as the pool's clock reads it.
    """

    def __init__(
        self,
        collection: Any,
        pipeline: list[dict[str, Any]],
        *,
        next_use: str,
        load: Callable[[datetime], datetime],
        clock: Callable[[], datetime],
    ) -> None:
        self.collection = collection
        self.pipeline = pipeline
        self.next_use = next_use
        self.load = load
        self.clock = clock
        self.supported: bool | None = None
        """Whether the server has change streams (``None``: not known yet)."""
        self.open = False
        """Whether the stream is open now: waiters may wait on it."""
        self.known = False
        """Whether the earliest unlock is known (a waiter read it since the last passed)."""
        self._queue: list[Ticket] = []
        self._opened = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._resume: Any = None
        self._unlock: datetime | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None

    def join(self) -> Ticket:
        """A place at the end of the queue; the stream opens if it is not open."""
        ticket = Ticket(self)
        self._queue.append(ticket)
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self.supported is not False and (self._task is None or self._task.done()):
            self._opened.clear()
            self._task = asyncio.create_task(self._follow(), name="sessionpool-watch")
        return ticket

    def leave(self, ticket: Ticket) -> None:
        """Take *ticket* out of the queue; a wake it kept goes to the next waiter."""
        with contextlib.suppress(ValueError):
            self._queue.remove(ticket)
        if ticket.woken and ticket.reason is not None:
            self.wake(ticket.reason)
        if not self._queue and self._task is not None and self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(LINGER, self._stop)

    async def ready(self, seconds: float) -> bool:
        """Whether waiters can wait on the stream, waiting at most *seconds* for it to open."""
        if self.supported is not False and not self._opened.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, seconds)):
                    await self._opened.wait()
        return self.open

    def wake(self, reason: str) -> None:
        """Wake the longest waiter that has no wake kept (all have one: they will all ask)."""
        for ticket in self._queue:
            if not ticket.woken:
                ticket.wake(reason)
                return

    def probed(self, at: datetime | None) -> None:
        """A waiter read the earliest lock's end: *at* (``None``: no lock)."""
        self.known = True
        self.expect(at)

    def expect(self, at: datetime | None) -> None:
        """A lock ends at *at*: wake a waiter then, unless an earlier end is known."""
        if at is None or (self._unlock is not None and self._unlock <= at):
            return
        self._unlock = at
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, (at - self.clock()).total_seconds()) + 0.001
        self._timer = asyncio.get_running_loop().call_later(delay, self._unlocked)

    def _unlocked(self) -> None:
        self._timer = self._unlock = None
        self.known = False  # the woken waiter reads the next one
        self.wake(UNLOCK)

    def _received(self, change: dict[str, Any]) -> None:
        kind = change.get("operationType")
        if kind in ("insert", "replace"):
            self.wake(CHANGE)
            return
        if kind != "update":
            return
        description = change.get("updateDescription") or {}
        value = (description.get("updatedFields") or {}).get(self.next_use, CHANGE)
        if isinstance(value, datetime):
            self.expect(self.load(value))  # a lock that ends then (perhaps already)
        else:
            self.wake(CHANGE)  # unlocked, enabled

    def _lost(self) -> None:
        """The stream closed: every waiter asks once more, and polls until it is back."""
        self.open = False
        for ticket in self._queue:
            if not ticket.woken:
                ticket.wake(CHANGE)

    async def _follow(self) -> None:
        """Read the stream, waking waiters; open it again after its last change if it breaks."""
        while True:
            try:
                stream = await driver.resolve(
                    self.collection.watch(self.pipeline, resume_after=self._resume)
                )
                async with stream:
                    self.supported = self.open = True
                    self._opened.set()
                    while stream.alive:
                        change = await stream.try_next()
                        self._resume = stream.resume_token
                        if change is not None:
                            self._received(change)
                self._lost()  # invalidated (dropped, renamed): from now on
                self._resume = None
            except OperationFailure as exc:
                self._lost()
                if exc.code in REFUSED:
                    self.supported = False
                    self._opened.set()
                    log.info(
                        "no change streams for %s (%s, code %s): waiters poll",
                        self.collection.full_name,
                        exc.details.get("codeName") if exc.details else "refused",
                        exc.code,
                    )
                    return
                if exc.code == HISTORY_LOST:
                    self._resume = None
                log.debug("change stream failed: %s; opening it again", exc)
            except PyMongoError as exc:
                self._lost()
                log.debug("change stream lost: %s; opening it again", exc)
            self._opened.set()  # waiters poll until it is back
            await asyncio.sleep(REOPEN_PAUSE)
            self._opened.clear()

    def _stop(self) -> None:
        self._linger = None
        if not self._queue and self._task is not None:
            self._task.cancel()
            self._task = None
            self.open = False

    async def close(self) -> None:
        """Close the stream and forget the timers."""
        for handle in (self._timer, self._linger):
            if handle is not None:
                handle.cancel()
        self._timer = self._linger = self._unlock = None
        task, self._task = self._task, None
        self.open = False
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
