"""Prometheus metrics of one app (own registry, so several apps in one process do not clash).

Exposed at ``/metrics``: request latency per route template, events ingested by outcome,
the served model version, cache hits and misses.

Several workers: when ``PROMETHEUS_MULTIPROC_DIR`` is set (``liveshelf serve --workers N``
sets it), every worker writes its values there and ``/metrics`` on any worker reports the
sum over all of them (the model-info gauge keeps one series per worker, labelled ``pid``).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Labelled latency children memoised per app (beyond: looked up on each call).
_MAX_CHILDREN = 10_000

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The app's collectors; ``render()`` gives the text exposition."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "liveshelf_request_seconds",
            "Request latency by route template.",
            ("method", "route", "status"),
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter(
            "liveshelf_events_ingested_total",
            "Events posted, by outcome.",
            ("outcome",),
            registry=self.registry,
        )
        self.model = Gauge(
            "liveshelf_model_info",
            "The model version served (1; 0 once replaced).",
            ("role", "name", "version"),
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self.cache = Counter(
            "liveshelf_cache_total",
            "Cache lookups by cache and result.",
            ("cache", "result"),
            registry=self.registry,
        )
        self.rejected = Counter(
            "liveshelf_requests_refused_total",
            "Requests refused by reason.",
            ("reason",),
            registry=self.registry,
        )
        self._model_labels: dict[str, tuple[str, str]] = {}
        # labelled children by label values: ``labels()`` checks and joins its arguments on every call
        self._latency: dict[tuple[str, str, int], Any] = {}
        self._cache: dict[tuple[str, bool], Any] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        child = self._latency.get(key)
        if child is None:
            child = self.latency.labels(method, route, str(status))
            if len(self._latency) < _MAX_CHILDREN:  # methods come from clients: keep the memo bounded
                self._latency[key] = child
        child.observe(seconds)

    def cache_lookup(self, cache: str, hit: bool) -> None:
        child = self._cache.get((cache, hit))
        if child is None:
            child = self._cache[(cache, hit)] = self.cache.labels(cache, "hit" if hit else "miss")
        child.inc()

    def set_model(self, role: str, name: str, version: str) -> None:
        old = self._model_labels.get(role)
        if old == (name, version):
            return
        if old is not None:
            self.model.labels(role, *old).set(0)
        self.model.labels(role, name, version).set(1)
        self._model_labels[role] = (name, version)

    def render(self) -> bytes:
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged)
        return generate_latest(self.registry)
