"""Small helpers the classic models share: event weights, popularity, context matrices."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from liveshelf.errors import check_param
from liveshelf.models.base import Context, TrainData
from liveshelf.schema import EVENT_WEIGHTS


def event_weights(types: np.ndarray | None, n: int, use_event_weights: bool) -> np.ndarray:
    """One weight per event: ``EVENT_WEIGHTS[type]`` (1.0 for unknown types), or all ones."""
    if not use_event_weights or types is None:
        return np.ones(n, dtype=np.float64)
    return np.array([EVENT_WEIGHTS.get(str(t), 1.0) for t in types], dtype=np.float64)


def weights_or_none(use_event_weights: bool) -> dict[str, float] | None:
    return EVENT_WEIGHTS if use_event_weights else None


def popularity(data: TrainData, use_event_weights: bool) -> np.ndarray:
    """Interaction count (or event-type weighted count) of every item, float64 ``(n_items,)``."""
    if not data.sequences:
        return np.zeros(data.n_items, dtype=np.float64)
    items = np.concatenate(data.sequences).astype(np.int64)
    types = None if data.types is None else np.concatenate(data.types)
    w = event_weights(types, len(items), use_event_weights)
    return np.bincount(items, weights=w, minlength=data.n_items).astype(np.float64)


def normalised(values: np.ndarray) -> np.ndarray:
    """``values / max(values)`` in [0, 1]; all zeros stay zeros."""
    top = float(values.max()) if len(values) else 0.0
    return values / top if top > 0 else np.zeros_like(values, dtype=np.float64)


def clean_context(ctx: Context, n_items: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The context's (items, ts, types) without indices outside ``0 .. n_items-1``."""
    items = np.asarray(ctx.items, dtype=np.int64)
    keep = (items >= 0) & (items < n_items)
    ts = None if ctx.ts is None else np.asarray(ctx.ts, dtype=np.float64)
    types = None if ctx.types is None else np.asarray(ctx.types)
    if keep.all():
        return items, ts, types
    return (items[keep], None if ts is None else ts[keep], None if types is None else types[keep])


def context_matrix(
    contexts: list[Context],
    n_items: int,
    use_event_weights: bool,
    row_weights: list[np.ndarray] | None = None,
) -> sp.csr_matrix:
    """``(B, n_items)`` CSR of summed (event-type weighted) interactions per context.

    ``row_weights[b]``, when given, multiplies the weight of each of context ``b``'s
    (cleaned) events, e.g. a recency weight.
    """
    rows, cols, vals = [], [], []
    for b, ctx in enumerate(contexts):
        items, _, types = clean_context(ctx, n_items)
        w = event_weights(types, len(items), use_event_weights)
        if row_weights is not None:
            w = w * row_weights[b]
        rows.append(np.full(len(items), b, dtype=np.int64))
        cols.append(items)
        vals.append(w)
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    v = np.concatenate(vals) if vals else np.zeros(0, np.float64)
    m = sp.csr_matrix((v.astype(np.float32), (r, c)), shape=(len(contexts), n_items), dtype=np.float32)
    m.sum_duplicates()
    return m


def check_bool(name: str, value: object, where: str) -> None:
    check_param(name, value, isinstance(value, bool), "a bool (True or False)", where)


def check_number(
    name: str,
    value: object,
    lo: float,
    hi: float,
    where: str,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    integer: bool = False,
) -> None:
    """Check ``value`` is a number (an int when ``integer``) in the given interval."""
    kind = "an int" if integer else "a number"
    is_num = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.number))
    ok = is_num and not isinstance(value, bool)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = np.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    hi_txt = "inf" if hi == np.inf else f"{hi:g}"
    check_param(name, value, ok, f"{kind} in {left}{lo:g}, {hi_txt}{right}", where)


# ---- incremental updates ------------------------------------------------------------
def extend_vocab(model: object, delta: TrainData) -> tuple[np.ndarray, np.ndarray]:
    """Map ``delta``'s item and user indices into ``model``'s, appending ids it has not seen.

    ``model`` must be fitted (``item_ids_`` / ``user_ids_``). New ids are appended in the
    order of ``delta``'s vocabularies, so the indices the model already uses do not move.
    Returns ``(item_map, user_map)``: ``item_map[j]`` is the model's index of ``delta``
    item ``j`` (same for users).

    >>> item_map, user_map = extend_vocab(model, delta)                      # doctest: +SKIP
    """
    maps = []
    for attr, ids in (("item_ids_", delta.item_ids), ("user_ids_", delta.user_ids)):
        old = np.asarray(getattr(model, attr), dtype=object)
        new = np.asarray([str(x) for x in ids], dtype=object)
        pos = {str(x): i for i, x in enumerate(old)}
        out = np.empty(len(new), dtype=np.int64)
        extra: list[str] = []
        for j, x in enumerate(new.tolist()):
            i = pos.get(x)
            if i is None:
                i = len(old) + len(extra)
                pos[x] = i
                extra.append(x)
            out[j] = i
        if extra:
            setattr(model, attr, np.concatenate([old, np.asarray(extra, dtype=object)]))
        maps.append(out)
    return maps[0], maps[1]


def delta_matrix(
    delta: TrainData,
    item_map: np.ndarray,
    user_map: np.ndarray,
    shape: tuple[int, int],
    use_event_weights: bool,
) -> sp.csr_matrix:
    """``delta``'s (event-type weighted) interactions as a float64 CSR in the model's index space."""
    x = delta.interaction_matrix(weights_or_none(use_event_weights)).tocoo()
    m = sp.csr_matrix(
        (x.data.astype(np.float64), (user_map[x.row], item_map[x.col])), shape=shape, dtype=np.float64
    )
    m.sum_duplicates()
    return m


def grow(m: sp.spmatrix, shape: tuple[int, int]) -> sp.csr_matrix:
    """``m`` as CSR with ``shape`` (at least as large), new rows and columns empty."""
    m = sp.csr_matrix(m)
    if m.shape != shape:
        m = m.copy()
        m.resize(shape)
    return m


def grow_rows(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` with zero rows (or zeros) appended up to length ``n``."""
    if len(a) >= n:
        return a
    pad = np.zeros((n - len(a),) + a.shape[1:], dtype=a.dtype)
    return np.concatenate([a, pad])


def check_delta(delta: object, where: str) -> None:
    check_param(
        "delta",
        type(delta).__name__,
        isinstance(delta, TrainData),
        "a TrainData of the new events (ids are matched to the model's vocabulary)",
        where,
    )
