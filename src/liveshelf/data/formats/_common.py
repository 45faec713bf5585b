"""Small helpers shared by the format readers: file checks, event frames, time units."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from liveshelf.core.jsonsafe import plain
from liveshelf.errors import DataFormatError
from liveshelf.schema import EVENT_COLUMNS, TS_DTYPE, from_epoch_seconds

#: Epoch seconds at or above this are taken to be milliseconds (1e11 s is the year 5138).
MS_THRESHOLD = 1e11


def require_file(path: Path, fmt: str, what: str) -> Path:
    """Return ``path`` if it is a file, else raise a DataFormatError naming it."""
    if not path.is_file():
        raise DataFormatError(
            f"The {fmt!r} reader expects the file {str(path)!r} ({what}), but it does not exist. "
            f"Check the path; docs/data-formats.md lists the files the {fmt!r} format needs."
        )
    return path


def require_dir(path: Path, fmt: str) -> Path:
    if not path.is_dir():
        raise DataFormatError(
            f"The {fmt!r} reader expects a folder, got {str(path)!r}, which is not one. "
            f"Pass the folder that holds the {fmt!r} files (see docs/data-formats.md)."
        )
    return path


def require_columns(frame: pd.DataFrame, needed: Iterable[str], file: Path, fmt: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataFormatError(
            f"The {fmt!r} file {str(file)!r} must have the columns {list(needed)}; "
            f"{missing} are missing (found {list(frame.columns)}). Check the header line."
        )


def epoch_seconds(values: pd.Series | np.ndarray) -> np.ndarray:
    """Float epoch seconds from numbers in seconds or milliseconds (decided by magnitude)."""
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size and float(np.median(np.abs(finite))) >= MS_THRESHOLD:
        return arr / 1000.0
    return arr


def positions(users: pd.Series) -> np.ndarray:
    """0, 1, 2, ... within each run of equal users, in the frame's current order."""
    return users.groupby(users, sort=False).cumcount().to_numpy()


def as_str(values: pd.Series | np.ndarray | list[object]) -> pd.Series:
    """A pandas ``str`` Series (numbers become their decimal text) with a fresh RangeIndex."""
    s = values.reset_index(drop=True) if isinstance(values, pd.Series) else pd.Series(values)
    if s.dtype == "str":
        return s
    return s.astype("str")


def join_str(left: pd.Series | np.ndarray, right: pd.Series | np.ndarray, sep: str = ":") -> pd.Series:
    """Element-wise ``f"{left}{sep}{right}"`` (vectorised through pyarrow)."""
    a = pa.array(as_str(left)).cast(pa.large_string())
    b = pa.array(as_str(right)).cast(pa.large_string())
    joined = pc.binary_join_element_wise(a, b, pa.scalar(sep, pa.large_string()))
    return pd.Series(pd.array(joined, dtype=pd.StringDtype("pyarrow", na_value=np.nan)))


def sequence_ids(users: pd.Series, pos: np.ndarray) -> pd.Series:
    """Event ids ``"{user}:{position}"`` (the convention for sequence data sets)."""
    return join_str(users, np.asarray(pos))


def make_events(
    *,
    event_id: pd.Series | np.ndarray,
    ts: pd.Series,
    user: pd.Series | np.ndarray,
    type: pd.Series | np.ndarray | str,
    room: pd.Series | np.ndarray | None = None,
    item: pd.Series | np.ndarray | None = None,
    value: pd.Series | np.ndarray | None = None,
    text: pd.Series | np.ndarray | None = None,
) -> pd.DataFrame:
    """An events frame in ``EVENT_COLUMNS`` order with the house dtypes.

    ``ts`` must already be a ``datetime64[us, UTC]`` series. Id and text columns are pandas
    ``str`` columns (missing entries are NaN); a column the source lacks entirely is ``None``
    (object dtype). Missing values are NaN.
    """
    n = len(ts)

    def col(values: pd.Series | np.ndarray | None) -> pd.Series:
        if values is None:
            return pd.Series(np.full(n, None, dtype=object))
        return as_str(values)

    frame = pd.DataFrame(
        {
            "event_id": as_str(event_id),
            "ts": pd.Series(ts).astype(TS_DTYPE).reset_index(drop=True),
            "user": as_str(user),
            "type": pd.Series(np.full(n, type, dtype=object), dtype="str")
            if isinstance(type, str)
            else as_str(type),
            "room": col(room),
            "item": col(item),
            "value": np.full(n, np.nan) if value is None else np.asarray(value, dtype=np.float64),
            "text": col(text),
        }
    )
    return frame[list(EVENT_COLUMNS)]


def sort_events(
    events: pd.DataFrame, split: pd.Series | None = None
) -> tuple[pd.DataFrame, pd.Series | None]:
    """Sort by (user, ts) with a stable tie order; the split follows the rows."""
    user_codes = pd.factorize(events["user"], sort=True)[0]
    ts_us = events["ts"].astype(TS_DTYPE).array.asi8
    order = np.lexsort((ts_us, user_codes))
    events = events.iloc[order].reset_index(drop=True)
    if split is not None:
        split = pd.Series(np.asarray(split, dtype=object)[order], name="split")
    return events, split


def synthetic_ts(pos: np.ndarray) -> pd.Series:
    """Position ``i`` of a sequence becomes epoch second ``i`` (for sets without time)."""
    return from_epoch_seconds(np.asarray(pos, dtype=np.float64))


def age_band(age: pd.Series) -> pd.Series:
    """Integer ages to bands "<18", "18-24", "25-34", "35-44", "45-54", "55+"; None when unknown."""
    num = pd.to_numeric(age, errors="coerce")
    bins = [-np.inf, 17, 24, 34, 44, 54, np.inf]
    labels = ["<18", "18-24", "25-34", "35-44", "45-54", "55+"]
    out = pd.cut(num, bins=bins, labels=labels).astype(object)
    return out.where(num.notna(), None)


def gender_code(values: pd.Series) -> pd.Series:
    """ "M"/"F"/"male"/"female" (any case) to the schema's "m"/"f"; anything else to None."""
    low = values.astype(str).str.strip().str.lower()
    mapped = low.map({"m": "m", "male": "m", "f": "f", "female": "f", "other": "other"})
    return mapped.astype(object).where(mapped.notna(), None)


def json_objects(frame: pd.DataFrame) -> list[str]:
    """One JSON object string per row of ``frame`` (NaN dropped), keys sorted."""
    records = frame.to_dict(orient="records")
    return [
        json.dumps({k: plain(v) for k, v in r.items() if not _missing(v)}, ensure_ascii=False, sort_keys=True)
        for r in records
    ]


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def make_frame(columns: tuple[str, ...], n: int, **values: object) -> pd.DataFrame:
    """A frame with exactly ``columns``; unspecified columns are ``None`` (object dtype)."""
    unknown = set(values) - set(columns)
    if unknown:
        raise ValueError(f"make_frame: {sorted(unknown)} are not among the columns {columns}.")
    data: dict[str, object] = {}
    for c in columns:
        v = values.get(c)
        if v is None:
            data[c] = np.full(n, None, dtype=object)
        elif isinstance(v, pd.Series):
            data[c] = v.reset_index(drop=True)  # keeps tz-aware datetimes and str dtypes intact
        else:
            data[c] = v
    return pd.DataFrame(data, columns=list(columns))
