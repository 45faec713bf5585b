"""The learned attention matrix ``W`` of a :class:`~liveshelf.profile.builder.ProfileBuilder`
(:meth:`~liveshelf.profile.builder.ProfileBuilder.fit_bilinear`; see :mod:`liveshelf.profile`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from liveshelf.errors import ValidationError, check_param
from liveshelf.profile.builder import event_seconds

if TYPE_CHECKING:
    from liveshelf.profile.builder import ProfileBuilder


def fit_bilinear(
    builder: ProfileBuilder,
    events: pd.DataFrame,
    *,
    negatives: int = 4,
    epochs: int = 100,
    lr: float = 0.5,
    l2: float = 1e-2,
    max_pairs: int = 5_000,
) -> ProfileBuilder:
    """Learn ``W`` of ``builder``'s attention by logistic regression on (history mean, next item) pairs."""
    check_param(
        "negatives",
        negatives,
        isinstance(negatives, int) and negatives >= 1,
        "an int >= 1",
        "fit_bilinear",
    )
    rng = np.random.default_rng(builder.seed)
    ev = events[events["item"].notna()] if "item" in events.columns else events.iloc[0:0]
    ev = ev.assign(_t=event_seconds(ev["ts"]), _w=ev["type"].astype(str).map(builder.weights).fillna(1.0))
    ev = ev[ev["_w"] > 0].sort_values(["user", "_t"], kind="stable")
    hist_vecs, pos_rows = [], []
    for _u, g in ev.groupby("user", sort=False):
        rows = [builder._row.get(str(i)) for i in g["item"].tolist()]
        ts, ws = g["_t"].to_numpy(), g["_w"].to_numpy()
        acc = np.zeros(builder.item_vectors_.shape[1])
        for k, r in enumerate(rows):
            if r is None:
                continue
            if k and acc.any():
                hist_vecs.append(acc / max(float(np.linalg.norm(acc)), 1e-12))
                pos_rows.append(r)
            if k + 1 < len(rows):
                acc = (
                    acc * 2.0 ** (-(ts[k + 1] - ts[k]) / builder.half_life) + ws[k] * builder.item_vectors_[r]
                )
    if not pos_rows:
        raise ValidationError(
            "fit_bilinear found no (history, next item) pairs: the events hold fewer than two "
            "item events per user. Pass more events.",
            field="events",
            value=len(events),
        )
    idx = rng.permutation(len(pos_rows))[:max_pairs]
    u = np.asarray(hist_vecs)[idx]
    pos = builder.item_vectors_[np.asarray(pos_rows)[idx]]
    neg = builder.item_vectors_[rng.integers(0, len(builder.item_vectors_), (len(idx), negatives))]
    uu = np.concatenate([u, np.repeat(u, negatives, 0)])  # (P, D)
    ii = np.concatenate([pos, neg.reshape(-1, neg.shape[-1])])
    y = np.concatenate([np.ones(len(u)), np.zeros(len(u) * negatives)])
    sw = np.where(y == 1, negatives, 1.0)
    sw = sw / sw.sum()
    d = uu.shape[1]
    eye = np.eye(d)
    w_mat, b = eye.copy(), 0.0
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # small matrices: BLAS threads only contend
        for _ in range(epochs):
            z = ((uu @ w_mat) * ii).sum(1) + b
            p = 1.0 / (1.0 + np.exp(-z))
            gz = sw * (p - y)
            grad = uu.T @ (gz[:, None] * ii) + l2 * (w_mat - eye)
            w_mat -= lr * d * grad
            b -= lr * gz.sum()
    builder.bilinear_ = w_mat.astype(np.float32)
    builder.bilinear_bias_ = float(b)
    return builder


__all__ = ["fit_bilinear"]
