"""Calibrated re-ranking (Steck, RecSys 2018): lists whose group mix matches a target mix.

Greedy per user, slot by slot, all users of a batch at once: each slot takes the free
candidate that maximises

    (1 - λ) · Σ_{i in list} rel(u, i)  -  λ · KL(p_u || q̃_u(list))

where ``rel`` is the candidate scores scaled to [0, 1], ``p_u`` the target distribution over
groups (per user, e.g. the head/tail mix of the user's history, or one global mix such as
"30 % long tail"), ``q_u`` the group mix of the list so far and ``q̃ = (1 - α) q + α p``
(``α = 0.01``) keeps the divergence finite. ``λ = 0`` returns the model's order; ``λ = 1``
only matches the mix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liveshelf.errors import ConfigError, check_param
from liveshelf.rerank._base import check_candidates, check_groups, scale_relevance


@dataclass
class Calibrated:
    """Steck-style calibrated re-ranker towards ``target`` ((G,) or (U, G) distributions).

    >>> import numpy as np
    >>> items = np.array([[0, 1, 2, 3]]); scores = np.array([[4., 3., 2., 1.]])
    >>> groups = np.array([0, 0, 1, 1])  # 0 = head, 1 = tail
    >>> Calibrated(lam=0.0, groups=groups, target=np.array([0.5, 0.5])).rerank(items, scores, 2).tolist()
    [[0, 1]]
    >>> Calibrated(lam=0.9, groups=groups, target=np.array([0.5, 0.5])).rerank(items, scores, 2).tolist()
    [[0, 2]]
    """

    lam: float = 0.5
    groups: np.ndarray | None = None
    target: np.ndarray | None = None
    alpha: float = 0.01

    @property
    def name(self) -> str:
        return f"calib:lambda={self.lam:g}"

    def _check(self) -> None:
        check_param(
            "lam",
            self.lam,
            isinstance(self.lam, (int, float)) and 0 <= self.lam <= 1,
            "a number in [0, 1]",
            "Calibrated",
        )
        check_param("alpha", self.alpha, 0 < self.alpha < 1, "a float in (0, 1)", "Calibrated")
        if self.groups is None or self.target is None:
            raise ConfigError(
                "Calibrated needs 'groups' (an int code per item) and 'target' (a "
                "distribution over those groups, one row per user or one for all). Got None. "
                "Pass both, e.g. groups = long-tail mask as int, target = history_target(...)."
            )

    def rerank(self, items: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
        """(U, k) re-ranked item indices from the (U, N) candidates; -1 where a user runs out."""
        self._check()
        items, scores = check_candidates(items, scores, k, "Calibrated.rerank")
        g, n_groups = check_groups(self.groups, items, "Calibrated")
        u, _ = items.shape
        p = np.asarray(self.target, dtype=np.float64)
        p = np.broadcast_to(p, (u, p.shape[-1])) if p.ndim == 1 else p
        if p.ndim != 2 or p.shape[0] != u or p.shape[1] < n_groups:
            raise ConfigError(
                f"The 'target' of Calibrated must have one column per group ({n_groups}) and "
                f"one row per user ({u}) or be 1-D. Got shape {np.shape(self.target)} instead."
            )
        n_groups = p.shape[1]
        if (p < 0).any() or not np.allclose(p.sum(1), 1.0):
            raise ConfigError(
                "The 'target' of Calibrated must hold distributions (rows >= 0 summing to 1). "
                "Normalise it first."
            )
        rel = scale_relevance(scores)
        free = np.isfinite(rel)
        rows = np.arange(u)
        counts = np.zeros((u, n_groups))
        gain_rel = (1.0 - self.lam) * np.where(free, rel, 0.0)
        out = np.full((u, k), -1, dtype=np.int64)
        with np.errstate(divide="ignore", invalid="ignore"):
            for j in range(k):
                # Σ_g p_g log q̃_g for the list as is (n = j + 1 after the pick) and with +1 in one group
                q0 = (1 - self.alpha) * counts / (j + 1) + self.alpha * p
                q1 = (1 - self.alpha) * (counts + 1) / (j + 1) + self.alpha * p
                l0 = np.where(p > 0, p * np.log(q0), 0.0)
                l1 = np.where(p > 0, p * np.log(q1), 0.0)
                cross = l0.sum(1, keepdims=True) - np.take_along_axis(l0, g, 1) + np.take_along_axis(l1, g, 1)
                value = np.where(free, gain_rel + self.lam * cross, -np.inf)  # -KL = cross - Σ p log p
                c = value.argmax(1)
                ok = free[rows, c]
                out[rows[ok], j] = items[rows[ok], c[ok]]
                free[rows[ok], c[ok]] = False
                np.add.at(counts, (rows[ok], g[rows[ok], c[ok]]), 1.0)
        return out


def history_target(
    histories: list[np.ndarray],
    groups: np.ndarray,
    n_groups: int | None = None,
    prior: np.ndarray | None = None,
) -> np.ndarray:
    """(U, G) group mix of each user's history; users without history get ``prior`` (default uniform).

    >>> history_target([np.array([0, 0, 3]), np.array([], dtype=int)], np.array([0, 0, 1, 1])).tolist()
    [[0.6666666666666666, 0.3333333333333333], [0.5, 0.5]]
    """
    g = np.asarray(groups, dtype=np.int64)
    n = int(n_groups if n_groups is not None else g.max() + 1)
    lens = np.array([len(h) for h in histories], dtype=np.int64)
    flat = (
        g[np.concatenate([np.asarray(h, dtype=np.int64) for h in histories])]
        if lens.sum()
        else np.zeros(0, np.int64)
    )
    rows = np.repeat(np.arange(len(histories)), lens)
    counts = np.zeros((len(histories), n))
    np.add.at(counts, (rows, flat), 1.0)
    fallback = np.full(n, 1.0 / n) if prior is None else np.asarray(prior, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(lens[:, None] > 0, counts / np.maximum(lens, 1)[:, None], fallback[None, :])


__all__ = ["Calibrated", "history_target"]
