"""Wall and CPU seconds per demo step (a table at the end of ``liveshelf demo``)."""

from __future__ import annotations

import time
from typing import Any

from rich.table import Table


class Timer:
    """Wall and CPU seconds per demo step, printed as a table at the end."""

    def __init__(self) -> None:
        self.steps: dict[str, dict[str, float]] = {}

    def step(self, name: str) -> Step:
        return Step(self, name)

    def table(self) -> Table:
        table = Table(title="timings (wall / CPU seconds)")
        table.add_column("step")
        table.add_column("wall s", justify="right")
        table.add_column("CPU s", justify="right")
        for name, t in self.steps.items():
            table.add_row(name, f"{t['wall_s']:.1f}", f"{t['cpu_s']:.1f}")
        return table


class Step:
    def __init__(self, timer: Timer, name: str) -> None:
        self.timer, self.name = timer, name

    def __enter__(self) -> Step:
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self.t0
        self.timer.steps[self.name] = {
            "wall_s": round(self.wall, 2),
            "cpu_s": round(time.process_time() - self.c0, 2),
        }


__all__ = ["Step", "Timer"]
