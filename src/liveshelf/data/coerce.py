"""Raw Arrow columns coerced to the clean types, vectorised: trimmed strings, numbers, booleans,
timestamps (UTC epoch microseconds, with missing and unparseable masks), category paths, item
attributes and host categories. Each returns the values and, where a value can be wrong, a mask of
the bad rows (the validator turns masks into reject lines).

Timestamps here are not :mod:`liveshelf.core.timeutil`'s job: that converts clean values to float
seconds, this parses messy input to microseconds and reports what could not be parsed.
"""

from __future__ import annotations

import json
from typing import TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from liveshelf.data.tables import STR, TS
from liveshelf.schema import TS_DTYPE

_TRUE = ["true", "t", "yes", "y", "1", "1.0"]
_FALSE = ["false", "f", "no", "n", "0", "0.0"]
_MAX_EPOCH_S = 1e11  # year ~5138; larger numbers are not epoch seconds

Arr: TypeAlias = pa.Array | pa.ChunkedArray


def mask_of(mask: Arr) -> np.ndarray:
    """A boolean Arrow array (nulls = False) as numpy."""
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def is_missing(a: Arr) -> np.ndarray:
    return pc.is_null(a).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def python_str(a: Arr) -> pa.Array:
    return pa.array([None if v is None else str(v) for v in a.to_pylist()], STR)


def as_str(a: Arr) -> pa.Array:
    """Strings without surrounding whitespace; empty or blank -> null."""
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    t = a.type
    if pa.types.is_dictionary(t):
        a, t = a.dictionary_decode(), t.value_type
    if pa.types.is_floating(t):
        a = pc.if_else(pc.is_nan(a), pa.scalar(None, t), a)  # NaN = missing
        v = a.to_numpy(zero_copy_only=False)
        finite = v[~np.isnan(v)]
        if np.all(finite == np.round(finite)) and np.all(np.abs(finite) < 2**53):
            a, t = pc.cast(a, pa.int64()), pa.int64()
    if not pa.types.is_string(t):
        try:
            a = pc.cast(a, STR)
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
            a = python_str(a)
    a = pc.utf8_trim_whitespace(a)
    return pc.if_else(pc.equal(pc.utf8_length(a), 0), pa.scalar(None, STR), a)


def as_text(a: Arr) -> pa.Array:
    """Free text kept as given (no stripping); nulls stay null."""
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    if pa.types.is_string(a.type):
        return a
    try:
        return pc.cast(a, STR)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        return python_str(a)


def is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def as_num(a: Arr) -> tuple[np.ndarray, np.ndarray]:
    """(float values, NaN for missing; mask of values that are not finite numbers)."""
    if pa.types.is_null(a.type):
        return np.full(len(a), np.nan), np.zeros(len(a), dtype=bool)
    if is_numeric(a.type):
        v = pc.cast(a, pa.float64()).to_numpy(zero_copy_only=False)
        bad = np.isinf(v)
        return np.where(bad, np.nan, v), bad
    s = as_str(a)
    try:
        v = pc.cast(s, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        v = pd.to_numeric(pd.Series(s.to_pylist(), dtype=object), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    bad = (np.isnan(v) & ~is_missing(s)) | np.isinf(v)
    return np.where(bad, np.nan, v), bad


def seconds_to_us(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(microseconds, mask of values too large to be epoch seconds)."""
    bad = ~(np.abs(np.nan_to_num(v, nan=0.0)) < _MAX_EPOCH_S)
    us = np.round(np.where(np.isnan(v) | bad, 0.0, v) * 1e6).astype(np.int64)
    return us, bad


def as_ts(a: Arr) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(UTC epoch microseconds, missing mask, unparseable mask).

    Accepts timestamp / date columns (naive = UTC), epoch seconds, and strings in
    ISO 8601 (with or without offset, naive = UTC) or epoch seconds.
    """
    n = len(a)
    t = a.type
    if pa.types.is_null(t):
        return np.zeros(n, np.int64), np.ones(n, bool), np.zeros(n, bool)
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        us = pc.cast(a, pa.timestamp("us", tz=getattr(t, "tz", None)), safe=False)
        missing = is_missing(us)
        vals = pc.fill_null(pc.cast(us, pa.int64()), 0).to_numpy(zero_copy_only=False)
        return vals, missing, np.zeros(n, bool)
    if is_numeric(t):
        v = pc.cast(a, pa.float64()).to_numpy(zero_copy_only=False)
        missing = np.isnan(v)
        us, bad = seconds_to_us(v)
        return us, missing, bad & ~missing
    s = as_str(a)
    missing = is_missing(s)
    for target in (pa.timestamp("us", tz="UTC"), pa.timestamp("us")):
        try:
            parsed = pc.cast(s, target)
            vals = pc.fill_null(pc.cast(parsed, pa.int64()), 0).to_numpy(zero_copy_only=False)
            return vals, missing, np.zeros(n, bool)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return _as_ts_slow(s, missing)


def _as_ts_slow(s: pa.Array, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mixed / messy strings: pandas ISO 8601, then epoch seconds, then free-form parsing."""
    strs = pd.Series(s.to_pylist(), dtype=object)
    out = pd.to_datetime(strs, utc=True, errors="coerce", format="ISO8601").astype(TS_DTYPE)
    failed = out.isna().to_numpy() & ~missing
    if failed.any():
        idx = np.flatnonzero(failed)
        num = pd.to_numeric(strs.iloc[idx], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        us, too_big = seconds_to_us(num)
        is_num = ~np.isnan(num) & ~too_big
        if is_num.any():
            out.iloc[idx[is_num]] = pd.to_datetime(us[is_num], unit="us", utc=True)
        rest = idx[np.isnan(num)]
        if len(rest):
            out.iloc[rest] = (
                pd.to_datetime(strs.iloc[rest], utc=True, errors="coerce", format="mixed")
                .astype(TS_DTYPE)
                .to_numpy()
            )
    bad = out.isna().to_numpy() & ~missing
    vals = out.to_numpy(dtype="datetime64[us]", na_value=np.datetime64(0, "us")).astype(np.int64)
    return vals, missing, bad


def ts_array(us: np.ndarray, null: np.ndarray) -> pa.Array:
    return pa.array(us, type=TS, mask=null)


def is_in(a: pa.Array, values: list[str] | tuple[str, ...] | frozenset[str]) -> np.ndarray:
    return mask_of(pc.is_in(a, value_set=pa.array(sorted(values), STR)))


def as_bool(a: Arr) -> tuple[pa.Array, np.ndarray]:
    """(booleans, missing -> False; mask of values that are not booleans)."""
    if pa.types.is_boolean(a.type):
        return pc.fill_null(a, False), np.zeros(len(a), bool)
    s = pc.utf8_lower(as_str(a))
    true, false = is_in(s, _TRUE), is_in(s, _FALSE)
    return pa.array(true), ~is_missing(s) & ~true & ~false


def as_path(a: Arr, sep: str) -> pa.Array:
    """A string column; list values (category paths) are joined with ``sep``."""
    if pa.types.is_list(a.type) or pa.types.is_large_list(a.type):
        a = pc.binary_join(pc.cast(a, pa.list_(STR)), sep)
    return as_str(a)


def as_attributes(a: Arr) -> tuple[pa.Array, np.ndarray]:
    """JSON object strings (missing -> "{}"); mask of values that are not JSON objects."""
    vals = a.to_pylist()
    out: list[str | None] = []
    bad = np.zeros(len(vals), dtype=bool)
    cache: dict[str, str | None] = {}
    for i, v in enumerate(vals):
        if isinstance(v, dict):
            out.append(json.dumps(v, ensure_ascii=False, sort_keys=True))
            continue
        if v is None or (isinstance(v, str) and not v.strip()):
            out.append("{}")
            continue
        key = v if isinstance(v, str) else json.dumps(v)
        if key not in cache:
            try:
                parsed = json.loads(key)
                cache[key] = (
                    json.dumps(parsed, ensure_ascii=False, sort_keys=True)
                    if isinstance(parsed, dict)
                    else None
                )
            except json.JSONDecodeError:
                cache[key] = None
        out.append(cache[key])
        bad[i] = cache[key] is None
    return pa.array(out, STR), bad


def host_categories(a: Arr) -> pa.Array:
    """A JSON list string of category names (the simulator's layout): lists are dumped, JSON list
    strings kept (normalised), other strings split on '|', missing -> "[]"."""
    out = []
    for v in a.to_pylist():
        if isinstance(v, str) and v.strip().startswith("["):
            try:
                parsed = json.loads(v)
                v = parsed if isinstance(parsed, list) else v
            except json.JSONDecodeError:
                pass
        if isinstance(v, (list, tuple)):
            names = [str(x) for x in v if x is not None]
        elif v is None or not str(v).strip():
            names = []
        else:
            names = [p.strip() for p in str(v).split("|") if p.strip()]
        out.append(json.dumps(names, ensure_ascii=False))
    return pa.array(out, STR)
