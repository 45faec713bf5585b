"""A/B experiments: the definitions, assignment and files live in :mod:`liveshelf.serving.abtest`.

Serving assigns viewers and logs exposures, so the pieces it needs sit in the serving layer; this
module keeps the old import path (``from liveshelf.experiment.abtest import Experiment``) working.
Analysis is :mod:`liveshelf.experiment.ab_report`.
"""

from __future__ import annotations

from liveshelf.serving.abtest import (
    ARM_SETTINGS,
    BUCKETS,
    METRICS,
    SURFACES,
    Arm,
    EventLog,
    Experiment,
    ExperimentStore,
    Guardrail,
    read_jsonl,
)

__all__ = [
    "ARM_SETTINGS",
    "BUCKETS",
    "METRICS",
    "SURFACES",
    "Arm",
    "EventLog",
    "Experiment",
    "ExperimentStore",
    "Guardrail",
    "read_jsonl",
]
