"""How the Redis state lays out its data: the keys, how values are encoded in them, and the writes
and reads that several operations share (rooms, slots, the live version, the whole-state export).

Keys (all under ``prefix``, default ``"liveshelf:"``):

==============================  ===========  =============================================
key                             type         content
==============================  ===========  =============================================
``meta``                        hash         ``half_life`` and ``anchor`` (checked on connect)
``seen``                        sorted set   event id -> ts, the de-duplication window
``seq:<user>``                  list         ``item␟room␟ts␟type`` entries, capped (RPUSH+LTRIM)
``aud:<room>``                  sorted set   viewer -> last-seen epoch seconds
``urooms:<user>``               set          rooms the user was seen in (for deletion)
``room:<room>``                 hash         host, title, start, end ("" = live)
``room_host``                   hash         room -> host (one HMGET per event batch)
``rooms:start`` / ``rooms:end``  sorted set   room -> start / end (+inf while live)
``live_version``                string       INCR'd by every room / shelf write and ``clear``
``shelf:<room>``                hash         ``item␟start`` -> ``end␟pinned``
``item_cat``                    hash         item -> category path
``cnt:<kind>``                  sorted set   key -> log-score (item, room, host, category)
``cnt:room_item:<room>``        sorted set   item -> log-score
``sync``                        hash         ``epoch`` and ``seq``: the store events applied (catch-up)
``sync_lock``                   string       held by the worker catching up (expires)
==============================  ===========  =============================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from liveshelf.serving.state.batch import SeqEntry
from liveshelf.serving.state.counters import COUNTER_KINDS

SEP = "\x1f"
#: Bumped by every room / shelf write (and ``clear``); not a state key, so ``clear`` keeps it
#: and a reader's cached live layout can never match a number used before.
LIVE_VERSION = "live_version"
#: The first part of every key the state owns (after the prefix).
KINDS = frozenset(
    {"seen", "meta", "seq", "aud", "urooms", "room", "room_host", "rooms", "shelf", "item_cat", "cnt", "sync"}
)
Slot = tuple[str, float, float | None, bool]
#: Builds a full key from its parts (``RedisState._k``: the prefix, then the parts joined by ``:``).
KeyFn = Callable[..., str]


def fmt(x: float) -> str:
    """A float as the state writes it (``repr``: read back exactly)."""
    return repr(float(x))


def opt(x: str | None) -> str:
    return "" if x is None else x


def none_if_empty(x: str) -> str | None:
    return None if x == "" else x


def encode_seq(e: SeqEntry) -> str:
    return SEP.join((opt(e[0]), opt(e[1]), fmt(e[2]), e[3]))


def decode_seq(s: str) -> SeqEntry:
    item, room, ts, ty = s.split(SEP)
    return none_if_empty(item), none_if_empty(room), float(ts), ty


def decode_room(rid: str, h: dict[str, str]) -> dict[str, Any] | None:
    if not h:
        return None
    return {
        "id": rid,
        "host": none_if_empty(h.get("host", "")),
        "title": h.get("title", ""),
        "start": float(h["start"]),
        "end": None if h.get("end", "") == "" else float(h["end"]),
    }


def decode_slots(h: dict[str, str]) -> list[Slot]:
    out = []
    for field, value in h.items():
        item, start = field.rsplit(SEP, 1)
        end, pinned = value.split(SEP)
        out.append((item, float(start), None if end == "" else float(end), pinned == "1"))
    return out


def slot_field(item: str, start: float) -> str:
    return f"{item}{SEP}{fmt(start)}"


def slot_value(end: float | None, pinned: bool) -> str:
    return f"{'' if end is None else fmt(end)}{SEP}{int(bool(pinned))}"


def bump(pipe: Any, k: KeyFn) -> None:
    """Queue the increment of the live version (in the write's own transaction)."""
    pipe.incr(k(LIVE_VERSION))


def write_room(pipe: Any, k: KeyFn, row: dict[str, Any]) -> None:
    """Queue the writes of one room row (its hash, its host and its start / end indexes)."""
    rid = row["id"]
    pipe.hset(
        k("room", rid),
        mapping={
            "host": opt(row["host"]),
            "title": row["title"] or "",
            "start": fmt(row["start"]),
            "end": "" if row["end"] is None else fmt(row["end"]),
        },
    )
    pipe.hset(k("room_host"), rid, opt(row["host"]))
    pipe.zadd(k("rooms", "start"), {rid: row["start"]})
    pipe.zadd(k("rooms", "end"), {rid: math.inf if row["end"] is None else row["end"]})


def write_slots(pipe: Any, k: KeyFn, room: str, rows: list[Slot]) -> int:
    """Queue the writes of slot rows of ``room`` (and a live-version bump when there are any)."""
    if rows:
        pipe.hset(k("shelf", room), mapping={slot_field(i, s): slot_value(e, p) for i, s, e, p in rows})
        bump(pipe, k)
    return len(rows)


def read_state(r: Any, prefix: str, keys: list[str]) -> dict[str, Any]:
    """The export sections (sequences, audience, rooms, shelf, items, counters, seen) of the state
    whose own ``keys`` (sorted) are under ``prefix``, read in one pipeline."""
    p = prefix
    pipe = r.pipeline(transaction=False)
    plan: list[tuple[str, str]] = []
    for key in keys:
        name = key[len(p) :]
        kind, _, rest = name.partition(":")
        if kind == "seq":
            pipe.lrange(key, 0, -1)
        elif kind in ("aud", "cnt", "rooms", "seen"):
            if kind == "rooms":
                continue
            pipe.zrange(key, 0, -1, withscores=True)
        elif kind in ("room", "shelf") or name == "item_cat":
            pipe.hgetall(key)
        else:
            continue
        plan.append((kind if kind != "item_cat" else "items", rest))
    out: dict[str, Any] = {
        "sequences": {},
        "audience": {},
        "rooms": {},
        "shelf": {},
        "items": {},
        "counters": {k: {} for k in COUNTER_KINDS},
        "seen": {},
    }
    for (kind, rest), value in zip(plan, pipe.execute(), strict=True):
        if kind == "seq":
            out["sequences"][rest] = [list(decode_seq(s)) for s in value]
        elif kind == "seen":
            out["seen"] = {e: float(t) for e, t in value}
        elif kind == "aud":
            if value:
                out["audience"][rest] = {u: float(s) for u, s in value}
        elif kind == "cnt":
            if rest.startswith("room_item:"):
                out["counters"]["room_item"][rest[len("room_item:") :]] = {m: float(s) for m, s in value}
            else:
                out["counters"][rest] = {m: float(s) for m, s in value}
        elif kind == "room":
            row = decode_room(rest, value)
            if row is not None:
                out["rooms"][rest] = {k: v for k, v in row.items() if k != "id"}
        elif kind == "shelf":
            out["shelf"][rest] = [list(s) for s in sorted(decode_slots(value))]
        elif kind == "items":
            out["items"] = dict(value)
    return out


def write_state(pipe: Any, k: KeyFn, data: dict[str, Any], max_seq: int) -> None:
    """Queue the writes that load an export dict into an empty state (sequences cut to ``max_seq``)."""
    for user, rows in data.get("sequences", {}).items():
        if rows:
            pipe.rpush(k("seq", user), *[encode_seq(tuple(r)) for r in rows[-max_seq:]])
    for room, members in data.get("audience", {}).items():
        if members:
            pipe.zadd(k("aud", room), {u: float(s) for u, s in members.items()})
            for u in members:
                pipe.sadd(k("urooms", u), room)
    for rid, row in data.get("rooms", {}).items():
        write_room(
            pipe,
            k,
            {
                "id": rid,
                "host": row.get("host"),
                "title": row.get("title", ""),
                "start": float(row["start"]),
                "end": None if row.get("end") is None else float(row["end"]),
            },
        )
    for room, slots in data.get("shelf", {}).items():
        write_slots(
            pipe, k, room, [(i, float(s), None if e is None else float(e), bool(p)) for i, s, e, p in slots]
        )
    if data.get("items"):
        pipe.hset(k("item_cat"), mapping={str(i): str(c) for i, c in data["items"].items()})
    if data.get("seen"):
        pipe.zadd(k("seen"), {str(e): float(t) for e, t in data["seen"].items()})
    counters = data.get("counters", {})
    for kind in COUNTER_KINDS:
        tables = counters.get(kind, {})
        if kind == "room_item":
            for room, table in tables.items():
                if table:
                    pipe.zadd(k("cnt", "room_item", room), {m: float(s) for m, s in table.items()})
        elif tables:
            pipe.zadd(k("cnt", kind), {m: float(s) for m, s in tables.items()})
    bump(pipe, k)


__all__ = [
    "KINDS",
    "LIVE_VERSION",
    "SEP",
    "KeyFn",
    "Slot",
    "bump",
    "decode_room",
    "decode_seq",
    "decode_slots",
    "encode_seq",
    "fmt",
    "none_if_empty",
    "opt",
    "read_state",
    "slot_field",
    "slot_value",
    "write_room",
    "write_slots",
    "write_state",
]
