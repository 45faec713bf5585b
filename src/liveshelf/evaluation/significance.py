"""Significance and the one bootstrap engine: paired model comparisons and A/B intervals.

* :func:`compare` / :func:`paired_bootstrap` / :func:`paired_ttest` -- the difference between two models
  over the same test users;
* :func:`bootstrap_ci` / :func:`bootstrap_diff_ci` -- a mean or a ratio of sums (clicks per exposure) per
  arm and the difference of two arms, users resampled (:mod:`liveshelf.experiment.stats` uses them);
* :func:`resample_sums` -- the engine under all of them: column sums over users drawn with replacement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from liveshelf.errors import check_param


@dataclass(frozen=True)
class PairedTest:
    """``b - a`` over paired per-user values: mean, bootstrap CI and two p-values."""

    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float
    ci_high: float
    confidence: float
    p_ttest: float
    p_bootstrap: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def paired_ttest(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of scipy's paired t-test (1.0 when every difference is equal)."""
    from scipy.stats import ttest_rel

    a, b = _pair(a, b)
    d = b - a
    if len(d) < 2 or np.allclose(d, d[0]):
        return 1.0 if len(d) < 2 or d[0] == 0 else 0.0
    return float(ttest_rel(b, a).pvalue)


#: Cells (draws x users) resampled per chunk, per way of drawing: bounds memory (each keeps its old value,
#: so a seed gives the numbers it gave before).
_CHUNK_CELLS: dict[str, int] = {"indices": 2_000_000, "counts": 4_000_000}


def _check_boot(n_boot: int, confidence: float, where: str) -> None:
    check_param("n_boot", n_boot, isinstance(n_boot, int) and n_boot >= 10, "an int >= 10", where)
    check_param("confidence", confidence, 0 < confidence < 1, "a float in (0, 1)", where)


def resample_sums(
    values: np.ndarray, n_boot: int, rng: np.random.Generator, *, draw: str = "counts"
) -> np.ndarray:
    """``(n_boot, C)`` column sums of ``values`` (``(N, C)`` or ``(N,)``) over ``N`` users drawn with replacement.

    ``draw="counts"``: multinomial weights (how often each user is drawn) times the values, one matrix
    product per chunk instead of gathering ``n_boot * N`` rows; ``draw="indices"``: the drawn users' rows
    gathered and summed. Both are the same resampling; they read the generator differently, so each keeps
    the numbers its seeds gave (A/B intervals: counts; paired model comparisons: indices). Chunked to
    bound memory.
    """
    check_param("draw", draw, draw in _CHUNK_CELLS, f"one of {sorted(_CHUNK_CELLS)}", "resample_sums")
    v = np.asarray(values, np.float64)
    if v.ndim == 1:
        v = v[:, None]
    n = len(v)
    out = np.empty((n_boot, v.shape[1]))
    chunk = max(1, _CHUNK_CELLS[draw] // max(n, 1))
    for s in range(0, n_boot, chunk):
        m = min(chunk, n_boot - s)
        if draw == "counts":
            w = rng.multinomial(n, np.full(n, 1.0 / n), size=m).astype(np.float64)  # (m, N)
            out[s : s + m] = w @ v
        else:
            idx = rng.integers(0, n, size=(m, n))  # (m, N) drawn users
            for c in range(v.shape[1]):
                out[s : s + m, c] = v[:, c][idx].sum(1)
    return out


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Percentile CI of mean(b - a) from resampling users with replacement, and a p-value.

    The p-value is two-sided: twice the smaller share of bootstrap means on either side of
    zero (capped at 1). Seeded (:func:`resample_sums`, ``draw="indices"``).
    """
    _check_boot(n_boot, confidence, "paired_bootstrap")
    a, b = _pair(a, b)
    d = b - a
    n = len(d)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    means = resample_sums(d, n_boot, np.random.default_rng(seed), draw="indices")[:, 0] / n
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    p = min(1.0, 2 * min((means <= 0).mean(), (means >= 0).mean()))
    return float(lo), float(hi), float(p)


def compare(
    a: np.ndarray, b: np.ndarray, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> PairedTest:
    """Paired t-test plus bootstrap CI of ``mean(b) - mean(a)``."""
    a, b = _pair(a, b)
    lo, hi, pb = paired_bootstrap(a, b, n_boot=n_boot, confidence=confidence, seed=seed)
    return PairedTest(
        n=len(a),
        mean_a=float(a.mean()) if len(a) else float("nan"),
        mean_b=float(b.mean()) if len(b) else float("nan"),
        mean_diff=float((b - a).mean()) if len(a) else float("nan"),
        ci_low=lo,
        ci_high=hi,
        confidence=confidence,
        p_ttest=paired_ttest(a, b),
        p_bootstrap=pb,
    )


# ------------------------------------------------------------------------------------ A/B intervals
@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap interval."""

    estimate: float
    low: float
    high: float
    confidence: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def bootstrap_ci(
    values: np.ndarray,
    denominators: np.ndarray | None = None,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile CI of ``mean(values)``, or of the ratio ``sum(values) / sum(denominators)``.

    Users are the unit of resampling, so a ratio metric such as clicks per exposure gets an
    interval that respects the correlation of one user's exposures.

    >>> bootstrap_ci(np.array([0.0, 1.0] * 50), seed=1).estimate
    0.5
    """
    _check_boot(n_boot, confidence, "bootstrap_ci")
    v = np.asarray(values, np.float64)
    d = np.ones_like(v) if denominators is None else np.asarray(denominators, np.float64)
    if len(v) == 0 or d.sum() <= 0:
        return Interval(float("nan"), float("nan"), float("nan"), confidence)
    est = float(v.sum() / d.sum())
    sums = resample_sums(np.column_stack([v, d]), n_boot, np.random.default_rng(seed))
    with np.errstate(divide="ignore", invalid="ignore"):
        stats = sums[:, 0] / sums[:, 1]
    stats = stats[np.isfinite(stats)]
    q = (1 - confidence) / 2
    return Interval(est, float(np.quantile(stats, q)), float(np.quantile(stats, 1 - q)), confidence)


def bootstrap_diff_ci(
    a: np.ndarray,
    b: np.ndarray,
    a_den: np.ndarray | None = None,
    b_den: np.ndarray | None = None,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile CI of ``metric(b) - metric(a)`` (a mean or a ratio of sums), arms resampled independently."""
    _check_boot(n_boot, confidence, "bootstrap_diff_ci")
    rng = np.random.default_rng(seed)
    out = []
    for v, d in ((a, a_den), (b, b_den)):
        v = np.asarray(v, np.float64)
        d = np.ones_like(v) if d is None else np.asarray(d, np.float64)
        if len(v) == 0 or d.sum() <= 0:
            return Interval(float("nan"), float("nan"), float("nan"), confidence)
        sums = resample_sums(np.column_stack([v, d]), n_boot, rng)
        with np.errstate(divide="ignore", invalid="ignore"):
            out.append((v.sum() / d.sum(), sums[:, 0] / sums[:, 1]))
    (ea, sa), (eb, sb) = out
    diff = sb - sa
    diff = diff[np.isfinite(diff)]
    q = (1 - confidence) / 2
    return Interval(float(eb - ea), float(np.quantile(diff, q)), float(np.quantile(diff, 1 - q)), confidence)


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"paired values must be two 1-D arrays of the same length; got {a.shape} and {b.shape}."
        )
    keep = ~(np.isnan(a) | np.isnan(b))
    return a[keep], b[keep]


__all__ = [
    "Interval",
    "PairedTest",
    "bootstrap_ci",
    "bootstrap_diff_ci",
    "compare",
    "paired_bootstrap",
    "paired_ttest",
    "resample_sums",
]
