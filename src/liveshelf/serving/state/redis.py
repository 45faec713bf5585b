"""Redis online state: several uvicorn workers (or machines) share one state.

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

One ``apply_events`` call is one MULTI/EXEC transaction of two Lua scripts (sequences and
audiences; log-adding the counters), so other workers see a batch entirely or not at all,
and the next read sees it (read-your-writes). Decisions use the same functions as the
memory backend (:mod:`liveshelf.serving.state.base`), so both give equal answers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from liveshelf.data.timeline import TimeLike, to_seconds
from liveshelf.errors import ConfigError, NotFoundError, ValidationError
from liveshelf.serving.state.base import (
    ANCHOR,
    COUNTER_KINDS,
    Batch,
    LiveLayout,
    OnlineState,
    SeqEntry,
    audience_order,
    audience_updates,
    check_end_time,
    check_kind,
    check_limit,
    counter_updates,
    decayed,
    end_item_slots,
    end_room_slots,
    is_live,
    order_shelf,
    prepare_events,
    room_rows,
    sequence_rows,
    slot_rows,
    unpin_slots,
    validity,
)

SEP = "\x1f"
#: Bumped by every room / shelf write (and ``clear``); not a state key, so ``clear`` keeps it
#: and a reader's cached live layout can never match a number used before.
_LIVE_VERSION = "live_version"
_KINDS = frozenset(
    {"seen", "meta", "seq", "aud", "urooms", "room", "room_host", "rooms", "shelf", "item_cat", "cnt", "sync"}
)
Slot = tuple[str, float, float | None, bool]

# Log-add counter increments; the same arithmetic as base.log_add. KEYS: sorted sets; ARGV: per
# key n, then n (member, log-score) pairs.
_MERGE_LUA = """
local ln2 = math.log(2)
local p = 1
for i = 1, #KEYS do
  local key = KEYS[i]
  local n = tonumber(ARGV[p]); p = p + 1
  for j = 1, n do
    local m = ARGV[p]
    local b = tonumber(ARGV[p + 1])
    p = p + 2
    local old = redis.call('ZSCORE', key, m)
    local new = b
    if old then
      local a = tonumber(old)
      local hi, lo = a, b
      if b > a then hi = b; lo = a end
      new = hi + math.log(1 + 2 ^ (lo - hi)) / ln2
    end
    redis.call('ZADD', key, string.format('%.17g', new), m)
  end
end
return #KEYS
"""

# Sequences (RPUSH + LTRIM), audiences (ZADD GT / ZREM) and user -> rooms sets, one call per batch.
# KEYS: seq keys, then audience keys, then urooms keys. ARGV: max_seq, #seq, #aud, #urooms, then per
# seq key: n, n entries; per audience key: n, n (member, score) pairs, m, m members to remove;
# per urooms key: n, n rooms.
_APPLY_LUA = """
local max_seq = tonumber(ARGV[1])
local ns, na, nu = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local p = 5
local function chunked(cmd, key, first, last, extra)
  local i = first
  while i <= last do
    local j = math.min(i + 999, last)
    if extra then
      redis.call(cmd, key, extra, unpack(ARGV, i, j))
    else
      redis.call(cmd, key, unpack(ARGV, i, j))
    end
    i = j + 1
  end
end
for i = 1, ns do
  local c = tonumber(ARGV[p]); p = p + 1
  chunked('RPUSH', KEYS[i], p, p + c - 1)
  redis.call('LTRIM', KEYS[i], -max_seq, -1)
  p = p + c
end
for i = 1, na do
  local key = KEYS[ns + i]
  local c = tonumber(ARGV[p]); p = p + 1
  if c > 0 then
    local args = {}
    for j = 0, c - 1 do
      args[#args + 1] = ARGV[p + 2 * j + 1]
      args[#args + 1] = ARGV[p + 2 * j]
    end
    for a = 1, #args, 1000 do
      redis.call('ZADD', key, 'GT', unpack(args, a, math.min(a + 999, #args)))
    end
  end
  p = p + 2 * c
  local r = tonumber(ARGV[p]); p = p + 1
  if r > 0 then chunked('ZREM', key, p, p + r - 1) end
  p = p + r
end
for i = 1, nu do
  local c = tonumber(ARGV[p]); p = p + 1
  chunked('SADD', KEYS[ns + na + i], p, p + c - 1)
  p = p + c
end
return ns + na + nu
"""

# Mark event ids as seen (ZADD NX: 1 = new), then forget those older than the window.
# ARGV: cutoff, then (event id, ts) pairs.
_DEDUPE_LUA = """
local out = {}
for i = 2, #ARGV, 2 do
  out[#out + 1] = redis.call('ZADD', KEYS[1], 'NX', ARGV[i + 1], ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
return out
"""

# Rooms with end > t, then start <= t: one round trip.
# audience sizes of many rooms in one call. KEYS: (room hash, audience zset) pairs; ARGV: t, the last-seen cutoff
_AUDIENCE_LUA = """
local t = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS, 2 do
  local se = redis.call('HMGET', KEYS[i], 'start', 'end')
  local live = true
  if se[1] then
    if tonumber(se[1]) > t then live = false end
    if se[2] and se[2] ~= '' and t >= tonumber(se[2]) then live = false end
  end
  out[#out + 1] = live and redis.call('ZCOUNT', KEYS[i + 1], '(' .. ARGV[2], '+inf') or 0
end
return out
"""

_LIVE_LUA = """
local t = tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
local out = {}
for _, id in ipairs(ids) do
  local s = redis.call('ZSCORE', KEYS[2], id)
  if s and tonumber(s) <= t then
    out[#out + 1] = id
    out[#out + 1] = s
  end
end
return out
"""


def _f(x: float) -> str:
    return repr(float(x))


def _opt(x: str | None) -> str:
    return "" if x is None else x


def _none(x: str) -> str | None:
    return None if x == "" else x


def _encode_seq(e: SeqEntry) -> str:
    return SEP.join((_opt(e[0]), _opt(e[1]), _f(e[2]), e[3]))


def _decode_seq(s: str) -> SeqEntry:
    item, room, ts, ty = s.split(SEP)
    return _none(item), _none(room), float(ts), ty


def _decode_room(rid: str, h: dict[str, str]) -> dict[str, Any] | None:
    if not h:
        return None
    return {
        "id": rid,
        "host": _none(h.get("host", "")),
        "title": h.get("title", ""),
        "start": float(h["start"]),
        "end": None if h.get("end", "") == "" else float(h["end"]),
    }


def _decode_slots(h: dict[str, str]) -> list[Slot]:
    out = []
    for field, value in h.items():
        item, start = field.rsplit(SEP, 1)
        end, pinned = value.split(SEP)
        out.append((item, float(start), None if end == "" else float(end), pinned == "1"))
    return out


def _slot_field(item: str, start: float) -> str:
    return f"{item}{SEP}{_f(start)}"


def _slot_value(end: float | None, pinned: bool) -> str:
    return f"{'' if end is None else _f(end)}{SEP}{int(bool(pinned))}"


class RedisState(OnlineState):
    """The shared backend (see :class:`~liveshelf.serving.state.base.OnlineState`).

    >>> state = RedisState("redis://127.0.0.1:6379/0", prefix="shop1:")   # doctest: +SKIP
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "liveshelf:",
        *,
        max_seq: int = 200,
        half_life: float = 3600.0,
        audience_ttl: float = 600.0,
        sequence_types: Any = None,
        dedupe_window: float = 86_400.0,
        socket_timeout: float = 1.5,
        client: Any = None,
    ) -> None:
        super().__init__(
            max_seq=max_seq,
            half_life=half_life,
            audience_ttl=audience_ttl,
            sequence_types=sequence_types,
            dedupe_window=dedupe_window,
        )
        import redis

        if not isinstance(prefix, str) or not prefix:
            raise ConfigError(
                f"The 'prefix' parameter of RedisState must be a non-empty string such as "
                f"'liveshelf:'. Got {prefix!r} instead."
            )
        self.url = url
        self.prefix = prefix
        self._redis = redis
        self.r = (
            client
            if client is not None
            else redis.Redis.from_url(
                url,
                decode_responses=True,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
            )
        )
        try:
            self.r.ping()
        except redis.RedisError as exc:
            raise ConfigError(
                f"Cannot reach Redis at {url!r} ({exc}). Start the server (`redis-server`), fix "
                "the URL, or use the in-memory state ('memory')."
            ) from exc
        self._merge = self.r.register_script(_MERGE_LUA)
        self._apply = self.r.register_script(_APPLY_LUA)
        self._dedupe = self.r.register_script(_DEDUPE_LUA)
        self._live = self.r.register_script(_LIVE_LUA)
        self._audience_sizes = self.r.register_script(_AUDIENCE_LUA)
        self._check_meta()

    def __repr__(self) -> str:
        return f"RedisState(url={self.url!r}, prefix={self.prefix!r})"

    # ---- keys --------------------------------------------------------------------------------
    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _check_meta(self) -> None:
        key = self._k("meta")
        pipe = self.r.pipeline(transaction=True)
        pipe.hsetnx(key, "half_life", _f(self.half_life))
        pipe.hsetnx(key, "anchor", _f(ANCHOR))
        pipe.hmget(key, ["half_life", "anchor"])
        half_life, anchor = pipe.execute()[-1]
        if float(half_life) != self.half_life or float(anchor) != ANCHOR:
            raise ConfigError(
                f"The Redis state under prefix {self.prefix!r} holds counters with half_life="
                f"{half_life} s; this RedisState was created with half_life={self.half_life} s. "
                "Use the same half_life in every worker, or another prefix."
            )

    def _scan(self, pattern: str) -> Iterator[str]:
        escaped = re.sub(r"([*?\[\]\\])", r"\\\1", self.prefix)
        yield from self.r.scan_iter(match=escaped + pattern, count=1000)

    # ---- sync with the store ------------------------------------------------------------------
    def sync_point(self) -> tuple[str | None, int | None]:
        epoch, seq = self.r.hmget(self._k("sync"), ["epoch", "seq"])
        return epoch, None if seq is None else int(seq)

    def mark_synced(self, epoch: str, seq: int) -> None:
        self.r.hset(self._k("sync"), mapping={"epoch": str(epoch), "seq": str(int(seq))})

    def apply_synced(self, events: pd.DataFrame, seq: int) -> int:
        _, current = self.sync_point()
        if current is not None and int(seq) <= current:
            return 0
        batch = prepare_events(events)
        if len(batch):
            self._apply_batch(batch, synced=int(seq))
        else:
            self.r.hset(self._k("sync"), "seq", str(int(seq)))
        return len(batch)

    @contextmanager
    def sync_lock(self, timeout_s: float = 10.0, ttl_s: float = 5.0) -> Iterator[None]:
        """Held by the one worker catching the shared state up (others wait), released on exit.

        It expires after ``ttl_s`` unless :meth:`keep_sync_lock` extends it (the holder does between steps),
        so a lock taken by a request whose client gave up - e.g. queued on a frozen Redis - frees itself soon.
        """
        import secrets
        import time

        key, token = self._k("sync_lock"), secrets.token_hex(8)
        until = time.monotonic() + timeout_s
        while not self.r.set(key, token, nx=True, px=int(ttl_s * 1000)):
            if time.monotonic() > until:
                raise self._redis.TimeoutError(f"the state's sync lock was held for over {timeout_s:g} s")
            time.sleep(0.005)
        self._lock_token, self._lock_ttl = token, ttl_s
        try:
            yield
        finally:
            self._lock_token = None
            if self.r.get(key) == token:
                self.r.delete(key)

    def keep_sync_lock(self) -> None:
        token = getattr(self, "_lock_token", None)
        if token is not None and self.r.get(self._k("sync_lock")) == token:
            self.r.pexpire(self._k("sync_lock"), int(self._lock_ttl * 1000))

    # ---- events ------------------------------------------------------------------------------
    def apply_events(self, events: pd.DataFrame) -> int:
        batch = prepare_events(events)
        if not len(batch):
            return 0
        marked: list[str] = []
        if self.dedupe_window > 0 and (pairs := batch.dedupe_pairs()):
            args: list[str] = [_f(float(batch.ts.max()) - self.dedupe_window)]
            for _, e, t in pairs:
                args += [e, _f(t)]
            flags = self._dedupe(keys=[self._k("seen")], args=args)
            keep = np.ones(len(batch), dtype=bool)
            for (i, e, _), new in zip(pairs, flags, strict=True):
                if new:
                    marked.append(e)
                else:
                    keep[i] = False
            if not keep.all():
                batch = batch.take(keep)
            if not len(batch):
                return 0
        try:
            self._apply_batch(batch)
        except BaseException:
            if marked:  # not applied: let a retry through
                self.r.zrem(self._k("seen"), *marked)
            raise
        return len(batch)

    def replay_events(self, events: pd.DataFrame) -> int:
        batch = prepare_events(events)
        if len(batch):
            self._apply_batch(batch)
        return len(batch)

    def _apply_batch(self, batch: Batch, synced: int | None = None) -> None:
        rooms = sorted({r for r in batch.rooms.tolist() if r is not None})
        items = sorted({i for i in batch.items.tolist() if i is not None})
        read = self.r.pipeline(transaction=False)
        if rooms:
            read.hmget(self._k("room_host"), rooms)
        if items:
            read.hmget(self._k("item_cat"), items)
        got = read.execute()
        host_of = {r: h for r, h in zip(rooms, got.pop(0), strict=True) if h} if rooms else {}
        category_of = {i: c for i, c in zip(items, got.pop(0), strict=True) if c} if items else {}

        seq = sequence_rows(batch, self.sequence_types)
        upserts, removes = audience_updates(batch)
        adds: dict[str, list[str]] = {}
        rems: dict[str, list[str]] = {}
        user_rooms: dict[str, list[str]] = {}
        for room, user, ts in upserts:
            adds.setdefault(room, []).extend((user, _f(ts)))
            user_rooms.setdefault(user, []).append(room)
        for room, user in removes:
            rems.setdefault(room, []).append(user)
        aud_rooms = list(adds.keys() | rems.keys())
        keys = (
            [self._k("seq", u) for u in seq]
            + [self._k("aud", r) for r in aud_rooms]
            + [self._k("urooms", u) for u in user_rooms]
        )
        args: list[str | int] = [self.max_seq, len(seq), len(aud_rooms), len(user_rooms)]
        for rows in seq.values():
            args.append(len(rows))
            args += [_encode_seq(e) for e in rows]
        for room in aud_rooms:
            pairs, gone = adds.get(room, []), rems.get(room, [])
            args += [len(pairs) // 2, *pairs, len(gone), *gone]
        for rooms_of_user in user_rooms.values():
            args += [len(rooms_of_user), *rooms_of_user]

        by_key: dict[str, list[str]] = {}
        for kind, up in counter_updates(batch, self.half_life, host_of, category_of).items():
            scopes = up.scopes.tolist()
            for j, (member, score) in enumerate(zip(up.keys.tolist(), up.scores.tolist(), strict=True)):
                key = self._k("cnt", "room_item", scopes[j]) if kind == "room_item" else self._k("cnt", kind)
                by_key.setdefault(key, []).extend((member, _f(score)))
        c_keys = list(by_key)
        c_args: list[str | int] = []
        for flat in by_key.values():
            c_args += [len(flat) // 2, *flat]
        pipe = self.r.pipeline(transaction=True)
        if keys:
            self._apply(keys=keys, args=args, client=pipe)
        if c_keys:
            self._merge(keys=c_keys, args=c_args, client=pipe)
        if synced is not None:  # the store seq moves in the same transaction as the events it covers
            pipe.hset(self._k("sync"), "seq", str(synced))
        pipe.execute()

    def user_sequence(self, user: str, limit: int | None = None) -> list[SeqEntry]:
        check_limit(limit)
        start = 0 if limit is None else -limit
        return [_decode_seq(s) for s in self.r.lrange(self._k("seq", user), start, -1)]

    def delete_user(self, user: str) -> None:
        rooms = self.r.smembers(self._k("urooms", user))
        pipe = self.r.pipeline(transaction=True)
        for room in rooms:
            pipe.zrem(self._k("aud", room), user)
        pipe.delete(self._k("urooms", user), self._k("seq", user))
        pipe.execute()

    # ---- catalogue ---------------------------------------------------------------------------
    def upsert_items(self, frame: pd.DataFrame) -> int:
        if "id" not in frame.columns or "category" not in frame.columns:
            raise ValidationError(
                "The items frame given to upsert_items needs columns 'id' and 'category'; got "
                f"{list(frame.columns)}. Rename the columns.",
                field="items",
                value=list(frame.columns),
            )
        sub = frame[frame["id"].notna()]
        keep: dict[str, str] = {}
        drop: list[str] = []
        for item, cat in zip(sub["id"].astype(str).tolist(), sub["category"].tolist(), strict=True):
            if isinstance(cat, str) and cat.strip():
                keep[item] = cat
                if item in drop:
                    drop.remove(item)
            else:
                keep.pop(item, None)
                drop.append(item)
        pipe = self.r.pipeline(transaction=True)
        if keep:
            pipe.hset(self._k("item_cat"), mapping=keep)
        if drop:
            pipe.hdel(self._k("item_cat"), *drop)
        pipe.execute()
        return len(sub)

    def _write_room(self, pipe: Any, row: dict[str, Any]) -> None:
        rid = row["id"]
        pipe.hset(
            self._k("room", rid),
            mapping={
                "host": _opt(row["host"]),
                "title": row["title"] or "",
                "start": _f(row["start"]),
                "end": "" if row["end"] is None else _f(row["end"]),
            },
        )
        pipe.hset(self._k("room_host"), rid, _opt(row["host"]))
        pipe.zadd(self._k("rooms", "start"), {rid: row["start"]})
        pipe.zadd(self._k("rooms", "end"), {rid: math.inf if row["end"] is None else row["end"]})

    def upsert_rooms(self, frame: pd.DataFrame) -> int:
        rows = room_rows(frame)
        pipe = self.r.pipeline(transaction=True)
        for row in rows:
            self._write_room(pipe, row)
        self._bump(pipe)
        pipe.execute()
        return len(rows)

    def room(self, room: str) -> dict[str, Any] | None:
        return _decode_room(room, self.r.hgetall(self._k("room", room)))

    def rooms(self, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        if not ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for r in ids:
            pipe.hgetall(self._k("room", r))
        return [_decode_room(r, h) for r, h in zip(ids, pipe.execute(), strict=True)]

    def _bump(self, pipe: Any) -> None:
        """Queue the increment of the live version (in the write's own transaction)."""
        pipe.incr(self._k(_LIVE_VERSION))

    def live_version(self) -> int | None:
        return int(self.r.get(self._k(_LIVE_VERSION)) or 0)

    def live_layout(self, t: TimeLike) -> LiveLayout:
        t = to_seconds(t)
        rooms = self.live_rooms(t)
        pipe = self.r.pipeline(transaction=False)
        for key in (self._k("rooms", "start"), self._k("rooms", "end")):
            pipe.zrevrangebyscore(key, _f(t), "-inf", start=0, num=1, withscores=True)
            pipe.zrangebyscore(key, f"({_f(t)}", "+inf", start=0, num=1, withscores=True)
        for r in rooms:
            pipe.hgetall(self._k("room", r))
            pipe.hgetall(self._k("shelf", r))
        res = pipe.execute()
        bounds = [float(sc) for part in res[:4] for _, sc in part]
        info, shelves, keep = [], [], []
        for j, r in enumerate(rooms):
            row = _decode_room(r, res[4 + 2 * j])
            if row is None or not is_live(row, t):
                continue
            slots = _decode_slots(res[5 + 2 * j])
            bounds += [s for _, s, _, _ in slots] + [e for _, _, e, _ in slots if e is not None]
            keep.append(r)
            info.append(row)
            shelves.append(order_shelf(slots, t))
        lo, hi = validity(bounds, t)
        return LiveLayout(keep, info, shelves, lo, hi)

    def _require_room(self, room: str) -> dict[str, Any]:
        row = self.room(room)
        if row is None:
            raise NotFoundError(f"Room {room!r} is not in the online state; add it with upsert_rooms first.")
        return row

    def _slots(self, room: str) -> list[Slot]:
        return _decode_slots(self.r.hgetall(self._k("shelf", room)))

    def _write_slots(self, room: str, rows: list[Slot], pipe: Any = None) -> int:
        own = pipe is None
        pipe = self.r.pipeline(transaction=True) if own else pipe
        if rows:
            pipe.hset(
                self._k("shelf", room), mapping={_slot_field(i, s): _slot_value(e, p) for i, s, e, p in rows}
            )
            self._bump(pipe)
        if own:
            pipe.execute()
        return len(rows)

    def end_room(self, room: str, t: TimeLike) -> None:
        t = to_seconds(t)
        row = self._require_room(room)
        check_end_time(room, row, t)
        pipe = self.r.pipeline(transaction=True)
        self._write_room(pipe, {**row, "end": t})
        self._write_slots(room, end_room_slots(self._slots(room), t), pipe)
        pipe.delete(self._k("aud", room))
        self._bump(pipe)
        pipe.execute()

    def live_rooms(self, t: TimeLike) -> list[str]:
        t = to_seconds(t)
        flat = self._live(keys=[self._k("rooms", "end"), self._k("rooms", "start")], args=[_f(t)])
        pairs = [(float(flat[i + 1]), flat[i]) for i in range(0, len(flat), 2)]
        return [r for _, r in sorted(pairs)]

    def upsert_shelf(self, frame: pd.DataFrame) -> int:
        rows = slot_rows(frame)
        rooms = sorted({r for r, *_ in rows})
        pipe = self.r.pipeline(transaction=False)
        for room in rooms:
            pipe.exists(self._k("room", room))
        unknown = [r for r, ok in zip(rooms, pipe.execute(), strict=True) if not ok]
        if unknown:
            raise ValidationError(
                f"Shelf slots refer to rooms the online state does not know, e.g. "
                f"{unknown[0]!r}; upsert those rooms first.",
                field="shelf.room",
                value=unknown[0],
            )
        by_room: dict[str, list[Slot]] = {}
        for room, item, start, end, pinned in rows:
            by_room.setdefault(room, []).append((item, start, end, pinned))
        pipe = self.r.pipeline(transaction=True)
        for room, slots in by_room.items():
            self._write_slots(room, slots, pipe)
        pipe.execute()
        return len(rows)

    def unpin(self, room: str, item: str, t: TimeLike) -> int:
        t = to_seconds(t)
        self._require_room(room)
        return self._write_slots(room, unpin_slots(self._slots(room), item, t))

    def end_slot(self, room: str, item: str, t: TimeLike) -> int:
        t = to_seconds(t)
        self._require_room(room)
        return self._write_slots(room, end_item_slots(self._slots(room), item, t))

    def shelf(self, room: str, t: TimeLike) -> list[str]:
        t = to_seconds(t)
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self._k("room", room))
        pipe.hgetall(self._k("shelf", room))
        row, slots = pipe.execute()
        if not is_live(_decode_room(room, row), t):
            return []
        return order_shelf(_decode_slots(slots), t)

    def audience(self, room: str, t: TimeLike) -> list[str]:
        t = to_seconds(t)
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self._k("room", room))
        pipe.zrangebyscore(self._k("aud", room), f"({_f(t - self.audience_ttl)}", "+inf", withscores=True)
        row, members = pipe.execute()
        room_row = _decode_room(room, row)
        if room_row is not None and not is_live(room_row, t):
            return []
        return audience_order(members, t, self.audience_ttl)

    def audience_sizes(self, rooms: Sequence[str], t: TimeLike) -> np.ndarray:
        t = to_seconds(t)
        if not len(rooms):
            return np.zeros(0)
        keys = [k for r in rooms for k in (self._k("room", r), self._k("aud", r))]
        got = self._audience_sizes(keys=keys, args=[_f(t), _f(t - self.audience_ttl)])
        return np.asarray(got, dtype=np.float64)

    def prune(self, t: TimeLike) -> int:
        cutoff = _f(to_seconds(t) - self.audience_ttl)
        keys = list(self._scan("aud:*"))
        if not keys:
            return 0
        pipe = self.r.pipeline(transaction=False)
        for key in keys:
            pipe.zremrangebyscore(key, "-inf", cutoff)
        return int(sum(pipe.execute()))

    # ---- counters ----------------------------------------------------------------------------
    def _counter_key(self, kind: str, scope: str | None) -> str:
        return self._k("cnt", "room_item", scope or "") if kind == "room_item" else self._k("cnt", kind)

    def _top_scores(self, kind: str, k: int, scope: str | None) -> list[tuple[str, float]]:
        rows = self.r.zrevrange(self._counter_key(kind, scope), 0, k - 1, withscores=True)
        return [(m, float(s)) for m, s in rows]

    def counters(self, kind: str, keys: Sequence[str], t: TimeLike) -> np.ndarray:
        if kind == "room_item":
            return super().counters(kind, keys, t)
        check_kind(kind, None, "counters")
        out = np.zeros(len(keys))
        if not len(keys):
            return out
        got = self.r.zmscore(self._counter_key(kind, None), [str(k) for k in keys])
        s = np.asarray([-np.inf if x is None else float(x) for x in got], dtype=np.float64)
        hit = np.isfinite(s)
        out[hit] = decayed(s[hit], to_seconds(t), self.half_life)
        return out

    def _score(self, kind: str, key: str, scope: str | None) -> float | None:
        s = self.r.zscore(self._counter_key(kind, scope), key)
        return None if s is None else float(s)

    # ---- whole state -------------------------------------------------------------------------
    def _own_keys(self) -> Iterator[str]:
        """Keys of this state (not those of a longer prefix that starts with this one)."""
        n = len(self.prefix)
        for key in self._scan("*"):
            if key[n:].partition(":")[0] in _KINDS:
                yield key

    def clear(self) -> None:
        batch: list[str] = []
        for key in self._own_keys():
            batch.append(key)
            if len(batch) >= 1000:
                self.r.unlink(*batch)
                batch = []
        if batch:
            self.r.unlink(*batch)
        self.r.incr(self._k(_LIVE_VERSION))
        self._check_meta()

    def export(self) -> dict[str, Any]:
        p = self.prefix
        keys = sorted(self._own_keys())
        pipe = self.r.pipeline(transaction=False)
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
            **self._header(),
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
                out["sequences"][rest] = [list(_decode_seq(s)) for s in value]
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
                row = _decode_room(rest, value)
                if row is not None:
                    out["rooms"][rest] = {k: v for k, v in row.items() if k != "id"}
            elif kind == "shelf":
                out["shelf"][rest] = [list(s) for s in sorted(_decode_slots(value))]
            elif kind == "items":
                out["items"] = dict(value)
        return out

    def _import(self, data: dict[str, Any]) -> None:
        self.clear()
        pipe = self.r.pipeline(transaction=True)
        for user, rows in data.get("sequences", {}).items():
            if rows:
                pipe.rpush(self._k("seq", user), *[_encode_seq(tuple(r)) for r in rows[-self.max_seq :]])
        for room, members in data.get("audience", {}).items():
            if members:
                pipe.zadd(self._k("aud", room), {u: float(s) for u, s in members.items()})
                for u in members:
                    pipe.sadd(self._k("urooms", u), room)
        for rid, row in data.get("rooms", {}).items():
            self._write_room(
                pipe,
                {
                    "id": rid,
                    "host": row.get("host"),
                    "title": row.get("title", ""),
                    "start": float(row["start"]),
                    "end": None if row.get("end") is None else float(row["end"]),
                },
            )
        for room, slots in data.get("shelf", {}).items():
            self._write_slots(
                room, [(i, float(s), None if e is None else float(e), bool(p)) for i, s, e, p in slots], pipe
            )
        if data.get("items"):
            pipe.hset(self._k("item_cat"), mapping={str(k): str(v) for k, v in data["items"].items()})
        if data.get("seen"):
            pipe.zadd(self._k("seen"), {str(e): float(t) for e, t in data["seen"].items()})
        counters = data.get("counters", {})
        for kind in COUNTER_KINDS:
            tables = counters.get(kind, {})
            if kind == "room_item":
                for room, table in tables.items():
                    if table:
                        pipe.zadd(self._k("cnt", "room_item", room), {m: float(s) for m, s in table.items()})
            elif tables:
                pipe.zadd(self._k("cnt", kind), {m: float(s) for m, s in tables.items()})
        self._bump(pipe)
        pipe.execute()

    def close(self) -> None:
        self.r.close()
