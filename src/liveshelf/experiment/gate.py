"""The promotion gate: may a candidate model replace the production one?

A candidate passes when every check passes:

``artifact``
    it was saved and loaded back from its artifact folder (what a server would load);
``finite``
    every score it gives on a sample of contexts is a finite number;
``<metric>`` (the primary metric, ``ndcg@10`` by default)
    it is not worse than production by more than ``margin`` (absolute, or a fraction of
    production's value with ``relative=True``), on the same evaluation cases (paired);
``coverage@10``
    its top-10 lists cover at least ``min_coverage_ratio`` × production's coverage;
``latency``
    its p95 scoring time per context is at most ``latency_factor`` × production's, or
    below ``latency_floor_ms`` (so microsecond noise never refuses a model).

Without a production version only ``artifact``, ``finite`` and a non-zero coverage are
required. When production must be replaced (it was trained on a user who asked to be
forgotten) the metric check is recorded but waived; the sanity checks still apply.

>>> gate = GateConfig(metric="ndcg@10", margin=0.01)
>>> cand = ModelReport(metrics={"ndcg@10": 0.30, "coverage@10": 0.4}, p95_ms=1.0)
>>> prod = ModelReport(metrics={"ndcg@10": 0.305, "coverage@10": 0.5}, p95_ms=1.2)
>>> decide(cand, prod, gate).promote
True
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from liveshelf.errors import check_param

COVERAGE = "coverage@10"


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the gate (see the module docs)."""

    metric: str = "ndcg@10"
    margin: float = 0.0
    relative: bool = False
    min_coverage_ratio: float = 0.5
    latency_factor: float = 3.0
    latency_floor_ms: float = 5.0

    def validate(self) -> GateConfig:
        w = "GateConfig"
        check_param(
            "metric",
            self.metric,
            isinstance(self.metric, str) and "@" in self.metric,
            "a metric name such as 'ndcg@10' or 'recall@10'",
            w,
        )
        check_param(
            "margin",
            self.margin,
            _num(self.margin) and self.margin >= 0,
            "a number >= 0 (the largest allowed drop of the metric)",
            w,
        )
        if self.relative:
            check_param("margin", self.margin, self.margin < 1, "a fraction in [0, 1) with relative=True", w)
        check_param(
            "min_coverage_ratio",
            self.min_coverage_ratio,
            _num(self.min_coverage_ratio) and 0 <= self.min_coverage_ratio <= 1,
            "a number in [0, 1]",
            w,
        )
        check_param(
            "latency_factor",
            self.latency_factor,
            _num(self.latency_factor) and self.latency_factor >= 1,
            "a number >= 1",
            w,
        )
        check_param(
            "latency_floor_ms",
            self.latency_floor_ms,
            _num(self.latency_floor_ms) and self.latency_floor_ms >= 0,
            "a number of ms >= 0",
            w,
        )
        return self

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelReport:
    """What the gate knows of one model on the evaluation window."""

    metrics: dict[str, float | None] = field(default_factory=dict)
    p95_ms: float | None = None
    finite: bool = True
    error: str | None = None


@dataclass
class Decision:
    """The gate's verdict: ``promote``, the refusal ``reasons`` and every check's numbers."""

    promote: bool
    reasons: list[str]
    checks: dict[str, dict[str, Any]]

    @property
    def verdict(self) -> str:
        return "promoted" if self.promote else "refused"

    def as_dict(self) -> dict[str, Any]:
        return {"decision": self.verdict, "reasons": list(self.reasons), "checks": self.checks}


def decide(
    candidate: ModelReport,
    production: ModelReport | None,
    config: GateConfig,
    *,
    waive_metric: str | None = None,
) -> Decision:
    """Run every check of ``config`` on ``candidate`` against ``production`` (None: no production).

    ``waive_metric``, when given, is the reason the primary-metric check does not block.
    """
    config.validate()
    checks: dict[str, dict[str, Any]] = {}
    reasons: list[str] = []

    def check(name: str, passed: bool, why: str, **numbers: Any) -> None:
        checks[name] = {"passed": bool(passed), **numbers}
        if not passed:
            reasons.append(why)

    check(
        "artifact",
        candidate.error is None,
        f"the candidate could not be saved or loaded: {candidate.error}",
        error=candidate.error,
    )
    if candidate.error is not None:
        return Decision(False, reasons, checks)
    check("finite", candidate.finite, "the candidate gives non-finite scores (NaN or inf) on sample contexts")

    prod = production if production is not None and production.error is None else None
    metric = config.metric
    cand_value = candidate.metrics.get(metric)
    if cand_value is None or not math.isfinite(float(cand_value)):
        check(
            metric,
            False,
            f"the candidate has no value for the primary metric {metric!r}",
            candidate=cand_value,
        )
    elif prod is None or prod.metrics.get(metric) is None:
        check(
            metric,
            True,
            "",
            candidate=cand_value,
            production=None,
            note="no production version to compare with",
        )
    else:
        prod_value = float(prod.metrics[metric])  # type: ignore[arg-type]
        limit = prod_value * (1 - config.margin) if config.relative else prod_value - config.margin
        passed = float(cand_value) >= limit - 1e-12
        margin_txt = f"{config.margin:.0%} (relative)" if config.relative else f"{config.margin:g}"
        why = (
            f"{metric} {float(cand_value):.4f} is worse than production's {prod_value:.4f} by more than the "
            f"margin {margin_txt}"
        )
        if not passed and waive_metric:
            checks[metric] = {
                "passed": False,
                "waived": waive_metric,
                "candidate": float(cand_value),
                "production": prod_value,
                "limit": limit,
            }
        else:
            check(metric, passed, why, candidate=float(cand_value), production=prod_value, limit=limit)

    cov = candidate.metrics.get(COVERAGE)
    prod_cov = None if prod is None else prod.metrics.get(COVERAGE)
    if cov is None:
        check(COVERAGE, False, f"the candidate has no {COVERAGE}", candidate=None)
    elif prod_cov is None:
        check(
            COVERAGE,
            float(cov) > 0,
            f"{COVERAGE} of the candidate is 0",
            candidate=float(cov),
            production=None,
        )
    else:
        limit = config.min_coverage_ratio * float(prod_cov)
        check(
            COVERAGE,
            float(cov) >= limit,
            f"{COVERAGE} {float(cov):.4f} is below {config.min_coverage_ratio:g} x production's "
            f"{float(prod_cov):.4f}",
            candidate=float(cov),
            production=float(prod_cov),
            limit=limit,
        )

    p95 = candidate.p95_ms
    prod_p95 = None if prod is None else prod.p95_ms
    if p95 is not None and prod_p95 is not None:
        limit = max(config.latency_factor * prod_p95, config.latency_floor_ms)
        check(
            "latency",
            p95 <= limit,
            f"p95 scoring latency {p95:.2f} ms per context exceeds {config.latency_factor:g} x production's "
            f"{prod_p95:.2f} ms (limit {limit:.2f} ms)",
            candidate_p95_ms=p95,
            production_p95_ms=prod_p95,
            limit_ms=limit,
        )
    else:
        checks["latency"] = {
            "passed": True,
            "candidate_p95_ms": p95,
            "production_p95_ms": prod_p95,
            "note": "nothing to compare with",
        }
    return Decision(not reasons, reasons, checks)


def _num(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


__all__ = ["COVERAGE", "Decision", "GateConfig", "ModelReport", "decide"]
