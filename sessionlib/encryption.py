"""Session payloads encrypted at rest, with MongoDB's client-side field level encryption.

A pool holds the keys to other people's accounts. With
``MongoSessions(..., encryption=Encryption(key_file="pool.key"))`` the fields
it lists (``session`` by default) are encrypted by the client before they are
written, so a dump, a backup, an administrator and the exporter see only
``Binary`` subtype 6::

    from sessionlib import Encryption, MongoSessions

    encryption = Encryption(key_file="/etc/sessionpool/pool.key")
    async with MongoSessions(URL, db="pools", collection="telegram", encryption=encryption) as pool:
        await pool.add({"_id": "tg-1", "session": {"cookie": "..."}})   # stored encrypted
        session = await pool.get_session()                               # returned in clear

How:

* **Keys.** A local master key of 96 bytes in *key_file* wraps a data key
  stored in the key vault collection (``encryption.__keyVault``) under the
  name *key_alt_name*; ``sessionpool keys create --key-file F`` makes both.
  Cloud and KMIP providers: pass *kms_providers* and *master_key* instead.
* **Writes.** ``add`` and ``session_update`` encrypt each listed field with
  the randomized AEAD algorithm (these fields are never queried); a field
  that is already ciphertext is written as it is.
* **Reads.** The pool's client decrypts what it reads (PyMongo's automatic
  decryption, with automatic encryption bypassed): every call that returns a
  session returns it in clear. A pool opened without *encryption* gets the
  ``Binary`` unchanged, and writing it back keeps the ciphertext.
* **Checked at connect.** A missing, unreadable or wrong key file, or a
  missing data key, is :class:`~sessionlib.exceptions.EncryptionKeyError`
  at ``connect()``, naming the file or the key; nothing is written.
* **Rotation.** :func:`rotate_master_key` (``sessionpool keys rotate``)
  re-wraps the data keys under a new master key file; the sessions
  themselves are not rewritten. The data keys alternate between two names
  of the local provider (``local`` and ``local:rotated``), which every
  opening maps to its one key file, so the old file opens nothing afterwards.

Statistics, counts, auto-release and the exporter never read the encrypted
fields and need no key.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bson.binary import Binary
from pymongo.errors import PyMongoError

from . import driver
from .exceptions import ConfigurationError, EncryptionKeyError, InvalidPayloadError

if TYPE_CHECKING:
    from pymongo.asynchronous.encryption import AsyncClientEncryption
    from pymongo.encryption_options import AutoEncryptionOpts

__all__ = [
    "DEFAULT_KEY_VAULT",
    "KEY_BYTES",
    "LOCAL_NAMES",
    "Encrypter",
    "Encryption",
    "create_key_file",
    "is_ciphertext",
    "rotate_master_key",
]

log = logging.getLogger(__name__)

DEFAULT_KEY_VAULT = "encryption.__keyVault"
"""Where the data keys are kept (``database.collection``), as MongoDB's documentation names it."""

KEY_BYTES = 96
"""The size of a local master key, as libmongocrypt requires."""

LOCAL_NAMES = ("local", "local:rotated")
"""The two names of the local provider; a rotation moves the data keys from one to the other."""

ENCRYPTED_SUBTYPE = 6
"""``Binary`` subtype of client-side encrypted values."""

RANDOM = "AEAD_AES_256_CBC_HMAC_SHA_512-Random"
"""The algorithm: randomized, for fields that are never queried."""

INSTALL = "pip install 'sessionpool[encryption]'"


def is_ciphertext(value: object) -> bool:
    """Whether *value* is a client-side encrypted value (``Binary`` subtype 6)."""
    return isinstance(value, Binary) and value.subtype == ENCRYPTED_SUBTYPE


def create_key_file(path: str | os.PathLike[str]) -> bool:
    """Create a local master key file (mode 0600) unless it exists; return whether it did.

    Raises:
        EncryptionKeyError: the file cannot be created.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    except OSError as exc:
        raise EncryptionKeyError(f"cannot create key file {path}: {exc.strerror}") from None
    with os.fdopen(descriptor, "wb") as file:
        file.write(os.urandom(KEY_BYTES))
    return True


def read_key_file(path: Path) -> bytes:
    """The master key in *path*.

    Raises:
        EncryptionKeyError: it cannot be read or is not 96 bytes.
    """
    try:
        key = path.read_bytes()
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise EncryptionKeyError(
            f"key file {path} does not exist (create one: sessionpool keys create --key-file FILE)"
        ) from None
    except OSError as exc:
        raise EncryptionKeyError(f"cannot read key file {path}: {exc.strerror}") from None
    if len(key) != KEY_BYTES:
        raise EncryptionKeyError(
            f"key file {path} holds {len(key)} bytes, not a {KEY_BYTES}-byte master key"
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("key file %s can be read by others than its owner: chmod 600 it", path)
    return key


@dataclass(frozen=True)
class Encryption:
    """Which fields of a pool are encrypted, and with which keys.

    Args:
        key_file: A local master key of 96 bytes (``sessionpool keys create``
            makes one). Or, instead:
        kms_providers: libmongocrypt's KMS providers (``aws``, ``azure``,
            ``gcp``, ``kmip``, ...), for a master key held elsewhere; the
            first one makes new data keys.
        master_key: The master key's location for that provider.
        key_vault: The key vault collection, ``database.collection``.
        key_alt_name: The data key's name in the key vault.
        fields: The top-level fields encrypted (``session`` by default).

    Raises:
        ConfigurationError: neither or both of *key_file* and *kms_providers*,
            or a value is invalid.
    """

    key_file: str | os.PathLike[str] | None = None
    key_vault: str = DEFAULT_KEY_VAULT
    key_alt_name: str = "sessionpool"
    fields: tuple[str, ...] = ("session",)
    kms_providers: Mapping[str, Any] | None = None
    master_key: Mapping[str, Any] | None = field(default=None)

    def __post_init__(self) -> None:
        if (self.key_file is None) == (self.kms_providers is None):
            raise ConfigurationError("Encryption takes a key_file or kms_providers (one of them)")
        database, dot, collection = self.key_vault.partition(".")
        if not (database and dot and collection) or "$" in self.key_vault:
            raise ConfigurationError(
                f"key_vault must be 'database.collection', not {self.key_vault!r}"
            )
        if not isinstance(self.key_alt_name, str) or not self.key_alt_name:
            raise ConfigurationError(f"key_alt_name must be a name, not {self.key_alt_name!r}")
        fields = (self.fields,) if isinstance(self.fields, str) else tuple(self.fields)
        for name in fields:
            if not isinstance(name, str) or not name or name.startswith("$") or "." in name:
                raise ConfigurationError(f"fields must be top-level field names, not {name!r}")
            if name == "_id":
                raise ConfigurationError("_id cannot be encrypted: sessions are found by it")
        if not fields:
            raise ConfigurationError("fields must name at least one field")
        object.__setattr__(self, "fields", fields)

    @property
    def named(self) -> str:
        """What error messages name: the key file, or the provider."""
        if self.key_file is not None:
            return f"key file {self.key_file}"
        return f"KMS provider {self.provider!r}"

    @property
    def provider(self) -> str:
        """The KMS provider new data keys are made with."""
        if self.kms_providers is not None:
            return next(iter(self.kms_providers))
        return LOCAL_NAMES[0]

    def providers(self) -> dict[str, Any]:
        """libmongocrypt's ``kms_providers``: the key file under both local names.

        Raises:
            EncryptionKeyError: the key file cannot be read or is not a master key.
        """
        if self.kms_providers is not None:
            return dict(self.kms_providers)
        assert self.key_file is not None
        key = read_key_file(Path(self.key_file))
        return {name: {"key": key} for name in LOCAL_NAMES}

    def auto_encryption_opts(self) -> AutoEncryptionOpts:
        """The client option that decrypts what the client reads (writes are encrypted here).

        Pass it as ``auto_encryption_opts=`` to a client you build yourself.

        Raises:
            EncryptionKeyError: the key cannot be read, or pymongocrypt is missing.
        """
        try:
            from pymongo.encryption_options import AutoEncryptionOpts
        except ImportError as exc:  # pragma: no cover - pymongo always has the module
            raise EncryptionKeyError(f"encryption needs pymongocrypt: {INSTALL}") from exc
        providers = self.providers()
        try:
            return AutoEncryptionOpts(providers, self.key_vault, bypass_auto_encryption=True)
        except Exception as exc:
            raise EncryptionKeyError(f"encryption cannot start: {exc}; {INSTALL}") from None


class Encrypter:
    """Encrypts a pool's listed fields; made and checked when the connection opens.

    Args:
        encryption: The settings.
        client: The client whose key vault holds the data key.
    """

    def __init__(self, encryption: Encryption, client: Any) -> None:
        self.encryption = encryption
        self._client = client
        self._explicit: AsyncClientEncryption[Any] | None = None

    def explicit(self) -> AsyncClientEncryption[Any]:
        """PyMongo's explicit encryption on this client (made on first use)."""
        if self._explicit is None:
            self._explicit = client_encryption(
                self.encryption.providers(), self.encryption.key_vault, self._client
            )
        return self._explicit

    async def check(self) -> None:
        """Check that the data key exists and that the master key opens it.

        Raises:
            EncryptionKeyError: it does not, naming the key file (or provider)
                and the data key.
        """
        named, alt = self.encryption.named, self.encryption.key_alt_name
        vault = self.encryption.key_vault
        try:
            found = await self.explicit().get_key_by_alt_name(alt)
        except EncryptionKeyError:
            raise
        except Exception as exc:
            raise EncryptionKeyError(f"cannot read data key {alt!r} in {vault}: {exc}") from None
        if found is None:
            raise EncryptionKeyError(
                f"no data key {alt!r} in {vault}: create it with "
                f"'sessionpool keys create --key-file FILE' (for {named})"
            )
        try:
            await self.explicit().encrypt("sessionpool key check", RANDOM, key_alt_name=alt)
        except Exception:
            raise EncryptionKeyError(
                f"{named} does not open data key {alt!r} of {vault}: "
                "a different master key, or one that was rotated away"
            ) from None

    async def encrypt(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """*data* with each listed field encrypted (ciphertext is kept as it is).

        Raises:
            InvalidPayloadError: *data* sets part of an encrypted field
                (``"session.cookie"``): such a field is only set whole.
            DatabaseError: the data key could not be read (a subclass of it).
        """
        listed = self.encryption.fields
        for name in data:
            head = name.split(".", 1)[0]
            if head in listed and name != head:
                raise InvalidPayloadError(
                    f"{name!r} is inside encrypted field {head!r}: set {head!r} whole"
                )
        result = dict(data)
        for name in listed:
            if name in result and not is_ciphertext(result[name]):
                try:
                    result[name] = await self.explicit().encrypt(
                        result[name], RANDOM, key_alt_name=self.encryption.key_alt_name
                    )
                except PyMongoError as exc:  # the key vault unreachable, say
                    raise driver.translate(exc, "encrypt") from exc
        return result

    async def close(self) -> None:
        """Release libmongocrypt's resources (the client stays open)."""
        if self._explicit is not None:
            explicit, self._explicit = self._explicit, None
            await explicit.close()


def client_encryption(
    providers: Mapping[str, Any], key_vault: str, client: Any
) -> AsyncClientEncryption[Any]:
    """PyMongo's explicit encryption with *providers*, its keys in *key_vault* on *client*.

    Raises:
        EncryptionKeyError: pymongocrypt is missing (``sessionpool[encryption]``).
    """
    from pymongo.asynchronous.encryption import AsyncClientEncryption
    from pymongo.errors import ConfigurationError as DriverConfigurationError

    try:
        return AsyncClientEncryption(dict(providers), key_vault, client, client.codec_options)
    except DriverConfigurationError as exc:  # pymongocrypt is not installed
        raise EncryptionKeyError(f"encryption cannot start: {exc}; {INSTALL}") from None


async def create_data_key(encryption: Encryption, client: Any) -> bool:
    """Create the data key named *key_alt_name* unless it exists; return whether it did.

    Also makes the key vault's unique index on ``keyAltNames``, as MongoDB advises.

    Raises:
        EncryptionKeyError: an existing data key is not opened by the master
            key, or the key cannot be created.
    """
    database, _, collection = encryption.key_vault.partition(".")
    await client[database][collection].create_index(
        "keyAltNames",
        unique=True,
        partialFilterExpression={"keyAltNames": {"$exists": True}},
    )
    encrypter = Encrypter(encryption, client)
    try:
        if await encrypter.explicit().get_key_by_alt_name(encryption.key_alt_name) is not None:
            await encrypter.check()
            return False
        await encrypter.explicit().create_data_key(
            encryption.provider,
            master_key=dict(encryption.master_key) if encryption.master_key else None,
            key_alt_names=[encryption.key_alt_name],
        )
        return True
    finally:
        await encrypter.close()


async def rotate_master_key(
    old: Encryption, new_key_file: str | os.PathLike[str], client: Any
) -> int:
    """Re-wrap every data key the old master key file opens under *new_key_file*; return how many.

    The sessions are not rewritten. Safe to run again after an interruption:
    keys already under the new master key are left alone.

    Raises:
        ConfigurationError: *old* uses a KMS provider, not a key file.
        EncryptionKeyError: a key file cannot be read, or the old one opens
            no data key.
    """
    if old.key_file is None:
        raise ConfigurationError(
            "rotate_master_key rotates local key files; rotate a KMS key in the KMS"
        )
    old_key = read_key_file(Path(old.key_file))
    new_key = read_key_file(Path(new_key_file))
    database, _, collection = old.key_vault.partition(".")
    vault = client[database][collection]
    rotated = 0
    for source, target in (LOCAL_NAMES, LOCAL_NAMES[::-1]):
        if not await vault.count_documents({"masterKey.provider": source}):
            continue
        providers = {source: {"key": old_key}, target: {"key": new_key}}
        explicit = client_encryption(providers, old.key_vault, client)
        try:
            result = await explicit.rewrap_many_data_key(
                {"masterKey.provider": source}, provider=target
            )
        except Exception as exc:
            log.debug("the keys under %r are not re-wrapped with %s: %s", source, old.key_file, exc)
            continue
        finally:
            await explicit.close()
        if result.bulk_write_result is not None:
            rotated += result.bulk_write_result.modified_count
    if not rotated:
        raise EncryptionKeyError(f"key file {old.key_file} opens no data key of {old.key_vault}")
    return rotated
