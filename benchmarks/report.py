"""Collecting figures, printing them as a table and writing them as JSON."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pymongo


@dataclass
class Figure:
    """One measured number."""

    section: str
    name: str
    value: float | int | str | None
    unit: str = ""
    goal: str = ""
    note: str = ""


@dataclass
class Report:
    """All figures of one run, per backend."""

    quick: bool
    figures: dict[str, list[Figure]] = field(default_factory=dict)

    def add(self, backend: str, figure: Figure) -> None:
        self.figures.setdefault(backend, []).append(figure)
        print(
            f"  {figure.section:<12} {figure.name:<52} {_fmt(figure.value):>12} {figure.unit}",
            flush=True,
        )

    def table(self) -> str:
        lines = []
        for backend, figures in self.figures.items():
            lines += ["", f"Backend: {backend}", ""]
            lines.append("| section | figure | value | unit | goal |")
            lines.append("|---|---|---|---|---|")
            for f in figures:
                lines.append(f"| {f.section} | {f.name} | {_fmt(f.value)} | {f.unit} | {f.goal} |")
        return "\n".join(lines)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = {
            "machine": {
                "platform": platform.platform(),
                "python": platform.python_version(),
                "pymongo": pymongo.version,
                "cpus": os.cpu_count(),
            },
            "quick": self.quick,
            "backends": {b: [asdict(f) for f in fs] for b, fs in self.figures.items()},
        }
        path.write_text(json.dumps(data, indent=2) + "\n")


def _fmt(value: float | int | str | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)
