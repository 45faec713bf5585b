"""Experiment tracking in MLflow: parameters, metrics per epoch or round, lineage and artifacts.

Tracking is optional (``pip install liveshelf[tracking]``) and off unless asked for:

- ``--tracking-uri URI`` on ``liveshelf evaluate``, ``ranker train``, ``finetune``, ``federated
  train`` and ``loop run`` logs that command's runs to ``URI`` (``http://mlflow:5000``, a
  ``sqlite:///...`` file, ...); ``--tracking-uri default`` (or ``LIVESHELF_TRACKING_URI=default``)
  means the local store under the home: ``sqlite:///<home>/mlflow.db``;
- ``LIVESHELF_TRACKING_URI`` turns it on for every command.

Each command opens one run (:func:`track_run`) in the experiment named after it
(``liveshelf-evaluate``, ``liveshelf-federated`` ...), logs its parameters, the metrics (with
``step`` = epoch or round where there are epochs or rounds), the data lineage as tags and the
report, results and plots as artifacts. The run id goes into the registry's lineage
(``mlflow_run_id``) of the models the command registers, so a registered version leads back to
its run. Browse them with ``mlflow ui --backend-store-uri sqlite:///<home>/mlflow.db``.

When tracking is off, :func:`track_run` yields a tracker whose methods do nothing, so commands
call it unconditionally.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from liveshelf.errors import ConfigError

#: Environment variable that turns tracking on for every command.
ENV = "LIVESHELF_TRACKING_URI"
#: The name that means "the sqlite store under the home".
DEFAULT = "default"
#: MLflow caps a parameter value at 6000 characters; longer values are cut (and marked).
MAX_PARAM = 6000


def default_uri(home: Path | None = None) -> str:
    """``sqlite:///<home>/mlflow.db`` (home: ``LIVESHELF_HOME`` or ``~/.liveshelf``)."""
    if home is None:
        from liveshelf.config import Settings

        home = Settings().home
    home = Path(home).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'mlflow.db'}"


def resolve_uri(uri: str | None, home: Path | None = None) -> str | None:
    """The tracking URI to use: ``uri``, else ``$LIVESHELF_TRACKING_URI``, else None (off)."""
    chosen = uri if uri else os.environ.get(ENV) or None
    if chosen is None or chosen.lower() in ("off", "none", ""):
        return None
    return default_uri(home) if chosen == DEFAULT else chosen


def artifact_location(uri: str, experiment: str, home: Path | None = None) -> str | None:
    """Where an experiment's artifacts go when the store is a database this machine writes to:
    ``mlartifacts/<experiment>`` beside a sqlite file, or under the home for other databases
    (MLflow's own default is ``./mlruns`` in whatever folder the command runs from). None for a
    tracking server (``http(s)://``, ``databricks``), which decides itself."""
    scheme = uri.split(":", 1)[0].lower()
    if scheme in ("http", "https", "databricks", "file") or "://" not in uri:
        return None
    if uri.startswith("sqlite:///"):
        base = Path(uri.removeprefix("sqlite:///")).expanduser().resolve().parent
    else:
        if home is None:
            from liveshelf.config import Settings

            home = Settings().home
        base = Path(home).expanduser().resolve()
    return (base / "mlartifacts" / experiment).as_uri()


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError as exc:
        raise ConfigError(
            "Experiment tracking needs MLflow: pip install 'liveshelf[tracking]' (or drop --tracking-uri "
            f"and unset {ENV})."
        ) from exc
    return mlflow


def _scalar(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)) and math.isfinite(float(v)):
        return float(v)
    try:
        import numpy as np

        if isinstance(v, np.generic) and np.isfinite(v):
            return float(v)
    except ImportError:  # pragma: no cover
        pass
    return None


_BAD_KEY = re.compile(r"[^0-9A-Za-z_\-. /]")


def metric_key(name: str) -> str:
    """MLflow accepts letters, digits, ``_ - . space /``; ``ndcg@10`` becomes ``ndcg_at_10``."""
    return _BAD_KEY.sub("_", str(name).replace("@", "_at_"))


class Tracker:
    """One MLflow run (or nothing, when tracking is off). Every method is safe to call either way.

    Tracking never fails the command it watches: when the store or server errs (down, locked), the
    tracker says so once on stderr and stops logging for the rest of the run."""

    def __init__(self, client: Any = None, run_id: str | None = None, uri: str | None = None) -> None:
        self._client = client
        self.run_id = run_id
        self.uri = uri

    @property
    def active(self) -> bool:
        return self._client is not None

    def _failed(self, exc: Exception) -> None:
        import sys

        print(f"experiment tracking stopped for this run ({type(exc).__name__}: {exc})", file=sys.stderr)
        self._client = None

    def _call(self, method: str, *args: Any, **kwargs: Any) -> None:
        """``client.<method>(*args)``, best effort."""
        if not self.active:
            return
        try:
            getattr(self._client, method)(*args, **kwargs)
        except Exception as exc:  # tracking must not fail the command
            self._failed(exc)

    def log_params(self, params: Mapping[str, Any]) -> None:
        if not self.active or not params:
            return
        from mlflow.entities import Param

        items = []
        for k, v in params.items():
            text = "" if v is None else str(v)
            if len(text) > MAX_PARAM:
                text = text[: MAX_PARAM - 3] + "..."
            items.append(Param(str(k)[:250], text))
        self._call("log_batch", self.run_id, params=items)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Numeric, finite values only (others are skipped); names made MLflow-safe (``ndcg@10`` -> ``ndcg_at_10``)."""
        if not self.active:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(metric_key(k), x, now, int(step or 0))
            for k, v in metrics.items()
            if (x := _scalar(v)) is not None
        ]
        if items:
            self._call("log_batch", self.run_id, metrics=items)

    def log_history(
        self, history: Iterable[Mapping[str, Any]], prefix: str = "", step_key: str = "epoch"
    ) -> None:
        """One step per row of a training history (``model.history_``): ``step`` = the row's epoch."""
        for i, row in enumerate(history or []):
            step = int(row.get(step_key, i + 1))
            self.log_metrics({f"{prefix}{k}": v for k, v in row.items() if k != step_key}, step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for k, v in tags.items():
            if v is not None:
                self._call("set_tag", self.run_id, str(k), str(v)[:5000])

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        if Path(path).is_file():
            self._call("log_artifact", self.run_id, str(path), artifact_path)

    def log_artifacts(self, folder: Path | str, exclude: Iterable[str] = ()) -> None:
        """Every file directly in ``folder`` (reports, results, plots), except the names in ``exclude``."""
        if not self.active:
            return
        skip = set(exclude)
        for p in sorted(Path(folder).iterdir()):
            if p.is_file() and p.name not in skip:
                self.log_artifact(p)

    def log_dict(self, obj: Mapping[str, Any], name: str) -> None:
        """``obj`` as a JSON artifact called ``name``."""
        import json

        from liveshelf.core.jsonsafe import jsonable

        if self.active:
            self._call("log_text", self.run_id, json.dumps(jsonable(obj), indent=2, default=str), name)

    def end(self, status: str) -> None:
        """Mark the run ``FINISHED`` or ``FAILED`` (``track_run`` does this)."""
        self._call("set_terminated", self.run_id, status=status)

    def discard(self) -> None:
        """Delete this run (a command that turned out to have nothing to do); later calls do nothing."""
        self._call("delete_run", self.run_id)
        self._client, self.run_id = None, None

    def lineage(self) -> dict[str, Any]:
        """What a registered model's lineage records of this run (empty when tracking is off)."""
        return {"mlflow_run_id": self.run_id, "mlflow_tracking_uri": self.uri} if self.active else {}


@contextlib.contextmanager
def track_run(
    job: str,
    *,
    tracking_uri: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    run_name: str | None = None,
    home: Path | None = None,
) -> Iterator[Tracker]:
    """Open an MLflow run in experiment ``liveshelf-<job>`` (or a no-op tracker when tracking is off).

    The run ends FINISHED, or FAILED when the body raises (the error propagates)."""
    uri = resolve_uri(tracking_uri, home)
    if uri is None:
        yield Tracker()
        return
    _mlflow()
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(tracking_uri=uri)
        name = f"liveshelf-{job}"
        exp = client.get_experiment_by_name(name)
        exp_id = (
            exp.experiment_id
            if exp is not None
            else client.create_experiment(name, artifact_location=artifact_location(uri, name, home))
        )
        run = client.create_run(exp_id, run_name=run_name, tags={"mlflow.source.name": f"liveshelf {job}"})
        tracker = Tracker(client, run.info.run_id, uri)
    except Exception as exc:  # an unreachable server or a locked store must not stop the command
        tracker = Tracker()
        tracker._failed(exc)
    tracker.log_params(dict(params or {}))
    tracker.set_tags({"liveshelf.job": job, "liveshelf.version": _version(), **dict(tags or {})})
    try:
        yield tracker
    except BaseException:
        tracker.end("FAILED")
        raise
    tracker.end("FINISHED")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("liveshelf")
    except Exception:  # pragma: no cover - an uninstalled checkout
        return "unknown"
