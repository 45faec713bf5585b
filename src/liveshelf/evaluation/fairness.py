"""Exposure fairness on top-k lists, and the accuracy-fairness trade-off of re-ranking.

Metrics (free functions over arrays, like :mod:`liveshelf.evaluation.metrics`, which they
reuse for the Gini coefficient, the long-tail mask and count-based tail share):

- :func:`item_exposure` — position-weighted exposure per item, summed over lists
  (``log`` = ``1 / log2(rank + 2)``, ``rbp`` = ``p ** rank``, ``none`` = counts);
- :func:`group_exposure` — the same summed per group (host, category, head / tail ...);
- :func:`weighted_exposure_gini`, :func:`exposure_tail_share` — Gini and long-tail share of
  that exposure (with ``discount="none"`` they equal ``metrics.exposure_gini`` / ``tail_share``);
- :func:`exposure_disparity` — each group's share of exposure against its share of relevance
  (ratio per group, and the gap ``½ Σ_g |exposure share - relevance share|``: 0 = exposure
  follows relevance, 1 = all exposure goes where there is no relevance).

Trade-off (:func:`rerank_sweep`): re-rank every test case's top-N candidates with each
setting of :mod:`liveshelf.rerank` and compute accuracy (from the target's position in the
new list) and fairness for every setting, plus the model's own order as ``none``.

>>> import numpy as np
>>> top = np.array([[0, 1], [0, 2]])
>>> item_exposure(top, 4, discount="none").tolist()
[2.0, 1.0, 1.0, 0.0]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from liveshelf.errors import ConfigError
from liveshelf.evaluation import metrics as M
from liveshelf.rerank._base import position_weights


# ---------------------------------------------------------------------------------------
# exposure metrics
# ---------------------------------------------------------------------------------------
def item_exposure(topk: np.ndarray, n_items: int, discount: str = "log", p: float = 0.8) -> np.ndarray:
    """(n_items,) position-weighted exposure summed over the lists; -1 slots count for nothing."""
    t = np.asarray(topk, dtype=np.int64)
    if t.ndim != 2:
        raise ConfigError(f"The 'topk' lists must be a 2-D (users, k) array. Got shape {t.shape} instead.")
    w = np.broadcast_to(position_weights(max(t.shape[1], 1), discount, p)[: t.shape[1]], t.shape)
    ok = t >= 0
    return np.bincount(t[ok], weights=w[ok], minlength=n_items)[:n_items].astype(np.float64)


def group_exposure(
    topk: np.ndarray, groups: np.ndarray, n_groups: int | None = None, discount: str = "log", p: float = 0.8
) -> np.ndarray:
    """(n_groups,) exposure per group; ``groups`` is an int code per item (-1 = unknown, left out)."""
    g = np.asarray(groups, dtype=np.int64)
    n = int(n_groups if n_groups is not None else (g.max() + 1 if len(g) else 0))
    e = item_exposure(topk, len(g), discount, p)
    known = g >= 0
    return np.bincount(g[known], weights=e[known], minlength=n)[:n]


def weighted_exposure_gini(topk: np.ndarray, n_items: int, discount: str = "log", p: float = 0.8) -> float:
    """Gini of position-weighted item exposure over the whole catalogue (0 = equal, -> 1 = few items)."""
    return M.gini(item_exposure(topk, n_items, discount, p))


def exposure_tail_share(topk: np.ndarray, tail: np.ndarray, discount: str = "log", p: float = 0.8) -> float:
    """Share of position-weighted exposure that goes to long-tail items (``tail`` bool per item)."""
    tail = np.asarray(tail, dtype=bool)
    e = item_exposure(topk, len(tail), discount, p)
    total = e.sum()
    return float(e[tail].sum() / total) if total > 0 else 0.0


@dataclass
class Disparity:
    """Exposure against relevance per group (shares sum to 1 over groups)."""

    exposure_share: np.ndarray
    relevance_share: np.ndarray
    ratio: np.ndarray  # exposure share / relevance share (NaN where the group has no relevance)
    gap: float  # ½ Σ |exposure share - relevance share|, in [0, 1]

    def to_dict(self, names: list[str] | None = None) -> dict[str, Any]:
        names = names or [str(i) for i in range(len(self.ratio))]
        return {
            "gap": self.gap,
            "groups": {
                n: {
                    "exposure_share": float(e),
                    "relevance_share": float(r),
                    "ratio": None if not np.isfinite(q) else float(q),
                }
                for n, e, r, q in zip(
                    names, self.exposure_share, self.relevance_share, self.ratio, strict=True
                )
            },
        }


def exposure_disparity(exposure: np.ndarray, relevance: np.ndarray) -> Disparity:
    """Compare per-group exposure with per-group relevance (both non-negative, same length).

    >>> d = exposure_disparity(np.array([3.0, 1.0]), np.array([1.0, 1.0]))
    >>> d.gap, d.ratio.tolist()
    (0.25, [1.5, 0.5])
    """
    e = np.asarray(exposure, dtype=np.float64)
    r = np.asarray(relevance, dtype=np.float64)
    if e.shape != r.shape or e.ndim != 1 or (e < 0).any() or (r < 0).any():
        raise ConfigError(
            f"The 'exposure' and 'relevance' of exposure_disparity must be 1-D non-negative "
            f"arrays of the same length (one value per group). Got shapes {e.shape} and "
            f"{r.shape}."
        )
    es = e / e.sum() if e.sum() > 0 else np.zeros_like(e)
    rs = r / r.sum() if r.sum() > 0 else np.zeros_like(r)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(rs > 0, es / np.where(rs > 0, rs, 1.0), np.nan)
    return Disparity(es, rs, ratio, float(0.5 * np.abs(es - rs).sum()))


def fairness_metrics(
    topk: np.ndarray, n_items: int, *, tail: np.ndarray, relevance: np.ndarray, discount: str = "log"
) -> dict[str, float]:
    """The fairness columns of a trade-off row, over top-k lists (k = ``topk.shape[1]``).

    ``tail``: bool per item (long tail); ``relevance``: per-item merit (e.g. how often each
    item is a test target). Keys: ``gini@k`` (counts, as in the main table),
    ``exposure_gini@k`` (position-weighted), ``tail_share@k`` (slots),
    ``exposure_tail_share@k``, ``coverage@k``, ``disparity@k`` (head/tail exposure-relevance gap).
    """
    k = topk.shape[1]
    tail = np.asarray(tail, dtype=bool)
    head_tail = tail.astype(np.int64)  # 0 = head, 1 = tail
    rel_groups = np.bincount(head_tail, weights=np.asarray(relevance, dtype=np.float64), minlength=2)
    disp = exposure_disparity(group_exposure(topk, head_tail, 2, discount), rel_groups)
    return {
        f"gini@{k}": M.exposure_gini(topk, n_items),
        f"exposure_gini@{k}": weighted_exposure_gini(topk, n_items, discount),
        f"tail_share@{k}": M.tail_share(topk, tail),
        f"exposure_tail_share@{k}": exposure_tail_share(topk, tail, discount),
        f"coverage@{k}": M.coverage_at_k(topk, n_items),
        f"disparity@{k}": disp.gap,
    }


# ---------------------------------------------------------------------------------------
# the trade-off sweep
# ---------------------------------------------------------------------------------------
def list_ranks(lists: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based position of each row's target in its list; ``lists.shape[1]`` (a miss) when absent."""
    lists = np.asarray(lists, dtype=np.int64)
    hit = lists == np.asarray(targets, dtype=np.int64)[:, None]
    return np.where(hit.any(1), hit.argmax(1), lists.shape[1]).astype(np.int64)


def accuracy_metrics(lists: np.ndarray, targets: np.ndarray, k: int = 10) -> dict[str, float]:
    """Mean ndcg / recall / mrr @k of single targets in (re-ranked) lists."""
    r = list_ranks(lists[:, :k], targets)
    return {
        f"ndcg@{k}": float(M.ndcg_at_k(r, k).mean()),
        f"recall@{k}": float(M.recall_at_k(r, k).mean()),
        f"mrr@{k}": float(M.mrr_at_k(r, k).mean()),
    }


def rerank_sweep(
    items: np.ndarray,
    scores: np.ndarray,
    targets: np.ndarray,
    settings: list,
    *,
    n_items: int,
    tail: np.ndarray,
    relevance: np.ndarray,
    k: int = 10,
    discount: str = "log",
    groups: np.ndarray | None = None,
    histories: list[np.ndarray] | None = None,
    progress: Callable[[str], None] | None = None,
    similar: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Accuracy + fairness of the model's own top-k (``none``) and of every re-ranking setting.

    ``items`` / ``scores``: (cases, N) top-N candidates per test case, best first (``-1``
    padding); ``targets``: (cases,) held-out items; ``settings``: from
    :func:`liveshelf.rerank.parse_rerank`. Exposure for ``fair`` / ``cap`` is counted per
    ``groups`` (None = per item); ``calib`` calibrates the head/tail mix (``tail``) towards
    each case's history mix (``histories``, uniform without); ``mmr`` (serving's diversity step) treats
    items of one ``similar`` code (e.g. category; None = none alike) as similar. Rows carry ``ndcg_cost``: the
    relative NDCG@k loss against ``none``.
    """
    from liveshelf.rerank import build_reranker, history_target

    items = np.asarray(items, dtype=np.int64)
    rows: list[dict[str, Any]] = []
    say = progress or (lambda msg: None)
    tail = np.asarray(tail, dtype=bool)
    target_mix = None
    if any(s.method == "calib" for s in settings):
        hist = histories if histories is not None else [np.zeros(0, np.int64)] * len(items)
        target_mix = history_target(hist, tail.astype(np.int64), 2)

    def row(
        label: str, method: str, value: float | None, lists: np.ndarray, seconds: float, extra: dict
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"method": method, "value": value, "label": label}
        out.update(accuracy_metrics(lists, targets, k))
        out.update(fairness_metrics(lists[:, :k], n_items, tail=tail, relevance=relevance, discount=discount))
        out["rerank_seconds"] = round(seconds, 4)
        out.update(extra)
        return out

    base = row("none", "none", None, items[:, :k], 0.0, {})
    rows.append(base)
    for s in settings:
        on = tail.astype(np.int64) if s.method == "calib" else (similar if s.method == "mmr" else groups)
        r = build_reranker(s, groups=on, target=target_mix, discount=discount)
        t0 = time.perf_counter()
        lists = r.rerank(items, scores, k)
        extra = {"overflow": int(r.overflow_)} if hasattr(r, "overflow_") else {}
        rows.append(row(s.label, s.method, s.value, lists, time.perf_counter() - t0, extra))
        say(
            f"  {rows[-1]['label']}: ndcg@{k}={rows[-1][f'ndcg@{k}']:.4f} "
            f"exposure_gini@{k}={rows[-1][f'exposure_gini@{k}']:.4f}"
        )
    b = base[f"ndcg@{k}"]
    for r_ in rows:
        r_["ndcg_cost"] = (b - r_[f"ndcg@{k}"]) / b if b > 0 else 0.0
    return rows


__all__ = [
    "Disparity",
    "accuracy_metrics",
    "exposure_disparity",
    "exposure_tail_share",
    "fairness_metrics",
    "group_exposure",
    "item_exposure",
    "list_ranks",
    "rerank_sweep",
    "weighted_exposure_gini",
]
