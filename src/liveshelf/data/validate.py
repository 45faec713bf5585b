"""Vectorised validation and cleaning of incoming tables (events, items, users, rooms, shelf, hosts).

:func:`validate` turns a raw Arrow table (any column types, as read from CSV / Parquet /
JSONL or built from records) into a clean table in the store's layout
(:data:`ARROW_SCHEMAS`, timestamps as tz-naive UTC microseconds) plus a frame of rejects
with one line per failed check: ``row`` (1-based record number in the input; for a CSV
file, row 1 is the line after the header), ``field``, ``value`` (as given, or the
pseudonym for user / event ids) and ``reason``. A row with several problems has several
lines. All checks are Arrow / numpy column operations; Python loops only run over
rejected rows and over the few values of small columns (item attributes, host categories).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from liveshelf.errors import DataFormatError
from liveshelf.names import ID_BAD_RE2, ID_RULE
from liveshelf.privacy.pseudonym import Pseudonymiser
from liveshelf.schema import (
    EVENT_COLUMNS,
    EVENT_TYPES,
    GENDERS,
    HOST_COLUMNS,
    ITEM_COLUMNS,
    ROOM_COLUMNS,
    SHELF_COLUMNS,
    SPENDING_TIERS,
    TS_DTYPE,
    USER_COLUMNS,
)

KINDS: tuple[str, ...] = ("events", "items", "users", "rooms", "shelf", "hosts")

COLUMNS: dict[str, tuple[str, ...]] = {
    "events": EVENT_COLUMNS,
    "items": ITEM_COLUMNS,
    "users": USER_COLUMNS,
    "rooms": ROOM_COLUMNS,
    "shelf": SHELF_COLUMNS,
    "hosts": HOST_COLUMNS,
}

#: Columns a source of each kind must have (per-row emptiness is checked separately).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "events": ("event_id", "ts", "user", "type"),
    "items": ("id", "title"),
    "users": ("id",),
    "rooms": ("id", "host", "start"),
    "shelf": ("room", "item", "start"),
    "hosts": ("id",),
}

#: The key each kind is deduplicated / upserted by.
KEYS: dict[str, tuple[str, ...]] = {
    "events": ("event_id",),
    "items": ("id",),
    "users": ("id",),
    "rooms": ("id",),
    "shelf": ("room", "item", "start"),
    "hosts": ("id",),
}

_STR = pa.string()
_TS = pa.timestamp("us")  # tz-naive, UTC by convention (DuckDB TIMESTAMP)

#: Arrow layout of each clean table, the same as the store's tables.
ARROW_SCHEMAS: dict[str, pa.Schema] = {
    "events": pa.schema(
        [
            ("event_id", _STR),
            ("ts", _TS),
            ("user", _STR),
            ("type", _STR),
            ("room", _STR),
            ("item", _STR),
            ("value", pa.float64()),
            ("text", _STR),
        ]
    ),
    "items": pa.schema(
        [
            ("id", _STR),
            ("title", _STR),
            ("description", _STR),
            ("category", _STR),
            ("brand", _STR),
            ("price", pa.float64()),
            ("rating", pa.float64()),
            ("attributes", _STR),
            ("language", _STR),
        ]
    ),
    "users": pa.schema(
        [("id", _STR), ("gender", _STR), ("age_band", _STR), ("region", _STR), ("spending_tier", _STR)]
    ),
    "rooms": pa.schema([("id", _STR), ("host", _STR), ("title", _STR), ("start", _TS), ("end", _TS)]),
    "shelf": pa.schema(
        [("room", _STR), ("item", _STR), ("start", _TS), ("end", _TS), ("pinned", pa.bool_())]
    ),
    "hosts": pa.schema([("id", _STR), ("name", _STR), ("categories", _STR)]),  # JSON list string
}

#: Timestamp columns of each kind.
TS_COLUMNS: dict[str, tuple[str, ...]] = {
    "events": ("ts",),
    "rooms": ("start", "end"),
    "shelf": ("start", "end"),
}

REJECT_COLUMNS = ("row", "field", "value", "reason")

_TRUE = ["true", "t", "yes", "y", "1", "1.0"]
_FALSE = ["false", "f", "no", "n", "0", "0.0"]
_MAX_EPOCH_S = 1e11  # year ~5138; larger numbers are not epoch seconds


@dataclass(frozen=True)
class Rules:
    """Cleaning thresholds. ``now`` defaults to the wall clock at validation time.

    ``max_future`` is how far past ``now`` a timestamp may lie (files: a day of clock skew; the
    HTTP API passes its ``max_future_skew_s`` setting). Amounts (``value``, ``price``) are finite,
    >= 0 and at most ``max_value`` / ``max_price``; the ``value`` of a room event (``room_types``:
    watch seconds) is at most ``max_watch_s``.
    """

    min_ts: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    max_future: timedelta = timedelta(days=1)
    now: datetime | None = None
    item_types: frozenset[str] = frozenset({"cart", "purchase"})
    room_types: frozenset[str] = frozenset({"enter", "leave"})
    rating_min: float = 0.0
    rating_max: float = 5.0
    max_value: float = 1e9
    max_price: float = 1e9
    max_watch_s: float = 7 * 86400.0

    def window(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        now = pd.Timestamp(self.now) if self.now is not None else pd.Timestamp.now(tz="UTC")
        now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
        lo = pd.Timestamp(self.min_ts)
        lo = lo.tz_localize("UTC") if lo.tzinfo is None else lo.tz_convert("UTC")
        return lo, now + pd.Timedelta(self.max_future)


@dataclass
class Validated:
    """The outcome of :func:`validate`: the clean table and the reject lines."""

    kind: str
    table: pa.Table  # clean rows in ARROW_SCHEMAS[kind]
    rejects: pd.DataFrame  # REJECT_COLUMNS, sorted by row
    n_rows: int
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def n_rejected(self) -> int:
        return int(self.rejects["row"].nunique()) if len(self.rejects) else 0

    @property
    def frame(self) -> pd.DataFrame:
        """The clean rows as a pandas frame in schema columns (timestamps tz-aware UTC)."""
        return table_to_frame(self.kind, self.table)


def table_to_frame(kind: str, table: pa.Table) -> pd.DataFrame:
    """A table in :data:`ARROW_SCHEMAS` layout -> schema frame with ``datetime64[us, UTC]`` timestamps."""
    df = table.to_pandas()
    for c in TS_COLUMNS.get(kind, ()):
        df[c] = pd.to_datetime(df[c]).dt.tz_localize("UTC").astype(TS_DTYPE)
    return df


def frame_to_table(kind: str, frame: pd.DataFrame) -> pa.Table:
    """A clean schema frame -> the Arrow layout of :data:`ARROW_SCHEMAS` (naive UTC timestamps)."""
    df = frame[list(COLUMNS[kind])].copy()
    for c in TS_COLUMNS.get(kind, ()):
        df[c] = pd.to_datetime(df[c], utc=True).dt.tz_localize(None).astype("datetime64[us]")
    return pa.Table.from_pandas(df, schema=ARROW_SCHEMAS[kind], preserve_index=False)


# ----------------------------------------------------------------------------- arrow helpers

Arr = pa.Array | pa.ChunkedArray


def _np(mask: Arr) -> np.ndarray:
    """A boolean Arrow array (nulls = False) as numpy."""
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _missing(a: Arr) -> np.ndarray:
    return pc.is_null(a).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _python_str(a: Arr) -> pa.Array:
    return pa.array([None if v is None else str(v) for v in a.to_pylist()], _STR)


def _as_str(a: Arr) -> pa.Array:
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
            a = pc.cast(a, _STR)
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
            a = _python_str(a)
    a = pc.utf8_trim_whitespace(a)
    return pc.if_else(pc.equal(pc.utf8_length(a), 0), pa.scalar(None, _STR), a)


def _as_text(a: Arr) -> pa.Array:
    """Free text kept as given (no stripping); nulls stay null."""
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    if pa.types.is_string(a.type):
        return a
    try:
        return pc.cast(a, _STR)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        return _python_str(a)


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _as_num(a: Arr) -> tuple[np.ndarray, np.ndarray]:
    """(float values, NaN for missing; mask of values that are not finite numbers)."""
    if pa.types.is_null(a.type):
        return np.full(len(a), np.nan), np.zeros(len(a), dtype=bool)
    if _is_numeric(a.type):
        v = pc.cast(a, pa.float64()).to_numpy(zero_copy_only=False)
        bad = np.isinf(v)
        return np.where(bad, np.nan, v), bad
    s = _as_str(a)
    try:
        v = pc.cast(s, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        v = pd.to_numeric(pd.Series(s.to_pylist(), dtype=object), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    bad = (np.isnan(v) & ~_missing(s)) | np.isinf(v)
    return np.where(bad, np.nan, v), bad


def _seconds_to_us(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(microseconds, mask of values too large to be epoch seconds)."""
    bad = ~(np.abs(np.nan_to_num(v, nan=0.0)) < _MAX_EPOCH_S)
    us = np.round(np.where(np.isnan(v) | bad, 0.0, v) * 1e6).astype(np.int64)
    return us, bad


def _as_ts(a: Arr) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        missing = _missing(us)
        vals = pc.fill_null(pc.cast(us, pa.int64()), 0).to_numpy(zero_copy_only=False)
        return vals, missing, np.zeros(n, bool)
    if _is_numeric(t):
        v = pc.cast(a, pa.float64()).to_numpy(zero_copy_only=False)
        missing = np.isnan(v)
        us, bad = _seconds_to_us(v)
        return us, missing, bad & ~missing
    s = _as_str(a)
    missing = _missing(s)
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
        us, too_big = _seconds_to_us(num)
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


def _ts_array(us: np.ndarray, null: np.ndarray) -> pa.Array:
    return pa.array(us, type=_TS, mask=null)


def _is_in(a: pa.Array, values: list[str] | tuple[str, ...] | frozenset[str]) -> np.ndarray:
    return _np(pc.is_in(a, value_set=pa.array(sorted(values), _STR)))


def _as_bool(a: Arr) -> tuple[pa.Array, np.ndarray]:
    """(booleans, missing -> False; mask of values that are not booleans)."""
    if pa.types.is_boolean(a.type):
        return pc.fill_null(a, False), np.zeros(len(a), bool)
    s = pc.utf8_lower(_as_str(a))
    true, false = _is_in(s, _TRUE), _is_in(s, _FALSE)
    return pa.array(true), ~_missing(s) & ~true & ~false


def _as_path(a: Arr, sep: str) -> pa.Array:
    """A string column; list values (category paths) are joined with ``sep``."""
    if pa.types.is_list(a.type) or pa.types.is_large_list(a.type):
        a = pc.binary_join(pc.cast(a, pa.list_(_STR)), sep)
    return _as_str(a)


def _as_attributes(a: Arr) -> tuple[pa.Array, np.ndarray]:
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
    return pa.array(out, _STR), bad


def _host_categories(a: Arr) -> pa.Array:
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
    return pa.array(out, _STR)


def _fmt_delta(d: timedelta) -> str:
    secs = int(d.total_seconds())
    if secs % 86400 == 0:
        days = secs // 86400
        return f"{days} day" + ("s" if days != 1 else "")
    if secs % 3600 == 0:
        return f"{secs // 3600} h"
    return f"{secs} s"


# ----------------------------------------------------------------------------- problems

Reason = str | Callable[[np.ndarray], list[str]]


class _Problems:
    """Collects failed checks as reject lines; marks rows bad."""

    def __init__(self, raw: pa.Table) -> None:
        self.raw = raw
        self.bad = np.zeros(raw.num_rows, dtype=bool)
        self.shown: dict[str, pa.Array] = {}  # columns displayed as transformed (pseudonyms)
        self._parts: list[pd.DataFrame] = []

    def _display(self, fld: str, idx: np.ndarray) -> list[str | None]:
        if fld in self.shown:
            src = self.shown[fld]
        elif fld in self.raw.column_names:
            src = self.raw.column(fld)
        else:
            return [None] * len(idx)
        vals = src.take(pa.array(idx)).to_pylist()
        return [
            None
            if v is None
            else (json.dumps(v, ensure_ascii=False, default=str) if isinstance(v, (list, dict)) else str(v))
            for v in vals
        ]

    def add(self, mask: np.ndarray, fld: str, reason: Reason) -> None:
        if not mask.any():
            return
        idx = np.flatnonzero(mask)
        self.bad[idx] = True
        reasons = reason if isinstance(reason, str) else reason(idx)
        self._parts.append(
            pd.DataFrame({"row": idx + 1, "field": fld, "value": self._display(fld, idx), "reason": reasons})
        )

    def frame(self) -> pd.DataFrame:
        if not self._parts:
            return pd.DataFrame(
                {
                    "row": pd.Series(dtype="int64"),
                    "field": pd.Series(dtype="str"),
                    "value": pd.Series(dtype=object),
                    "reason": pd.Series(dtype="str"),
                }
            )
        out = pd.concat(self._parts, ignore_index=True)
        return out.sort_values("row", kind="stable", ignore_index=True)

    # common checks

    def required(self, a: pa.Array, fld: str, what: str = "id") -> None:
        self.add(_missing(a), fld, f"missing required {what} '{fld}'")

    def timestamps(
        self, us: np.ndarray, missing: np.ndarray, bad: np.ndarray, fld: str, rules: Rules, required: bool
    ) -> None:
        if required:
            self.add(missing, fld, f"missing required timestamp '{fld}'")
        self.add(bad, fld, "unparseable timestamp; expected ISO 8601 or epoch seconds")
        lo, hi = rules.window()
        ok = ~missing & ~bad
        self.add(
            ok & (us < lo.value // 1000),
            fld,
            f"timestamp before {lo:%Y-%m-%d} is outside the plausible window",
        )
        self.add(
            ok & (us > hi.value // 1000),
            fld,
            f"timestamp more than {_fmt_delta(rules.max_future)} in the "
            f"future (after {hi:%Y-%m-%dT%H:%M:%SZ})",
        )

    def printable(self, a: pa.Array, fld: str) -> None:
        """Reject ids holding control, NUL or bidirectional override characters."""
        self.add(_np(pc.match_substring_regex(a, ID_BAD_RE2)), fld, f"'{fld}' must hold {ID_RULE}")

    def at_most(
        self, v: np.ndarray, limit: float, fld: str, what: str, mask: np.ndarray | None = None
    ) -> None:
        over = ~np.isnan(v) & (v > limit)
        self.add(over if mask is None else over & mask, fld, f"{what} too large; expected at most {limit:g}")

    def duplicates(self, key: pa.Array, fld: str, label: str) -> None:
        """Reject repeated keys among rows still good; the first occurrence is kept."""
        rows = np.flatnonzero(~self.bad)
        if len(rows) < 2:
            return
        codes = pc.fill_null(key.dictionary_encode().indices, 0).to_numpy(zero_copy_only=False)
        if len(rows) == len(codes):
            # codes are numbered in order of first appearance: a row repeats a key exactly
            # when its code is not larger than every code before it
            prev_max = np.maximum.accumulate(np.concatenate(([-1], codes[:-1])))
            dup = codes <= prev_max
            if not dup.any():
                return
            first_pos = np.flatnonzero(~dup)[codes[dup]]
        else:
            codes = codes[rows]
            uniq, first = np.unique(codes, return_index=True)
            first_of = np.empty(int(uniq[-1]) + 1, dtype=np.int64)
            first_of[uniq] = first
            dup = first_of[codes] != np.arange(len(codes))
            if not dup.any():
                return
            first_pos = first_of[codes[dup]]
        first_rows = rows[first_pos] + 1
        mask = np.zeros(len(self.bad), dtype=bool)
        mask[rows[dup]] = True
        self.add(
            mask,
            fld,
            lambda idx: [
                f"duplicate {label} within the input (first at row {r})" for r in first_rows.tolist()
            ],
        )


def _typed_reason(typ: pa.Array, template: str) -> Callable[[np.ndarray], list[str]]:
    def reason(idx: np.ndarray) -> list[str]:
        return [template.format(type=t) for t in typ.take(pa.array(idx)).to_pylist()]

    return reason


# ----------------------------------------------------------------------------- per kind

_Col = Callable[[str], pa.Array]


def _events(col: _Col, p: _Problems, rules: Rules, pz: Pseudonymiser | None) -> dict[str, pa.Array]:
    eid, user = raw_eid, raw_user = _as_str(col("event_id")), _as_str(col("user"))
    room, item = _as_str(col("room")), _as_str(col("item"))
    if pz is not None:
        eid, user = pz.map_array(eid, "event"), pz.map_array(user, "user")
        p.shown.update(event_id=eid, user=user)
    for fld, ids in (("event_id", raw_eid), ("user", raw_user), ("room", room), ("item", item)):
        p.printable(ids, fld)  # the ids as given (a pseudonym would hide the bad character)
    typ = pc.utf8_lower(_as_str(col("type")))
    us, ts_missing, ts_bad = _as_ts(col("ts"))
    value, value_bad = _as_num(col("value"))

    p.required(eid, "event_id")
    p.required(user, "user")
    p.required(typ, "type", "event type")
    known = _is_in(typ, EVENT_TYPES)
    p.add(~_missing(typ) & ~known, "type", f"unknown event type; expected one of: {', '.join(EVENT_TYPES)}")
    p.timestamps(us, ts_missing, ts_bad, "ts", rules, required=True)
    no_item, no_room = _missing(item), _missing(room)
    item_types, room_types = _is_in(typ, rules.item_types), _is_in(typ, rules.room_types)
    p.add(item_types & no_item, "item", _typed_reason(typ, "event type '{type}' requires an item"))
    p.add(room_types & no_room, "room", _typed_reason(typ, "event type '{type}' requires a room"))
    p.add(
        known & ~item_types & ~room_types & no_item & no_room,
        "item",
        _typed_reason(typ, "event type '{type}' requires an item or a room"),
    )
    p.add(value_bad, "value", "value is not a number")
    p.add(value < 0, "value", "negative value; expected a price / amount >= 0")
    p.at_most(value, rules.max_value, "value", "value", ~room_types)
    p.at_most(value, rules.max_watch_s, "value", "watch time (seconds) of a room event", room_types)
    p.duplicates(eid, "event_id", "event_id")
    return {
        "event_id": eid,
        "ts": _ts_array(us, ts_missing | ts_bad),
        "user": user,
        "type": typ,
        "room": room,
        "item": item,
        "value": pa.array(value, mask=np.isnan(value)),
        "text": _as_text(col("text")),
    }


def _items(col: _Col, p: _Problems, rules: Rules, pz: Pseudonymiser | None) -> dict[str, pa.Array]:
    iid, title = _as_str(col("id")), _as_str(col("title"))
    price, price_bad = _as_num(col("price"))
    rating, rating_bad = _as_num(col("rating"))
    attrs, attrs_bad = _as_attributes(col("attributes"))
    p.required(iid, "id")
    p.printable(iid, "id")
    p.add(_missing(title), "title", "item without title; every item needs a non-empty title")
    p.add(price_bad, "price", "price is not a number")
    p.add(price < 0, "price", "negative price; expected a price >= 0")
    p.at_most(price, rules.max_price, "price", "price")
    p.add(rating_bad, "rating", "rating is not a number")
    p.add(
        (rating < rules.rating_min) | (rating > rules.rating_max),
        "rating",
        f"rating out of range; expected a number in [{rules.rating_min:g}, {rules.rating_max:g}]",
    )
    p.add(attrs_bad, "attributes", "attributes is not a JSON object string")
    p.duplicates(iid, "id", "item id")
    return {
        "id": iid,
        "title": title,
        "description": pc.fill_null(_as_text(col("description")), ""),
        "category": _as_path(col("category"), " > "),
        "brand": _as_str(col("brand")),
        "price": pa.array(price, mask=np.isnan(price)),
        "rating": pa.array(rating, mask=np.isnan(rating)),
        "attributes": attrs,
        "language": pc.utf8_lower(_as_str(col("language"))),
    }


def _users(col: _Col, p: _Problems, rules: Rules, pz: Pseudonymiser | None) -> dict[str, pa.Array]:
    uid = _as_str(col("id"))
    if pz is not None:
        uid = pz.map_array(uid, "user")
        p.shown["id"] = uid
    gender = pc.utf8_lower(_as_str(col("gender")))
    tier = pc.utf8_lower(_as_str(col("spending_tier")))
    p.required(uid, "id")
    p.add(
        ~_missing(gender) & ~_is_in(gender, GENDERS),
        "gender",
        f"bad gender; expected one of: {', '.join(GENDERS)} (or empty)",
    )
    p.add(
        ~_missing(tier) & ~_is_in(tier, SPENDING_TIERS),
        "spending_tier",
        f"bad spending tier; expected one of: {', '.join(SPENDING_TIERS)} (or empty)",
    )
    p.duplicates(uid, "id", "user id")
    return {
        "id": uid,
        "gender": gender,
        "age_band": _as_str(col("age_band")),
        "region": _as_str(col("region")),
        "spending_tier": tier,
    }


def _interval(col: _Col, p: _Problems, rules: Rules, what: str) -> tuple[pa.Array, pa.Array]:
    start, s_missing, s_bad = _as_ts(col("start"))
    end, e_missing, e_bad = _as_ts(col("end"))
    p.timestamps(start, s_missing, s_bad, "start", rules, required=True)
    p.timestamps(end, e_missing, e_bad, "end", rules, required=False)
    p.add(~s_missing & ~s_bad & ~e_missing & ~e_bad & (end < start), "end", f"{what} end before start")
    return _ts_array(start, s_missing | s_bad), _ts_array(end, e_missing | e_bad)


def _rooms(col: _Col, p: _Problems, rules: Rules, pz: Pseudonymiser | None) -> dict[str, pa.Array]:
    rid, host = _as_str(col("id")), _as_str(col("host"))
    p.required(rid, "id")
    p.required(host, "host")
    p.printable(rid, "id")
    p.printable(host, "host")
    start, end = _interval(col, p, rules, "room")
    p.duplicates(rid, "id", "room id")
    return {
        "id": rid,
        "host": host,
        "title": pc.fill_null(_as_text(col("title")), ""),
        "start": start,
        "end": end,
    }


def _shelf(col: _Col, p: _Problems, rules: Rules, pz: Pseudonymiser | None) -> dict[str, pa.Array]:
    room, item = _as_str(col("room")), _as_str(col("item"))
    pinned, pinned_bad = _as_bool(col("pinned"))
    p.required(room, "room")
    p.required(item, "item")
    p.printable(room, "room")
    p.printable(item, "item")
    start, end = _interval(col, p, rules, "shelf slot")
    p.add(pinned_bad, "pinned", "pinned is not a boolean; expected true/false/1/0")
    key = pc.binary_join_element_wise(
        pc.fill_null(room, ""), pc.fill_null(item, ""), pc.fill_null(pc.cast(start, _STR), ""), "\x1f"
    )
    p.duplicates(key, "room", "shelf slot (room, item, start)")
    return {"room": room, "item": item, "start": start, "end": end, "pinned": pinned}


def _hosts(col: _Col, p: _Problems, rules: Rules, pz: Pseudonymiser | None) -> dict[str, pa.Array]:
    hid = _as_str(col("id"))
    p.required(hid, "id")
    p.duplicates(hid, "id", "host id")
    return {
        "id": hid,
        "name": pc.fill_null(_as_text(col("name")), ""),
        "categories": _host_categories(col("categories")),
    }


_VALIDATORS = {
    "events": _events,
    "items": _items,
    "users": _users,
    "rooms": _rooms,
    "shelf": _shelf,
    "hosts": _hosts,
}


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise DataFormatError(f"Unknown data kind {kind!r}; expected one of: {', '.join(KINDS)}.")
    return kind


def validate(
    kind: str,
    data: pa.Table | pd.DataFrame,
    rules: Rules | None = None,
    pseudonymiser: Pseudonymiser | None = None,
) -> Validated:
    """Validate and clean one table of ``kind``; nothing is written anywhere.

    Raises :class:`DataFormatError` when a required column is absent altogether;
    row-level problems never raise, they become reject lines.
    """
    check_kind(kind)
    rules = rules or Rules()
    raw = data if isinstance(data, pa.Table) else frame_to_arrow(data)
    absent = [c for c in REQUIRED_COLUMNS[kind] if c not in raw.column_names]
    if absent:
        raise DataFormatError(
            f"The {kind} input lacks required column(s) {absent}; it has {raw.column_names}. "
            f"Rename the columns to the schema names {list(COLUMNS[kind])}."
        )
    n = raw.num_rows

    def col(name: str) -> pa.Array:
        return raw.column(name).combine_chunks() if name in raw.column_names else pa.nulls(n)

    problems = _Problems(raw)
    arrays = _VALIDATORS[kind](col, problems, rules, pseudonymiser)
    schema = ARROW_SCHEMAS[kind]
    table = pa.Table.from_arrays([pc.cast(arrays[f.name], f.type) for f in schema], schema=schema)
    if problems.bad.any():
        table = table.filter(pa.array(~problems.bad))
    ignored = [c for c in raw.column_names if c not in COLUMNS[kind]]
    return Validated(kind=kind, table=table, rejects=problems.frame(), n_rows=n, ignored_columns=ignored)


def frame_to_arrow(df: pd.DataFrame) -> pa.Table:
    """A raw pandas frame -> Arrow, column by column; mixed-type object columns become strings."""
    arrays, names = [], []
    for name in df.columns:
        s = df[name]
        try:
            arr = pa.array(s, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            arr = pa.array(
                [
                    None
                    if v is None
                    else json.dumps(v, ensure_ascii=False, default=str)
                    if isinstance(v, (list, dict))
                    else (None if _is_na(v) else str(v))
                    for v in s.to_numpy(dtype=object)
                ],
                _STR,
            )
        arrays.append(arr)
        names.append(str(name))
    return pa.Table.from_arrays(arrays, names=names)


def _is_na(v: object) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False
