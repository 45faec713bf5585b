"""Continuous training: new events -> candidate model -> paired evaluation -> gate -> promote or refuse.

One :class:`ContinuousLoop` looks after one registry name (e.g. ``"default"``). A cycle:

1. reads the event source up to its head (:class:`Watermark`: ingest sequence number,
   latest event time, event count);
2. cuts the data at ``t_cut``, the event time the previous cycle reached (the first
   cycle holds out the last ``eval_fraction`` of event time; a cycle without newer events,
   e.g. a retrain after a deletion, reuses production's cut). Events before ``t_cut``
   train; events from ``t_cut`` on are the evaluation window, scored with the
   ``temporal`` protocol semantics of :mod:`liveshelf.evaluation.protocols` (every
   window event of a user with training history is a case, its context all earlier
   events), the *same cases* for candidate and production (paired);
3. builds the candidate:

   ``update``    the production model plus the events since its training window ended
                 (``model.update``: counters, item co-occurrences, ALS fold-in), cheap;
   ``finetune``  a fresh model warm-started from production's weights (SASRec family), few epochs;
   ``refit``     a model fitted from scratch (first cycle, no incremental path, every
                 ``refit_every`` cycles, or production is stale after a user deletion);

4. saves it, loads the artifact back (what servers load) and evaluates it and production;
5. runs the :mod:`~liveshelf.experiment.gate`, registers the candidate in the
   :class:`~liveshelf.registry.ModelRegistry` with metrics, lineage (data window,
   event count, parent, trigger, mode, params, gate verdict; code version and git commit
   are added by the registry) and promotes it only when the gate passes;
6. appends the decision to ``<home>/loop/<name>/decisions.jsonl`` and moves the watermark.

Production is read from the registry at every cycle, so ``liveshelf models rollback``
between cycles is respected: the next candidate's parent (and update base) is the
version rolled back to. A stale production version (see :mod:`liveshelf.serving.deletion`)
forces a refit from the store, never an update or warm start from the stale weights.

>>> loop = ContinuousLoop(home, LoopConfig(name="default", model="itemknn"))  # doctest: +SKIP
>>> result = loop.run_once(trigger="manual")                                  # doctest: +SKIP
>>> result.decision, result.version                                           # doctest: +SKIP
('promoted', 'v0003')
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from liveshelf.core.jsonsafe import jsonable
from liveshelf.core.timeutil import to_epoch_seconds
from liveshelf.core.tracking import Tracker, track_run
from liveshelf.errors import ConfigError, LiveshelfError, check_param
from liveshelf.experiment.gate import ModelReport, decide
from liveshelf.experiment.loop_candidate import build_candidate, choose_mode, warm_start
from liveshelf.experiment.loop_config import MODES, LoopConfig
from liveshelf.experiment.loop_eval import (
    AlignedModel,
    iso,
    latency_and_finite,
    measure_latency,
    report_model,
    window_split,
)
from liveshelf.experiment.loop_sources import EventSource, StoreSource, Watermark
from liveshelf.models.base import BaseRecommender

LOOP_DIR = "loop"
DECISIONS = "decisions.jsonl"
STATE = "state.json"


# ------------------------------------------------------------------------------------ results
@dataclass
class CycleResult:
    """One cycle: the verdict, the registered version (None when nothing was registered) and details."""

    cycle: int
    decision: str
    version: str | None
    production: str | None
    mode: str
    trigger: str
    reasons: list[str]
    metrics: dict[str, Any]
    production_metrics: dict[str, Any]
    window: dict[str, Any]
    timings: dict[str, float]
    checks: dict[str, Any] = field(default_factory=dict)
    paired: dict[str, Any] = field(default_factory=dict)
    ranker: dict[str, Any] | None = None  # the serving ranker's cycle (LoopConfig.ranker)
    mlflow_run_id: str | None = None  # the cycle's MLflow run, when tracking is on

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# ------------------------------------------------------------------------------------ the loop
class ContinuousLoop:
    """Train, gate and promote one registry name from an event source (see the module docs)."""

    def __init__(
        self,
        home: Path | str,
        config: LoopConfig | None = None,
        *,
        source: EventSource | None = None,
        registry: Any = None,
        log: Callable[[str], None] | None = None,
        tracking_uri: str | None = None,
    ) -> None:
        from liveshelf.registry import ModelRegistry

        self.home = Path(home).expanduser()
        self.config = (config or LoopConfig()).validate()
        self.source = source if source is not None else StoreSource(self.home)
        self.registry = registry if registry is not None else ModelRegistry(self.home / "models")
        self.folder = self.home / LOOP_DIR / self.config.name
        self.say = log or (lambda msg: None)
        #: MLflow tracking (``liveshelf.core.tracking``): one run per cycle; None: $LIVESHELF_TRACKING_URI or off
        self.tracking_uri = tracking_uri

    def __repr__(self) -> str:
        return f"ContinuousLoop({str(self.home)!r}, name={self.config.name!r}, model={self.config.model!r})"

    # ---- persistent state ------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """``{"watermark": {...} | None, "cycles": int, "last_run_at": str | None}``."""
        path = self.folder / STATE
        if not path.is_file():
            return {"watermark": None, "cycles": 0, "last_run_at": None}
        return json.loads(path.read_text())

    def _save_state(self, state: dict[str, Any]) -> None:
        from liveshelf.core.files import atomic_write_text

        atomic_write_text(self.folder / STATE, json.dumps(jsonable(state), indent=2, sort_keys=True))

    def decisions(self) -> list[dict[str, Any]]:
        """Every recorded decision, oldest first."""
        path = self.folder / DECISIONS
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def _log_decision(self, entry: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / DECISIONS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(jsonable(entry), sort_keys=True) + "\n")

    def watermark(self) -> Watermark | None:
        wm = self.state().get("watermark")
        return None if wm is None else Watermark(**wm)

    def pending(self) -> int:
        """Events ingested since the last cycle."""
        head = self.source.head()
        wm = self.watermark()
        return head.events if wm is None else max(0, head.seq - wm.seq)

    def production_stale(self) -> bool:
        from liveshelf.serving.deletion import stale_versions

        prod = (
            self.registry.production(self.config.name) if self.registry.versions(self.config.name) else None
        )
        return prod is not None and prod.version in stale_versions(self.home, self.config.name)

    # ---- one cycle ---------------------------------------------------------------------------
    def run_once(
        self, trigger: str = "manual", *, candidate: Any = None, force: bool = True
    ) -> CycleResult | None:
        """Run one cycle now; returns None when there is nothing new and ``force`` is False.

        ``candidate``: gate this already-fitted model instead of training one (it must be
        fitted on data before the cycle's ``t_cut``; mode ``external``). With tracking on, the
        cycle is one MLflow run (experiment ``liveshelf-loop``): the config as parameters, the
        candidate's and production's metrics, the timings, the decision as a tag, and the run id
        in the registered candidate's lineage.
        """
        cfg = self.config
        params = {k: v for k, v in asdict(cfg).items() if k not in ("params", "gate")}
        params.update({f"model.{k}": v for k, v in (cfg.params or {}).items()})
        params.update({f"gate.{k}": v for k, v in cfg.gate.as_dict().items()})
        with track_run(
            "loop",
            tracking_uri=self.tracking_uri,
            home=self.home,
            params=params,
            tags={"trigger": trigger},
            run_name=f"{cfg.name}: {cfg.model} ({trigger})",
        ) as tracker:
            result = self._cycle(trigger, candidate=candidate, force=force, tracker=tracker)
            if result is None:
                tracker.discard()
                return None
            tracker.log_metrics({f"candidate.{k}": v for k, v in result.metrics.items()})
            tracker.log_metrics({f"production.{k}": v for k, v in result.production_metrics.items()})
            tracker.log_metrics(result.timings)
            tracker.set_tags(
                {
                    "decision": result.decision,
                    "version": result.version,
                    "cycle": result.cycle,
                    "mode": result.mode,
                    # data lineage: the training and evaluation windows of the cycle
                    **{f"data.{k}": v for k, v in result.window.items()},
                }
            )
            tracker.log_dict(result.as_dict(), "cycle.json")
            if tracker.run_id:
                result.mlflow_run_id = tracker.run_id
            return result

    def _cycle(self, trigger: str, *, candidate: Any, force: bool, tracker: Tracker) -> CycleResult | None:
        from liveshelf.evaluation.runner import evaluate_model, seed_everything
        from liveshelf.evaluation.significance import compare
        from liveshelf.serving.deletion import stale_versions

        cfg = self.config
        t_start = time.perf_counter()
        state = self.state()
        head = self.source.head()
        wm = self.watermark()
        stale = self.production_stale()
        if not force and wm is not None and head.seq <= wm.seq and not stale:
            return None
        if head.events == 0 or head.ts is None:
            raise ConfigError(
                f"The event source {self.source!r} holds no events; ingest some before running the loop."
            )
        ds = self.source.dataset(head)
        t_end = float(head.ts)
        prod_info = self.registry.production(cfg.name) if self.registry.versions(cfg.name) else None
        prod_end = None if prod_info is None else prod_info.lineage.get("data_end_ts")
        if wm is not None and wm.ts is not None and wm.ts < t_end:
            t_cut = float(wm.ts)  # the newest events are the evaluation window
        elif prod_end is not None and float(prod_end) < t_end:
            t_cut = float(prod_end)  # nothing newer (e.g. a retrain after a deletion): production's window
        else:
            ts = to_epoch_seconds(ds.events["ts"])
            t_cut = float(np.quantile(ts[np.isfinite(ts)], 1.0 - cfg.eval_fraction))
        split, index, _ = window_split(ds, t_cut, target=cfg.target, max_cases=cfg.max_cases, seed=cfg.seed)
        window = {
            "train_start": iso(float(index.ts.min())),
            "train_end": iso(t_cut),
            "t_cut": t_cut,
            "eval_start": iso(t_cut),
            "eval_end": iso(t_end),
            "train_events": int((index.ts < t_cut).sum()),
            "eval_events": split.meta["window_events"],
            "cases": len(split.cases),
            "watermark": head.as_dict(),
        }

        cycle = int(state.get("cycles", 0)) + 1
        if not split.cases:
            return self._skip(cycle, trigger, window, state, t_start)

        # production, read fresh at every cycle: a rollback between cycles is respected
        prod_model, prod_error = None, None
        if prod_info is not None:
            try:
                prod_model = self.registry.load(cfg.name, prod_info.version)
            except Exception as exc:  # a broken production must not stop its replacement
                prod_error = f"{type(exc).__name__}: {exc}"
        prod_stale = prod_info is not None and prod_info.version in stale_versions(self.home, cfg.name)

        # the candidate
        t0, c0 = time.perf_counter(), time.process_time()
        seed_everything(cfg.seed)
        if candidate is not None:
            mode, model, why = "external", candidate, "a model passed to run_once"
        else:
            mode, why = choose_mode(cfg, cycle, prod_info, prod_model, prod_stale, t_cut)
            model, mode, why = build_candidate(cfg, self.registry, mode, why, split, index, prod_info, t_cut)
        train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        self.say(
            f"cycle {cycle}: {mode} ({why}), {window['train_events']} train events, "
            f"{len(split.cases)} cases, {train_s:.2f}s"
        )

        # save, load back, evaluate both on the same cases
        tmp = Path(tempfile.mkdtemp(prefix="candidate-", dir=self._tmp_root()))
        cand_report, cand_eval, loaded = ModelReport(), None, None
        prod_report, prod_eval = (None if prod_error is None else ModelReport(error=prod_error)), None
        try:
            try:
                model.save(tmp / "model")
                from liveshelf.models.registry import load_model

                loaded = load_model(tmp / "model")
            except Exception as exc:
                cand_report.error = f"{type(exc).__name__}: {exc}"
            pair = [m for m in (loaded, prod_model) if m is not None]
            timed = dict(zip(map(id, pair), measure_latency(pair, split, cfg.latency_contexts), strict=True))
            for m, is_cand in ((loaded, True), (prod_model, False)):
                if m is None:
                    continue
                lat = timed[id(m)]
                rep, ev_ = (
                    (ModelReport(error=lat), None)
                    if isinstance(lat, str)
                    else report_model(m, split, lat, evaluate_model)
                )
                if is_cand:
                    cand_report, cand_eval = rep, ev_
                else:
                    prod_report, prod_eval = rep, ev_
            eval_s = time.perf_counter() - t0 - train_s

            waive = (
                "production is stale (trained on a deleted user) and must be replaced" if prod_stale else None
            )
            decision = decide(cand_report, prod_report, cfg.gate, waive_metric=waive)
            paired: dict[str, Any] = {}
            if cand_eval is not None and prod_eval is not None:
                metric = cfg.gate.metric
                if metric in cand_eval.per_case and metric in prod_eval.per_case:
                    paired = {
                        metric: compare(
                            prod_eval.per_case[metric], cand_eval.per_case[metric], seed=cfg.seed
                        ).to_dict()
                    }

            # the registry keeps the headline metrics (the new/repeat splits stay in the decision log)
            metrics = {
                **{k: v for k, v in cand_report.metrics.items() if "/" not in k},
                "p95_ms": cand_report.p95_ms,
            }
            lineage = {
                "data_start": window["train_start"],
                "data_end": window["train_end"],
                "data_end_ts": t_cut,
                "events": window["train_events"],
                "eval_window": {k: window[k] for k in ("eval_start", "eval_end", "eval_events", "cases")},
                "watermark": head.as_dict(),
                "parent": None if prod_info is None else prod_info.version,
                "trigger": trigger,
                "mode": mode,
                "mode_reason": why,
                "model": cfg.model,
                "params": jsonable(
                    loaded.get_params() if isinstance(loaded, BaseRecommender) else cfg.params
                ),
                "protocol": "temporal",
                "gate": {**decision.as_dict(), "config": cfg.gate.as_dict()},
                "loop_cycle": cycle,
                **tracker.lineage(),
            }
            version = None
            if loaded is not None:
                version = self.registry.register(
                    loaded, name=cfg.name, metrics=jsonable(metrics), lineage=jsonable(lineage)
                )
                if decision.promote:
                    self.registry.promote(cfg.name, version)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

        result = CycleResult(
            cycle=cycle,
            decision=decision.verdict,
            version=version,
            production=None if prod_info is None else prod_info.version,
            mode=mode,
            trigger=trigger,
            reasons=decision.reasons,
            metrics={**cand_report.metrics, "p95_ms": cand_report.p95_ms},
            production_metrics={}
            if prod_report is None
            else {**prod_report.metrics, "p95_ms": prod_report.p95_ms},
            window=window,
            checks=decision.checks,
            paired=paired,
            timings={
                "train_s": round(train_s, 4),
                "train_cpu_s": round(train_cpu_s, 4),
                "eval_s": round(eval_s, 4),
                "cycle_s": round(time.perf_counter() - t_start, 4),
            },
        )
        self._log_decision(
            {
                "at": _now(),
                "name": cfg.name,
                "model": cfg.model,
                **result.as_dict(),
                "gate": cfg.gate.as_dict(),
            }
        )
        if cfg.ranker:  # after the sources: the ranker's rows are computed with the production models
            result.ranker = self._ranker_cycle(cycle, trigger, tracker)
        self._save_state(
            {
                "watermark": head.as_dict(),
                "cycles": cycle,
                "last_run_at": _now(),
                "last_decision": result.decision,
                "last_version": version,
            }
        )
        self.say(
            f"cycle {cycle}: {result.decision} {version or '-'}"
            + (f" ({'; '.join(result.reasons)})" if result.reasons else "")
        )
        return result

    def _ranker_cycle(self, cycle: int, trigger: str, tracker: Tracker | None = None) -> dict[str, Any]:
        """Retrain, gate and (per surface) promote the serving ranker; the decision is logged like a model's."""
        from liveshelf.experiment.ranker_train import train_ranker

        cfg = self.config
        try:
            report = train_ranker(
                self.home,
                source="auto",
                margin=cfg.ranker_margin,
                name=cfg.ranker_name,
                seed=cfg.seed,
                log=self.say,
                tracker=tracker,
            ).to_dict()
        except LiveshelfError as exc:
            report = {"version": None, "promoted": False, "reason": f"skipped: {exc}"}
        decision = "promote" if report.get("promoted") else "refuse"
        self._log_decision(
            {
                "at": _now(),
                "name": cfg.ranker_name,
                "model": "liveranker",
                "cycle": cycle,
                "trigger": trigger,
                "decision": decision,
                **jsonable(report),
            }
        )
        self.say(f"cycle {cycle}: ranker {decision} {report.get('version') or '-'} ({report.get('reason')})")
        return report

    def _skip(
        self, cycle: int, trigger: str, window: dict[str, Any], state: dict[str, Any], t_start: float
    ) -> CycleResult:
        """A window without evaluation cases: nothing is trained; the watermark stays, so the window grows."""
        reason = (
            "the evaluation window has no case (no event of a user with earlier history); "
            "waiting for more events"
        )
        prod = (
            self.registry.production(self.config.name) if self.registry.versions(self.config.name) else None
        )
        result = CycleResult(
            cycle=cycle,
            decision="skipped",
            version=None,
            production=None if prod is None else prod.version,
            mode="none",
            trigger=trigger,
            reasons=[reason],
            metrics={},
            production_metrics={},
            window=window,
            timings={"cycle_s": round(time.perf_counter() - t_start, 4)},
        )
        self._log_decision(
            {"at": _now(), "name": self.config.name, "model": self.config.model, **result.as_dict()}
        )
        self._save_state({**state, "cycles": cycle, "last_run_at": _now(), "last_decision": "skipped"})
        self.say(f"cycle {cycle}: skipped ({reason})")
        return result

    def _tmp_root(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder

    # ---- forever -----------------------------------------------------------------------------
    def run(
        self,
        *,
        max_cycles: int | None = None,
        poll_s: float = 5.0,
        stop: Callable[[], bool] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> list[CycleResult]:
        """Poll the source; run a cycle on ``every_events`` new events, on ``interval_s``, or when stale."""
        check_param(
            "poll_s", poll_s, isinstance(poll_s, (int, float)) and poll_s >= 0, "seconds >= 0", "loop.run"
        )
        cfg = self.config
        results: list[CycleResult] = []
        last = time.monotonic()
        stale_tried: int | None = None  # head seq of the last retrain for staleness (retried on new events)
        while max_cycles is None or len(results) < max_cycles:
            if stop is not None and stop():
                break
            trigger = None
            try:
                head, wm = self.source.head(), self.watermark()
                pending = head.events if wm is None else max(0, head.seq - wm.seq)
                if self.production_stale() and stale_tried != head.seq:
                    trigger, stale_tried = "stale", head.seq
                elif pending >= cfg.every_events:
                    trigger = f"events>={cfg.every_events}"
                elif cfg.interval_s is not None and time.monotonic() - last >= cfg.interval_s and pending > 0:
                    trigger = f"schedule {cfg.interval_s:g}s"
                if trigger is not None:
                    result = self.run_once(trigger=trigger)
                    last = time.monotonic()
                    if result is not None:
                        results.append(result)
                    continue
            except LiveshelfError as exc:
                self.say(f"cycle skipped: {exc}")
                if max_cycles is not None and trigger is not None:
                    raise
            sleep(poll_s)
        return results


def read_decisions(home: Path | str, name: str = "default") -> pd.DataFrame:
    """The decision log of loop ``name`` as a frame (one row per cycle)."""
    path = Path(home).expanduser() / LOOP_DIR / name / DECISIONS
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []
    return pd.DataFrame(rows)


__all__ = [
    "MODES",
    "AlignedModel",
    "ContinuousLoop",
    "CycleResult",
    "EventSource",
    "LoopConfig",
    "StoreSource",
    "Watermark",
    "latency_and_finite",
    "read_decisions",
    "warm_start",
    "window_split",
]
