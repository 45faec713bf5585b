"""How the continuous loop scores models: the evaluation window split at ``t_cut`` (temporal protocol), models
scored in the split's item space (:class:`AlignedModel`) and their latency and finiteness."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from liveshelf.data.dataset import Dataset
from liveshelf.errors import ConfigError
from liveshelf.evaluation.protocols import ProtocolSplit, TestCase
from liveshelf.experiment.gate import ModelReport
from liveshelf.models.base import Context


def iso(t: float | None) -> str | None:
    """Epoch seconds as ISO 8601 text (UTC); None stays None."""
    return None if t is None else datetime.fromtimestamp(float(t), UTC).isoformat()


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
            f"No training events before t_cut={iso(t_cut)} in {ds.name!r}; the loop needs "
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


def report_model(
    model: Any, split: ProtocolSplit, latency: tuple[float, bool], evaluate_model: Any
) -> tuple[ModelReport, Any]:
    """(ModelReport, ModelEvaluation | None) of one model on the split."""
    p95, finite = latency
    try:
        if not finite:
            return ModelReport(metrics={}, p95_ms=p95, finite=False), None
        ev = evaluate_model(AlignedModel(model, split.train.item_ids), split, progress=False)
        return ModelReport(metrics=dict(ev.metrics), p95_ms=p95, finite=True), ev
    except Exception as exc:  # a model that cannot score is refused, not a crashed loop
        return ModelReport(error=f"{type(exc).__name__}: {exc}"), None


def measure_latency(models: list[Any], split: ProtocolSplit, contexts: int) -> list[tuple[float, bool] | str]:
    """Per model: (p95 ms, finite), or the error that stopped it from scoring."""
    sample = [c.context for c in split.cases[:contexts]]
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


__all__ = [
    "AlignedModel",
    "iso",
    "latency_and_finite",
    "measure_latency",
    "report_model",
    "window_split",
]
