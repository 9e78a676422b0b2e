"""The chaos soak: a fleet of workers under faults, and proof that no session was held twice.

Run::

    python -m benchmarks.soak --minutes 10          # the full soak
    python -m benchmarks.soak --minutes 2 --check   # what CI runs: exit 1 on a failed promise

It starts a SecantusDB for the pool (journaled, so a kill loses nothing
acknowledged) and another for the workers' markers (never touched by a
fault), the exporter with auto-release, and ``--processes`` worker processes
of ``--coroutines`` coroutines each (:mod:`benchmarks.soak_worker`): half use
the seed's calls (``get_session``, ``session_success``/``session_lock``), half
``pool.lease()``; two run under libfaketime, 15 s ahead and 15 s behind.
Then, at fixed shares of the run:

* 20 %: the pool's server stops (``SIGSTOP``) for 5 s: a stall longer than a hold;
* 40 %: it is killed (``SIGKILL``) and restarted on the same data;
* 55 %: a worker is killed in the middle of its holds, and replaced;
* 70 %: the exporter is restarted.

A **control** follows: two workers that trust their own clocks, one 15 s
ahead, on a pool of their own. They must hold sessions twice (else the
markers could not tell), where the fleet must never.

It prints the double holds, the sessions before and after, the errors by
type, hand-outs per minute around each fault, and the exporter's memory.
``--check`` exits 1 when a promise failed: a double hold, a lost session, an
error outside the library's expected ones, a worker that did not recover, or
a control that saw no double hold.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from exporter.secantus import SecantusServer, free_port
from sessionlib import MongoSessions  # noqa: F401  (the workers' library, imported to fail early)

EXPECTED_ERRORS = frozenset(
    {
        "OperationTimeoutError",
        "ServerUnavailableError",
        "NoSessionAvailableError",
        "StaleLeaseError",
    }
)
"""What a worker may meet while the server stalls or restarts: the library's own errors."""

SKEWS = ("+15s", "-15s")


def faketime_env(shift: str | None) -> dict[str, str]:
    """The environment of a process whose wall clock is off by *shift* (libfaketime)."""
    env = {**os.environ, "TZ": "UTC"}
    if shift is None:
        return env
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    if not found:
        sys.exit("libfaketime is missing: apt-get install faketime")
    env.update(
        LD_PRELOAD=str(found[0]),
        FAKETIME=shift,
        FAKETIME_DONT_FAKE_MONOTONIC="1",
        FAKETIME_NO_CACHE="1",
    )
    return env


@dataclass
class Fleet:
    """The worker processes, their logs, and the faults done to them."""

    folder: Path
    url: str
    markers_url: str
    options: dict[str, Any]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def start(self, kind: str, skew: str | None, **extra: Any) -> subprocess.Popen[bytes]:
        log = self.folder / f"worker-{len(self.logs)}.jsonl"
        options = {
            **self.options,
            "url": self.url,
            "markers_url": self.markers_url,
            "kind": kind,
            "skew": skew,
            "log": str(log),
            **extra,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.soak_worker", json.dumps(options)],
            env=faketime_env(skew),
            stderr=subprocess.DEVNULL,
        )
        self.processes.append(process)
        self.logs.append(log)
        return process

    def wait(self, timeout: float) -> None:
        for process in self.processes:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def events(self) -> list[dict[str, Any]]:
        found = []
        for log in self.logs:
            if log.exists():
                for line in log.read_text(encoding="utf-8").splitlines():
                    try:
                        found.append(json.loads(line))
                    except json.JSONDecodeError:  # a line cut by a kill
                        continue
        return found


def populate(url: str, collection: str, count: int) -> int:
    client: MongoClient[dict[str, Any]] = MongoClient(url)
    try:
        sessions = client["soak"][collection]
        sessions.drop()
        now = time.time()
        sessions.insert_many(
            [
                {
                    "_id": n,
                    "session": {"n": n},
                    "active": True,
                    "count_use": 0,
                    "count_success": 0,
                    "last_use": None,
                    "next_use": None,
                    "created_unix": now,
                }
                for n in range(count)
            ]
        )
        return sessions.count_documents({})
    finally:
        client.close()


def count(url: str, collection: str) -> int:
    client: MongoClient[dict[str, Any]] = MongoClient(url, serverSelectionTimeoutMS=30_000)
    try:
        return client["soak"][collection].count_documents({})
    finally:
        client.close()


def drop_markers(url: str, collection: str, pid: int) -> None:
    """Take out the markers of a killed worker (its holds have ended by then)."""
    client: MongoClient[dict[str, Any]] = MongoClient(url)
    try:
        client["soak"][collection].delete_many({"by": pid})
    finally:
        client.close()


class Exporter:
    """The exporter as a process, with auto-release on; restartable."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url, self.folder = url, folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.peak_rss: list[int] = []

    def start(self) -> None:
        log = open(self.folder / "exporter.log", "ab")  # noqa: SIM115  (the child keeps it)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--mongo-url", self.url, "--database", "soak",
             "--interval", "2", "--auto-release", "--auto-release-interval", "3",
             "--listen", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            stdout=log, stderr=log,
        )  # fmt: skip

    def rss(self) -> int:
        if self.process is None:
            return 0
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return 0
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Run:
    """What the soak measured."""

    seconds: float
    sessions_before: int
    sessions_after: int
    double: list[dict[str, Any]]
    errors: Counter[str]
    handouts: list[float]
    faults: list[tuple[str, float]]
    control_double: int
    control_handouts: int
    exporter_rss: list[int]
    recovered: bool
    started: float = 0.0

    def unexpected(self) -> dict[str, int]:
        return {name: n for name, n in self.errors.items() if name not in EXPECTED_ERRORS}

    def failures(self) -> list[str]:
        problems = []
        if self.double:
            problems.append(f"{len(self.double)} double hold(s): {self.double[:5]}")
        if self.sessions_after != self.sessions_before:
            problems.append(f"sessions {self.sessions_before} before, {self.sessions_after} after")
        if self.unexpected():
            problems.append(f"unexpected errors: {self.unexpected()}")
        if not self.recovered:
            problems.append("the fleet handed out nothing after the last fault")
        if self.control_double == 0:
            problems.append("the control (local clocks, 15 s apart) saw no double hold")
        return problems

    def report(self) -> str:
        lines = [
            f"soak of {self.seconds:.0f} s: {len(self.handouts)} hand-outs",
            f"double holds: {len(self.double)}",
            f"sessions: {self.sessions_before} before, {self.sessions_after} after",
            "errors by type: "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"),
            f"control (trusts local clocks, one 15 s ahead): {self.control_double} double "
            f"hold(s) in {self.control_handouts} hand-outs",
        ]
        window = min(60.0, max(5.0, self.seconds / 10))
        lines.append(f"hand-outs per minute, {window:.0f} s before / after each fault:")
        for name, at in self.faults:
            before = sum(1 for t in self.handouts if at - window <= t < at) * 60 / window
            after = sum(1 for t in self.handouts if at <= t < at + window) * 60 / window
            when = f"at {at - self.started:5.1f} s"
            lines.append(f"  {name:<32} {when}  {before:8.0f} / {after:8.0f}")
        for double in self.double[:10]:
            lines.append(
                f"  double hold of session {double.get('session')!r} at "
                f"{double['at'] - self.started:.1f} s by {double['pid']}, "
                f"held by {double.get('other')}"
            )
        if self.exporter_rss:
            mib = [rss / 2**20 for rss in self.exporter_rss if rss]
            if mib:
                lines.append(f"exporter memory: {mib[0]:.0f} MiB at start, {max(mib):.0f} MiB peak")
        return "\n".join(lines)


def soak(minutes: float, processes: int, coroutines: int, sessions: int, hold: float) -> Run:
    folder = Path(tempfile.mkdtemp(prefix="sessionpool-soak-"))
    seconds = minutes * 60
    with (
        SecantusServer(folder / "pool", durable=True) as server,
        SecantusServer(folder / "markers") as markers,
    ):
        before = populate(server.url, "pool", sessions)
        populate(server.url, "control", 4)
        exporter = Exporter(server.url, folder)
        exporter.start()
        started = time.monotonic()
        deadline = started + seconds
        options = {"collection": "pool", "markers": "markers", "hold": hold,
                   "coroutines": coroutines, "deadline": deadline}  # fmt: skip
        fleet = Fleet(folder, server.url, markers.url, options)
        for number in range(processes):
            skew = SKEWS[number] if number < len(SKEWS) else None
            fleet.start("seed" if number % 2 == 0 else "lease", skew)
        faults: list[tuple[str, float]] = []
        rss: list[int] = [exporter.rss()]

        def at(share: float) -> None:
            time.sleep(max(0.0, started + seconds * share - time.monotonic()))
            rss.append(exporter.rss())

        at(0.2)
        assert server.pid is not None
        faults.append(("server stopped 5 s (SIGSTOP)", time.monotonic()))
        os.kill(server.pid, signal.SIGSTOP)
        time.sleep(5)
        os.kill(server.pid, signal.SIGCONT)
        at(0.4)
        faults.append(("server killed and restarted", time.monotonic()))
        server.stop(kill=True)
        time.sleep(1)
        server.start()
        at(0.55)
        victim = fleet.processes[1]
        faults.append(("worker killed mid-hold", time.monotonic()))
        victim.kill()
        victim.wait()
        fleet.start("lease", None)
        time.sleep(hold * 1.5)  # its holds have ended: its markers prove nothing more
        drop_markers(markers.url, "markers", victim.pid)
        orphaned = time.monotonic()
        at(0.7)
        faults.append(("exporter restarted", time.monotonic()))
        exporter.stop()
        exporter.start()
        at(0.95)
        fleet.wait(timeout=seconds * 0.05 + 30)
        # A marker the killed worker left in outlives its hold until it is dropped:
        # a second holder then is no double hold. Its own last events prove nothing either.
        events = [
            e
            for e in fleet.events()
            if e["event"] != "double"
            or (
                e["pid"] != victim.pid and not (e.get("other") == victim.pid and e["at"] < orphaned)
            )
        ]
        rss.append(exporter.rss())
        exporter.stop()
        control = control_run(folder, server.url, markers.url, hold)
        after = count(server.url, "pool")
    handouts = sorted(e["at"] for e in events if e["event"] == "handout")
    last_fault = max(t for _, t in faults)
    return Run(
        seconds=seconds,
        sessions_before=before,
        sessions_after=after,
        double=[e for e in events if e["event"] == "double"],
        errors=Counter(e["type"] for e in events if e["event"] == "error"),
        handouts=handouts,
        faults=faults,
        control_double=sum(1 for e in control if e["event"] == "double"),
        control_handouts=sum(1 for e in control if e["event"] == "handout"),
        exporter_rss=rss,
        recovered=any(t > last_fault + 5 for t in handouts),
        started=started,
    )


CONTROL_STARTUP = 20.0
"""Seconds the control's first worker may take to hold its first session."""


def control_run(folder: Path, url: str, markers_url: str, hold: float) -> list[dict[str, Any]]:
    """Two workers that trust their own clocks, 15 s apart, on a pool of four sessions.

    The one ahead starts once the other holds sessions: started first, it
    would hold all four for 18 s of the other's clock, and nothing would be
    held twice (which a loaded machine made happen).
    """
    seconds = max(8.0, hold * 4)
    options = {"collection": "control", "markers": "control_markers", "hold": hold,
               "coroutines": 4, "deadline": time.monotonic() + CONTROL_STARTUP + seconds,
               "trust_local_clock": True}  # fmt: skip
    fleet = Fleet(folder / "control", url, markers_url, options)
    fleet.folder.mkdir(exist_ok=True)
    trusting = fleet.start("seed", None)
    waited = time.monotonic() + CONTROL_STARTUP
    while time.monotonic() < waited and not any(
        event["event"] == "handout" for event in fleet.events()
    ):
        time.sleep(0.1)
    ahead = fleet.start("seed", "+15s", deadline=time.monotonic() + seconds)
    try:
        ahead.wait(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        ahead.kill()
    trusting.kill()  # it would run out the startup allowance
    fleet.wait(timeout=10)
    return fleet.events()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the fleet runs (10)")
    parser.add_argument("--processes", type=int, default=6, help="worker processes (6)")
    parser.add_argument("--coroutines", type=int, default=4, help="coroutines per process (4)")
    parser.add_argument("--sessions", type=int, default=60, help="sessions in the pool (60)")
    parser.add_argument("--hold", type=float, default=3.0, help="seconds of each hold (3)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a promise failed")
    args = parser.parse_args(argv)
    print(
        f"soak: {args.processes} processes x {args.coroutines} coroutines, {args.sessions} "
        f"sessions, {args.minutes:g} min; faults at 20/40/55/70 %",
        flush=True,
    )
    run = soak(args.minutes, args.processes, args.coroutines, args.sessions, args.hold)
    print(run.report(), flush=True)
    problems = run.failures()
    for problem in problems:
        print(f"FAILED: {problem}", flush=True)
    return 1 if problems and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
