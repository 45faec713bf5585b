"""Helpers shared by the benchmark scripts: result files and the printed table."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    import os

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "loadavg": list(os.getloadavg()),  # 1, 5, 15 minutes, when the result is written
    }


def write_result(name: str, rows: list[dict[str, Any]], **extra: Any) -> Path:
    """Write ``benchmarks/results/<name>.json`` and print the rows as a table."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "rows": rows,
        **extra,
    }
    out.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    print_table(name, rows)
    return out


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(*[_fmt(r.get(c, "")) for c in cols])
    console = Console()
    if not console.is_terminal:  # a log file: wide enough that no column is cut
        console = Console(width=max(console.width, 220))
    console.print(table)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
