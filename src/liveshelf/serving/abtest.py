"""A/B experiments: arms, traffic shares, deterministic bucketing, files on disk, exposure/outcome logs.

Serving assigns viewers and logs exposures with these pieces, so they live in the serving layer;
``liveshelf ab`` (:mod:`liveshelf.experiment`) creates, stops and reports experiments with the same ones.

An experiment lives in ``<home>/experiments/<name>/``::

    experiment.json     the definition and status (written atomically)
    exposures.jsonl     one line per served response: ts, user, arm, surface, room, recs
    outcomes.jsonl      outcome events (enter, leave, click, cart, purchase) posted while it ran
    report.md, report.png, report.json   written by ``liveshelf ab report``

A user's arm is ``sha256(salt:experiment:user)`` mapped to one of 10 000 buckets and the
buckets are cut by the arms' shares, so every worker and every restart agrees without any
shared state. Outcomes are attributed at analysis time (:mod:`liveshelf.experiment.ab_report`):
a click, cart or purchase counts for an exposure of the same user and the same item (shelf)
or room (feed) shown before it.

>>> exp = Experiment("ranker-v2", arms=[Arm("control", model="default", version="v0001"),
...                                     Arm("treatment", model="default", version="v0002")])
>>> store = ExperimentStore(home)                                     # doctest: +SKIP
>>> store.create(exp); store.start("ranker-v2")                        # doctest: +SKIP
>>> exp.assign("u0000042").name in {"control", "treatment"}
True
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from liveshelf.core.files import atomic_write_text
from liveshelf.errors import ConfigError, NotFoundError, check_param

#: Buckets a user id hashes into; shares are cut at multiples of 1 / BUCKETS.
BUCKETS = 10_000

#: Pipeline settings an arm may override (ServeSettings fields).
ARM_SETTINGS: tuple[str, ...] = (
    "weights",
    "mmr_lambda",
    "host_cap",
    "brand_cap",
    "blocked_items",
    "history_len",
    "profile_half_life_s",
    "neighbours",
    "use_ranker",
)

#: Metrics computed per arm (see :func:`liveshelf.experiment.ab_report.user_table`).
METRICS: tuple[str, ...] = ("ctr", "cart_rate", "conversion", "gmv_per_viewer", "watch_s_per_viewer")

SURFACES: tuple[str, ...] = ("feed", "shelf")

STATUSES: tuple[str, ...] = ("draft", "running", "stopped")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Arm:
    """One variant: a registry model version (``None``: the production one) and/or pipeline settings."""

    name: str
    share: float = 0.5
    model: str | None = None
    version: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def validate(self, where: str = "Arm") -> Arm:
        check_param(
            "name",
            self.name,
            isinstance(self.name, str) and bool(_NAME.match(self.name)),
            "1-64 letters, digits, '_', '.' or '-'",
            where,
        )
        check_param(
            "share",
            self.share,
            isinstance(self.share, (int, float)) and 0 < self.share <= 1,
            "a float in (0, 1]",
            f"{where} {self.name!r}",
        )
        unknown = sorted(set(self.settings) - set(ARM_SETTINGS))
        check_param(
            "settings",
            self.settings,
            not unknown,
            f"a dict with keys among {list(ARM_SETTINGS)} (unknown: {unknown})",
            f"{where} {self.name!r}",
        )
        check_param(
            "version",
            self.version,
            self.version is None or self.model is not None,
            "given together with 'model' (the registry name)",
            f"{where} {self.name!r}",
        )
        return self

    def describe(self) -> str:
        model = "production" if self.model is None else f"{self.model}@{self.version or 'production'}"
        extra = "" if not self.settings else " " + json.dumps(self.settings, sort_keys=True)
        return model + extra

    @classmethod
    def parse(cls, text: str, share: float = 0.5) -> Arm:
        """``"control=default@v0001"``, ``"b=default"`` (production of a name), ``"c=production"``.

        >>> Arm.parse("treatment=default@v0002").version
        'v0002'
        """
        name, sep, spec = text.partition("=")
        if not sep or not name:
            raise ConfigError(
                f"The 'arm' option must look like NAME=MODEL@VERSION, NAME=MODEL or NAME=production. "
                f"Got {text!r} instead."
            )
        spec = spec.strip()
        if spec in ("", "production"):
            return cls(name.strip(), share).validate()
        model, _, version = spec.partition("@")
        return cls(name.strip(), share, model=model or None, version=version or None).validate()


@dataclass
class Guardrail:
    """A metric that must not get worse than ``max_drop`` (relative) in any treatment arm."""

    metric: str
    max_drop: float = 0.05

    def validate(self) -> Guardrail:
        check_param("metric", self.metric, self.metric in METRICS, f"one of {list(METRICS)}", "Guardrail")
        check_param(
            "max_drop", self.max_drop, 0 <= self.max_drop < 1, "a relative drop in [0, 1)", "Guardrail"
        )
        return self


@dataclass
class Experiment:
    """An experiment definition. The first arm is the control."""

    name: str
    arms: list[Arm]
    salt: str = ""
    surfaces: list[str] = field(default_factory=lambda: list(SURFACES))
    primary: str = "ctr"
    guardrails: list[Guardrail] = field(default_factory=list)
    alpha: float = 0.05
    tau: float | None = None  # mixture sd of the mSPRT; None: 10 % of the control's value
    status: str = "draft"
    created_at: str = field(default_factory=_now)
    started_at: str | None = None
    stopped_at: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        self.arms = [a if isinstance(a, Arm) else Arm(**a) for a in self.arms]
        self.guardrails = [g if isinstance(g, Guardrail) else Guardrail(**g) for g in self.guardrails]
        if not self.salt:
            self.salt = hashlib.sha256(f"{self.name}:{self.created_at}".encode()).hexdigest()[:16]
        self._cuts: np.ndarray | None = None

    def validate(self) -> Experiment:
        w = "Experiment"
        check_param(
            "name",
            self.name,
            isinstance(self.name, str) and bool(_NAME.match(self.name)),
            "1-64 letters, digits, '_', '.' or '-' (it names a folder)",
            w,
        )
        check_param(
            "arms", [a.name for a in self.arms], len(self.arms) >= 2, "at least two arms (control first)", w
        )
        for a in self.arms:
            a.validate(f"experiment {self.name!r} arm")
        names = [a.name for a in self.arms]
        check_param("arms", names, len(set(names)) == len(names), "arms with distinct names", w)
        total = sum(a.share for a in self.arms)
        check_param(
            "shares",
            [a.share for a in self.arms],
            abs(total - 1.0) < 1e-6 or total < 1.0,
            "shares that sum to at most 1 (the rest of the traffic is not in the experiment)",
            w,
        )
        check_param(
            "surfaces",
            self.surfaces,
            bool(self.surfaces) and set(self.surfaces) <= set(SURFACES),
            f"a non-empty subset of {list(SURFACES)}",
            w,
        )
        check_param("primary", self.primary, self.primary in METRICS, f"one of {list(METRICS)}", w)
        check_param("alpha", self.alpha, 0 < self.alpha < 1, "a float in (0, 1)", w)
        check_param("tau", self.tau, self.tau is None or self.tau > 0, "None or a float > 0", w)
        check_param("status", self.status, self.status in STATUSES, f"one of {list(STATUSES)}", w)
        for g in self.guardrails:
            g.validate()
        return self

    # ---- assignment ---------------------------------------------------------------------------
    def bucket(self, user: str) -> int:
        """The user's bucket in [0, BUCKETS): sha256 of ``salt:name:user`` (stable everywhere)."""
        digest = hashlib.sha256(f"{self.salt}:{self.name}:{user}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % BUCKETS

    def cuts(self) -> np.ndarray:
        if self._cuts is None:
            self._cuts = np.rint(np.cumsum([a.share for a in self.arms]) * BUCKETS).astype(np.int64)
        return self._cuts

    def assign(self, user: str) -> Arm | None:
        """The user's arm, or None when the user falls in the traffic outside the experiment."""
        j = int(np.searchsorted(self.cuts(), self.bucket(user), side="right"))
        return self.arms[j] if j < len(self.arms) else None

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise NotFoundError(
            f"Experiment {self.name!r} has no arm {name!r}; its arms are {[a.name for a in self.arms]}."
        )

    @property
    def shares(self) -> list[float]:
        return [a.share for a in self.arms]

    # ---- files --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("_cuts", None)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Experiment:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and not k.startswith("_")}
        return cls(**known)


# ------------------------------------------------------------------------------------ logs
class EventLog:
    """Append-only JSON-lines file with a buffer flushed by a background thread.

    ``append`` only takes a lock and appends to a list, so the request path never waits on
    the disk; the thread writes every ``flush_s`` seconds (or when ``max_buffer`` rows wait)
    with one ``write`` of the whole batch on a file opened in append mode, so lines from
    several workers interleave whole.
    """

    def __init__(self, path: Path, flush_s: float = 0.5, max_buffer: int = 5000) -> None:
        self.path = Path(path)
        self.flush_s = flush_s
        self.max_buffer = max_buffer
        self._buf: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._io = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.written = 0
        self._thread = threading.Thread(
            target=self._run, name=f"eventlog-{self.path.parent.name}", daemon=True
        )
        self._thread.start()

    def append(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._buf.append(row)
            full = len(self._buf) >= self.max_buffer
        if full:
            self._wake.set()

    def extend(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        with self._lock:
            self._buf.extend(rows)
            full = len(self._buf) >= self.max_buffer
        if full:
            self._wake.set()

    def flush(self) -> int:
        """Write what is buffered now; returns the rows written."""
        with self._io:
            with self._lock:
                rows, self._buf = self._buf, []
            if not rows:
                return 0
            self._write(rows)
            self.written += len(rows)
            return len(rows)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        """Write one batch (a subclass writes elsewhere, e.g. Parquet files)."""
        text = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_s)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self.flush()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; a torn last line (a writer killed mid-write) is skipped."""
    if not Path(path).is_file():
        return []
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


# ------------------------------------------------------------------------------------ the store
class ExperimentStore:
    """Experiments as folders under ``<home>/experiments``.

    >>> store = ExperimentStore(home)                                  # doctest: +SKIP
    >>> [e["name"] for e in store.list()]                             # doctest: +SKIP
    ['ranker-v2']
    """

    FILE = "experiment.json"

    def __init__(self, home: Path | str) -> None:
        self.home = Path(home).expanduser()
        self.root = self.home / "experiments"

    def folder(self, name: str) -> Path:
        from liveshelf.names import safe_name

        return self.root / safe_name(name, "name")

    def exists(self, name: str) -> bool:
        return (self.folder(name) / self.FILE).is_file()

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / self.FILE).is_file())

    def get(self, name: str) -> Experiment:
        path = self.folder(name) / self.FILE
        if not path.is_file():
            have = self.names()
            raise NotFoundError(
                f"No experiment {name!r} (experiments: {have or 'none'}). "
                "Create it with 'liveshelf ab create'."
            )
        return Experiment.from_dict(json.loads(path.read_text()))

    def save(self, exp: Experiment) -> Path:
        """Write ``experiment.json`` atomically (temporary file + rename)."""
        exp.validate()
        path = self.folder(exp.name) / self.FILE
        atomic_write_text(path, json.dumps(exp.to_dict(), indent=1, sort_keys=True, ensure_ascii=False))
        return path

    def create(self, exp: Experiment, *, start: bool = False) -> Experiment:
        exp.validate()
        if self.exists(exp.name):
            raise ConfigError(
                f"The 'name' parameter of ab create must be a new experiment name. Got {exp.name!r}, "
                "which exists already; choose another name or stop and remove the old one."
            )
        if start:
            exp.status, exp.started_at = "running", _now()
        self.save(exp)
        return exp

    def start(self, name: str) -> Experiment:
        exp = self.get(name)
        if exp.status == "stopped":
            raise ConfigError(
                f"Experiment {name!r} was stopped on {exp.stopped_at}; a stopped experiment does not "
                "restart (its users would mix two periods). Create a new one."
            )
        if exp.status != "running":
            exp.status, exp.started_at = "running", _now()
            self.save(exp)
        return exp

    def stop(self, name: str) -> Experiment:
        exp = self.get(name)
        if exp.status != "stopped":
            exp.status, exp.stopped_at = "stopped", _now()
            self.save(exp)
        return exp

    def running(self) -> list[Experiment]:
        return [e for e in (self.get(n) for n in self.names()) if e.status == "running"]

    def signature(self) -> tuple[tuple[str, int], ...]:
        """(name, mtime_ns) of every experiment file: changes when one is created, started or stopped."""
        out = []
        for n in self.names():
            try:
                out.append((n, (self.folder(n) / self.FILE).stat().st_mtime_ns))
            except FileNotFoundError:
                continue
        return tuple(out)

    def exposures(self, name: str) -> list[dict[str, Any]]:
        return read_jsonl(self.folder(name) / "exposures.jsonl")

    def outcomes(self, name: str) -> list[dict[str, Any]]:
        return read_jsonl(self.folder(name) / "outcomes.jsonl")

    def list(self) -> list[dict[str, Any]]:
        """One summary per experiment (for the dashboard and ``liveshelf ab status``)."""
        out = []
        for n in self.names():
            exp = self.get(n)
            folder = self.folder(n)
            reports = {
                k: str(folder / f)
                for k, f in (("markdown", "report.md"), ("png", "report.png"), ("json", "report.json"))
                if (folder / f).is_file()
            }
            out.append(
                {
                    "name": exp.name,
                    "status": exp.status,
                    "arms": [a.name for a in exp.arms],
                    "arm_specs": {a.name: a.describe() for a in exp.arms},
                    "shares": exp.shares,
                    "surfaces": list(exp.surfaces),
                    "primary": exp.primary,
                    "created_at": exp.created_at,
                    "started_at": exp.started_at,
                    "stopped_at": exp.stopped_at,
                    "reports": reports,
                    "folder": str(folder),
                }
            )
        return out


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
