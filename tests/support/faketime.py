"""Processes whose wall clock is wrong: libfaketime (Debian's ``faketime`` package)."""

from __future__ import annotations

import glob
import os
from pathlib import Path

# Debian installs it under the machine's multiarch directory.
_FOUND = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
LIBFAKETIME = Path(_FOUND[0]) if _FOUND else Path("/usr/lib/faketime/libfaketime.so.1")


def faketime_env(shift: str | None, tz: str = "UTC") -> dict[str, str]:
    """The environment of a process whose wall clock is off by *shift* (e.g. ``"+20s"``).

    Only the wall clock moves; monotonic timers keep real time. Fails loudly
    when libfaketime is not installed (``.ci/run`` installs it).
    """
    assert LIBFAKETIME.exists(), "libfaketime is missing: apt-get install faketime (see .ci/run)"
    env = {**os.environ, "TZ": tz}
    if shift is not None:
        env.update(
            LD_PRELOAD=str(LIBFAKETIME),
            FAKETIME=shift,
            FAKETIME_DONT_FAKE_MONOTONIC="1",
            FAKETIME_NO_CACHE="1",
        )
    return env
