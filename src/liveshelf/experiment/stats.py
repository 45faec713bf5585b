"""A/B statistics as free functions over arrays: z-test, bootstrap CIs, mSPRT, SRM.

The bootstrap intervals are :mod:`liveshelf.evaluation.significance`'s (one engine for model
comparisons and A/B tests), re-exported here.

Everything here is numpy / scipy over per-user values or counts; nothing knows about
serving or files. The always-valid test is the mixture sequential probability ratio test
(mSPRT) of Johari, Koomen, Pekelis & Walsh, "Peeking at A/B Tests" (KDD 2017) with a
normal mixture over the effect: its p-value may be read after every batch of users and
the chance that it ever drops below ``alpha`` under the null stays <= ``alpha``.

>>> z = two_proportion_ztest(120, 1000, 150, 1000)
>>> round(z.p_value, 3)
0.05
>>> p = msprt_pvalue(0.12, 0.12 * 0.88, 1000, 0.15, 0.15 * 0.85, 1000, tau=0.05)
>>> 0 < p <= 1
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from liveshelf.errors import check_param
from liveshelf.evaluation.significance import Interval, bootstrap_ci, bootstrap_diff_ci  # re-exported


# ------------------------------------------------------------------------------------ z-test
@dataclass(frozen=True)
class ZTest:
    """Two-sided two-proportion z-test of ``b - a``."""

    rate_a: float
    rate_b: float
    diff: float
    z: float
    p_value: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def two_proportion_ztest(x_a: float, n_a: float, x_b: float, n_b: float) -> ZTest:
    """Pooled two-proportion z-test (scipy's normal tail); p = 1 when either arm is empty or the pool is constant.

    >>> two_proportion_ztest(10, 100, 10, 100).p_value
    1.0
    """
    from scipy.stats import norm

    ra = x_a / n_a if n_a > 0 else float("nan")
    rb = x_b / n_b if n_b > 0 else float("nan")
    if n_a <= 0 or n_b <= 0:
        return ZTest(ra, rb, float("nan"), 0.0, 1.0)
    pool = (x_a + x_b) / (n_a + n_b)
    se = np.sqrt(pool * (1 - pool) * (1 / n_a + 1 / n_b))
    if se <= 0:
        return ZTest(ra, rb, rb - ra, 0.0, 1.0)
    z = (rb - ra) / se
    return ZTest(ra, rb, rb - ra, float(z), float(2 * norm.sf(abs(z))))


def ztest_pvalues(x_a: np.ndarray, n_a: np.ndarray, x_b: np.ndarray, n_b: np.ndarray) -> np.ndarray:
    """Vectorised :func:`two_proportion_ztest` p-values over arrays of counts (any equal shapes)."""
    from scipy.stats import norm

    x_a, n_a, x_b, n_b = (np.asarray(v, np.float64) for v in (x_a, n_a, x_b, n_b))
    with np.errstate(divide="ignore", invalid="ignore"):
        pool = (x_a + x_b) / (n_a + n_b)
        se = np.sqrt(pool * (1 - pool) * (1 / n_a + 1 / n_b))
        z = (x_b / n_b - x_a / n_a) / se
    p = 2 * norm.sf(np.abs(z))
    return np.where(np.isfinite(z), p, 1.0)


# ------------------------------------------------------------------------------------ mSPRT
def msprt_lr(
    mean_a: np.ndarray,
    var_a: np.ndarray,
    n_a: np.ndarray,
    mean_b: np.ndarray,
    var_b: np.ndarray,
    n_b: np.ndarray,
    tau: float,
) -> np.ndarray:
    """The normal-mixture likelihood ratio Lambda of ``theta = mean_b - mean_a`` against ``theta = 0``.

    With ``s2 = var_a / n_a + var_b / n_b`` (the variance of the difference of means) and the
    mixing distribution ``theta ~ N(0, tau^2)``::

        Lambda = sqrt(s2 / (s2 + tau^2)) * exp(d^2 tau^2 / (2 s2 (s2 + tau^2)))

    which for equal arms of ``n`` users with variance ``sigma^2`` is Johari et al.'s
    ``sqrt(V / (V + n tau^2)) exp(n^2 tau^2 d^2 / (2 V (V + n tau^2)))`` with ``V = 2 sigma^2``.
    Computed in logs; vectorised over any equal shapes. Arms without users give Lambda = 1.
    """
    mean_a, var_a, n_a, mean_b, var_b, n_b = (
        np.asarray(v, np.float64) for v in (mean_a, var_a, n_a, mean_b, var_b, n_b)
    )
    t2 = float(tau) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        s2 = var_a / n_a + var_b / n_b
        d = mean_b - mean_a
        log_lr = 0.5 * np.log(s2 / (s2 + t2)) + d * d * t2 / (2 * s2 * (s2 + t2))
    return np.exp(np.where(np.isfinite(log_lr) & (s2 > 0), log_lr, 0.0))


def msprt_pvalue(
    mean_a: float,
    var_a: float,
    n_a: float,
    mean_b: float,
    var_b: float,
    n_b: float,
    tau: float,
    previous: float = 1.0,
) -> float:
    """The always-valid p-value after one more look: ``min(previous, 1 / Lambda)``."""
    check_param("tau", tau, tau > 0, "a float > 0 (the prior sd of the effect)", "msprt_pvalue")
    lr = float(msprt_lr(mean_a, var_a, n_a, mean_b, var_b, n_b, tau))
    return float(min(previous, 1.0 / lr if lr > 0 else 1.0))


def msprt_path(lr: np.ndarray, axis: int = -1) -> np.ndarray:
    """Always-valid p-values along ``axis`` from a sequence of likelihood ratios (running minimum of 1/Lambda)."""
    with np.errstate(divide="ignore"):
        p = np.minimum(1.0, 1.0 / np.asarray(lr, np.float64))
    return np.minimum.accumulate(p, axis=axis)


def default_tau(baseline: float, relative_effect: float = 0.1) -> float:
    """A mixing sd matched to the effect worth detecting: ``relative_effect`` of the baseline mean (> 0)."""
    check_param("baseline", baseline, baseline > 0, "a mean > 0", "default_tau")
    check_param("relative_effect", relative_effect, relative_effect > 0, "a float > 0", "default_tau")
    return float(baseline * relative_effect)


# ------------------------------------------------------------------------------------ SRM
@dataclass(frozen=True)
class SRM:
    """Sample-ratio-mismatch check: chi-square of observed users per arm against the planned shares."""

    observed: tuple[int, ...]
    expected: tuple[float, ...]
    chi2: float
    p_value: float
    threshold: float
    mismatch: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def srm_check(counts: np.ndarray, shares: np.ndarray, threshold: float = 0.001) -> SRM:
    """Chi-square goodness of fit (scipy) of ``counts`` to ``shares``; ``mismatch`` when p < ``threshold``.

    The usual threshold is strict (0.001): an SRM means the assignment or the logging is broken
    and no metric of the test can be trusted.

    >>> srm_check([5000, 5000], [0.5, 0.5]).mismatch
    False
    >>> srm_check([5300, 4700], [0.5, 0.5]).mismatch
    True
    """
    from scipy.stats import chisquare

    c = np.asarray(counts, np.float64)
    s = np.asarray(shares, np.float64)
    check_param(
        "shares", shares, len(s) == len(c) and bool(np.all(s > 0)), "one share > 0 per arm", "srm_check"
    )
    check_param("threshold", threshold, 0 < threshold < 1, "a float in (0, 1)", "srm_check")
    total = c.sum()
    if total <= 0:
        return SRM(tuple(int(x) for x in c), tuple(0.0 for _ in s), 0.0, 1.0, threshold, False)
    expected = total * s / s.sum()
    res = chisquare(c, expected)
    p = float(res.pvalue)
    return SRM(
        tuple(int(x) for x in c),
        tuple(float(x) for x in expected),
        float(res.statistic),
        p,
        threshold,
        p < threshold,
    )


__all__ = [
    "SRM",
    "Interval",
    "PeekingResult",
    "ZTest",
    "bootstrap_ci",
    "bootstrap_diff_ci",
    "default_tau",
    "msprt_lr",
    "msprt_path",
    "msprt_pvalue",
    "simulate_peeking",
    "srm_check",
    "two_proportion_ztest",
    "ztest_pvalues",
]


# ------------------------------------------------------------------------------------ operating characteristics
@dataclass(frozen=True)
class PeekingResult:
    """How often repeated looks reject, over ``reps`` simulated experiments."""

    reps: int
    looks: int
    users_per_look: int
    sequential_reject: float  # share of runs in which the mSPRT p-value ever fell below alpha
    naive_reject: float  # share of runs in which any look's z-test p fell below alpha
    final_reject: float  # share of runs whose z-test at the last look alone rejects (no peeking)
    median_users_to_detect: float  # median users (both arms) at the first mSPRT rejection; nan if none

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def simulate_peeking(
    p_a: float,
    p_b: float,
    *,
    reps: int = 200,
    looks: int = 50,
    users_per_look: int = 400,
    tau: float | None = None,
    alpha: float = 0.05,
    burn_in: int = 100,
    seed: int = 0,
) -> PeekingResult:
    """Run ``reps`` two-arm Bernoulli experiments at once and test after every batch of users.

    Each look adds ``users_per_look`` users, split evenly over the arms. ``p_a == p_b`` is an
    A/A test (every rejection is a false positive); otherwise the rejection share is the power.
    The mSPRT uses each arm's plug-in variance ``p(1 - p)``; looks before ``burn_in`` users per
    arm are skipped (a variance from a handful of users is not an estimate).

    >>> r = simulate_peeking(0.1, 0.1, reps=50, looks=10, seed=3)
    >>> r.naive_reject >= r.final_reject
    True
    """
    w = "simulate_peeking"
    check_param("reps", reps, isinstance(reps, int) and reps >= 1, "an int >= 1", w)
    check_param("looks", looks, isinstance(looks, int) and looks >= 1, "an int >= 1", w)
    check_param(
        "users_per_look",
        users_per_look,
        isinstance(users_per_look, int) and users_per_look >= 2,
        "an int >= 2",
        w,
    )
    for name, p in (("p_a", p_a), ("p_b", p_b)):
        check_param(name, p, 0 < p < 1, "a probability in (0, 1)", w)
    check_param("alpha", alpha, 0 < alpha < 1, "a float in (0, 1)", w)
    tau = default_tau(p_a) if tau is None else tau
    rng = np.random.default_rng(seed)
    half = users_per_look // 2
    # successes per look and arm, summed over the look's users: a binomial per (rep, look)
    x_a = rng.binomial(half, p_a, size=(reps, looks)).cumsum(1)
    x_b = rng.binomial(half, p_b, size=(reps, looks)).cumsum(1)
    n = np.arange(1, looks + 1) * half  # users per arm at each look
    ma, mb = x_a / n, x_b / n
    lr = msprt_lr(ma, ma * (1 - ma), n, mb, mb * (1 - mb), n, tau)
    lr = np.where(n >= burn_in, lr, 1.0)
    p_seq = msprt_path(lr, axis=1)
    p_z = ztest_pvalues(x_a, n, x_b, n)
    seq_hit = p_seq <= alpha
    ever = seq_hit.any(1)
    first = np.where(ever, seq_hit.argmax(1), -1)
    users = (first[ever] + 1) * 2 * half
    return PeekingResult(
        reps=reps,
        looks=looks,
        users_per_look=2 * half,
        sequential_reject=float(ever.mean()),
        naive_reject=float((p_z <= alpha).any(1).mean()),
        final_reject=float((p_z[:, -1] <= alpha).mean()),
        median_users_to_detect=float(np.median(users)) if len(users) else float("nan"),
    )
