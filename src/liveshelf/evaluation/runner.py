"""The ``evaluate`` orchestration: data -> protocol split -> fit -> batched scoring -> metrics.

:func:`evaluate_model` scores a fitted model on a :class:`ProtocolSplit` with
``model.score_batch`` (full catalogue, ``batch_size`` cases at a time), masks to the live
candidates (live protocol) and, when asked, to unseen items (``mask_history``), and returns
mean metrics plus the per-case arrays that significance tests and plots need.
:func:`run` does everything the CLI command does and writes ``results.json`` and the report.

Metric names: ``recall@k``, ``ndcg@k``, ``mrr@k`` (k in 10, 50; plus 1, 5 for ``live``),
each also as ``.../new`` and ``.../repeat`` (cases whose target is new to / already in the
user's history; ``None`` when a split has no case); ``coverage@10``, ``novelty@10``,
``diversity@10``, ``gini@10``, ``tail_share@10`` over the top-10 lists. Ranks count ties
pessimistically (see :mod:`liveshelf.evaluation.metrics`).
"""

from __future__ import annotations

import inspect
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from liveshelf.core.jsonsafe import jsonable
from liveshelf.core.seeding import seed_everything
from liveshelf.data.dataset import Dataset
from liveshelf.errors import ConfigError
from liveshelf.evaluation import metrics as M
from liveshelf.evaluation.protocols import PROTOCOLS, ProtocolSplit, make_split
from liveshelf.models.base import BaseRecommender, Recommender, TrainData

LIVE_FORMATS = ("twitch", "kuailive", "store")
HISTORY_BUCKETS = (
    (0, 1, "0"),
    (1, 5, "1-4"),
    (5, 10, "5-9"),
    (10, 20, "10-19"),
    (20, 50, "20-49"),
    (50, math.inf, "50+"),
)
BEYOND_K = 10


def ks_for(protocol: str) -> tuple[int, ...]:
    return (1, 5, 10, 50) if protocol == "live" else (10, 50)


@dataclass
class ModelEvaluation:
    metrics: dict[str, float | None]
    per_case: dict[str, np.ndarray] = field(default_factory=dict)
    eval_seconds: float = 0.0
    #: (items, scores), each (cases, N): the top-N candidates per case, best first (-1 / -inf padding);
    #: kept only when ``evaluate_model(keep_candidates=N)`` (for re-ranking sweeps)
    candidates: tuple[np.ndarray, np.ndarray] | None = None


# ---------------------------------------------------------------------------------------
# one model on one split
# ---------------------------------------------------------------------------------------
def evaluate_model(
    model: Recommender,
    split: ProtocolSplit,
    *,
    ks: tuple[int, ...] | None = None,
    batch_size: int = 512,
    ties: str = "pessimistic",
    progress: bool = False,
    desc: str = "evaluate",
    diversity_basis: tuple[str, Any] | None = None,
    keep_candidates: int = 0,
) -> ModelEvaluation:
    """Score every test case of ``split`` with ``model.score_batch`` and compute metrics.

    ``keep_candidates=N`` also keeps each case's top-N items and scores (``.candidates``).
    """
    ks = ks or ks_for(split.protocol)
    kmax = max(max(ks), BEYOND_K)
    cases = split.cases
    n_items = split.n_items
    t0 = time.perf_counter()
    ranks = np.zeros(len(cases), dtype=np.int64)
    top = np.full((len(cases), BEYOND_K), -1, dtype=np.int64)
    cand_items = np.full((len(cases), keep_candidates), -1, dtype=np.int64)  # (cases, 0) when not kept
    cand_scores = np.full((len(cases), keep_candidates), -np.inf)
    bar = _progress(len(cases), desc, progress)
    for a in range(0, len(cases), batch_size):
        batch = cases[a : a + batch_size]
        scores = np.array(model.score_batch([c.context for c in batch]))  # a copy: masked below
        if scores.dtype not in (np.float32, np.float64):
            scores = scores.astype(np.float64)
        if scores.shape != (len(batch), n_items):
            raise ConfigError(
                f"{type(model).__name__}.score_batch must return shape ({len(batch)}, {n_items}) "
                f"(cases, items); got {scores.shape}. Fit the model on this split's TrainData."
            )
        valid = _candidate_mask(batch, n_items)
        if split.mask_history:
            lens = [len(c.context.items) for c in batch]
            if sum(lens):
                rows = np.repeat(np.arange(len(batch)), lens)
                scores[rows, np.concatenate([c.context.items for c in batch])] = -np.inf
        targets = np.array([c.target for c in batch], dtype=np.int64)
        ranks[a : a + len(batch)] = M.target_ranks(scores, targets, valid, ties=ties)
        top[a : a + len(batch)] = M.topk_indices(scores, kmax, valid)[:, :BEYOND_K]
        if keep_candidates:  # for re-ranking sweeps (liveshelf.evaluation.fairness)
            ci = M.topk_indices(scores, keep_candidates, valid)
            cand_items[a : a + len(batch)] = ci
            cand_scores[a : a + len(batch)] = np.where(
                ci >= 0, scores[np.arange(len(batch))[:, None], np.maximum(ci, 0)], -np.inf
            )
        bar.update(len(batch))
    bar.close()

    repeat = split.repeats()
    per_case: dict[str, np.ndarray] = {}
    out: dict[str, float | None] = {}
    for k in ks:
        per_case[f"recall@{k}"] = M.recall_at_k(ranks, k)
        per_case[f"ndcg@{k}"] = M.ndcg_at_k(ranks, k)
        per_case[f"mrr@{k}"] = M.mrr_at_k(ranks, k)
    for name, values in list(per_case.items()):
        out[name] = _mean(values)
    for name, values in list(per_case.items()):
        out[f"{name}/new"] = _mean(values[~repeat])
        out[f"{name}/repeat"] = _mean(values[repeat])

    train_items = np.concatenate(split.train.sequences) if split.train.sequences else np.zeros(0, np.int64)
    counts = np.bincount(train_items, minlength=n_items)[:n_items]
    out[f"coverage@{BEYOND_K}"] = M.coverage_at_k(top, n_items)
    out[f"novelty@{BEYOND_K}"] = _mean(M.novelty(top, M.item_probabilities(train_items, n_items)))
    basis = diversity_basis if diversity_basis is not None else diversity_basis_of(split.train)
    if basis is None:
        out[f"diversity@{BEYOND_K}"] = None
    elif basis[0] == "category":
        out[f"diversity@{BEYOND_K}"] = _mean(M.intra_list_diversity(top, categories=basis[1]))
    else:
        out[f"diversity@{BEYOND_K}"] = _mean(M.intra_list_diversity(top, embeddings=basis[1]))
    out[f"gini@{BEYOND_K}"] = M.exposure_gini(top, n_items)
    out[f"tail_share@{BEYOND_K}"] = M.tail_share(top, M.long_tail_mask(counts))
    per_case["rank"] = ranks
    return ModelEvaluation(
        metrics=out,
        per_case=per_case,
        eval_seconds=time.perf_counter() - t0,
        candidates=(cand_items, cand_scores) if keep_candidates else None,
    )


def diversity_basis_of(train: TrainData) -> tuple[str, Any] | None:
    """What intra-list diversity is measured on: first-level categories when known, else
    the TF-IDF vectors of the item text (items only: host names say nothing about
    similarity), else nothing (``None``)."""
    cats = train.item_category
    if cats is not None and (np.asarray(cats) >= 0).any():
        return "category", np.asarray(cats, dtype=np.int64)
    texts = train.item_text
    if train.meta.get("target", "item") == "item" and texts and sum(bool(t) for t in texts) >= 2:
        from sklearn.feature_extraction.text import TfidfVectorizer

        try:
            return "text", TfidfVectorizer(max_features=50000).fit_transform(texts)
        except ValueError:  # empty vocabulary
            return None
    return None


def _candidate_mask(batch: list, n_items: int) -> np.ndarray | None:
    if all(c.candidates is None for c in batch):
        return None
    valid = np.zeros((len(batch), n_items), dtype=bool)
    for r, c in enumerate(batch):
        if c.candidates is None:
            valid[r] = True
        else:
            valid[r, np.asarray(c.candidates, dtype=np.int64)] = True
    return valid


def _mean(values: np.ndarray) -> float | None:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if len(v) else None


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="case",
        disable=not enabled,
        file=sys.stderr,
        leave=False,
        mininterval=1.0,
    )


def history_buckets(
    lengths: np.ndarray, values: np.ndarray
) -> tuple[list[str], list[int], list[float | None]]:
    """Mean of ``values`` per user-history-length bucket (labels, counts, means)."""
    labels, counts, means = [], [], []
    for lo, hi, label in HISTORY_BUCKETS:
        m = (lengths >= lo) & (lengths < hi)
        labels.append(label)
        counts.append(int(m.sum()))
        means.append(_mean(values[m]))
    return labels, counts, means


# ---------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------
def parse_params(items: list[str] | None, models: list[str]) -> dict[str, dict[str, Any]]:
    """``["als.factors=64", "bpr.lr=0.01"]`` -> ``{"als": {"factors": 64}, "bpr": {"lr": 0.01}}``.

    Values are read as JSON (numbers, true/false, null, lists), else kept as strings.
    """
    out: dict[str, dict[str, Any]] = {m: {} for m in models}
    for item in items or []:
        m = re.fullmatch(r"([^.=\s]+)\.([^=\s]+)=(.*)", item.strip())
        if not m:
            raise ConfigError(
                f"The '--param' option must look like NAME.KEY=VALUE (e.g. als.factors=64). "
                f"Got {item!r} instead."
            )
        name, key, raw = m.groups()
        if name not in out:
            raise ConfigError(
                f"The '--param' option {item!r} names the model {name!r}, which is not in "
                f"--model ({', '.join(models)}). Use one of those names."
            )
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[name][key] = value
    return out


def build_model(
    name: str, params: dict[str, Any], *, seed: int | None = None, epochs: int | None = None
) -> BaseRecommender:
    """Create a registered model, passing ``epochs`` / ``seed`` (or ``random_state``) when accepted."""
    from liveshelf.models.registry import get_model_class

    cls = get_model_class(name)
    sig = inspect.signature(cls.__init__)
    accepted = {p for p in sig.parameters if p != "self"}
    open_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    kwargs = dict(params)
    unknown = [k for k in kwargs if k not in accepted]
    if unknown and not open_kw:
        raise ConfigError(
            f"The model {name!r} has no parameter {unknown[0]!r}; it accepts "
            f"{sorted(accepted - {'args', 'kwargs'})}. Fix the --param option."
        )
    if epochs is not None and "epochs" in accepted:
        kwargs.setdefault("epochs", epochs)
    if seed is not None:
        if "seed" in accepted:
            kwargs.setdefault("seed", seed)
        elif "random_state" in accepted:
            kwargs.setdefault("random_state", seed)
    return cls(**kwargs)


# ---------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------
def load_data(spec: str) -> Dataset:
    """``FORMAT:PATH`` through the format readers, or ``store:HOMEDIR`` from an EventStore."""
    if ":" not in spec or not spec.split(":", 1)[0] or not spec.split(":", 1)[1]:
        raise ConfigError(
            f"The '--data' option must be FORMAT:PATH (e.g. unisrec:/data/amazon-scientific "
            f"or store:~/.liveshelf). Got {spec!r} instead."
        )
    fmt, path = spec.split(":", 1)
    if fmt == "store":
        from liveshelf.data.store import EventStore

        home = Path(path).expanduser()
        if not home.is_dir():
            raise ConfigError(
                f"The '--data' option {spec!r} names the store folder {str(home)!r}, which does "
                "not exist. Ingest events first (liveshelf ingest) or fix the path."
            )
        with EventStore(home, read_only=True) as store:
            return store.to_dataset(name=f"store:{home.name}")
    from liveshelf.data.formats import load_dataset

    return load_dataset(spec)


def default_protocol(spec: str | None, ds: Dataset) -> str:
    fmt = spec.split(":", 1)[0] if spec and ":" in spec else ""
    if fmt in LIVE_FORMATS:
        return "live"
    if fmt:
        return "loo"
    return "live" if ds.rooms is not None and len(ds.rooms) else "loo"


def dataset_slug(name: str) -> str:
    tail = name.rsplit(":", 1)[-1].rstrip("/")
    tail = Path(tail).name or tail
    return re.sub(r"[^A-Za-z0-9._-]+", "-", tail).strip("-") or "dataset"


# ---------------------------------------------------------------------------------------
# the whole run
# ---------------------------------------------------------------------------------------
def run(
    data: str | Dataset,
    models: list[str],
    *,
    protocol: str | None = None,
    out: Path | str | None = None,
    seed: int = 0,
    epochs: int | None = None,
    mask_history: bool = False,
    params: dict[str, dict[str, Any]] | None = None,
    batch_size: int = 512,
    progress: bool = True,
    target: str | None = None,
    log: Any = None,
    rerank: str | list[str] | None = None,
    rerank_candidates: int = 100,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``models`` on ``data``; write ``results.json`` + ``report.md`` + plots to ``out``.

    ``tracking_uri`` (or ``LIVESHELF_TRACKING_URI``) logs the run to MLflow: parameters, each
    model's metrics (``<model>.ndcg_at_10``) and training history per epoch (``<model>.epoch/loss`` ...), and the output files
    as artifacts (see :mod:`liveshelf.core.tracking`).

    ``target`` overrides what is recommended (``"item"``, or ``"host"`` for live data;
    default: hosts under ``live``, items otherwise). ``rerank`` (e.g. ``"fair:lambda=0,0.3"``,
    see :mod:`liveshelf.rerank.spec`) re-ranks each model's top ``rerank_candidates`` per case
    with every setting and adds ``results["rerank"]`` and a trade-off plot.
    """
    from liveshelf.evaluation.report import write_report
    from liveshelf.evaluation.significance import compare

    say = log or (lambda msg: None)
    if not models:
        raise ConfigError("The '--model' option must name at least one model (e.g. pop,itemknn). Got none.")
    if len(set(models)) != len(models):
        raise ConfigError(f"The '--model' option lists a model twice: {models}. Name each model once.")
    params = params or {}
    from liveshelf.models.registry import get_model_class

    for name in models:  # fail fast on unknown names, before loading data
        get_model_class(name)
    settings = _rerank_settings(rerank, rerank_candidates)
    spec = data if isinstance(data, str) else None
    ds = load_data(data) if isinstance(data, str) else data
    protocol = protocol or default_protocol(spec, ds)
    if protocol not in PROTOCOLS:
        raise ConfigError(f"The '--protocol' option must be one of {PROTOCOLS}. Got {protocol!r} instead.")
    out_dir = Path(out) if out is not None else Path("results") / f"{dataset_slug(ds.name)}-{protocol}"
    out_dir.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    split = make_split(ds, protocol, mask_history=mask_history, **({"target": target} if target else {}))
    summary = split.summary()
    say(
        f"{ds.name}: {summary['n_train_users']} train users, {summary['n_items']} items, "
        f"{summary['cases']['all']} test cases ({protocol}, split in {time.perf_counter() - t0:.1f}s)"
    )
    if not split.cases:
        raise ConfigError(
            f"The {protocol!r} protocol found no test cases in {ds.name!r}; "
            "the data set is too small or has no held-out events. Try another --protocol."
        )
    basis = diversity_basis_of(split.train)

    from liveshelf.core.tracking import track_run

    with track_run(
        "evaluate",
        tracking_uri=tracking_uri,
        run_name=f"{','.join(models)} on {ds.name} ({protocol})",
        params={
            "data": spec or ds.name,
            "models": ",".join(models),
            "protocol": protocol,
            "seed": seed,
            "epochs": epochs,
            "mask_history": mask_history,
            **{f"{m}.{k}": v for m, p in params.items() for k, v in p.items()},
        },
        tags={
            "dataset": ds.name,
            "data.train_users": summary["n_train_users"],
            "data.items": summary["n_items"],
        },
    ) as tracker:
        results: dict[str, Any] = {"dataset": ds.name, "protocol": protocol, "models": {}}
        per_case: dict[str, dict[str, np.ndarray]] = {}
        timing: dict[str, dict[str, float]] = {}
        rerank_rows: dict[str, list[dict[str, Any]]] = {}
        for name in models:
            seed_everything(seed)
            model = build_model(name, params.get(name, {}), seed=seed, epochs=epochs)
            seed_everything(seed)
            say(f"fit {name} ...")
            t = time.perf_counter()
            model.fit(split.train)
            fit_s = time.perf_counter() - t
            ev = evaluate_model(
                model,
                split,
                batch_size=batch_size,
                progress=progress,
                desc=f"evaluate {name}",
                diversity_basis=basis,
                keep_candidates=rerank_candidates if settings else 0,
            )
            if settings:
                rerank_rows[name] = rerank_tradeoff(ev, split, settings, log=say, name=name)
            results["models"][name] = {
                "metrics": ev.metrics,
                "fit_seconds": round(fit_s, 4),
                "params": jsonable(model.get_params()),
            }
            if model.privacy_:  # DP-trained: achieved epsilon / delta (liveshelf.privacy.dp)
                results["models"][name]["privacy"] = model.privacy_
            if model.fit_info_:  # what the fit decided (e.g. skipped sources), as the model says
                results["models"][name]["fit_info"] = model.fit_info_
            per_case[name] = ev.per_case
            timing[name] = {"fit_seconds": round(fit_s, 4), "eval_seconds": round(ev.eval_seconds, 4)}
            say(
                f"{name}: ndcg@10={ev.metrics['ndcg@10']:.4f} recall@10={ev.metrics['recall@10']:.4f} "
                f"(fit {fit_s:.1f}s, eval {ev.eval_seconds:.1f}s)"
            )
            tracker.log_metrics({f"{name}.{k}": v for k, v in ev.metrics.items()})
            tracker.log_metrics({f"{name}.fit_seconds": fit_s, f"{name}.eval_seconds": ev.eval_seconds})
            tracker.log_history(getattr(model, "history_", None) or [], prefix=f"{name}.epoch/")

        base = models[0]
        significance: dict[str, Any] = {}
        for name in models[1:]:
            significance[name] = {
                metric: compare(per_case[base][metric], per_case[name][metric], seed=seed).to_dict()
                for metric in ("ndcg@10", "recall@10")
            }
        lengths = split.history_lengths()
        labels, counts, _ = history_buckets(lengths, per_case[base]["ndcg@10"])
        results.update(
            {
                "mask_history": mask_history,
                "ties": "pessimistic",
                "seed": seed,
                "split": jsonable(summary),
                "diversity_basis": None if basis is None else basis[0],
                "timing": timing,
                "significance": {"baseline": base, "models": significance},
                "by_history_length": {
                    "buckets": labels,
                    "counts": counts,
                    "ndcg@10": {n: history_buckets(lengths, per_case[n]["ndcg@10"])[2] for n in models},
                },
            }
        )
        if settings:
            results["rerank"] = {
                "candidates": rerank_candidates,
                "k": BEYOND_K,
                "discount": RERANK_DISCOUNT,
                "exposure_on": "item",
                "tail": "all but the 20% most popular training items",
                "relevance": "test targets per item",
                "ties": "index",
                "settings": [s.label for s in settings],
                "models": rerank_rows,
            }
        (out_dir / "results.json").write_text(json.dumps(jsonable(results), indent=2, allow_nan=False))
        if tracker.run_id:
            results["mlflow_run_id"] = tracker.run_id
            (out_dir / "results.json").write_text(json.dumps(jsonable(results), indent=2, allow_nan=False))
        write_report(results, out_dir)
        tracker.log_artifacts(out_dir)
        return results


# ---------------------------------------------------------------------------------------
# re-ranking sweep (--rerank): accuracy vs exposure fairness, see liveshelf.evaluation.fairness
# ---------------------------------------------------------------------------------------
RERANK_DISCOUNT = "log"


def _rerank_settings(rerank: str | list[str] | None, candidates: int) -> list:
    from liveshelf.rerank import parse_rerank

    settings = parse_rerank(rerank)
    if settings and not (isinstance(candidates, int) and candidates >= BEYOND_K):
        raise ConfigError(
            f"The '--rerank-candidates' option must be an int >= {BEYOND_K} (the list length). "
            f"Got {candidates!r} instead."
        )
    return settings


def rerank_tradeoff(
    ev: ModelEvaluation, split: ProtocolSplit, settings: list, *, log: Any = None, name: str = "model"
) -> list[dict[str, Any]]:
    """Trade-off rows of one model: its own top 10 (``none``) and every re-ranking setting.

    ``ev`` must come from ``evaluate_model(..., keep_candidates=N)``; long tail = all but the 20 %
    most popular training items (as ``tail_share@10``), relevance = test targets per item.
    """
    from liveshelf.evaluation.fairness import rerank_sweep

    if ev.candidates is None:
        raise ConfigError(
            "rerank_tradeoff needs the candidates of each case; evaluate the model with "
            "evaluate_model(..., keep_candidates=N), N >= 10. Got an evaluation without them."
        )
    say = log or (lambda msg: None)
    n_items = split.n_items
    train_items = np.concatenate(split.train.sequences) if split.train.sequences else np.zeros(0, np.int64)
    tail = M.long_tail_mask(np.bincount(train_items, minlength=n_items)[:n_items])
    relevance = np.bincount(split.targets(), minlength=n_items)[:n_items].astype(np.float64)
    items, scores = ev.candidates
    say(f"rerank {name} ({len(settings)} settings over the top {items.shape[1]}) ...")
    return rerank_sweep(
        items,
        scores,
        split.targets(),
        settings,
        n_items=n_items,
        tail=tail,
        relevance=relevance,
        k=BEYOND_K,
        discount=RERANK_DISCOUNT,
        histories=[c.context.items for c in split.cases],
        progress=say,
        similar=None if split.train.item_category is None else np.asarray(split.train.item_category),
    )


#: The old private name; ``liveshelf.experiment.loop`` imports it until it uses ``core.jsonsafe`` itself.
_jsonable = jsonable


__all__ = [
    "ModelEvaluation",
    "build_model",
    "default_protocol",
    "diversity_basis_of",
    "evaluate_model",
    "history_buckets",
    "ks_for",
    "load_data",
    "parse_params",
    "rerank_tradeoff",
    "run",
    "seed_everything",
]
