"""Ranking and beyond-accuracy metrics: free functions over numpy arrays.

Every accuracy function returns one value *per user* (per test case) so that means,
splits (all / new / repeat), buckets and paired significance tests all start from the
same arrays; average them yourself (``np.mean``).

Ranks are 0-based: rank 0 is the top of the list.

Ties (documented rule, used everywhere)
---------------------------------------
:func:`target_ranks` counts ties *pessimistically* by default: the target's rank is the
number of valid items with a strictly greater score plus the number of *other* valid
items with the same score. A model that gives every item the same score therefore ranks
each target last and gets zero accuracy, never a perfect one. ``ties="index"`` breaks
ties by item index (lower index first), the same rule :func:`topk_indices` uses, so
ranks then agree with the top-k lists; ``ties="optimistic"`` (strictly greater only) is
there for comparison and must not be used to report results.

NaN scores are treated as ``-inf``. Items outside ``valid`` (e.g. rooms that are not
live) are not counted at all; a target outside ``valid`` gets rank ``n_valid`` (a miss).

Top-k lists (:func:`topk_indices`) order by score, ties by lower item index; slots that
would hold an invalid or ``-inf`` item are ``-1`` (padding) and count as no item in the
coverage / diversity / novelty / exposure functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from liveshelf.errors import check_param

TIES = ("pessimistic", "index", "optimistic")


# ---------------------------------------------------------------------------------------
# ranks and top-k
# ---------------------------------------------------------------------------------------
def _clean(scores: np.ndarray) -> np.ndarray:
    """2-D float array (float32 kept, else float64) with NaN replaced by -inf (copied only then)."""
    s = np.asarray(scores)
    if s.dtype not in (np.float32, np.float64):
        s = s.astype(np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be a 2-D (users, items) array; got shape {s.shape}.")
    nan = np.isnan(s)
    return np.where(nan, -np.inf, s).astype(s.dtype) if nan.any() else s


def target_ranks(
    scores: np.ndarray, targets: np.ndarray, valid: np.ndarray | None = None, ties: str = "pessimistic"
) -> np.ndarray:
    """0-based rank of each row's target among the row's valid items.

    ``scores`` (B, N); ``targets`` (B,) item indices; ``valid`` (B, N) bool or None (all).
    """
    check_param("ties", ties, ties in TIES, f"one of {TIES}", "target_ranks")
    s = _clean(scores)
    t = np.asarray(targets, dtype=np.int64)
    b, n = s.shape
    rows = np.arange(b)
    ts = s[rows, t][:, None]
    greater = s > ts
    equal = s == ts
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        greater &= valid
        equal &= valid
    rank = greater.sum(1)
    if ties == "pessimistic":
        rank = rank + equal.sum(1) - equal[rows, t]
    elif ties == "index":
        before = np.arange(n)[None, :] < t[:, None]
        rank = rank + (equal & before).sum(1)
    rank = rank.astype(np.int64)
    if valid is not None:
        miss = ~valid[rows, t]
        rank[miss] = valid[miss].sum(1)
    return rank


def topk_indices(scores: np.ndarray, k: int, valid: np.ndarray | None = None) -> np.ndarray:
    """(B, k) item indices of the k best scores per row; ties by lower index; -1 = padding.

    Fast path: the k-th largest of ~4k block maxima is a lower bound of each row's k-th
    score, so only items at or above it can be in the top k; rows where ties make that
    set large fall back to an exact partition of the whole row.
    """
    check_param("k", k, isinstance(k, (int, np.integer)) and k >= 1, "an int >= 1", "topk_indices")
    s = _clean(scores)
    if valid is not None:
        s = np.where(np.asarray(valid, dtype=bool), s, -np.inf)
    b, n = s.shape
    kk = min(int(k), n)
    top = _topk_blocks(s, kk) if n >= 8 * kk and n >= 256 else _topk_exact(s, kk)
    rows = np.arange(b)[:, None]
    top[np.isneginf(s[rows, top])] = -1
    if kk < k:
        top = np.concatenate([top, np.full((b, k - kk), -1, dtype=top.dtype)], axis=1)
    return top.astype(np.int64)


def _topk_exact(s: np.ndarray, kk: int) -> np.ndarray:
    b = s.shape[0]
    thr = -np.partition(-s, kk - 1, axis=1)[:, kk - 1][:, None]  # k-th largest value per row
    above = s > thr
    need = kk - above.sum(1, keepdims=True)
    tie = s == thr
    chosen = above | (tie & (np.cumsum(tie, axis=1) <= need))
    idx = np.nonzero(chosen)[1].reshape(b, kk)  # ascending index within each row
    order = np.argsort(-s[np.arange(b)[:, None], idx], axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)


def _topk_blocks(s: np.ndarray, kk: int) -> np.ndarray:
    b, n = s.shape
    size = max(1, n // (4 * kk))
    maxima = np.maximum.reduceat(s, np.arange(0, n, size), axis=1)
    n_blocks = maxima.shape[1]
    lb = np.partition(maxima, n_blocks - kk, axis=1)[:, n_blocks - kk][:, None]
    cand = s >= lb
    counts = cand.sum(1)
    cap = 8 * kk
    out = np.empty((b, kk), dtype=np.int64)
    wide = counts > cap
    if wide.any():
        out[wide] = _topk_exact(s[wide], kk)
    narrow = np.nonzero(~wide)[0]
    if len(narrow):
        r, c = np.nonzero(cand[narrow])  # row-major: ascending index within each row
        start = np.zeros(len(narrow) + 1, dtype=np.int64)
        np.cumsum(counts[narrow], out=start[1:])
        pos = np.arange(len(r)) - start[r]
        idx = np.full((len(narrow), int(counts[narrow].max())), n, dtype=np.int64)  # n = sentinel
        idx[r, pos] = c
        vals = np.where(idx < n, s[narrow[:, None], np.minimum(idx, n - 1)], -np.inf)
        order = np.argsort(-vals, axis=1, kind="stable")[:, :kk]
        out[narrow] = np.take_along_axis(idx, order, axis=1)
    return out


# ---------------------------------------------------------------------------------------
# single-target accuracy (from ranks)
# ---------------------------------------------------------------------------------------
def hit_rate_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """1 if the target is in the top k, else 0 (= Recall@k with one target)."""
    return (np.asarray(ranks) < k).astype(np.float64)


recall_at_k = hit_rate_at_k


def ndcg_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """1 / log2(rank + 2) inside the top k, else 0 (IDCG = 1 for one target)."""
    r = np.asarray(ranks, dtype=np.float64)
    return np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)


def mrr_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """1 / (rank + 1) inside the top k, else 0."""
    r = np.asarray(ranks, dtype=np.float64)
    return np.where(r < k, 1.0 / (r + 1.0), 0.0)


def precision_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """hits / k with one target."""
    return hit_rate_at_k(ranks, k) / k


# ---------------------------------------------------------------------------------------
# multi-target accuracy (from top-k lists)
# ---------------------------------------------------------------------------------------
def _hits(topk: np.ndarray, targets: Sequence[np.ndarray], n_items: int) -> tuple[np.ndarray, np.ndarray]:
    topk = np.asarray(topk, dtype=np.int64)
    b = topk.shape[0]
    sets = [np.unique(np.asarray(t, dtype=np.int64)) for t in targets]
    sizes = np.array([len(t) for t in sets], dtype=np.int64)
    codes = np.repeat(np.arange(b, dtype=np.int64), sizes) * (n_items + 1)
    codes = codes + (np.concatenate(sets) if sets else np.zeros(0, np.int64))
    tk = np.arange(b, dtype=np.int64)[:, None] * (n_items + 1) + topk
    hits = np.isin(tk, codes) & (topk >= 0)
    return hits, sizes


def multi_target_metrics(
    topk: np.ndarray, targets: Sequence[np.ndarray], n_items: int, k: int | None = None
) -> dict[str, np.ndarray]:
    """Per-user hr, recall, precision, ndcg and mrr @k for sets of targets.

    recall = hits / |targets| (NaN for an empty set); precision = hits / k;
    ndcg = DCG / IDCG with IDCG over min(|targets|, k) hits; mrr = 1 / first hit position.
    """
    topk = np.asarray(topk, dtype=np.int64)
    k = topk.shape[1] if k is None else k
    topk = topk[:, :k]
    hits, sizes = _hits(topk, targets, n_items)
    n_hit = hits.sum(1).astype(np.float64)
    disc = 1.0 / np.log2(np.arange(k) + 2.0)
    dcg = (hits * disc).sum(1)
    idcg = np.cumsum(disc)[np.clip(np.minimum(sizes, k) - 1, 0, k - 1)]
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(sizes > 0, n_hit / np.maximum(sizes, 1), np.nan)
        ndcg = np.where(sizes > 0, dcg / idcg, np.nan)
    first = np.where(hits.any(1), hits.argmax(1), -1)
    mrr = np.where(first >= 0, 1.0 / (np.maximum(first, 0) + 1.0), 0.0)
    return {
        "hr": (n_hit > 0).astype(np.float64),
        "recall": recall,
        "precision": n_hit / k,
        "ndcg": ndcg,
        "mrr": mrr,
    }


# ---------------------------------------------------------------------------------------
# rankers: AUC / GAUC
# ---------------------------------------------------------------------------------------
def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count one half). NaN if one class only."""
    from scipy.stats import rankdata

    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def gauc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, weight: str = "samples") -> float:
    """Group AUC: per-group AUC averaged with weights (``"samples"`` or ``"positives"``).

    Groups whose labels are all one class are skipped (their AUC is undefined).
    """
    check_param("weight", weight, weight in ("samples", "positives"), "'samples' or 'positives'", "gauc")
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    g = np.asarray(groups)
    order = np.argsort(g, kind="stable")
    _, starts = np.unique(g[order], return_index=True)
    total, wsum = 0.0, 0.0
    for idx in np.split(order, starts[1:]):
        a = auc(y[idx], s[idx])
        if np.isnan(a):
            continue
        w = float(len(idx)) if weight == "samples" else float(y[idx].sum())
        total += w * a
        wsum += w
    return total / wsum if wsum else float("nan")


# ---------------------------------------------------------------------------------------
# beyond accuracy (from top-k lists)
# ---------------------------------------------------------------------------------------
def coverage_at_k(topk: np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one top-k list."""
    t = np.asarray(topk)
    t = t[t >= 0]
    return float(len(np.unique(t)) / n_items) if n_items else 0.0


def intra_list_diversity(
    topk: np.ndarray, categories: np.ndarray | None = None, embeddings: np.ndarray | None = None
) -> np.ndarray:
    """Per-list mean pairwise distance of recommended items.

    With ``categories`` (int code per item, -1 unknown): share of pairs in different
    categories (pairs with an unknown category are left out). With ``embeddings``
    (n_items, d), dense or scipy sparse: mean cosine distance ``1 - cos``. Lists with < 2
    usable items: NaN.
    """
    if (categories is None) == (embeddings is None):
        raise ValueError("intra_list_diversity needs exactly one of 'categories' or 'embeddings'.")
    t = np.asarray(topk, dtype=np.int64)
    ok = t >= 0
    safe = np.where(ok, t, 0)
    k = t.shape[1]
    upper = np.triu(np.ones((k, k), dtype=bool), 1)[None]
    if categories is not None:
        c = np.asarray(categories, dtype=np.int64)[safe]
        ok = ok & (c >= 0)
        dist = (c[:, :, None] != c[:, None, :]).astype(np.float64)
    elif embeddings is not None and hasattr(embeddings, "tocsr"):  # scipy sparse (e.g. TF-IDF): exact cosine
        x = embeddings.tocsr().astype(np.float64)
        norm = np.sqrt(np.asarray(x.multiply(x).sum(1)).ravel())
        inv = 1.0 / np.where(norm > 0, norm, 1.0)
        dist = np.zeros((t.shape[0], k, k))
        for i in range(k):
            xi = x[safe[:, i]]
            for j in range(i + 1, k):
                dot = np.asarray(xi.multiply(x[safe[:, j]]).sum(1)).ravel()
                dist[:, i, j] = 1.0 - dot * inv[safe[:, i]] * inv[safe[:, j]]
    else:
        e = np.asarray(embeddings, dtype=np.float64)
        norm = np.linalg.norm(e, axis=1, keepdims=True)
        e = e / np.where(norm > 0, norm, 1.0)
        v = e[safe]
        dist = 1.0 - np.einsum("bid,bjd->bij", v, v)
    pair = upper & ok[:, :, None] & ok[:, None, :]
    n = pair.sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (dist * pair).sum((1, 2)) / np.maximum(n, 1), np.nan)


def item_probabilities(train_items: np.ndarray, n_items: int) -> np.ndarray:
    """Laplace-smoothed share of training interactions per item: (count + 1) / (total + n)."""
    counts = np.bincount(np.asarray(train_items, dtype=np.int64), minlength=n_items)[:n_items]
    return (counts + 1.0) / (counts.sum() + n_items)


def novelty(topk: np.ndarray, item_prob: np.ndarray) -> np.ndarray:
    """Per-list mean self-information ``-log2 p(item)`` (p from training popularity)."""
    t = np.asarray(topk, dtype=np.int64)
    ok = t >= 0
    info = -np.log2(np.asarray(item_prob, dtype=np.float64))[np.where(ok, t, 0)]
    n = ok.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (info * ok).sum(1) / np.maximum(n, 1), np.nan)


def exposure_counts(topk: np.ndarray, n_items: int) -> np.ndarray:
    t = np.asarray(topk, dtype=np.int64)
    return np.bincount(t[t >= 0], minlength=n_items)[:n_items]


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0 = equal, -> 1 = concentrated)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * x.sum()))


def exposure_gini(topk: np.ndarray, n_items: int) -> float:
    """Gini of how often each catalogue item is recommended (zero-exposure items included)."""
    return gini(exposure_counts(topk, n_items))


def long_tail_mask(item_counts: np.ndarray, head_share: float = 0.2) -> np.ndarray:
    """True for long-tail items: all but the ``head_share`` most popular (ties by lower index)."""
    c = np.asarray(item_counts)
    n = len(c)
    n_head = int(np.ceil(head_share * n))
    order = np.lexsort((np.arange(n), -c))
    tail = np.ones(n, dtype=bool)
    tail[order[:n_head]] = False
    return tail


def tail_share(topk: np.ndarray, tail: np.ndarray) -> float:
    """Share of recommendation slots that go to long-tail items."""
    t = np.asarray(topk, dtype=np.int64)
    t = t[t >= 0]
    return float(np.asarray(tail)[t].mean()) if len(t) else 0.0


def mask_items(scores: np.ndarray, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Set ``scores[rows, items]`` to -inf (in place on a float copy) and return it."""
    s = np.array(scores, dtype=np.float64, copy=True)
    s[np.asarray(rows, dtype=np.int64), np.asarray(items, dtype=np.int64)] = -np.inf
    return s


__all__ = [
    "TIES",
    "auc",
    "coverage_at_k",
    "exposure_counts",
    "exposure_gini",
    "gauc",
    "gini",
    "hit_rate_at_k",
    "intra_list_diversity",
    "item_probabilities",
    "long_tail_mask",
    "mask_items",
    "mrr_at_k",
    "multi_target_metrics",
    "ndcg_at_k",
    "novelty",
    "precision_at_k",
    "recall_at_k",
    "target_ranks",
    "tail_share",
    "topk_indices",
]
