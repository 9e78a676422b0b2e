"""Session payloads encrypted at rest, over the real wire protocol (libmongocrypt in process).

mongomock has no client-side encryption, so every test here runs against the
real wire server.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from bson import BSON
from bson.binary import Binary
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient, MongoClient

from sessionlib import (
    ConfigurationError,
    Encryption,
    EncryptionKeyError,
    InvalidPayloadError,
    MongoSessions,
    NotConnectedError,
    SessionStore,
)
from sessionlib.cli import main as cli_main
from sessionlib.encryption import KEY_BYTES, Encrypter, create_data_key, create_key_file
from sessionlib.maintenance import encrypt_in_place

pytestmark = pytest.mark.wire

MARKERS = [f"MARKER-{n:04d}-cookie".encode() for n in range(6)]


def payload(number: int) -> dict[str, Any]:
    return {"cookie": MARKERS[number].decode(), "token": {"nested": [number, "x"]}}


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "pool.key"
    assert create_key_file(path)
    return path


@pytest.fixture
async def encryption(wire_url: str, db_name: str, key_file: Path) -> Encryption:
    """An Encryption with its data key made, in a key vault of the test's database."""
    settings = Encryption(key_file=key_file, key_vault=f"{db_name}.keyvault")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(wire_url)
    try:
        assert await create_data_key(settings, client)
    finally:
        await client.close()
    return settings


@pytest.fixture
async def sealed(
    wire_url: str, db_name: str, encryption: Encryption
) -> AsyncIterator[MongoSessions]:
    async with MongoSessions(
        wire_url, db=db_name, collection="telegram", encryption=encryption
    ) as pool:
        for number in range(len(MARKERS)):
            await pool.add({"_id": number, "session": payload(number)})
        yield pool


def raw_documents(url: str, db: str, collection: str = "telegram") -> dict[Any, bytes]:
    """Each document's BSON bytes as stored, by ``_id``."""
    client: MongoClient[RawBSONDocument] = MongoClient(url, document_class=RawBSONDocument)
    try:
        return {doc["_id"]: doc.raw for doc in client[db][collection].find({})}
    finally:
        client.close()


async def test_the_stored_payloads_are_ciphertext_and_no_marker_is_anywhere(
    sealed: MongoSessions, wire_url: str, db_name: str
) -> None:
    stored = raw_documents(wire_url, db_name)

    assert len(MARKERS) == len(stored)
    for raw in stored.values():
        value = BSON(raw).decode()["session"]
        assert isinstance(value, Binary)
        assert 6 == value.subtype
    everything = b"".join(stored.values())
    assert [] == [marker for marker in MARKERS if marker in everything]
    assert b"nested" not in everything  # the payload's own field names are hidden too


async def test_every_call_that_returns_a_session_returns_it_in_clear(
    sealed: MongoSessions,
) -> None:
    first = await sealed.get_session()
    assert first is not None
    assert payload(first["_id"]) == first["session"]
    async with sealed.lease() as leased:
        assert payload(leased["_id"]) == leased["session"]
    listed = {doc["_id"]: doc["session"] for doc in await sealed.get_sessions()}
    assert {n: payload(n) for n in range(len(MARKERS))} == listed
    found = await sealed.find(filter={"_id": 3})
    assert payload(3) == found[0]["session"]


async def test_a_session_update_is_encrypted_and_part_of_the_payload_is_refused(
    sealed: MongoSessions, wire_url: str, db_name: str
) -> None:
    await sealed.session_update({"_id": 2}, {"session": {"cookie": "REPLACED-9731"}, "note": "n"})
    assert {"cookie": "REPLACED-9731"} == (await sealed.find(filter={"_id": 2}))[0]["session"]
    assert b"REPLACED-9731" not in raw_documents(wire_url, db_name)[2]
    assert b"\x02note\x00" in raw_documents(wire_url, db_name)[2]  # other fields stay in clear
    before = raw_documents(wire_url, db_name)[2]

    with pytest.raises(InvalidPayloadError, match="inside encrypted field 'session'"):
        await sealed.session_update({"_id": 2}, {"session.cookie": "in clear"})

    assert before == raw_documents(wire_url, db_name)[2]


async def test_a_pool_without_the_key_gets_the_ciphertext_and_keeps_it(
    sealed: MongoSessions, wire_url: str, db_name: str
) -> None:
    before = raw_documents(wire_url, db_name)
    async with MongoSessions(wire_url, db=db_name, collection="telegram") as plain:
        session = await plain.get_session()
        assert session is not None
        assert isinstance(session["session"], Binary)
        await plain.session_success(session)
        await plain.session_lock({"_id": 4}, {"minutes": 5})
        # Writing the document back as read keeps the ciphertext as it is.
        await plain.session_update(
            {"_id": 5}, {"session": (await plain.find({"_id": 5}))[0]["session"]}
        )
    after = raw_documents(wire_url, db_name)

    for number in (session["_id"], 4, 5):
        assert BSON(before[number]).decode()["session"] == BSON(after[number]).decode()["session"]
    assert payload(5) == (await sealed.find(filter={"_id": 5}))[0]["session"]


async def test_a_store_encrypts_and_its_pools_share_the_key(
    wire_url: str, db_name: str, encryption: Encryption
) -> None:
    async with await SessionStore.connect(wire_url, encryption=encryption) as store:
        pool = store.pool(db_name, "vk")
        await pool.add({"_id": 1, "session": payload(1)})
        assert payload(1) == (await pool.get_sessions())[0]["session"]
    assert MARKERS[1] not in b"".join(raw_documents(wire_url, db_name, "vk").values())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"short", "holds 5 bytes, not a 96-byte master key"),
        (os.urandom(KEY_BYTES), "does not open data key 'sessionpool'"),
    ],
    ids=["missing", "not-a-key", "another-key"],
)
async def test_a_missing_or_wrong_key_is_refused_at_connect_naming_it(
    sealed: MongoSessions,
    wire_url: str,
    db_name: str,
    tmp_path: Path,
    content: bytes | None,
    message: str,
) -> None:
    wrong = tmp_path / "wrong.key"
    if content is not None:
        wrong.write_bytes(content)
    pool = MongoSessions(
        wire_url,
        db=db_name,
        collection="telegram",
        encryption=Encryption(key_file=wrong, key_vault=f"{db_name}.keyvault"),
    )
    with pytest.raises(EncryptionKeyError, match=message) as raised:
        await pool.connect()

    assert str(wrong) in str(raised.value)
    with pytest.raises(NotConnectedError):
        await pool.add({"_id": 99, "session": {}})
    assert 99 not in raw_documents(wire_url, db_name)


async def test_a_missing_data_key_is_refused_at_connect_with_the_command_that_makes_it(
    wire_url: str, db_name: str, key_file: Path
) -> None:
    pool = MongoSessions(
        wire_url,
        db=db_name,
        collection="telegram",
        encryption=Encryption(key_file=key_file, key_vault=f"{db_name}.empty", key_alt_name="tg"),
    )
    with pytest.raises(EncryptionKeyError, match=r"no data key 'tg' in .*sessionpool keys create"):
        await pool.connect()


async def test_a_given_client_must_decrypt(
    wire_url: str, db_name: str, encryption: Encryption
) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(wire_url, tz_aware=True)
    try:
        with pytest.raises(ConfigurationError, match="decrypts what it reads"):
            await MongoSessions(
                db=db_name, collection="telegram", client=client, encryption=encryption
            ).connect()
        decrypting: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            wire_url, tz_aware=True, auto_encryption_opts=encryption.auto_encryption_opts()
        )
        async with MongoSessions(
            db=db_name, collection="own", client=decrypting, encryption=encryption
        ) as pool:
            await pool.add({"_id": 1, "session": payload(0)})
            assert payload(0) == (await pool.get_sessions())[0]["session"]
        await decrypting.close()
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "a key_file or kms_providers"),
        ({"key_file": "k", "kms_providers": {"aws": {}}}, "a key_file or kms_providers"),
        ({"key_file": "k", "key_vault": "novault"}, "key_vault must be 'database.collection'"),
        ({"key_file": "k", "fields": ("session.cookie",)}, "top-level field names"),
        ({"key_file": "k", "fields": ("_id",)}, "_id cannot be encrypted"),
        ({"key_file": "k", "fields": ()}, "at least one field"),
        ({"key_file": "k", "key_alt_name": ""}, "key_alt_name must be a name"),
    ],
)
def test_bad_encryption_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Encryption(**settings)


def test_a_key_file_is_made_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    assert create_key_file(path)
    first = path.read_bytes()
    assert not create_key_file(path)  # never overwritten

    assert first == path.read_bytes()
    assert KEY_BYTES == len(first)
    assert 0o600 == stat.S_IMODE(path.stat().st_mode)


# -- the CLI: keys create and rotate, encrypt, import and export -----------------------


def cli(url: str, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli_main(["--mongo-url", url, *args])
    out, err = capsys.readouterr()
    return code, out, err


async def test_keys_rotate_rewraps_the_keys_and_leaves_the_sessions_as_they_are(
    sealed: MongoSessions,
    wire_url: str,
    db_name: str,
    key_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    vault = ["--key-vault", f"{db_name}.keyvault"]
    before = raw_documents(wire_url, db_name)
    new = tmp_path / "new.key"

    code, out, err = await asyncio.to_thread(
        cli,
        wire_url,
        "keys",
        "rotate",
        "--key-file",
        str(key_file),
        "--new-key-file",
        str(new),
        *vault,
        capsys=capsys,
    )

    assert (0, "") == (code, err)
    assert "re-wrapped 1 data key(s)" in out
    assert 0o600 == stat.S_IMODE(new.stat().st_mode)
    assert before == raw_documents(wire_url, db_name)  # byte for byte
    old = MongoSessions(
        wire_url,
        db=db_name,
        collection="telegram",
        encryption=Encryption(key_file=key_file, key_vault=f"{db_name}.keyvault"),
    )
    with pytest.raises(EncryptionKeyError, match=f"key file {key_file} does not open"):
        await old.connect()
    async with MongoSessions(
        wire_url,
        db=db_name,
        collection="telegram",
        encryption=Encryption(key_file=new, key_vault=f"{db_name}.keyvault"),
    ) as renewed:
        listed = {doc["_id"]: doc["session"] for doc in await renewed.get_sessions()}
    assert {n: payload(n) for n in range(len(MARKERS))} == listed


async def test_keys_create_encrypt_export_and_import_from_the_command_line(
    wire_url: str, db_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "cli.key"
    vault = ["--key-vault", f"{db_name}.keyvault"]
    pool = f"{db_name}.plain"
    lines = tmp_path / "sessions.jsonl"
    lines.write_text(
        "".join(f'{{"_id": {n}, "session": {{"c": "{MARKERS[n].decode()}"}}}}\n' for n in range(4))
    )
    assert (
        0 == (await asyncio.to_thread(cli, wire_url, "import", pool, str(lines), capsys=capsys))[0]
    )

    for _ in range(2):  # idempotent
        code, out, _ = await asyncio.to_thread(
            cli, wire_url, "keys", "create", "--key-file", str(key), *vault, capsys=capsys
        )
        assert 0 == code
    assert "exists, and the key file opens it" in out

    code, out, _ = await asyncio.to_thread(
        cli, wire_url, "encrypt", pool, "--key-file", str(key), *vault, capsys=capsys
    )
    assert (0, "encrypted 4 session(s); 0 already were; 0 changed meanwhile\n") == (code, out)
    code, out, _ = await asyncio.to_thread(
        cli, wire_url, "encrypt", pool, "--key-file", str(key), *vault, capsys=capsys
    )
    assert "encrypted 0 session(s); 4 already were" in out
    assert [] == [
        m for m in MARKERS if m in b"".join(raw_documents(wire_url, db_name, "plain").values())
    ]

    extra = tmp_path / "extra.jsonl"
    extra.write_text(f'{{"_id": 4, "session": {{"c": "{MARKERS[4].decode()}"}}}}\n')
    code, _, _ = await asyncio.to_thread(
        cli, wire_url, "import", pool, str(extra), "--key-file", str(key), *vault, capsys=capsys
    )
    assert 0 == code
    assert MARKERS[4] not in raw_documents(wire_url, db_name, "plain")[4]

    code, out, _ = await asyncio.to_thread(
        cli, wire_url, "export", pool, "--reveal", "--key-file", str(key), *vault, capsys=capsys
    )
    assert 0 == code
    assert all(marker.decode() in out for marker in MARKERS[:5])
    code, out, _ = await asyncio.to_thread(
        cli, wire_url, "export", pool, "--key-file", str(key), *vault, capsys=capsys
    )
    assert [] == [m for m in MARKERS if m.decode() in out]  # redacted without --reveal
    code, out, _ = await asyncio.to_thread(cli, wire_url, "export", pool, "--reveal", capsys=capsys)
    assert '"subType": "06"' in out  # without the key: the ciphertext, never the payload
    assert [] == [m for m in MARKERS if m.decode() in out]


async def test_encrypting_in_place_survives_an_interruption_and_a_concurrent_change(
    wire_url: str, db_name: str, encryption: Encryption
) -> None:
    async with MongoSessions(wire_url, db=db_name, collection="live") as plain:
        for number in range(5):
            await plain.add({"_id": number, "session": payload(number)})
        encrypter = Encrypter(encryption, plain.client)

        def interrupt(done: int, total: int) -> None:
            if done == 2:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            await encrypt_in_place(plain.core, encrypter, interrupt)

        other: MongoClient[dict[str, Any]] = MongoClient(wire_url)

        def meddle(done: int, total: int) -> None:
            # A worker changes session 3 between the read and its write.
            other[db_name]["live"].update_one(
                {"_id": 3}, {"$set": {"session": {"cookie": "changed"}}}
            )

        outcome = await encrypt_in_place(plain.core, encrypter, meddle)
        other.close()
        assert (2, 2, 1) == (outcome.encrypted, outcome.already, outcome.changed)
        outcome = await encrypt_in_place(plain.core, encrypter)
        assert (1, 4, 0) == (outcome.encrypted, outcome.already, outcome.changed)
        await encrypter.close()
    async with MongoSessions(
        wire_url, db=db_name, collection="live", encryption=encryption
    ) as sealed:
        listed = {doc["_id"]: doc["session"] for doc in await sealed.get_sessions()}
    assert {**{n: payload(n) for n in range(5)}, 3: {"cookie": "changed"}} == listed
    stored = raw_documents(wire_url, db_name, "live")
    assert all(BSON(raw).decode()["session"].subtype == 6 for raw in stored.values())


async def test_the_exporter_serves_the_same_series_for_an_encrypted_pool_without_a_key(
    wire_url: str, db_name: str, encryption: Encryption, tmp_path: Path
) -> None:
    from tests.support.exporter_process import ExporterProcess

    async def fill(pool: MongoSessions) -> None:
        for number in range(6):
            await pool.add({"_id": number, "session": payload(number)})
        await pool.session_lock({"_id": 1}, {"hours": 1})
        await pool.session_block({"_id": 2}, {"days": 1})
        await pool.session_inactive({"_id": 3})
        await pool.session_update({"_id": 4}, {"count_use": 7, "count_success": 5})

    async with MongoSessions(wire_url, db=db_name, collection="plain") as plain:
        await fill(plain)
    async with MongoSessions(
        wire_url, db=db_name, collection="sealed", encryption=encryption
    ) as sealed:
        await fill(sealed)

    args = ["--mongo-url", wire_url, "--database", db_name, "--interval", "1"]
    with ExporterProcess(args, tmp_path / "exporter.log") as exporter:
        samples = exporter.wait_for_sample(
            lambda s: any(dict(k[1]).get("collection") == "sealed" for k in s),
            30,
            "the encrypted pool's series",
        )
        assert 0 == exporter.stop()

    def series(collection: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return {
            (name, frozenset((k, v) for k, v in labels if k != "collection")): value
            for (name, labels), value in samples.items()
            if ("collection", collection) in labels
            and not name.endswith(("_timestamp_seconds", "_created"))
        }

    assert series("plain")
    assert series("plain") == series("sealed")
    assert "Traceback" not in exporter.log()


async def test_without_pymongocrypt_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, wire_url: str, db_name: str, key_file: Path
) -> None:
    import pymongo.asynchronous.encryption
    import pymongo.encryption_options

    monkeypatch.setattr(pymongo.asynchronous.encryption, "_HAVE_PYMONGOCRYPT", False)
    monkeypatch.setattr(pymongo.encryption_options, "_HAVE_PYMONGOCRYPT", False)
    encryption = Encryption(key_file=key_file, key_vault=f"{db_name}.keyvault")

    with pytest.raises(EncryptionKeyError, match=r"pip install 'sessionpool\[encryption\]'"):
        encryption.auto_encryption_opts()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(wire_url)
    try:
        with pytest.raises(EncryptionKeyError, match=r"sessionpool\[encryption\]"):
            await create_data_key(encryption, client)
    finally:
        await client.close()
    with pytest.raises(EncryptionKeyError, match=r"sessionpool\[encryption\]"):
        await MongoSessions(
            wire_url, db=db_name, collection="telegram", encryption=encryption
        ).connect()
