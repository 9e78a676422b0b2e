"""One client and the server's clock, shared by every pool that uses them.

A :class:`Connector` is what ``connect()`` opens: it creates PyMongo's async
client (or adopts one passed in, which stays its owner's), checks that the
server answers, and keeps the :class:`~sessionlib.clock.ServerClock` fed
with ``hello`` samples. Pools made from one
:class:`~sessionlib.store.SessionStore`, and copies made by
``with_collection``, share one connector.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable
from typing import TYPE_CHECKING

from . import driver
from .clock import ServerClock, as_utc
from .encryption import Encrypter
from .exceptions import (
    ConfigurationError,
    NotConnectedError,
    ServerClockError,
    SessionPoolError,
)
from .isphere import adapt
from .logger import redact_url
from .watching import PoolWatch

if TYPE_CHECKING:
    from .options import PoolOptions

__all__ = ["Connector"]

log = logging.getLogger(__name__)


class Connector:
    """The client of one MongoDB deployment, and that deployment's clock.

    Args:
        mongo_url: Connection string; not needed when *client* is given.
        client: An existing client to share; it stays the caller's (``close``
            leaves it open).
        options: Timeout, reconnect attempts, application name, client
            options and clock settings.

    Raises:
        ConfigurationError: neither *mongo_url* nor *client* is given.
    """

    def __init__(
        self,
        mongo_url: str | None,
        *,
        client: driver.Client | None,
        options: PoolOptions,
    ) -> None:
        if mongo_url is None and client is None:
            raise adapt(
                ConfigurationError("pass a MongoDB URL (mongo_url=...) or a client (client=...)")
            )
        self._mongo_url = mongo_url
        self.options = options
        self.owns_client = client is None
        self._client = client
        self.clock = ServerClock(
            refresh=options.clock_sync_interval, warn_above=options.clock_skew_warning
        )
        self.closed = False
        self._syncing: asyncio.Task[None] | None = None
        self.encrypter: Encrypter | None = None
        """Encrypts the pools' listed fields, if they are encrypted (set by :meth:`open`)."""
        self.watches: dict[Hashable, PoolWatch] = {}
        """The change streams waiters share, one per pool (see :mod:`sessionlib.watching`)."""

    @property
    def client(self) -> driver.Client:
        """The client.

        Raises:
            NotConnectedError: :meth:`open` has not created it, or it was closed.
        """
        if self._client is None or self.closed:
            raise NotConnectedError("the connection is closed; call 'await pool.connect()' first")
        return self._client

    @property
    def has_server_clock(self) -> bool:
        """Whether the server's clock can be read (not for in-process mongomock)."""
        return self._client is not None and not driver.is_in_process(self._client)

    async def open(self) -> None:
        """Create the client if needed, check the server answers, and read its clock.

        Raises:
            ServerUnavailableError: the server did not answer within the
                allowed reconnect attempts.
            OperationTimeoutError: the check did not finish within the timeout.
            PermissionDeniedError: the server refused the credentials.
            ConfigurationError: the URL or a client option is invalid.
        """
        options = self.options
        encryption = options.encryption
        if self._client is None:
            assert self._mongo_url is not None  # checked in __init__
            decrypting = (
                {"auto_encryption_opts": encryption.auto_encryption_opts()} if encryption else {}
            )
            self._client = driver.new_client(
                self._mongo_url,
                timeout=options.timeout,
                app_name=options.app_name,
                options={**options.client_options, **decrypting},
            )
        elif encryption is not None and not driver.decrypts(self._client):
            raise adapt(
                ConfigurationError(
                    "encryption= needs a client that decrypts what it reads: pass a URL, or "
                    "build the client with auto_encryption_opts=encryption.auto_encryption_opts()"
                )
            )
        self.closed = False
        try:
            await self.sync_clock(connecting=True)
            if encryption is not None:
                self.encrypter = Encrypter(encryption, self._client)
                await self.encrypter.check()
        except BaseException:
            await self.close()
            raise
        log.debug("connected to %s", redact_url(self._mongo_url))

    async def sync_clock(self, *, connecting: bool = False) -> None:
        """Read the server's clock (one ``hello``); on mongomock, check it answers.

        Raises:
            ServerClockError: connecting, and the server's clock is implausible
                (more than :data:`~sessionlib.clock.PLAUSIBLE_OFFSET` off this
                machine's); later, such a reading is ignored (and logged).
            SessionPoolError: the server failed (see :func:`sessionlib.driver.run`).
        """
        client = self.client
        sample = await driver.run(
            "ping" if connecting else "hello",
            lambda: driver.read_server_time(client),
            time_limit=self.options.timeout,
            max_reconnect=self.options.max_allowed_reconnect,
            retry=True,
            connecting=connecting,
        )
        if sample is not None and not sample.plausible:
            shown = as_utc(sample.server_time).isoformat(timespec="seconds")
            message = (
                f"the MongoDB server's clock reads {shown}, {sample.offset:+.0f} s from this "
                "machine's; sessionlib decides holds on the server's clock and cannot trust "
                "this one: set the server's clock right"
            )
            if connecting:
                raise adapt(ServerClockError(message))
            log.error("ignored a reading of the server's clock: %s", message)
        elif sample is not None:
            self.clock.add(sample)
        elif not self.has_server_clock and connecting:
            await driver.run(
                "ping",
                lambda: client.admin.command("ping"),
                time_limit=self.options.timeout,
                max_reconnect=self.options.max_allowed_reconnect,
                retry=True,
                connecting=True,
            )

    def sync_clock_if_due(self) -> None:
        """Start reading the server's clock in the background when the last try is old.

        Never waits for it: an operation decides on the reading it has, whose
        error bound widens with its age (see :class:`~sessionlib.clock.ServerClock`),
        so a ``hello`` that hangs never adds its own timeout to the operation's.
        A failure leaves the older reading in use.
        """
        if not self.has_server_clock or not self.clock.needs_sample():
            return
        if self._syncing is not None and not self._syncing.done():
            return
        self.clock.tried()
        self._syncing = asyncio.get_running_loop().create_task(self._sync_quietly())

    async def _sync_quietly(self) -> None:
        try:
            await self.sync_clock()
        except SessionPoolError as exc:
            log.debug("could not read the server's clock: %s", exc)

    async def close(self) -> None:
        """Close the client if this connector created it; safe to call more than once."""
        if self.closed:
            return
        self.closed = True
        if self._syncing is not None:
            self._syncing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._syncing
        for watch in self.watches.values():
            await watch.close()
        self.watches.clear()
        if self.encrypter is not None:
            encrypter, self.encrypter = self.encrypter, None
            await encrypter.close()
        client, self._client = self._client, (None if self.owns_client else self._client)
        if self.owns_client and client is not None:
            await driver.close_client(client)
