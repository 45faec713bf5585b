"""A/B experiments in the serving path: assign a viewer to an arm, serve with its pipeline, log exposures.

:class:`ExperimentService` reads the running experiments from ``<home>/experiments`` (checked
at most every ``poll_s`` seconds, so ``liveshelf ab create|stop`` takes effect without a
restart), builds one :class:`~liveshelf.serving.pipeline.Pipeline` per arm over the shared
online state and catalogue (the arm's model version and settings), and keeps an
:class:`~liveshelf.serving.abtest.EventLog` per experiment: exposures and outcome events
are buffered and written by a background thread, never on the request path.

>>> exps = ExperimentService(home, state, catalogue, settings, production)   # doctest: +SKIP
>>> a = exps.assign("feed", "u1")        # None when no experiment covers the viewer
>>> recs, _ = (a.pipeline if a else pipeline).feed("u1", t, 10)             # doctest: +SKIP
>>> exps.expose(a, "u1", t, "feed", None, [r.key for r in recs])            # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from liveshelf.core.timeutil import to_seconds_array
from liveshelf.serving.abtest import EventLog, Experiment, ExperimentStore
from liveshelf.serving.pipeline import Catalogue, Pipeline
from liveshelf.serving.schemas import FeedOut, ShelfOut
from liveshelf.serving.settings import ServeSettings

log = logging.getLogger("liveshelf.serving")

#: Event types written to an experiment's outcome log (attributed at analysis time).
OUTCOME_TYPES: frozenset[str] = frozenset({"enter", "leave", "click", "cart", "purchase"})


class ExperimentTag(BaseModel):
    """Which experiment and arm served a response."""

    name: str
    arm: str


class FeedOutAB(FeedOut):
    """:class:`FeedOut` plus the experiment arm (absent when no experiment covers the viewer)."""

    experiment: ExperimentTag | None = None


class ShelfOutAB(ShelfOut):
    """:class:`ShelfOut` plus the experiment arm (absent when no experiment covers the viewer)."""

    experiment: ExperimentTag | None = None


@dataclass(frozen=True)
class Assignment:
    """A viewer's arm in one experiment, with the pipeline that serves it."""

    experiment: str
    arm: str
    pipeline: Pipeline
    model_version: Callable[[], str | None]

    def tag(self) -> ExperimentTag:
        return ExperimentTag(name=self.experiment, arm=self.arm)


class _PinnedModel:
    """One registry version, loaded on first use and kept (an arm's model does not hot-swap)."""

    def __init__(self, home: Path, name: str, version: str | None) -> None:
        from liveshelf.registry import ModelHolder, ModelRegistry

        self.registry = ModelRegistry(Path(home) / "models")
        self.name, self.version = name, version
        self._holder = ModelHolder(self.registry, name) if version is None else None
        self._model: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._holder is not None:
            return self._holder.get()
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self.registry.load(self.name, self.version)
        return self._model

    def current_version(self) -> str | None:
        return self._holder.version if self._holder is not None else self.version


class _Running:
    """A running experiment: its definition, one pipeline per arm and its logs."""

    def __init__(
        self, exp: Experiment, folder: Path, pipelines: dict[str, tuple[Pipeline, Callable]], flush_s: float
    ) -> None:
        self.exp = exp
        self.pipelines = pipelines
        self.exposures = EventLog(folder / "exposures.jsonl", flush_s=flush_s)
        self.outcomes = EventLog(folder / "outcomes.jsonl", flush_s=flush_s)

    def close(self) -> None:
        self.exposures.close()
        self.outcomes.close()


class ExperimentService:
    """The running experiments of one server process."""

    def __init__(
        self,
        home: Path,
        state: Any,
        catalogue: Catalogue,
        settings: ServeSettings,
        production: dict[str, Callable[[], Any]],
        production_version: Callable[[], str | None],
        *,
        poll_s: float = 1.0,
        flush_s: float = 0.5,
        ranker_version: Callable[[], str | None] | None = None,
    ) -> None:
        self.ranker_version = ranker_version
        self.store = ExperimentStore(home)
        self.home = Path(home)
        self.state, self.catalogue, self.settings = state, catalogue, settings
        self.production = production
        self.production_version = production_version
        self.poll_s, self.flush_s = poll_s, flush_s
        self._running: dict[str, _Running] = {}
        self._signature: tuple | None = None
        self._next_check = 0.0
        self._lock = threading.Lock()
        self.refresh()

    # ---- the running set ----------------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        """Re-read the experiment files when they changed (at most every ``poll_s`` unless ``force``)."""
        now = time.monotonic()
        if not force and now < self._next_check:
            return
        if not self._lock.acquire(blocking=force):
            return
        try:
            self._next_check = now + self.poll_s
            sig = self.store.signature()
            if sig == self._signature:
                return
            wanted = {e.name: e for e in self.store.running()}
            for name in list(self._running):
                old = self._running[name]
                if name not in wanted or wanted[name].to_dict() != old.exp.to_dict():
                    old.close()
                    del self._running[name]
            for name, exp in wanted.items():
                if name not in self._running:
                    self._running[name] = _Running(
                        exp, self.store.folder(name), self._arm_pipelines(exp), self.flush_s
                    )
                    log.info("experiment %s running: arms %s", name, [a.describe() for a in exp.arms])
            self._signature = sig
        finally:
            self._lock.release()

    def _arm_pipelines(self, exp: Experiment) -> dict[str, tuple[Pipeline, Callable[[], str | None]]]:
        out = {}
        for arm in exp.arms:
            settings = self.settings.model_copy(update=arm.settings) if arm.settings else self.settings
            if arm.settings:
                settings = ServeSettings.model_validate(settings.model_dump())  # validate the overrides
            if arm.model is None:
                models, version = dict(self.production), self.production_version
            else:
                pinned = _PinnedModel(self.home, arm.model, arm.version)
                models = {**self.production, "sequence": pinned.get}
                version = pinned.current_version
            out[arm.name] = (
                Pipeline(self.state, self.catalogue, settings, models, ranker_version=self.ranker_version),
                version,
            )
        return out

    @property
    def active(self) -> list[str]:
        return sorted(self._running)

    # ---- the request path ---------------------------------------------------------------------
    def assign(self, surface: str, user: str | None) -> Assignment | None:
        """The first running experiment on ``surface`` that holds ``user`` (None: serve as usual)."""
        if user is None:
            return None
        self.refresh()
        for name, run in sorted(self._running.items()):
            if surface not in run.exp.surfaces:
                continue
            arm = run.exp.assign(user)
            if arm is None:
                continue
            pipeline, version = run.pipelines[arm.name]
            return Assignment(name, arm.name, pipeline, version)
        return None

    def expose(
        self, a: Assignment, user: str, at: float, surface: str, room: str | None, recs: list[str]
    ) -> None:
        """Buffer one exposure row: the recommendations ``recs`` (in order) shown to ``user`` at ``at``."""
        run = self._running.get(a.experiment)
        if run is None:
            return
        run.exposures.append(
            {
                "ts": float(at),
                "user": user,
                "arm": a.arm,
                "surface": surface,
                "room": room,
                "recs": list(recs),
                "logged": time.time(),
            }
        )

    def observe_events(self, frame: pd.DataFrame | None) -> int:
        """Buffer the outcome events of ``frame`` (stored user keys) in every running experiment's log."""
        if frame is None or not len(frame) or not self._running:
            return 0
        sub = frame[frame["type"].astype(str).isin(OUTCOME_TYPES)]
        if not len(sub):
            return 0
        secs = to_seconds_array(sub["ts"].to_numpy()).tolist()
        rows = [
            {
                "ts": float(t),
                "user": str(u),
                "type": str(ty),
                "room": _opt(r),
                "item": _opt(i),
                "value": None if v is None or pd.isna(v) else float(v),
            }
            for t, u, ty, r, i, v in zip(
                secs, sub["user"], sub["type"], sub["room"], sub["item"], sub["value"], strict=True
            )
        ]
        for run in list(self._running.values()):
            run.outcomes.extend(rows)
        return len(rows)

    def flush(self) -> None:
        for run in list(self._running.values()):
            run.exposures.flush()
            run.outcomes.flush()

    def close(self) -> None:
        with self._lock:
            for run in self._running.values():
                run.close()
            self._running.clear()


def _opt(v: Any) -> str | None:
    return None if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)


__all__ = ["OUTCOME_TYPES", "Assignment", "ExperimentService", "ExperimentTag", "FeedOutAB", "ShelfOutAB"]
