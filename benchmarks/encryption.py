"""Encrypted pools against plain ones: the cost of client-side field level encryption.

Two pools of the same sessions (a 1 KiB payload each), one stored encrypted,
each with its own client; rounds interleaved, so drift on a shared machine
hits both alike. A hand-out decrypts the ``session`` field of the document
it returns (libmongocrypt, in process); a report writes no payload.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from sessionlib import Encryption, MongoSessions
from sessionlib.encryption import create_data_key, create_key_file

from .backends import Backend
from .pool import rate
from .report import Figure, Report

SESSIONS = 100
PAYLOAD = "x" * 1024


async def fill(pool: MongoSessions) -> None:
    for number in range(SESSIONS):
        await pool.add({"_id": number, "session": {"cookie": PAYLOAD, "n": number}})


async def encryption_cost(backend: Backend, report: Report, operations: int, rounds: int) -> None:
    """Hand-out and report rate of an encrypted pool over a plain one's."""
    assert backend.url is not None  # encryption needs a real server (and a client of its own)
    database = backend.database().name
    with tempfile.TemporaryDirectory(prefix="bench-keys-") as folder:
        key_file = Path(folder) / "pool.key"
        create_key_file(key_file)
        encryption = Encryption(key_file=key_file, key_vault=f"{database}.keyvault")
        await create_data_key(encryption, backend.client)
        plain = MongoSessions(backend.url, db=database, collection="plain", timeout=120)
        sealed = MongoSessions(
            backend.url, db=database, collection="sealed", timeout=120, encryption=encryption
        )
        async with plain, sealed:
            await fill(plain)
            await fill(sealed)

            def cycle(pool: MongoSessions) -> Any:
                async def one() -> None:
                    session = await pool.get_session(next_use_delay=0)
                    assert session is not None
                    assert session["session"]["cookie"] == PAYLOAD
                    await pool.session_success(session, next_use_delay=0)

                return one

            ratios, sealed_rates, plain_rates = [], [], []
            for _ in range(rounds):
                plain_rate = await rate(cycle(plain), operations)
                sealed_rate = await rate(cycle(sealed), operations)
                plain_rates.append(plain_rate)
                sealed_rates.append(sealed_rate)
                ratios.append(sealed_rate / plain_rate)
    section = "encryption"
    report.add(
        backend.name,
        Figure(
            section,
            f"hand-out + report rate, encrypted / plain ({SESSIONS} sessions, 1 KiB payload)",
            statistics.median(ratios),
            "ratio",
            ">= 0.9",
        ),
    )
    report.add(
        backend.name, Figure(section, "encrypted rate", statistics.median(sealed_rates), "ops/s")
    )
    report.add(backend.name, Figure(section, "plain rate", statistics.median(plain_rates), "ops/s"))
