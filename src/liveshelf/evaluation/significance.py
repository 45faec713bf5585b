"""Paired significance of the difference between two models over the same test users."""

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


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Percentile CI of mean(b - a) from resampling users with replacement, and a p-value.

    The p-value is two-sided: twice the smaller share of bootstrap means on either side of
    zero (capped at 1). Seeded; resamples in chunks to bound memory.
    """
    check_param("n_boot", n_boot, n_boot >= 10, "an int >= 10", "paired_bootstrap")
    check_param("confidence", confidence, 0 < confidence < 1, "a float in (0, 1)", "paired_bootstrap")
    a, b = _pair(a, b)
    d = b - a
    n = len(d)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // n)
    for s in range(0, n_boot, chunk):
        m = min(chunk, n_boot - s)
        means[s : s + m] = d[rng.integers(0, n, size=(m, n))].mean(1)
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


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"paired values must be two 1-D arrays of the same length; got {a.shape} and {b.shape}."
        )
    keep = ~(np.isnan(a) | np.isnan(b))
    return a[keep], b[keep]


__all__ = ["PairedTest", "compare", "paired_bootstrap", "paired_ttest"]
