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
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from liveshelf.data.dataset import Dataset
from liveshelf.errors import ConfigError, LiveshelfError, check_param
from liveshelf.evaluation.protocols import ProtocolSplit, TestCase
from liveshelf.experiment.gate import GateConfig, ModelReport, decide
from liveshelf.models.base import Context

MODES = ("auto", "update", "finetune", "refit")
LOOP_DIR = "loop"
DECISIONS = "decisions.jsonl"
STATE = "state.json"


# ------------------------------------------------------------------------------------ sources
@dataclass(frozen=True)
class Watermark:
    """How far a source has been read: last ingest ``seq``, latest event time ``ts`` (epoch s), ``events``."""

    seq: int = -1
    ts: float | None = None
    events: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class EventSource(Protocol):
    """Where new events come from. ``head`` is cheap; ``dataset`` returns everything up to a head."""

    def head(self) -> Watermark: ...

    def dataset(self, upto: Watermark) -> Dataset: ...


class StoreSource:
    """The :class:`~liveshelf.data.store.EventStore` in ``home``, opened read-only for each call.

    The ingestion watermark is the store's ``seq`` column (ingest order), so late events
    (old event time, ingested now) are seen as new.
    """

    def __init__(self, home: Path | str) -> None:
        self.home = Path(home).expanduser()

    def __repr__(self) -> str:
        return f"StoreSource({str(self.home)!r})"

    def _open(self):
        from liveshelf.data.store import EventStore

        return EventStore(self.home, read_only=True)

    def head(self) -> Watermark:
        with self._open() as store:
            seq, ts, n = store._rows(
                "SELECT coalesce(max(seq), -1), epoch_us(max(ts)), count(*) FROM events"
            )[0]
        return Watermark(seq=int(seq), ts=None if ts is None else float(ts) / 1e6, events=int(n))

    def dataset(self, upto: Watermark) -> Dataset:
        from liveshelf.schema import EVENT_COLUMNS

        cols = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
        with self._open() as store:
            events = store._frame(
                f'SELECT {cols} FROM events WHERE seq <= ? ORDER BY "user", ts, seq', [int(upto.seq)], ("ts",)
            )
            frames = {}
            for kind in ("items", "users", "rooms", "shelf", "hosts"):
                df = store.frame(kind)
                frames[kind] = df if len(df) else None
        return Dataset(
            name=f"store:{self.home.name}",
            events=events,
            **frames,
            meta={"source": "event_store", "watermark": upto.as_dict()},
        )


# ------------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class LoopConfig:
    """What one loop trains and when.

    ``every_events``: a cycle runs once this many new events arrived (``run``), or every
    ``interval_s`` seconds when set. ``eval_fraction``: share of event time held out by the
    first cycle. ``max_cases``: evaluation cases (a seeded sample of the window).
    """

    name: str = "default"
    model: str = "itemknn"
    params: dict[str, Any] = field(default_factory=dict)
    mode: str = "auto"
    target: str = "item"
    every_events: int = 1000
    interval_s: float | None = None
    refit_every: int = 0
    eval_fraction: float = 0.2
    max_cases: int = 2000
    latency_contexts: int = 50
    finetune_epochs: int = 3
    seed: int = 0
    gate: GateConfig = field(default_factory=GateConfig)
    #: also retrain the serving ranker every cycle (``liveshelf.experiment.ranker_train``): from the exposure
    #: log when it holds enough labelled requests, else from replayed events; promoted per surface only when
    #: its held-out NDCG@5 is not below the hand blend's + ``ranker_margin``. Its decision joins the log.
    ranker: bool = False
    ranker_name: str = "ranker"
    ranker_margin: float = 0.0

    def validate(self) -> LoopConfig:
        w = "LoopConfig"
        check_param("mode", self.mode, self.mode in MODES, f"one of {MODES}", w)
        check_param("target", self.target, self.target in ("item", "host"), "'item' or 'host'", w)
        check_param(
            "every_events",
            self.every_events,
            _int(self.every_events) and self.every_events >= 1,
            "an int >= 1",
            w,
        )
        check_param(
            "interval_s",
            self.interval_s,
            self.interval_s is None or (isinstance(self.interval_s, (int, float)) and self.interval_s > 0),
            "None or seconds > 0",
            w,
        )
        check_param(
            "refit_every",
            self.refit_every,
            _int(self.refit_every) and self.refit_every >= 0,
            "an int >= 0 (0 = only when needed)",
            w,
        )
        check_param("eval_fraction", self.eval_fraction, 0 < self.eval_fraction < 1, "a float in (0, 1)", w)
        check_param(
            "max_cases", self.max_cases, _int(self.max_cases) and self.max_cases >= 1, "an int >= 1", w
        )
        check_param(
            "latency_contexts",
            self.latency_contexts,
            _int(self.latency_contexts) and self.latency_contexts >= 1,
            "an int >= 1",
            w,
        )
        check_param(
            "finetune_epochs",
            self.finetune_epochs,
            _int(self.finetune_epochs) and self.finetune_epochs >= 1,
            "an int >= 1",
            w,
        )
        from liveshelf.models.registry import get_model_class

        get_model_class(self.model)
        self.gate.validate()
        return self


def _int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# ------------------------------------------------------------------------------------ scoring helpers
class AlignedModel:
    """A fitted model scored in another item index space (an evaluation split's).

    Contexts are mapped into the model's item and user indices by id (unknown items are
    dropped); scores come back in the split's order, items the model does not know get
    the row's lowest score minus one.
    """

    def __init__(self, model: Any, item_ids: np.ndarray) -> None:
        self.model = model
        own = [str(x) for x in model.item_ids_]
        ids = [str(x) for x in item_ids]
        self.identity = own == ids
        pos = {x: i for i, x in enumerate(own)}
        self.to_model = np.array([pos.get(x, -1) for x in ids], dtype=np.int64)
        self.known = self.to_model >= 0
        self.users = {str(x): i for i, x in enumerate(getattr(model, "user_ids_", []))}
        self.n_items = len(ids)

    def map_context(self, ctx: Context) -> Context:
        user_index = self.users.get(str(ctx.user), -1) if ctx.user is not None else -1
        if self.identity:
            return replace(ctx, user_index=user_index)
        mapped = self.to_model[ctx.items] if len(ctx.items) else ctx.items
        keep = mapped >= 0
        return Context(
            items=mapped[keep],
            ts=None if ctx.ts is None else np.asarray(ctx.ts)[keep],
            types=None if ctx.types is None else np.asarray(ctx.types)[keep],
            user=ctx.user,
            user_index=user_index,
            room=ctx.room,
            time=ctx.time,
        )

    def score_mapped(self, contexts: list[Context]) -> np.ndarray:
        """Scores ``(B, n_items)`` in the split's order for contexts already mapped."""
        raw = np.asarray(self.model.score_batch(contexts), dtype=np.float64)  # (B, n_model)
        if self.identity:
            return raw
        out = np.empty((len(contexts), self.n_items), dtype=np.float64)
        out[:, self.known] = raw[:, self.to_model[self.known]]
        if not self.known.all():
            low = np.nanmin(raw, axis=1, initial=0.0) if raw.size else np.zeros(len(contexts))
            out[:, ~self.known] = (low - 1.0)[:, None]
        return out

    def score_batch(self, contexts: list[Context]) -> np.ndarray:
        return self.score_mapped([self.map_context(c) for c in contexts])


def latency_and_finite(
    models: list[AlignedModel], contexts: list[Context], repeats: int = 3
) -> list[tuple[float, bool]]:
    """Per model: (p95 ms per single-context ``score_batch`` call, whether every score was finite).

    Models are timed interleaved, context by context, and each call's time is the best of
    ``repeats``, so a burst of load on a shared machine hits all models alike.
    """
    mapped = [[m.map_context(c) for c in contexts] for m in models]
    times: list[list[float]] = [[] for _ in models]
    finite = [True] * len(models)
    for j in range(len(contexts)):
        for i, m in enumerate(models):
            best = np.inf
            for _ in range(repeats):
                t0 = time.perf_counter()
                s = m.model.score_batch([mapped[i][j]])
                best = min(best, (time.perf_counter() - t0) * 1e3)
            times[i].append(best)
            finite[i] = finite[i] and bool(np.isfinite(np.asarray(s, dtype=np.float64)).all())
    return [(float(np.percentile(t, 95)) if t else 0.0, f) for t, f in zip(times, finite, strict=True)]


def window_split(
    ds: Dataset, t_cut: float, *, target: str = "item", max_cases: int = 2000, seed: int = 0
) -> tuple[ProtocolSplit, Any, np.ndarray]:
    """Train on events before ``t_cut``, test on the window from ``t_cut`` on (temporal protocol).

    Returns the split, the :class:`~liveshelf.data.split.EventIndex` and ``train_user``.
    """
    from liveshelf.data.split import index_events, to_train_data

    index = index_events(ds, target=target)
    train = index.ts < t_cut
    if not train.any():
        raise ConfigError(
            f"No training events before t_cut={_iso(t_cut)} in {ds.name!r}; the loop needs "
            "history before its evaluation window. Lower LoopConfig.eval_fraction or ingest more."
        )
    data, train_user = to_train_data(index, train, meta={"protocol": "temporal", "t_test": t_cut})
    picked = np.nonzero(~train & (train_user[index.user] >= 0))[0]
    if len(picked) > max_cases:
        picked = np.sort(np.random.default_rng(seed).choice(picked, size=max_cases, replace=False))
    repeat = index.is_repeat()
    cases = [
        TestCase(
            context=index.context(int(e), train_user=int(train_user[index.user[e]])),
            target=int(index.item[e]),
            is_repeat=bool(repeat[e]),
        )
        for e in picked.tolist()
    ]
    meta = {
        "target": target,
        "per_user": "all",
        "t_test": t_cut,
        "t_end": float(index.ts.max()),
        "window_events": int((~train).sum()),
    }
    return ProtocolSplit("temporal", ds.name, data, cases, False, meta), index, train_user


def warm_start(model: Any, parent: Any) -> bool:
    """Make ``model``'s next ``fit`` start from ``parent``'s network weights (same family).

    Works for models that build their torch network in ``_make_net`` (the SASRec family):
    parameters of equal shape are copied, item-embedding rows are matched by item id (new
    items keep their fresh initialisation). Returns False when there is nothing to copy.
    """
    net = getattr(parent, "net_", None)
    if net is None or type(parent) is not type(model) or not hasattr(type(model), "_make_net"):
        return False
    parent_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    parent_pos = {str(x): i for i, x in enumerate(parent.item_ids_)}
    make = type(model)._make_net

    def _make_net(n_items: int, cfg: Any) -> Any:
        import torch

        fresh = make(model, n_items, cfg)
        state = fresh.state_dict()
        rows = np.array([parent_pos.get(str(x), -1) for x in model.item_ids_], dtype=np.int64)
        for k, v in parent_state.items():
            if k not in state:
                continue
            if (
                "item_emb" in k
                and v.ndim == 2
                and state[k].shape[1:] == v.shape[1:]
                and v.shape[0] == len(parent_pos) + 1
                and state[k].shape[0] == n_items + 1
            ):
                new = state[k].clone()
                hit = np.flatnonzero(rows >= 0)
                new[torch.from_numpy(hit + 1)] = v[torch.from_numpy(rows[hit] + 1)]
                new[0] = v[0]
                state[k] = new
            elif state[k].shape == v.shape:
                state[k] = v
        fresh.load_state_dict(state)
        return fresh

    model._make_net = _make_net  # an instance attribute: only this object's fits use it
    return True


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(float(t), UTC).isoformat()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _jsonable(value: Any) -> Any:
    from liveshelf.evaluation.runner import _jsonable as to_json

    return to_json(value)


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
    ) -> None:
        from liveshelf.registry import ModelRegistry

        self.home = Path(home).expanduser()
        self.config = (config or LoopConfig()).validate()
        self.source = source if source is not None else StoreSource(self.home)
        self.registry = registry if registry is not None else ModelRegistry(self.home / "models")
        self.folder = self.home / LOOP_DIR / self.config.name
        self.say = log or (lambda msg: None)

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

        atomic_write_text(self.folder / STATE, json.dumps(_jsonable(state), indent=2, sort_keys=True))

    def decisions(self) -> list[dict[str, Any]]:
        """Every recorded decision, oldest first."""
        path = self.folder / DECISIONS
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def _log_decision(self, entry: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / DECISIONS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(_jsonable(entry), sort_keys=True) + "\n")

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
        fitted on data before the cycle's ``t_cut``; mode ``external``).
        """
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
            from liveshelf.schema import to_epoch_seconds

            ts = to_epoch_seconds(ds.events["ts"])
            t_cut = float(np.quantile(ts[np.isfinite(ts)], 1.0 - cfg.eval_fraction))
        split, index, _ = window_split(ds, t_cut, target=cfg.target, max_cases=cfg.max_cases, seed=cfg.seed)
        window = {
            "train_start": _iso(float(index.ts.min())),
            "train_end": _iso(t_cut),
            "t_cut": t_cut,
            "eval_start": _iso(t_cut),
            "eval_end": _iso(t_end),
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
            mode, why = self._choose_mode(cycle, prod_info, prod_model, prod_stale, t_cut)
            model, mode, why = self._build(mode, why, split, index, prod_info, t_cut)
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
            timed = dict(zip(map(id, pair), self._latency(pair, split), strict=True))
            for m, is_cand in ((loaded, True), (prod_model, False)):
                if m is None:
                    continue
                lat = timed[id(m)]
                rep, ev_ = (
                    (ModelReport(error=lat), None)
                    if isinstance(lat, str)
                    else self._report(m, split, lat, evaluate_model)
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
                "params": _jsonable(
                    loaded.get_params()
                    if loaded is not None and hasattr(loaded, "get_params")
                    else cfg.params
                ),
                "protocol": "temporal",
                "gate": {**decision.as_dict(), "config": cfg.gate.as_dict()},
                "loop_cycle": cycle,
            }
            version = None
            if loaded is not None:
                version = self.registry.register(
                    loaded, name=cfg.name, metrics=_jsonable(metrics), lineage=_jsonable(lineage)
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
            result.ranker = self._ranker_cycle(cycle, trigger)
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

    def _ranker_cycle(self, cycle: int, trigger: str) -> dict[str, Any]:
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
                **_jsonable(report),
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

    def _report(self, model: Any, split: ProtocolSplit, latency: tuple[float, bool], evaluate_model: Any):
        """(ModelReport, ModelEvaluation | None) of one model on the split."""
        p95, finite = latency
        try:
            if not finite:
                return ModelReport(metrics={}, p95_ms=p95, finite=False), None
            ev = evaluate_model(AlignedModel(model, split.train.item_ids), split, progress=False)
            return ModelReport(metrics=dict(ev.metrics), p95_ms=p95, finite=True), ev
        except Exception as exc:  # a model that cannot score is refused, not a crashed loop
            return ModelReport(error=f"{type(exc).__name__}: {exc}"), None

    def _latency(self, models: list[Any], split: ProtocolSplit) -> list[tuple[float, bool] | str]:
        """Per model: (p95 ms, finite), or the error that stopped it from scoring."""
        sample = [c.context for c in split.cases[: self.config.latency_contexts]]
        out: list[tuple[float, bool] | str] = ["" for _ in models]
        ok = []
        for i, m in enumerate(models):
            try:
                ok.append((i, AlignedModel(m, split.train.item_ids)))
            except Exception as exc:
                out[i] = f"{type(exc).__name__}: {exc}"
        try:
            for (i, _), res in zip(ok, latency_and_finite([a for _, a in ok], sample), strict=True):
                out[i] = res
        except Exception:  # one model failed to score: time them one by one to say which
            for i, a in ok:
                try:
                    out[i] = latency_and_finite([a], sample)[0]
                except Exception as exc:
                    out[i] = f"{type(exc).__name__}: {exc}"
        return out

    def _choose_mode(
        self, cycle: int, prod_info: Any, prod_model: Any, prod_stale: bool, t_cut: float
    ) -> tuple[str, str]:
        """(mode, why) for this cycle's candidate."""
        from liveshelf.models.registry import get_model_class

        cfg = self.config
        cls = get_model_class(cfg.model)
        if prod_stale:
            return "refit", "production is stale after a user deletion: retrain from the store"
        if cfg.mode == "refit":
            return "refit", "mode refit"
        if prod_model is None or prod_info.model_type != cfg.model:
            return "refit", (
                "no production version"
                if prod_info is None
                else "production could not be loaded"
                if prod_model is None
                else f"production is a {prod_info.model_type!r}, not {cfg.model!r}"
            )
        if cfg.refit_every and cycle % cfg.refit_every == 0:
            return "refit", f"every {cfg.refit_every} cycles"
        if cfg.mode in ("auto", "update") and hasattr(cls, "update"):
            end = prod_info.lineage.get("data_end_ts")
            if end is None or float(end) > t_cut:
                return "refit", "production's training window is unknown or ends after this cycle's cut"
            return "update", "incremental update of production"
        if cfg.mode in ("auto", "finetune") and hasattr(cls, "_make_net"):
            return "finetune", "warm start from production's weights"
        return "refit", f"{cfg.model!r} has no {cfg.mode if cfg.mode != 'auto' else 'incremental'} path"

    def _build(
        self, mode: str, why: str, split: ProtocolSplit, index: Any, prod_info: Any, t_cut: float
    ) -> tuple[Any, str, str]:
        """(fitted candidate, mode, why); an update that cannot run falls back to a refit."""
        from liveshelf.data.split import to_train_data
        from liveshelf.errors import NotFittedError
        from liveshelf.evaluation.runner import build_model

        cfg = self.config
        if mode == "update":
            base = self.registry.load(
                cfg.name, prod_info.version
            )  # a fresh copy: production is evaluated too
            mask = (index.ts >= float(prod_info.lineage["data_end_ts"])) & (index.ts < t_cut)
            try:
                if mask.any():
                    base.update(to_train_data(index, mask)[0])
                return base, mode, f"{why} with {int(mask.sum())} events"
            except NotFittedError as exc:
                mode, why = "refit", f"update impossible ({exc})"
        parent = None
        if mode == "finetune":
            parent = self.registry.load(cfg.name, prod_info.version)
            model = build_model(cfg.model, {**cfg.params, "epochs": cfg.finetune_epochs}, seed=cfg.seed)
            if not warm_start(model, parent):
                mode, why = "refit", "production has no network weights to start from"
                model = build_model(cfg.model, dict(cfg.params), seed=cfg.seed)
        else:
            model = build_model(cfg.model, dict(cfg.params), seed=cfg.seed)
        try:
            model.fit(split.train)
        finally:
            model.__dict__.pop("_make_net", None)
        return model, mode, why

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
