"""Connecting to (or starting) the Ray cluster the distributed jobs run on.

``ensure_ray`` is the one place that calls ``ray.init``: it joins a running cluster when
``address`` is given (``"auto"`` or ``"ray://head:10001"``), otherwise it starts a local
one with ``num_cpus`` CPUs, no dashboard and quiet logs. A cluster started earlier in the
same process (by a test fixture, a notebook, ``ray start``) is reused as it is.

>>> from liveshelf.distributed.cluster import ensure_ray   # doctest: +SKIP
>>> ensure_ray(num_cpus=2)                                  # doctest: +SKIP
{'CPU': 2.0, ...}
"""

from __future__ import annotations

import os
from typing import Any

from liveshelf.errors import ConfigError, check_param


def import_ray() -> Any:
    """``ray``, or a ConfigError that says which extra to install."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is an optional extra
        raise ConfigError(
            "The distributed jobs need Ray, which is not installed. Install the 'scale' extra "
            "(pip install 'liveshelf[scale]', i.e. ray[data,train])."
        ) from exc
    return ray


def ensure_ray(num_cpus: int | None = None, address: str | None = None) -> dict[str, float]:
    """Join or start a Ray cluster; return its resources (``{"CPU": 2.0, ...}``).

    ``num_cpus`` only applies when a local cluster is started (None: every core).
    """
    check_param(
        "num_cpus",
        num_cpus,
        num_cpus is None or (isinstance(num_cpus, int) and num_cpus >= 1),
        "None or an int >= 1",
        "ensure_ray",
    )
    ray = import_ray()
    if not ray.is_initialized():
        # keep Ray's behaviour for CPU-only workers, without its FutureWarning about changing it
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": True,
            "logging_level": "WARNING",
        }
        if address is not None:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, **kwargs)
    return dict(ray.cluster_resources())


def cluster_cpus() -> int:
    """CPUs of the running cluster (0 when Ray is not started)."""
    ray = import_ray()
    return int(ray.cluster_resources().get("CPU", 0)) if ray.is_initialized() else 0


__all__ = ["cluster_cpus", "ensure_ray", "import_ray"]
