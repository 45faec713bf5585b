"""The clean tables' layout, once: which kinds exist, their columns, keys and Arrow schemas, and the
conversions between Arrow tables and schema frames (timestamps as tz-naive UTC microseconds in Arrow,
``datetime64[us, UTC]`` in pandas)."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa

from liveshelf.errors import DataFormatError
from liveshelf.schema import (
    EVENT_COLUMNS,
    HOST_COLUMNS,
    ITEM_COLUMNS,
    ROOM_COLUMNS,
    SHELF_COLUMNS,
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

STR = pa.string()
TS = pa.timestamp("us")  # tz-naive, UTC by convention (DuckDB TIMESTAMP)

#: Arrow layout of each clean table, the same as the store's tables.
ARROW_SCHEMAS: dict[str, pa.Schema] = {
    "events": pa.schema(
        [
            ("event_id", STR),
            ("ts", TS),
            ("user", STR),
            ("type", STR),
            ("room", STR),
            ("item", STR),
            ("value", pa.float64()),
            ("text", STR),
        ]
    ),
    "items": pa.schema(
        [
            ("id", STR),
            ("title", STR),
            ("description", STR),
            ("category", STR),
            ("brand", STR),
            ("price", pa.float64()),
            ("rating", pa.float64()),
            ("attributes", STR),
            ("language", STR),
        ]
    ),
    "users": pa.schema(
        [("id", STR), ("gender", STR), ("age_band", STR), ("region", STR), ("spending_tier", STR)]
    ),
    "rooms": pa.schema([("id", STR), ("host", STR), ("title", STR), ("start", TS), ("end", TS)]),
    "shelf": pa.schema([("room", STR), ("item", STR), ("start", TS), ("end", TS), ("pinned", pa.bool_())]),
    "hosts": pa.schema([("id", STR), ("name", STR), ("categories", STR)]),  # JSON list string
}

#: Timestamp columns of each kind.
TS_COLUMNS: dict[str, tuple[str, ...]] = {
    "events": ("ts",),
    "rooms": ("start", "end"),
    "shelf": ("start", "end"),
}

REJECT_COLUMNS = ("row", "field", "value", "reason")


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


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise DataFormatError(f"Unknown data kind {kind!r}; expected one of: {', '.join(KINDS)}.")
    return kind


def _series_to_arrow(s: pd.Series) -> pa.Array:
    """One column -> Arrow; a tz-aware datetime column keeps its zone without going through
    ``Series.values`` (which drops the zone; pandas 3 deprecates it and older pyarrow calls it)."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        utc = s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
        zone = pa.lib.tzinfo_to_string(s.dt.tz)  # "+01:00" for fixed offsets, as pyarrow itself names them
        return pa.array(utc, type=pa.timestamp(s.dtype.unit, tz=zone), from_pandas=True)
    return pa.array(s, from_pandas=True)


def frame_to_arrow(df: pd.DataFrame) -> pa.Table:
    """A raw pandas frame -> Arrow, column by column; mixed-type object columns become strings."""
    arrays, names = [], []
    for name in df.columns:
        s = df[name]
        try:
            arr = _series_to_arrow(s)
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
                STR,
            )
        arrays.append(arr)
        names.append(str(name))
    return pa.Table.from_arrays(arrays, names=names)


def _is_na(v: object) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


__all__ = [
    "ARROW_SCHEMAS",
    "COLUMNS",
    "KEYS",
    "KINDS",
    "REJECT_COLUMNS",
    "REQUIRED_COLUMNS",
    "STR",
    "TS",
    "TS_COLUMNS",
    "check_kind",
    "frame_to_arrow",
    "frame_to_table",
    "table_to_frame",
]
