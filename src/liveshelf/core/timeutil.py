"""Time conversion, once: every timestamp becomes float epoch seconds (UTC) for numeric work.

Accepted inputs: numbers (already seconds), ``datetime`` / ``date``, pandas / numpy timestamps and ISO
strings; naive datetimes are read as UTC. Missing values become NaN, and NaN / inf become ``NaT`` on the
way back.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

TS_DTYPE = "datetime64[us, UTC]"

TimeLike: TypeAlias = float | int | datetime | date | pd.Timestamp | np.datetime64 | str


def to_seconds(t: TimeLike) -> float:
    """Float epoch seconds from a number, datetime, pandas/numpy timestamp or ISO string."""
    if isinstance(t, (float, int, np.floating, np.integer)) and not isinstance(t, bool):
        return float(t)
    ts = pd.Timestamp(t)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.value / 1e9  # .value is nanoseconds whatever the unit


def to_epoch_seconds(values: pd.Series | pd.DatetimeIndex | np.ndarray) -> np.ndarray:
    """Float epoch seconds (NaN for missing) from a datetime-like column (strings parsed as UTC)."""
    s = pd.to_datetime(pd.Series(values), utc=True)
    return ((s - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(
        dtype=np.float64, na_value=np.nan
    )


def to_seconds_array(ts: Any) -> np.ndarray:
    """Float epoch seconds for an array-like of numbers or datetimes (NaN for missing)."""
    arr = np.asarray(ts)
    if arr.dtype.kind in "fiu":
        return arr.astype(np.float64)
    return to_epoch_seconds(pd.Series(list(arr) if arr.dtype == object else arr))


def column_seconds(values: pd.Series) -> np.ndarray:
    """Float epoch seconds of a datetime, numeric or string column (vectorised for datetimes).

    Datetimes go through microseconds / 1e6: the same doubles as ``Timestamp.timestamp()``.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values):
        us = pd.Series(values).dt.as_unit("us")
        out = us.array.asi8 / 1e6
        out[us.isna().to_numpy()] = np.nan
        return out
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    return to_seconds_array(values.to_numpy())


def from_epoch_seconds(seconds: Any) -> pd.Series:
    """A ``datetime64[us, UTC]`` series from epoch seconds; NaN / inf become ``NaT`` (open ends)."""
    arr = np.asarray(seconds, dtype=np.float64)
    ok = np.isfinite(arr)
    micros = np.round(np.where(ok, arr, 0.0) * 1e6).astype("int64")
    out = pd.Series(pd.to_datetime(micros, unit="us", utc=True)).astype(TS_DTYPE)
    out[~ok] = pd.NaT
    return out


__all__ = [
    "TS_DTYPE",
    "TimeLike",
    "column_seconds",
    "from_epoch_seconds",
    "to_epoch_seconds",
    "to_seconds",
    "to_seconds_array",
]
