"""What :class:`~liveshelf.models.ranker.hybrid.HybridRanker` knows about items and histories: the item
statistics of its features (:class:`ItemStats`: popularity, recent popularity, last time seen, category,
transitions), the held-out last item of a learning split, and the array helpers of its feature rows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from liveshelf.models.base import Context, TrainData

RECENT_SHARE = 0.1  # "recent popularity": the last 10 % of training events
MAX_TYPES = 6  # event types with their own history-count feature


# ------------------------------------------------------------------------------------------
# item statistics from training sequences
# ------------------------------------------------------------------------------------------
@dataclass
class ItemStats:
    """What the features need to know about items, from one :class:`TrainData`."""

    counts: np.ndarray  # (I,) training events per item
    recent: np.ndarray  # (I,) events among the most recent ones
    last_ts: np.ndarray  # (I,) last training time (nan: unknown)
    category: np.ndarray | None  # (I,) int code, -1 unknown
    trans: sp.csr_matrix  # (I, I) count of a -> b consecutive in a sequence
    types: tuple[str, ...]  # event types with a count feature
    modal: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> (I, d) unit rows, NaN: none

    @classmethod
    def from_data(cls, data: TrainData, types: tuple[str, ...] | None = None) -> ItemStats:
        n = data.n_items
        seqs = [np.asarray(s, dtype=np.int64) for s in data.sequences]
        flat = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
        counts = np.bincount(flat, minlength=n)[:n].astype(np.float64)
        real_ts = real_timestamps(data)
        last_ts = np.full(n, np.nan)
        if real_ts:
            ts = np.concatenate([np.asarray(t, dtype=np.float64) for t in data.timestamps])  # type: ignore[union-attr]
            cut = np.quantile(ts, 1 - RECENT_SHARE) if len(ts) else 0.0
            recent = np.bincount(flat[ts >= cut], minlength=n)[:n].astype(np.float64)
            order = np.argsort(ts, kind="stable")
            last_ts[flat[order]] = ts[order]  # later assignments win: the last time per item
        else:  # by position: the last 10 % (at least one) of each sequence
            keep = [s[len(s) - max(1, int(np.ceil(RECENT_SHARE * len(s)))) :] for s in seqs if len(s)]
            rflat = np.concatenate(keep) if keep else np.zeros(0, np.int64)
            recent = np.bincount(rflat, minlength=n)[:n].astype(np.float64)
        pairs = [(s[:-1], s[1:]) for s in seqs if len(s) >= 2]
        a = np.concatenate([p[0] for p in pairs]) if pairs else np.zeros(0, np.int64)
        b = np.concatenate([p[1] for p in pairs]) if pairs else np.zeros(0, np.int64)
        trans = sp.csr_matrix((np.ones(len(a)), (a, b)), shape=(n, n), dtype=np.float64)
        trans.sum_duplicates()
        cat = None
        if data.item_category is not None and (np.asarray(data.item_category) >= 0).any():
            cat = np.asarray(data.item_category, dtype=np.int64)
        if types is None:
            types = ()
            if data.types is not None and data.types:
                uniq = np.unique(
                    np.concatenate([np.asarray(t, dtype=object).astype(str) for t in data.types])
                )
                types = tuple(sorted(str(t) for t in uniq))[:MAX_TYPES] if len(uniq) > 1 else ()
        modal = {m: unit_rows(x) for m, x in sorted((data.item_vectors or {}).items())}
        return cls(counts, recent, last_ts, cat, trans, types, modal)

    def arrays(self) -> dict[str, np.ndarray]:
        t = self.trans.tocsr()
        out = {
            "counts": self.counts,
            "recent": self.recent,
            "last_ts": self.last_ts,
            "trans_indptr": t.indptr.astype(np.int64),
            "trans_indices": t.indices.astype(np.int64),
            "trans_data": t.data.astype(np.float64),
        }
        if self.category is not None:
            out["category"] = self.category
        out.update({f"modal_{m}": x for m, x in self.modal.items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], types: tuple[str, ...]) -> ItemStats:
        n = len(arrays["counts"])
        trans = sp.csr_matrix(
            (arrays["trans_data"], arrays["trans_indices"], arrays["trans_indptr"]), shape=(n, n)
        )
        modal = {
            k.removeprefix("modal_"): np.asarray(v)
            for k, v in sorted(arrays.items())
            if k.startswith("modal_")
        }
        return cls(
            arrays["counts"], arrays["recent"], arrays["last_ts"], arrays.get("category"), trans, types, modal
        )


def unit_rows(x: np.ndarray) -> np.ndarray:
    """float32 copy of ``x`` with L2-normalised rows; rows with a NaN or inf (no vector) become all NaN."""
    x = np.asarray(x, dtype=np.float32)
    have = np.isfinite(x).all(axis=1)
    out = np.full(x.shape, np.nan, dtype=np.float32)
    out[have] = x[have] / np.maximum(np.linalg.norm(x[have], axis=1, keepdims=True), 1e-9)
    return out


def similarity_features(
    emb: np.ndarray, hists: list[np.ndarray], rows: np.ndarray, items: np.ndarray, history: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine of each candidate's vector to its context's last item and to the mean of its last
    ``history`` items, from ``emb`` ``(I, d)`` unit rows (all-NaN rows: the item has no vector).

    Pairs ``(rows[p], items[p])`` index ``hists``. Items without a vector are left out of the history
    mean; a candidate or last item without one gives NaN (LightGBM treats it as missing), as does an
    empty history.
    """
    n, d = emb.shape
    last_v = np.full((len(hists), d), np.nan, dtype=np.float32)
    hist_v = np.full((len(hists), d), np.nan, dtype=np.float32)
    for b, h in enumerate(hists):
        h = h[(h >= 0) & (h < n)]
        if not len(h):
            continue
        last_v[b] = emb[h[-1]]
        recent = emb[h[-history:]]
        recent = recent[np.isfinite(recent).all(axis=1)]
        if len(recent):
            v = recent.mean(axis=0)
            hist_v[b] = v / max(float(np.linalg.norm(v)), 1e-9)
    cand = emb[items]
    return np.einsum("pd,pd->p", cand, last_v[rows]), np.einsum("pd,pd->p", cand, hist_v[rows])


def real_timestamps(data: TrainData) -> bool:
    """True when the data have epoch-second timestamps (not synthetic 0, 1, 2 ... positions)."""
    if data.timestamps is None or not data.timestamps:
        return False
    nonempty = [np.asarray(t) for t in data.timestamps if len(t)]
    return bool(nonempty) and float(np.median([t.max() for t in nonempty])) > 1e8


def holdout_last(data: TrainData) -> tuple[TrainData, np.ndarray]:
    """``data`` without each user's last training item (users with >= 2), and those items (-1: none)."""
    targets = np.full(data.n_users, -1, dtype=np.int64)
    seqs, ts, ty = [], [], []
    for u, s in enumerate(data.sequences):
        cut = len(s) - 1 if len(s) >= 2 else len(s)
        if cut < len(s):
            targets[u] = int(s[-1])
        seqs.append(np.asarray(s[:cut]))
        if data.timestamps is not None:
            ts.append(np.asarray(data.timestamps[u][:cut]))
        if data.types is not None:
            ty.append(np.asarray(data.types[u][:cut]))
    held = TrainData(
        item_ids=data.item_ids,
        user_ids=data.user_ids,
        sequences=seqs,
        timestamps=ts if data.timestamps is not None else None,
        types=ty if data.types is not None else None,
        valid_targets=None,
        item_text=data.item_text,
        item_category=data.item_category,
        item_vectors=data.item_vectors,
        available=data.available,
        meta=dict(data.meta),
    )
    return held, targets


def top_indices(scores: np.ndarray, n: int) -> np.ndarray:
    """(B, n) column indices of the ``n`` best scores per row, best first (ties: lower index)."""
    n = min(n, scores.shape[1])
    part = (
        np.argpartition(-scores, n - 1, axis=1)[:, :n]
        if n < scores.shape[1]
        else np.tile(np.arange(scores.shape[1]), (len(scores), 1))
    )
    rows = np.arange(len(scores))[:, None]
    order = np.lexsort((part, -scores[rows, part]), axis=1)
    return np.take_along_axis(part, order, axis=1)


def ref_time(ctx: Context) -> float:
    """The request time of ``ctx``: its ``time``, else its last event time when that is epoch seconds, else NaN."""
    if ctx.time is not None:
        return float(ctx.time)
    if ctx.ts is not None and len(ctx.ts) and float(np.max(ctx.ts)) > 1e8:
        return float(np.max(ctx.ts))
    return float("nan")


def pair_lookup(
    m: sp.csr_matrix, src: np.ndarray, rows: np.ndarray, items: np.ndarray, log: bool
) -> np.ndarray:
    """``m[src[rows], items]`` for each pair (0 where ``src`` is -1), optionally log1p."""
    B = len(src)
    sub = m[np.maximum(src, 0)]  # (B, I) sparse
    dense = np.asarray(sub.todense(), dtype=np.float64)
    dense[src < 0] = 0.0
    v = dense[rows, items] if B else np.zeros(0)
    return np.log1p(v) if log else v


__all__ = [
    "MAX_TYPES",
    "RECENT_SHARE",
    "ItemStats",
    "holdout_last",
    "pair_lookup",
    "real_timestamps",
    "ref_time",
    "top_indices",
]
