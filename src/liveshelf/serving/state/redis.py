"""Redis online state: several uvicorn workers (or machines) share one state.

The keys and their encodings are :mod:`liveshelf.serving.state.redis_layout`; the Lua scripts
are :mod:`liveshelf.serving.state.redis_lua`.

One ``apply_events`` call is one MULTI/EXEC transaction of two Lua scripts (sequences and
audiences; log-adding the counters), so other workers see a batch entirely or not at all,
and the next read sees it (read-your-writes). Decisions use the same functions as the
memory backend (:mod:`liveshelf.serving.state.base`), so both give equal answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from liveshelf.core.timeutil import TimeLike, to_seconds
from liveshelf.errors import ConfigError, NotFoundError, ValidationError
from liveshelf.serving.state.base import OnlineState
from liveshelf.serving.state.batch import (
    Batch,
    SeqEntry,
    audience_updates,
    check_limit,
    prepare_events,
    sequence_rows,
)
from liveshelf.serving.state.counters import ANCHOR, check_kind, counter_updates, decayed
from liveshelf.serving.state.redis_layout import (
    KINDS,
    LIVE_VERSION,
    Slot,
    bump,
    decode_room,
    decode_seq,
    decode_slots,
    encode_seq,
    fmt,
    read_state,
    write_room,
    write_slots,
    write_state,
)
from liveshelf.serving.state.redis_lua import APPLY_LUA, AUDIENCE_LUA, DEDUPE_LUA, LIVE_LUA, MERGE_LUA
from liveshelf.serving.state.shelves import (
    LiveLayout,
    audience_order,
    check_end_time,
    end_item_slots,
    end_room_slots,
    is_live,
    order_shelf,
    room_rows,
    slot_rows,
    unpin_slots,
    validity,
)


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
        self.r: Any = (  # decode_responses: every reply is str
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
        self._merge = self.r.register_script(MERGE_LUA)
        self._apply = self.r.register_script(APPLY_LUA)
        self._dedupe = self.r.register_script(DEDUPE_LUA)
        self._live = self.r.register_script(LIVE_LUA)
        self._audience_sizes = self.r.register_script(AUDIENCE_LUA)
        self._lock_token: str | None = None  # set while this object holds the sync lock
        self._lock_ttl = 5.0
        self._check_meta()

    def __repr__(self) -> str:
        return f"RedisState(url={self.url!r}, prefix={self.prefix!r})"

    # ---- keys --------------------------------------------------------------------------------
    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _check_meta(self) -> None:
        key = self._k("meta")
        pipe = self.r.pipeline(transaction=True)
        pipe.hsetnx(key, "half_life", fmt(self.half_life))
        pipe.hsetnx(key, "anchor", fmt(ANCHOR))
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
        token = self._lock_token
        if token is not None and self.r.get(self._k("sync_lock")) == token:
            self.r.pexpire(self._k("sync_lock"), int(self._lock_ttl * 1000))

    # ---- events ------------------------------------------------------------------------------
    def apply_events(self, events: pd.DataFrame) -> int:
        batch = prepare_events(events)
        if not len(batch):
            return 0
        marked: list[str] = []
        if self.dedupe_window > 0 and (pairs := batch.dedupe_pairs()):
            args: list[str] = [fmt(float(batch.ts.max()) - self.dedupe_window)]
            for _, e, t in pairs:
                args += [e, fmt(t)]
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
            adds.setdefault(room, []).extend((user, fmt(ts)))
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
            args += [encode_seq(e) for e in rows]
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
                by_key.setdefault(key, []).extend((member, fmt(score)))
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
        return [decode_seq(s) for s in self.r.lrange(self._k("seq", user), start, -1)]

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

    def upsert_rooms(self, frame: pd.DataFrame) -> int:
        rows = room_rows(frame)
        pipe = self.r.pipeline(transaction=True)
        for row in rows:
            write_room(pipe, self._k, row)
        bump(pipe, self._k)
        pipe.execute()
        return len(rows)

    def room(self, room: str) -> dict[str, Any] | None:
        return decode_room(room, self.r.hgetall(self._k("room", room)))

    def rooms(self, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        if not ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for r in ids:
            pipe.hgetall(self._k("room", r))
        return [decode_room(r, h) for r, h in zip(ids, pipe.execute(), strict=True)]

    def live_version(self) -> int | None:
        return int(self.r.get(self._k(LIVE_VERSION)) or 0)

    def live_layout(self, t: TimeLike) -> LiveLayout:
        t = to_seconds(t)
        rooms = self.live_rooms(t)
        pipe = self.r.pipeline(transaction=False)
        for key in (self._k("rooms", "start"), self._k("rooms", "end")):
            pipe.zrevrangebyscore(key, fmt(t), "-inf", start=0, num=1, withscores=True)
            pipe.zrangebyscore(key, f"({fmt(t)}", "+inf", start=0, num=1, withscores=True)
        for r in rooms:
            pipe.hgetall(self._k("room", r))
            pipe.hgetall(self._k("shelf", r))
        res = pipe.execute()
        bounds = [float(sc) for part in res[:4] for _, sc in part]
        info, shelves, keep = [], [], []
        for j, r in enumerate(rooms):
            row = decode_room(r, res[4 + 2 * j])
            if row is None or not is_live(row, t):
                continue
            slots = decode_slots(res[5 + 2 * j])
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
        return decode_slots(self.r.hgetall(self._k("shelf", room)))

    def _write_slots(self, room: str, rows: list[Slot], pipe: Any = None) -> int:
        if pipe is not None:
            return write_slots(pipe, self._k, room, rows)
        own = self.r.pipeline(transaction=True)
        n = write_slots(own, self._k, room, rows)
        own.execute()
        return n

    def end_room(self, room: str, t: TimeLike) -> None:
        t = to_seconds(t)
        row = self._require_room(room)
        check_end_time(room, row, t)
        pipe = self.r.pipeline(transaction=True)
        write_room(pipe, self._k, {**row, "end": t})
        self._write_slots(room, end_room_slots(self._slots(room), t), pipe)
        pipe.delete(self._k("aud", room))
        bump(pipe, self._k)
        pipe.execute()

    def live_rooms(self, t: TimeLike) -> list[str]:
        t = to_seconds(t)
        flat = self._live(keys=[self._k("rooms", "end"), self._k("rooms", "start")], args=[fmt(t)])
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
        if not is_live(decode_room(room, row), t):
            return []
        return order_shelf(decode_slots(slots), t)

    def audience(self, room: str, t: TimeLike) -> list[str]:
        t = to_seconds(t)
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self._k("room", room))
        pipe.zrangebyscore(self._k("aud", room), f"({fmt(t - self.audience_ttl)}", "+inf", withscores=True)
        row, members = pipe.execute()
        room_row = decode_room(room, row)
        if room_row is not None and not is_live(room_row, t):
            return []
        return audience_order(members, t, self.audience_ttl)

    def audience_sizes(self, rooms: Sequence[str], t: TimeLike) -> np.ndarray:
        t = to_seconds(t)
        if not len(rooms):
            return np.zeros(0)
        keys = [k for r in rooms for k in (self._k("room", r), self._k("aud", r))]
        got = self._audience_sizes(keys=keys, args=[fmt(t), fmt(t - self.audience_ttl)])
        return np.asarray(got, dtype=np.float64)

    def prune(self, t: TimeLike) -> int:
        cutoff = fmt(to_seconds(t) - self.audience_ttl)
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
            if key[n:].partition(":")[0] in KINDS:
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
        self.r.incr(self._k(LIVE_VERSION))
        self._check_meta()

    def export(self) -> dict[str, Any]:
        return {**self._header(), **read_state(self.r, self.prefix, sorted(self._own_keys()))}

    def _import(self, data: dict[str, Any]) -> None:
        self.clear()
        pipe = self.r.pipeline(transaction=True)
        write_state(pipe, self._k, data, self.max_seq)
        pipe.execute()

    def close(self) -> None:
        self.r.close()
