"""Replay a simulated day of live commerce against a running server over HTTP, in accelerated real time.

A :class:`ReplayPlan` turns the frames of a simulated period (rooms, shelf slots, events) into
a time-ordered schedule: rooms going live and ending, items put on and taken off shelves,
viewer events. :class:`TrafficReplayer` walks that schedule on a clock running ``speed`` times
faster than the wall clock and drives the public API the way a live-commerce front end would:

* rooms and shelves: ``PUT /v1/rooms`` (``rooms`` / ``shelf`` rows, ``end_room`` and ``remove_item``
  actions), one request per tick for everything due;
* viewers: every simulated ``enter`` makes the viewer ask for a feed (``GET /v1/users/{u}/feed``)
  and, once in the room, for its shelf (``GET /v1/rooms/{r}/shelf?user=u``); every ``next_item_every_s``
  seconds the host asks ``GET /v1/rooms/{r}/next-item`` for each live room. Reads are paced by a token
  bucket at ``rate`` requests/s (reads over the budget are counted as ``reads_skipped``, not queued);
* events (impressions, views, clicks, carts, purchases, comments, ...): ``POST /v1/events`` in batches
  every ``batch_s`` seconds, with their original ``event_id`` so a retry is a no-op.

Times sent to the server are wall-clock times: simulated time ``t`` maps to
``wall0 + (t - sim0) / speed``, so a two-hour room is live for two minutes at ``speed=60``, and
the server's "now" (feeds, dashboards) sees the replayed rooms live. When the schedule is used
up the day starts again with fresh ids (suffix ``c1``, ``c2`` ...), so the replay can run for as
long as the caller wants.

>>> plan = ReplayPlan.from_frames(replay.events, replay.rooms, replay.shelf)      # doctest: +SKIP
>>> with httpx.Client(base_url="http://127.0.0.1:8000") as client:              # doctest: +SKIP
...     stats = TrafficReplayer(client, plan, api_key="k", speed=60).run(duration=30)
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from liveshelf.core.timeutil import column_seconds
from liveshelf.errors import ConfigError, check_param

#: Schedule kinds, in the order they are applied when due at the same simulated second.
KINDS: tuple[str, ...] = ("room_start", "slot_start", "event", "slot_end", "room_end")
_ORDER = {k: i for i, k in enumerate(KINDS)}
#: Counters every replay reports (zero when nothing happened).
COUNTS: tuple[str, ...] = (
    "events_posted",
    "events_accepted",
    "events_duplicate",
    "events_rejected",
    "feed",
    "shelf",
    "next_item",
    "reads_skipped",
    "rooms_started",
    "rooms_ended",
    "rooms_live",
    "slots_added",
    "slots_removed",
    "room_actions",
    "idle_skipped_s",
    "errors",
)
DAY_S = 86_400.0


def _clean(value: Any) -> Any:
    """JSON-safe scalar: NaN/NA -> None, numpy -> Python."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
        return None if isinstance(value, float) and math.isnan(value) else value
    return value


@dataclass
class ReplayPlan:
    """A time-ordered schedule of room, shelf and event actions over one simulated period.

    ``t`` holds simulated epoch seconds (sorted), ``kind`` one of :data:`KINDS`, ``payload``
    the row each action sends (ids and fields, times as simulated seconds). ``period`` is the
    length of one cycle (a day by default); ``start`` the simulated time the replay begins
    at (the busiest moment by default, see :meth:`busiest`).
    """

    t: np.ndarray
    kind: list[str]
    payload: list[dict[str, Any]]
    period_start: float
    period: float = DAY_S
    start: float | None = None

    def __len__(self) -> int:
        return len(self.t)

    def counts(self) -> dict[str, int]:
        """Actions per kind."""
        return dict(Counter(self.kind))

    @classmethod
    def from_frames(
        cls,
        events: pd.DataFrame,
        rooms: pd.DataFrame,
        shelf: pd.DataFrame | None = None,
        *,
        period_start: float | None = None,
        period: float = DAY_S,
    ) -> ReplayPlan:
        """The schedule of ``rooms`` (start/end), their ``shelf`` slots and ``events`` (schema frames).

        Events of rooms outside ``rooms`` are dropped (their room never goes live in the replay).
        """
        check_param("period", period, period > 0, "a number of seconds > 0", "ReplayPlan")
        if not len(rooms):
            raise ConfigError(
                "ReplayPlan.from_frames needs at least one room in 'rooms'. Got an empty frame; "
                "simulate more days or hosts."
            )
        t_parts: list[np.ndarray] = []
        kinds: list[str] = []
        payload: list[dict[str, Any]] = []
        r_start, r_end = column_seconds(rooms["start"]), column_seconds(rooms["end"])
        room_ids = set()
        for i, row in enumerate(rooms.itertuples(index=False)):
            room_ids.add(row.id)
            info = {"id": row.id, "host": row.host, "title": _clean(row.title), "start": float(r_start[i])}
            t_parts.append(np.array([r_start[i]]))
            kinds.append("room_start")
            payload.append(info)
            if not math.isnan(r_end[i]):
                t_parts.append(np.array([r_end[i]]))
                kinds.append("room_end")
                payload.append({"room": row.id, "at": float(r_end[i])})
        room_end = dict(zip(rooms["id"], r_end, strict=True))
        if shelf is not None and len(shelf):
            shelf = shelf[shelf["room"].isin(room_ids)]
            s_start, s_end = column_seconds(shelf["start"]), column_seconds(shelf["end"])
            for i, row in enumerate(shelf.itertuples(index=False)):
                t_parts.append(np.array([s_start[i]]))
                kinds.append("slot_start")
                payload.append(
                    {
                        "room": row.room,
                        "item": row.item,
                        "start": float(s_start[i]),
                        "pinned": bool(_clean(row.pinned) or False),
                    }
                )
                end = s_end[i]
                r_e = room_end.get(row.room, np.nan)
                if not math.isnan(end) and (math.isnan(r_e) or end < r_e):  # else the room's end takes it off
                    t_parts.append(np.array([end]))
                    kinds.append("slot_end")
                    payload.append({"room": row.room, "item": row.item, "at": float(end)})
        ev = events[events["room"].isna() | events["room"].isin(room_ids)]
        e_t = column_seconds(ev["ts"])
        cols = ("event_id", "user", "type", "room", "item", "value", "text")
        values = {c: ev[c].to_numpy(dtype=object) for c in cols}
        for i in range(len(ev)):
            t_parts.append(e_t[i : i + 1])
            kinds.append("event")
            payload.append({c: _clean(values[c][i]) for c in cols} | {"t": float(e_t[i])})
        t = np.concatenate(t_parts) if t_parts else np.zeros(0)
        order = np.lexsort((np.array([_ORDER[k] for k in kinds]), t))
        t = t[order]
        start = float(period_start) if period_start is not None else float(np.floor(t.min() / DAY_S) * DAY_S)
        return cls(
            t=t,
            kind=[kinds[i] for i in order],
            payload=[payload[i] for i in order],
            period_start=start,
            period=period,
        )

    def busiest(self, bin_s: float = 600.0) -> float:
        """Start of the ``bin_s`` window with the most events: where a short demo sees the most life."""
        ev = self.t[np.array([k == "event" for k in self.kind], dtype=bool)]
        if not len(ev):
            return float(self.t.min())
        bins = np.floor((ev - self.period_start) / bin_s).astype(np.int64)
        best = np.bincount(bins - bins.min()).argmax() + bins.min()
        return float(self.period_start + best * bin_s)

    def live_at(self, t: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Rooms live at ``t`` and the shelf slots of those rooms on the shelf at ``t`` (started before ``t``)."""
        started = {
            p["id"]: p
            for tt, k, p in zip(self.t, self.kind, self.payload, strict=True)
            if k == "room_start" and tt < t
        }
        ended = {
            p["room"]
            for tt, k, p in zip(self.t, self.kind, self.payload, strict=True)
            if k == "room_end" and tt <= t
        }
        live = {r: p for r, p in started.items() if r not in ended}
        slots: dict[tuple[str, str], dict[str, Any]] = {}
        for tt, k, p in zip(self.t, self.kind, self.payload, strict=True):
            if tt >= t:
                break
            key = (p.get("room"), p.get("item"))
            if k == "slot_start" and p["room"] in live:
                slots[key] = p
            elif k == "slot_end":
                slots.pop(key, None)
        return list(live.values()), list(slots.values())


@dataclass
class TrafficStats:
    """Counters of one replay (all requests, by outcome)."""

    counts: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    sim_time: float = 0.0
    cycle: int = 0
    started: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        counts = {**dict.fromkeys(COUNTS, 0), **self.counts}
        return {
            **{k: int(v) for k, v in sorted(counts.items())},
            "http_status": {
                str(k): int(v) for k, v in sorted(self.statuses.items(), key=lambda kv: str(kv[0]))
            },
            "sim_time": pd.Timestamp(self.sim_time, unit="s", tz="UTC").isoformat()
            if self.sim_time
            else None,
            "cycle": self.cycle,
            "seconds": round(time.time() - self.started, 2),
        }

    def line(self) -> str:
        """One status line: events posted/accepted, reads, rooms live."""
        c = self.counts
        return (
            f"events {c['events_accepted']:,}/{c['events_posted']:,} accepted | feed {c['feed']:,} "
            f"shelf {c['shelf']:,} next-item {c['next_item']:,} | rooms live {c['rooms_live']:,} "
            f"| errors {c['errors']:,}"
        )


class TrafficReplayer:
    """Drive a liveshelf server with a :class:`ReplayPlan` (see the module docstring).

    ``client`` is an ``httpx.Client`` with the server's ``base_url`` (a FastAPI ``TestClient``
    works too); ``api_key`` is sent in ``X-API-Key`` (writes need one). ``speed`` simulated
    seconds pass per wall second; ``rate`` caps feed/shelf/next-item reads per second;
    ``batch_s`` is the event flush interval; ``max_batch`` the largest events batch. While no
    room is live and the next action is more than ``skip_idle_s`` simulated seconds away (the
    night), the clock jumps to it (None: never), so a long replay never sits idle.
    """

    def __init__(
        self,
        client: Any,
        plan: ReplayPlan,
        *,
        api_key: str | None = None,
        speed: float = 60.0,
        rate: float = 10.0,
        batch_s: float = 0.5,
        max_batch: int = 2000,
        next_item_every_s: float = 5.0,
        feed_k: int = 10,
        shelf_k: int = 20,
        skip_idle_s: float | None = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        where = "TrafficReplayer"
        check_param("speed", speed, isinstance(speed, (int, float)) and speed > 0, "a number > 0", where)
        check_param(
            "rate", rate, isinstance(rate, (int, float)) and rate >= 0, "a number >= 0 (reads/s)", where
        )
        check_param(
            "batch_s", batch_s, isinstance(batch_s, (int, float)) and batch_s > 0, "a number > 0", where
        )
        check_param(
            "max_batch",
            max_batch,
            isinstance(max_batch, int) and 1 <= max_batch <= 10_000,
            "an int in [1, 10000]",
            where,
        )
        if not len(plan):
            raise ConfigError(
                "The 'plan' of TrafficReplayer is empty: nothing to replay. Build it from a "
                "period with rooms and events."
            )
        self.client = client
        self.plan = plan
        self.headers = {"X-API-Key": api_key} if api_key else {}
        self.speed = float(speed)
        self.rate = float(rate)
        self.batch_s = float(batch_s)
        self.max_batch = max_batch
        self.next_item_every_s = next_item_every_s
        self.feed_k = feed_k
        self.shelf_k = shelf_k
        self.skip_idle_s = skip_idle_s
        self.clock = clock
        self.stats = TrafficStats()
        self._live: set[str] = set()
        self._tokens = max(1.0, self.rate)
        self._token_t = 0.0
        self._events: list[dict[str, Any]] = []
        self._end: float | None = None
        self._reads: list[tuple[str, str, str | None]] = []

    # ---- time ------------------------------------------------------------------------------
    def wall(self, t_sim: float) -> float:
        """The wall-clock time (epoch seconds) that simulated time ``t_sim`` of the current cycle maps to."""
        return self._wall0 + (t_sim - self._sim0) / self.speed

    def _suffix(self, value: str | None, cycle: int) -> str | None:
        return value if value is None or cycle == 0 else f"{value}c{cycle}"

    # ---- HTTP ------------------------------------------------------------------------------
    def _send(self, method: str, url: str, what: str, **kw: Any) -> Any:
        try:
            resp = self.client.request(method, url, headers=self.headers, **kw)
        except Exception as exc:  # connection refused, timeouts: counted, the replay goes on
            self.stats.counts["errors"] += 1
            self.stats.statuses[type(exc).__name__] += 1
            return None
        self.stats.statuses[resp.status_code] += 1
        if resp.status_code >= 400:
            self.stats.counts["errors"] += 1
            self.stats.counts[f"{what}_failed"] += 1
            return None
        return resp.json()

    def _put_rooms(self, rooms: list[dict], shelf: list[dict], actions: list[dict]) -> None:
        if not (rooms or shelf or actions):
            return
        body = self._send(
            "PUT", "/v1/rooms", "rooms", json={"rooms": rooms, "shelf": shelf, "actions": actions}
        )
        if body is not None:
            self.stats.counts["rooms_started"] += len(rooms)
            self.stats.counts["slots_added"] += len(shelf)
            self.stats.counts["room_actions"] += int(body.get("actions", 0))

    def _flush_events(self) -> None:
        while self._events:
            batch, self._events = self._events[: self.max_batch], self._events[self.max_batch :]
            body = self._send("POST", "/v1/events", "events", json={"events": batch})
            self.stats.counts["events_posted"] += len(batch)
            if body is not None:
                for key in ("accepted", "duplicate", "rejected"):
                    self.stats.counts[f"events_{key}"] += int(body.get(key, 0))

    def _take_token(self, now: float) -> bool:
        if self.rate <= 0:
            return False
        self._tokens = min(max(1.0, self.rate), self._tokens + (now - self._token_t) * self.rate)
        self._token_t = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def _read(self, kind: str, a: str, b: str | None) -> None:
        now = self.clock()
        if self._end is not None and now >= self._end:
            return  # the run is over: reads left in the queue are dropped
        if not self._take_token(now):
            self.stats.counts["reads_skipped"] += 1
            return
        if kind == "feed":
            body = self._send("GET", f"/v1/users/{a}/feed", "feed", params={"k": self.feed_k})
        elif kind == "shelf":
            params: dict[str, Any] = {"k": self.shelf_k}
            if b is not None:
                params["user"] = b
            body = self._send("GET", f"/v1/rooms/{a}/shelf", "shelf", params=params)
        else:
            body = self._send("GET", f"/v1/rooms/{a}/next-item", "next_item", params={"k": 5})
        if body is not None:
            self.stats.counts[kind] += 1

    # ---- one tick --------------------------------------------------------------------------
    def _due(self, until: float, cycle: int, offset: float) -> None:
        """Apply every action of the current cycle with simulated time < ``until``."""
        plan = self.plan
        rooms: list[dict] = []
        shelf: list[dict] = []
        actions: list[dict] = []
        while self._pos < len(plan) and plan.t[self._pos] + offset < until:
            kind, p = plan.kind[self._pos], plan.payload[self._pos]
            self._pos += 1
            room = self._suffix(p.get("room") or p.get("id"), cycle)
            if kind == "room_start":
                rooms.append(
                    {
                        "id": room,
                        "host": p["host"],
                        "title": p["title"],
                        "start": self.wall(p["start"] + offset),
                    }
                )
                self._live.add(room)
            elif kind == "slot_start":
                if room in self._live:
                    shelf.append(
                        {
                            "room": room,
                            "item": p["item"],
                            "start": self.wall(p["start"] + offset),
                            "pinned": p["pinned"],
                        }
                    )
            elif kind == "slot_end":
                if room in self._live:
                    actions.append(
                        {
                            "op": "remove_item",
                            "room": room,
                            "item": p["item"],
                            "at": self.wall(p["at"] + offset),
                        }
                    )
                    self.stats.counts["slots_removed"] += 1
            elif kind == "room_end":
                if room in self._live:
                    actions.append({"op": "end_room", "room": room, "at": self.wall(p["at"] + offset)})
                    self._live.discard(room)
                    self.stats.counts["rooms_ended"] += 1
            else:
                if p["room"] is not None and room not in self._live:
                    continue  # its room is not live in this replay (started before the replay window)
                self._events.append(
                    {
                        "event_id": self._suffix(p["event_id"], cycle),
                        "ts": self.wall(p["t"] + offset),
                        "user": p["user"],
                        "type": p["type"],
                        "room": room,
                        "item": p["item"],
                        "value": p["value"],
                        "text": p["text"],
                    }
                )
                if p["type"] == "enter" and room is not None:
                    self._reads.append(("feed", p["user"], None))
                    self._reads.append(("shelf", room, p["user"]))
        self._put_rooms(rooms, shelf, actions)
        self.stats.counts["rooms_live"] = len(self._live)

    def _start_window(self, start: float) -> None:
        """Put the rooms live at ``start`` (and their current shelves), then skip to ``start``."""
        live, slots = self.plan.live_at(start)
        rooms = [
            {"id": p["id"], "host": p["host"], "title": p["title"], "start": self.wall(p["start"])}
            for p in live
        ]
        shelf = [
            {"room": p["room"], "item": p["item"], "start": self.wall(p["start"]), "pinned": p["pinned"]}
            for p in slots
        ]
        self._live = {p["id"] for p in live}
        self._put_rooms(rooms, shelf, [])
        self._pos = int(np.searchsorted(self.plan.t, start, side="left"))

    # ---- the loop --------------------------------------------------------------------------
    def run(
        self,
        duration: float | None = None,
        stop: threading.Event | None = None,
        on_tick: Callable[[TrafficStats], None] | None = None,
        tick_s: float = 0.1,
    ) -> TrafficStats:
        """Replay until ``duration`` wall seconds have passed or ``stop`` is set (forever if neither).

        ``on_tick`` is called with the stats after each tick (progress display).
        """
        plan = self.plan
        start = plan.start if plan.start is not None else plan.busiest()
        self._wall0 = self.clock()
        self._sim0 = start
        self._token_t = self._wall0
        self.stats = TrafficStats(started=self._wall0)
        self._start_window(start)
        cycle, offset = 0, 0.0
        last_flush, last_next = self._wall0, -math.inf  # the host's first next-item ask comes at once
        end = self._end = None if duration is None else self._wall0 + float(duration)
        try:
            while True:
                now = self.clock()
                if (end is not None and now >= end) or (stop is not None and stop.is_set()):
                    break
                sim_now = self._sim0 + (now - self._wall0) * self.speed
                self._due(sim_now, cycle, offset)
                if self._pos >= len(plan) and (
                    not self._live or sim_now >= plan.period_start + offset + plan.period
                ):
                    cycle += 1  # the day is over: the next one starts with fresh ids
                    offset += plan.period
                    self._pos = 0
                    self.stats.cycle = cycle
                if self.skip_idle_s is not None and not self._live and self._pos < len(plan):
                    gap = plan.t[self._pos] + offset - sim_now
                    if gap > self.skip_idle_s:  # no room live and none for a while: jump to the next action
                        self._sim0 += gap
                        sim_now += gap
                        self.stats.counts["idle_skipped_s"] += int(gap)
                if now - last_flush >= self.batch_s or len(self._events) >= self.max_batch:
                    self._flush_events()
                    last_flush = now
                reads, self._reads = self._reads, []
                for kind, a, b in reads:
                    self._read(kind, a, b)
                if self.next_item_every_s and now - last_next >= self.next_item_every_s:
                    for room in sorted(self._live):
                        self._read("next_item", room, None)
                    last_next = now
                self.stats.sim_time = sim_now
                if on_tick is not None:
                    on_tick(self.stats)
                spent = self.clock() - now
                if spent < tick_s:
                    wait = tick_s - spent
                    if stop is not None:
                        stop.wait(wait)
                    else:
                        time.sleep(wait)
        finally:
            self._flush_events()
        return self.stats


__all__ = ["COUNTS", "KINDS", "ReplayPlan", "TrafficReplayer", "TrafficStats"]
