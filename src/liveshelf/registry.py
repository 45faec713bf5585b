"""Model registry: versioned artifact folders with metrics and lineage, and a hot-swapping holder.

Layout under ``root`` (by default ``<home>/models``)::

    <name>/
      v0001/            one model as saved by ``model.save`` + meta.json
        config.json  vocab.json  weights.safetensors  meta.json
      v0002/ ...
      PRODUCTION        the production version ("v0002"), replaced atomically
      history.json      {"stack": [...production versions...], "events": [...]}
      .lock             serialises register / promote / rollback across processes

A version folder appears in one ``os.rename`` of a fully written temporary folder, so a
reader never sees half a model. ``meta.json`` holds ``metrics`` and ``lineage`` (the data
window and anything the caller passes, plus ``code_version``, ``git_commit`` and
``parent``, the production version when it was registered).

``promote`` pushes a version on the production stack; ``rollback`` pops it and restores
the previous one. :class:`ModelHolder` gives a server the production model: it checks
the pointer file at most every ``poll_s`` seconds (one ``stat``), loads a newly promoted
version completely, then swaps one reference, so a request sees either the old or the
new model, never a mix and never an error.

>>> reg = ModelRegistry(home / "models")                               # doctest: +SKIP
>>> v = reg.register(model, name="feed", metrics={"ndcg@10": 0.31}, lineage={"train_until": "..."})
>>> reg.promote("feed", v); ModelHolder(reg, "feed").get()            # doctest: +SKIP
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from liveshelf.core.files import atomic_write_text
from liveshelf.errors import ConfigError, NotFoundError
from liveshelf.names import is_safe_name

log = logging.getLogger(__name__)

POINTER = "PRODUCTION"
HISTORY = "history.json"
META = "meta.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VERSION = re.compile(r"^v(\d{4,})$")


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version, as read from its ``meta.json``."""

    name: str
    version: str
    path: Path
    model_type: str
    created_at: str
    metrics: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    production: bool = False

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        return out


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (Path, datetime)):
        return str(value) if isinstance(value, Path) else value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"The '{what}' of a registered model must be JSON-serialisable (numbers, strings, "
            f"lists, dicts). {exc}. Convert the value first."
        ) from exc


_GIT_COMMIT: list[str | None] = []


def git_commit() -> str | None:
    """The commit of the source checkout (None outside a git checkout or without git)."""
    if not _GIT_COMMIT:
        from liveshelf.config import REPO_ROOT

        commit = None
        if (REPO_ROOT / ".git").exists():
            try:
                out = subprocess.run(
                    ["git", "rev-parse", "HEAD"],
                    cwd=REPO_ROOT,
                    capture_output=True,
                    text=True,
                    timeout=5,
                    check=False,
                )
                commit = (out.stdout.strip() or None) if out.returncode == 0 else None
            except (OSError, subprocess.SubprocessError):
                commit = None
        _GIT_COMMIT.append(commit)
    return _GIT_COMMIT[0]


class ModelRegistry:
    """Versioned model folders under ``root`` (see the module docstring for the layout)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    # ---- paths and locks ---------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        if not isinstance(name, str) or not _NAME.match(name) or not is_safe_name(name):
            raise ConfigError(
                f"The 'name' parameter of the model registry must be 1-64 letters, digits, '_', "
                f"'.' or '-' (not starting with a symbol, no '..'). Got {name!r} instead."
            )
        return self.root / name

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[Path]:
        folder = self._dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield folder
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def names(self) -> builtins.list[str]:
        """Model names with at least one version."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and _NAME.match(p.name) and self._version_dirs(p)
        )

    @staticmethod
    def _version_dirs(folder: Path) -> builtins.list[str]:
        if not folder.is_dir():
            return []
        found = [
            (int(m.group(1)), p.name)
            for p in folder.iterdir()
            if p.is_dir() and (m := _VERSION.match(p.name)) and (p / META).is_file()
        ]
        return [v for _, v in sorted(found)]

    def versions(self, name: str) -> builtins.list[str]:
        """Registered versions of ``name``, oldest first."""
        return self._version_dirs(self._dir(name))

    def path(self, name: str, version: str) -> Path:
        """The artifact folder of one version (checked)."""
        known = self.versions(name)
        if version not in known:
            if not known:
                names = self.names()
                raise NotFoundError(
                    f"No model named {name!r} in the registry. Known models: "
                    f"{', '.join(names) if names else 'none (register one first)'}."
                )
            raise NotFoundError(
                f"Model {name!r} has no version {version!r}. Known versions: {', '.join(known)}."
            )
        return self._dir(name) / version

    # ---- reading -----------------------------------------------------------------------------
    def _production_version(self, name: str) -> str | None:
        try:
            text = (self._dir(name) / POINTER).read_text().strip()
        except FileNotFoundError:
            return None
        return text or None

    def info(self, name: str, version: str) -> VersionInfo:
        path = self.path(name, version)
        meta = json.loads((path / META).read_text())
        return VersionInfo(
            name=name,
            version=version,
            path=path,
            model_type=str(meta.get("model_type", "")),
            created_at=str(meta.get("created_at", "")),
            metrics=dict(meta.get("metrics", {})),
            lineage=dict(meta.get("lineage", {})),
            production=self._production_version(name) == version,
        )

    def list(self, name: str | None = None) -> builtins.list[VersionInfo]:
        """Every version (of ``name``, or of all models), by name then version."""
        names = [name] if name is not None else self.names()
        if name is not None and not self.versions(name):
            self.path(name, "")  # raises NotFoundError naming the known models
        return [self.info(n, v) for n in names for v in self.versions(n)]

    def production(self, name: str) -> VersionInfo | None:
        """The production version of ``name`` (None before the first promotion)."""
        version = self._production_version(name)
        return None if version is None else self.info(name, version)

    def history(self, name: str) -> dict[str, Any]:
        """``{"stack": [...], "events": [...]}``: production versions (current last) and every change."""
        path = self._dir(name) / HISTORY
        if not path.is_file():
            return {"stack": [], "events": []}
        return json.loads(path.read_text())

    def load(self, name: str, version: str | None = None) -> Any:
        """A model from the registry: ``version``, or the production version."""
        from liveshelf.models import load_model

        if version is None:
            version = self._production_version(name)
            if version is None:
                known = self.versions(name)
                raise NotFoundError(
                    f"Model {name!r} has no production version yet. Promote one of "
                    f"{', '.join(known) if known else 'its versions (none registered)'} with "
                    f"`liveshelf models promote --name {name} VERSION`."
                )
        return load_model(self.path(name, version))

    # ---- writing -----------------------------------------------------------------------------
    def register(
        self,
        model: Any,
        *,
        name: str,
        metrics: dict[str, Any] | None = None,
        lineage: dict[str, Any] | None = None,
    ) -> str:
        """Save ``model`` as the next version of ``name``; returns the version (``"v0001"``, ...)."""
        from liveshelf import __version__

        folder = self._dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        metrics = dict(metrics or {})
        lineage = dict(lineage or {})
        _dumps(metrics, "metrics")
        _dumps(lineage, "lineage")
        tmp = folder / f".tmp-{uuid.uuid4().hex}"
        try:
            model.save(tmp)
            with self._locked(name):
                known = self.versions(name)
                number = int(known[-1][1:]) + 1 if known else 1
                version = f"v{number:04d}"
                lineage.setdefault("parent", self._production_version(name))
                lineage.setdefault("code_version", __version__)
                lineage.setdefault("git_commit", git_commit())
                meta = {
                    "name": name,
                    "version": version,
                    "model_type": str(getattr(model, "name", type(model).__name__)),
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "metrics": metrics,
                    "lineage": lineage,
                }
                (tmp / META).write_text(_dumps(meta, "meta"))
                os.rename(tmp, folder / version)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        log.info("registered %s %s", name, version)
        return version

    def _write_history(self, folder: Path, history: dict[str, Any]) -> None:
        atomic_write_text(folder / HISTORY, json.dumps(history, indent=2))

    def _set_production(self, folder: Path, version: str) -> None:
        atomic_write_text(folder / POINTER, version + "\n")

    def promote(self, name: str, version: str) -> VersionInfo:
        """Make ``version`` the production version of ``name`` (pushed on the rollback stack)."""
        self.path(name, version)
        with self._locked(name) as folder:
            history = self.history(name)
            current = self._production_version(name)
            if current != version:
                history["stack"].append(version)
                history["events"].append(
                    {
                        "action": "promote",
                        "version": version,
                        "from": current,
                        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    }
                )
                self._write_history(folder, history)
                self._set_production(folder, version)
        log.info("promoted %s %s", name, version)
        return self.info(name, version)

    def rollback(self, name: str) -> VersionInfo:
        """Restore the production version before the current one; returns it."""
        with self._locked(name) as folder:
            history = self.history(name)
            stack = history["stack"]
            if len(stack) < 2:
                raise NotFoundError(
                    f"Model {name!r} has no earlier production version to roll back to (production history: "
                    f"{', '.join(stack) if stack else 'empty'}). Promote a version with "
                    f"`liveshelf models promote --name {name} VERSION` instead."
                )
            current = stack.pop()
            version = stack[-1]
            history["events"].append(
                {
                    "action": "rollback",
                    "version": version,
                    "from": current,
                    "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                }
            )
            self._write_history(folder, history)
            self._set_production(folder, version)
        log.info("rolled back %s from %s to %s", name, current, version)
        return self.info(name, version)


class ModelHolder:
    """The production model of ``name`` for a server, swapped atomically on promotion.

    ``get()`` returns the model; ``current()`` returns ``(version, model)`` as one consistent
    pair. At most every ``poll_s`` seconds one caller stats the pointer file; when it
    changed, that caller loads the new version fully (other threads keep being served the
    old one meanwhile) and then replaces the reference. A version that fails to load is
    logged and skipped: the old model keeps serving. The last ``cache_size`` models stay
    in memory, so a rollback swaps back at once.
    """

    def __init__(
        self, registry: ModelRegistry, name: str, *, poll_s: float = 1.0, cache_size: int = 2
    ) -> None:
        if not (isinstance(poll_s, (int, float)) and poll_s >= 0):
            raise ConfigError(
                f"The 'poll_s' parameter of ModelHolder must be a number of seconds >= 0. "
                f"Got {poll_s!r} instead."
            )
        self.registry = registry
        self.name = name
        self.poll_s = float(poll_s)
        self.cache_size = max(1, int(cache_size))
        self._pointer = registry._dir(name) / POINTER
        self._lock = threading.Lock()
        self._current: tuple[str, Any] | None = None
        self._signature: tuple[int, int, int] | None = None
        self._next_check = 0.0
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self.swaps = 0
        self.last_error: str | None = None

    @property
    def version(self) -> str | None:
        cur = self._current
        return None if cur is None else cur[0]

    def current(self) -> tuple[str, Any]:
        """``(version, model)`` of production, refreshed when the pointer changed."""
        if self._current is None:
            with self._lock:
                if self._current is None:
                    self._signature = None  # first load: retry even if the pointer did not change
                    self._refresh()
            if self._current is None:
                if self.registry._production_version(self.name) is None:
                    self.registry.load(self.name)  # raises NotFoundError saying what to promote
                raise NotFoundError(
                    f"The production version of model {self.name!r} could not be loaded "
                    f"({self.last_error}). Roll back or promote another version."
                )
        elif time.monotonic() >= self._next_check and self._lock.acquire(blocking=False):
            try:
                self._refresh()
            finally:
                self._lock.release()
        cur = self._current
        assert cur is not None
        return cur

    def get(self) -> Any:
        """The production model."""
        return self.current()[1]

    def refresh(self) -> bool:
        """Check the pointer now; True when the model was swapped."""
        with self._lock:
            self._next_check = 0.0
            return self._refresh()

    def _refresh(self) -> bool:
        self._next_check = time.monotonic() + self.poll_s
        try:
            st = os.stat(self._pointer)
        except FileNotFoundError:
            return False
        signature = (st.st_ino, st.st_mtime_ns, st.st_size)
        if signature == self._signature:
            return False
        version = self.registry._production_version(self.name)
        self._signature = signature
        if version is None or (self._current is not None and self._current[0] == version):
            return False
        try:
            model = self._cache.get(version)
            if model is None:
                model = self.registry.load(self.name, version)
        except Exception as exc:  # a broken version must not take serving down
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.error("could not load %s %s, keeping %s: %s", self.name, version, self.version, exc)
            return False
        self._cache[version] = model
        self._cache.move_to_end(version)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        self._current = (version, model)  # one reference assignment: the swap
        self.swaps += 1
        self.last_error = None
        log.info("now serving %s %s", self.name, version)
        return True
