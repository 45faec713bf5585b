"""Vectorised validation and cleaning of incoming tables (events, items, users, rooms, shelf, hosts).

:func:`validate` turns a raw Arrow table (any column types, as read from CSV / Parquet /
JSONL or built from records) into a clean table in the store's layout
(:data:`ARROW_SCHEMAS`, timestamps as tz-naive UTC microseconds) plus a frame of rejects
with one line per failed check: ``row`` (1-based record number in the input; for a CSV
file, row 1 is the line after the header), ``field``, ``value`` (as given, or the
pseudonym for user / event ids) and ``reason``. A row with several problems has several
lines. All checks are Arrow / numpy column operations; Python loops only run over
rejected rows and over the few values of small columns (item attributes, host categories).

The table layout (kinds, columns, keys, Arrow schemas) is :mod:`liveshelf.data.tables`; the column
coercions are :mod:`liveshelf.data.coerce`. This module holds the rules and the per-kind checks.
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

from liveshelf.data.coerce import (
    as_attributes,
    as_bool,
    as_num,
    as_path,
    as_str,
    as_text,
    as_ts,
    host_categories,
    is_in,
    is_missing,
    mask_of,
    ts_array,
)
from liveshelf.data.tables import (
    ARROW_SCHEMAS,
    COLUMNS,
    KEYS,
    KINDS,
    REJECT_COLUMNS,
    REQUIRED_COLUMNS,
    STR,
    TS_COLUMNS,
    check_kind,
    frame_to_arrow,
    frame_to_table,
    table_to_frame,
)
from liveshelf.errors import DataFormatError
from liveshelf.names import ID_BAD_RE2, ID_RULE
from liveshelf.privacy.pseudonym import Pseudonymiser
from liveshelf.schema import EVENT_TYPES, GENDERS, SPENDING_TIERS


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
        self.add(is_missing(a), fld, f"missing required {what} '{fld}'")

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
        self.add(mask_of(pc.match_substring_regex(a, ID_BAD_RE2)), fld, f"'{fld}' must hold {ID_RULE}")

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
    eid, user = raw_eid, raw_user = as_str(col("event_id")), as_str(col("user"))
    room, item = as_str(col("room")), as_str(col("item"))
    if pz is not None:
        eid, user = pz.map_array(eid, "event"), pz.map_array(user, "user")
        p.shown.update(event_id=eid, user=user)
    for fld, ids in (("event_id", raw_eid), ("user", raw_user), ("room", room), ("item", item)):
        p.printable(ids, fld)  # the ids as given (a pseudonym would hide the bad character)
    typ = pc.utf8_lower(as_str(col("type")))
    us, ts_missing, ts_bad = as_ts(col("ts"))
    value, value_bad = as_num(col("value"))

    p.required(eid, "event_id")
    p.required(user, "user")
    p.required(typ, "type", "event type")
    known = is_in(typ, EVENT_TYPES)
    p.add(~is_missing(typ) & ~known, "type", f"unknown event type; expected one of: {', '.join(EVENT_TYPES)}")
    p.timestamps(us, ts_missing, ts_bad, "ts", rules, required=True)
    no_item, no_room = is_missing(item), is_missing(room)
    item_types, room_types = is_in(typ, rules.item_types), is_in(typ, rules.room_types)
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
        "ts": ts_array(us, ts_missing | ts_bad),
        "user": user,
        "type": typ,
        "room": room,
        "item": item,
        "value": pa.array(value, mask=np.isnan(value)),
        "text": as_text(col("text")),
    }


def _items(col: _Col, p: _Problems, rules: Rules, pz: Pseudonymiser | None) -> dict[str, pa.Array]:
    iid, title = as_str(col("id")), as_str(col("title"))
    price, price_bad = as_num(col("price"))
    rating, rating_bad = as_num(col("rating"))
    attrs, attrs_bad = as_attributes(col("attributes"))
    p.required(iid, "id")
    p.printable(iid, "id")
    p.add(is_missing(title), "title", "item without title; every item needs a non-empty title")
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
        "description": pc.fill_null(as_text(col("description")), ""),
        "category": as_path(col("category"), " > "),
        "brand": as_str(col("brand")),
        "price": pa.array(price, mask=np.isnan(price)),
        "rating": pa.array(rating, mask=np.isnan(rating)),
        "attributes": attrs,
        "language": pc.utf8_lower(as_str(col("language"))),
    }


def _users(col: _Col, p: _Problems, rules: Rules, pz: Pseudonymiser | None) -> dict[str, pa.Array]:
    uid = as_str(col("id"))
    if pz is not None:
        uid = pz.map_array(uid, "user")
        p.shown["id"] = uid
    gender = pc.utf8_lower(as_str(col("gender")))
    tier = pc.utf8_lower(as_str(col("spending_tier")))
    p.required(uid, "id")
    p.add(
        ~is_missing(gender) & ~is_in(gender, GENDERS),
        "gender",
        f"bad gender; expected one of: {', '.join(GENDERS)} (or empty)",
    )
    p.add(
        ~is_missing(tier) & ~is_in(tier, SPENDING_TIERS),
        "spending_tier",
        f"bad spending tier; expected one of: {', '.join(SPENDING_TIERS)} (or empty)",
    )
    p.duplicates(uid, "id", "user id")
    return {
        "id": uid,
        "gender": gender,
        "age_band": as_str(col("age_band")),
        "region": as_str(col("region")),
        "spending_tier": tier,
    }


def _interval(col: _Col, p: _Problems, rules: Rules, what: str) -> tuple[pa.Array, pa.Array]:
    start, s_missing, s_bad = as_ts(col("start"))
    end, e_missing, e_bad = as_ts(col("end"))
    p.timestamps(start, s_missing, s_bad, "start", rules, required=True)
    p.timestamps(end, e_missing, e_bad, "end", rules, required=False)
    p.add(~s_missing & ~s_bad & ~e_missing & ~e_bad & (end < start), "end", f"{what} end before start")
    return ts_array(start, s_missing | s_bad), ts_array(end, e_missing | e_bad)


def _rooms(col: _Col, p: _Problems, rules: Rules, pz: Pseudonymiser | None) -> dict[str, pa.Array]:
    rid, host = as_str(col("id")), as_str(col("host"))
    p.required(rid, "id")
    p.required(host, "host")
    p.printable(rid, "id")
    p.printable(host, "host")
    start, end = _interval(col, p, rules, "room")
    p.duplicates(rid, "id", "room id")
    return {
        "id": rid,
        "host": host,
        "title": pc.fill_null(as_text(col("title")), ""),
        "start": start,
        "end": end,
    }


def _shelf(col: _Col, p: _Problems, rules: Rules, pz: Pseudonymiser | None) -> dict[str, pa.Array]:
    room, item = as_str(col("room")), as_str(col("item"))
    pinned, pinned_bad = as_bool(col("pinned"))
    p.required(room, "room")
    p.required(item, "item")
    p.printable(room, "room")
    p.printable(item, "item")
    start, end = _interval(col, p, rules, "shelf slot")
    p.add(pinned_bad, "pinned", "pinned is not a boolean; expected true/false/1/0")
    key = pc.binary_join_element_wise(
        pc.fill_null(room, ""), pc.fill_null(item, ""), pc.fill_null(pc.cast(start, STR), ""), "\x1f"
    )
    p.duplicates(key, "room", "shelf slot (room, item, start)")
    return {"room": room, "item": item, "start": start, "end": end, "pinned": pinned}


def _hosts(col: _Col, p: _Problems, rules: Rules, pz: Pseudonymiser | None) -> dict[str, pa.Array]:
    hid = as_str(col("id"))
    p.required(hid, "id")
    p.duplicates(hid, "id", "host id")
    return {
        "id": hid,
        "name": pc.fill_null(as_text(col("name")), ""),
        "categories": host_categories(col("categories")),
    }


_VALIDATORS = {
    "events": _events,
    "items": _items,
    "users": _users,
    "rooms": _rooms,
    "shelf": _shelf,
    "hosts": _hosts,
}


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


__all__ = [  # the table layout lives in liveshelf.data.tables; importable from here as before
    "ARROW_SCHEMAS",
    "COLUMNS",
    "KEYS",
    "KINDS",
    "REJECT_COLUMNS",
    "REQUIRED_COLUMNS",
    "TS_COLUMNS",
    "Rules",
    "Validated",
    "check_kind",
    "frame_to_arrow",
    "frame_to_table",
    "table_to_frame",
    "validate",
]
