"""Online state: one behavioural suite run against the memory and the Redis backend.

Redis tests use db 13 of the server on 127.0.0.1:6379 with a unique key prefix per test
and delete only their own keys; they skip with a reason when the server does not answer.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from liveshelf.data.timeline import Timeline, seconds_to_ts, to_seconds
from liveshelf.errors import ConfigError, DataFormatError, NotFoundError, ValidationError
from liveshelf.schema import EVENT_COLUMNS, EVENT_WEIGHTS, from_epoch_seconds
from liveshelf.serving.state import MemoryState, OnlineState, make_state, snapshot_path
from liveshelf.serving.state.base import category_prefixes

REDIS_URL = "redis://127.0.0.1:6379/13"
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _redis_client():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(
        REDIS_URL, decode_responses=True, socket_connect_timeout=0.5, socket_timeout=2
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(
            f"the Redis server at 127.0.0.1:6379 does not answer ({exc}); start redis-server to run "
            "the shared-state tests"
        )
    return client


def _drop_prefix(client, prefix: str) -> None:
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def redis_prefix():
    """A unique key prefix in db 13; every key under it is deleted afterwards."""
    client = _redis_client()
    prefix = f"lstest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    _drop_prefix(client, prefix)
    client.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def make(request):
    """A factory of fresh states of one backend: ``make(**params)``; states made by one test share keys."""
    created: list[OnlineState] = []
    if request.param == "memory":

        def factory(**params):
            created.append(MemoryState(**params))
            return created[-1]

        yield factory
        return
    from liveshelf.serving.state.redis import RedisState

    client = _redis_client()
    prefix = f"lstest:{uuid.uuid4().hex[:12]}:"

    def factory(**params):
        created.append(RedisState(REDIS_URL, prefix=prefix, **params))
        return created[-1]

    yield factory
    for s in created:
        s.close()
    _drop_prefix(client, prefix)
    client.close()


_EVENT_IDS = itertools.count()


def events(rows: list[tuple], ids: list[str] | None = None) -> pd.DataFrame:
    """``(ts_offset, user, type, room, item)`` rows -> a schema events frame (fresh event ids)."""
    frame = pd.DataFrame(rows, columns=["dt", "user", "type", "room", "item"])
    return pd.DataFrame(
        {
            "event_id": ids if ids is not None else [f"e{next(_EVENT_IDS)}" for _ in range(len(frame))],
            "ts": from_epoch_seconds(T0 + frame["dt"].to_numpy(dtype=float)),
            "user": frame["user"],
            "type": frame["type"],
            "room": frame["room"],
            "item": frame["item"],
            "value": np.nan,
            "text": None,
        }
    )[list(EVENT_COLUMNS)]


def rooms_frame(rows: list[tuple]) -> pd.DataFrame:
    """``(id, host, start_offset, end_offset or None)`` -> a rooms frame."""
    return pd.DataFrame(
        {
            "id": [r[0] for r in rows],
            "host": [r[1] for r in rows],
            "title": [f"title {r[0]}" for r in rows],
            "start": from_epoch_seconds([T0 + r[2] for r in rows]),
            "end": seconds_to_ts([np.nan if r[3] is None else T0 + r[3] for r in rows]),
        }
    )


def shelf_frame(rows: list[tuple]) -> pd.DataFrame:
    """``(room, item, start_offset, end_offset or None, pinned)`` -> a shelf frame."""
    return pd.DataFrame(
        {
            "room": [r[0] for r in rows],
            "item": [r[1] for r in rows],
            "start": from_epoch_seconds([T0 + r[2] for r in rows]),
            "end": seconds_to_ts([np.nan if r[3] is None else T0 + r[3] for r in rows]),
            "pinned": [r[4] for r in rows],
        }
    )


# ------------------------------------------------------------------------------------ sequences
def test_read_your_writes_a_click_changes_the_next_read(make):
    state = make()
    state.upsert_rooms(rooms_frame([("r1", "h1", 0, None)]))
    assert state.user_sequence("u1") == []
    assert state.counter("item", "i9", T0 + 10) == 0.0
    assert state.apply_events(events([(10, "u1", "click", "r1", "i9")])) == 1
    assert state.user_sequence("u1") == [("i9", "r1", T0 + 10, "click")]
    assert state.counter("item", "i9", T0 + 10) == pytest.approx(1.0)
    assert state.top("item", 5, T0 + 10) == [("i9", pytest.approx(1.0))]
    assert state.audience("r1", T0 + 10) == ["u1"]


def test_sequence_is_bounded_time_ordered_and_skips_impressions(make):
    state = make(max_seq=5)
    rows = [(float(i), "u1", "view", None, f"i{i}") for i in range(8)]
    rows.append((3.5, "u1", "impression", None, "ix"))
    batch = events(rows)
    state.apply_events(batch.iloc[::-1])  # arrival order does not matter within a batch
    seq = state.user_sequence("u1")
    assert [e[0] for e in seq] == ["i3", "i4", "i5", "i6", "i7"]
    assert [e[2] for e in seq] == [T0 + i for i in range(3, 8)]
    assert all(e[1] is None and e[3] == "view" for e in seq)
    assert [e[0] for e in state.user_sequence("u1", limit=2)] == ["i6", "i7"]
    state.apply_events(events([(100.0, "u1", "purchase", "r9", "i7")]))
    assert state.user_sequence("u1")[-1] == ("i7", "r9", T0 + 100.0, "purchase")
    assert len(state.user_sequence("u1")) == 5
    with pytest.raises(ConfigError, match="'limit' parameter of user_sequence must be an int >= 1"):
        state.user_sequence("u1", limit=0)


def test_a_retried_event_counts_once_within_the_dedupe_window(make):
    state = make(dedupe_window=100.0)
    first = events([(0, "u1", "click", None, "a"), (1, "u1", "click", None, "b")], ids=["x1", "x2"])
    assert state.apply_events(first) == 2
    assert state.apply_events(first) == 0  # the same post again
    again = events(
        [(1, "u1", "click", None, "b"), (2, "u1", "cart", None, "c"), (2, "u1", "cart", None, "c")],
        ids=["x2", "x3", "x3"],
    )
    assert state.apply_events(again) == 1  # x2 seen before, x3 twice in one batch
    assert [e[0] for e in state.user_sequence("u1")] == ["a", "b", "c"]
    assert state.counter("item", "b", T0 + 1) == pytest.approx(1.0)
    state.apply_events(events([(500, "u2", "view", None, "z")]))  # moves the window past x1
    assert state.apply_events(events([(0, "u1", "click", None, "a")], ids=["x1"])) == 1
    assert "x1" in state.export()["seen"]
    off = make(dedupe_window=0)
    assert off.apply_events(first) == 2 and off.apply_events(first) == 2
    with pytest.raises(ConfigError, match="'dedupe_window' parameter of .* must be a number of seconds >= 0"):
        make(dedupe_window=-1)


def test_sequence_types_are_configurable(make):
    state = make(sequence_types=["purchase"])
    state.apply_events(events([(0, "u", "view", None, "a"), (1, "u", "purchase", None, "b")]))
    assert [e[0] for e in state.user_sequence("u")] == ["b"]
    with pytest.raises(ConfigError, match="sequence_types"):
        make(sequence_types=["buy"])


def test_events_frame_is_validated(make):
    state = make()
    with pytest.raises(ValidationError, match=r"unknown event types \['buy'\]"):
        state.apply_events(events([(0, "u", "buy", None, "a")]))
    with pytest.raises(ValidationError, match=r"lacks columns \['user'\]"):
        state.apply_events(events([(0, "u", "view", None, "a")]).drop(columns=["user"]))
    bad = events([(0, "u", "view", None, "a")])
    bad.loc[0, "user"] = None
    with pytest.raises(ValidationError, match="has no 'user'"):
        state.apply_events(bad)
    assert state.apply_events(events([]).astype({"ts": "datetime64[us, UTC]"})) == 0
    assert state.user_sequence("u") == []


# ------------------------------------------------------------------------------------ rooms, shelves, audience
def test_rooms_follow_timeline_semantics(make):
    state = make()
    state.upsert_rooms(rooms_frame([("r1", "h1", 0, 100), ("r2", "h2", 50, None), ("r3", "h1", 10, 10)]))
    assert state.live_rooms(T0 - 1) == []
    assert state.live_rooms(T0) == ["r1"]
    assert state.live_rooms(T0 + 10) == ["r1"]  # zero-length r3 is never live
    assert state.live_rooms(T0 + 50) == ["r1", "r2"]  # by start time
    assert state.live_rooms(T0 + 100) == ["r2"]  # end is exclusive
    assert state.room("r2") == {"id": "r2", "host": "h2", "title": "title r2", "start": T0 + 50, "end": None}
    assert state.room("nope") is None
    state.upsert_rooms(rooms_frame([("r2", "h2", 50, 70)]))  # upsert replaces
    assert state.live_rooms(T0 + 80) == ["r1"]
    state.upsert_rooms(rooms_frame([("r4", "h4", 0, None)]))
    state.end_room("r4", T0 + 30)
    assert state.room("r4")["end"] == T0 + 30
    assert state.live_rooms("2026-01-01T00:00:29Z") == ["r1", "r4"]
    with pytest.raises(ValidationError, match="end time of room 'r4' must lie in"):
        state.end_room("r4", T0 + 40)
    with pytest.raises(NotFoundError, match="Room 'zz' is not in the online state"):
        state.end_room("zz", T0)
    with pytest.raises(ValidationError, match="must not be before its start"):
        state.upsert_rooms(rooms_frame([("r5", "h", 10, 5)]))


def test_shelf_pinned_first_unpin_keeps_the_past_and_end_slot(make):
    state = make()
    state.upsert_rooms(rooms_frame([("r1", "h1", 0, None)]))
    state.upsert_shelf(
        shelf_frame(
            [
                ("r1", "b", 5, None, False),
                ("r1", "a", 10, None, False),
                ("r1", "c", 20, None, True),
                ("r1", "d", 30, 40, False),
            ]
        )
    )
    assert state.shelf("r1", T0 + 4) == []
    assert state.shelf("r1", T0 + 25) == ["c", "b", "a"]
    assert state.shelf("r1", T0 + 35) == ["c", "b", "a", "d"]
    assert state.shelf("r1", T0 + 40) == ["c", "b", "a"]
    assert state.unpin("r1", "c", T0 + 50) == 2
    assert state.shelf("r1", T0 + 49) == ["c", "b", "a"]  # the past is unchanged
    assert state.shelf("r1", T0 + 50) == ["b", "a", "c"]
    assert state.unpin("r1", "c", T0 + 60) == 0
    assert state.end_slot("r1", "b", T0 + 70) == 1
    assert state.shelf("r1", T0 + 70) == ["a", "c"]
    assert state.shelf("r1", T0 + 69) == ["b", "a", "c"]
    state.end_room("r1", T0 + 80)
    assert state.shelf("r1", T0 + 80) == []
    assert state.shelf("r1", T0 + 79) == ["a", "c"]
    assert state.shelf("unknown", T0 + 50) == []
    with pytest.raises(ValidationError, match="rooms the online state does not know, e.g. 'r9'"):
        state.upsert_shelf(shelf_frame([("r9", "x", 0, None, False)]))


def test_audience_enter_leave_ttl_prune_and_room_end(make):
    state = make(audience_ttl=60)
    state.upsert_rooms(rooms_frame([("r1", "h1", 0, None)]))
    state.apply_events(
        events(
            [
                (0, "u1", "enter", "r1", None),
                (5, "u2", "enter", "r1", None),
                (6, "u3", "impression", "r1", None),
                (8, "u4", "enter", "r1", None),
                (9, "u4", "leave", "r1", None),
                (12, "u5", "leave", "r2", None),
                (11, "u5", "enter", "r2", None),
            ]
        )
    )
    assert state.audience("r1", T0 + 10) == ["u2", "u1"]  # latest first; u3 only saw it; u4 left
    assert state.audience("r2", T0 + 20) == []  # the leave came after the enter (same batch)
    state.apply_events(events([(30, "u1", "like", "r1", "i1")]))
    assert state.audience("r1", T0 + 64) == ["u1", "u2"]
    assert state.audience("r1", T0 + 65) == ["u1"]  # u2 unseen for 60 s
    state.apply_events(events([(40, "u9", "enter", "r1", None)]))
    state.apply_events(events([(20, "u9", "view", "r1", "i1")]))  # a late event never moves last-seen back
    assert state.audience("r1", T0 + 85) == ["u9", "u1"]
    rooms = ["r1", "r2", "nowhere"]
    for t in (T0 + 10, T0 + 64, T0 + 65, T0 + 85):  # the batch read agrees with the per-room one
        assert state.audience_sizes(rooms, t).tolist() == [float(len(state.audience(r, t))) for r in rooms]
    assert state.prune(T0 + 95) == 2  # u2 (seen at 5) and u1 (seen at 30)
    assert state.audience("r1", T0 + 40) == ["u9"]
    state.end_room("r1", T0 + 100)
    assert state.audience("r1", T0 + 99) == []
    assert state.audience_sizes(["r1"], T0 + 99).tolist() == [0.0]  # ended: no audience


def test_delete_user_forgets_sequence_and_audience_but_not_others(make):
    state = make()
    state.upsert_rooms(rooms_frame([("r1", "h1", 0, None), ("r2", "h1", 0, None)]))
    state.apply_events(
        events(
            [(1, "u1", "enter", "r1", None), (2, "u1", "click", "r2", "i1"), (3, "u2", "enter", "r1", None)]
        )
    )
    state.delete_user("u1")
    assert state.user_sequence("u1") == []
    assert state.audience("r1", T0 + 5) == ["u2"]
    assert state.audience("r2", T0 + 5) == []
    assert state.user_sequence("u2") == [(None, "r1", T0 + 3, "enter")]
    assert state.counter("item", "i1", T0 + 2) == pytest.approx(1.0)  # counters are anonymous aggregates
    state.delete_user("never-seen")


# ------------------------------------------------------------------------------------ counters
def test_counters_decay_with_the_half_life_and_weight_event_types(make):
    state = make(half_life=100.0)
    state.upsert_rooms(rooms_frame([("r1", "h1", 0, None), ("r2", "h1", 0, None)]))
    state.upsert_items(pd.DataFrame({"id": ["i1"], "category": ["美妆 > 护肤 > 面霜"]}))
    state.apply_events(
        events(
            [
                (0, "u1", "purchase", "r1", "i1"),
                (100, "u2", "click", "r2", "i1"),
                (100, "u2", "impression", "r2", "i2"),
                (100, "u3", "leave", "r1", None),
            ]
        )
    )
    t = T0 + 200
    assert state.counter("item", "i1", t) == pytest.approx(5 * 0.25 + 1 * 0.5)
    assert state.counter("item", "i2", t) == 0.0  # impressions weigh 0
    assert state.counter("room", "r1", t) == pytest.approx(1.25)
    assert state.counter("host", "h1", t) == pytest.approx(1.75)
    assert state.counter("room_item", ("r2", "i1"), t) == pytest.approx(0.5)
    assert state.counter("category", "美妆", t) == pytest.approx(1.75)
    assert state.counter("category", "美妆 > 护肤 > 面霜", t) == pytest.approx(1.75)
    assert state.top("room", 5, t) == [("r1", pytest.approx(1.25)), ("r2", pytest.approx(0.5))]
    assert state.top("room_item", 5, t, scope="r1") == [("i1", pytest.approx(1.25))]
    assert state.top("room_item", 5, t, scope="r7") == []
    # ranking does not depend on the read time; values halve per half-life
    assert state.top("item", 1, t + 100) == [("i1", pytest.approx(0.875))]


def test_counter_arguments_are_checked(make):
    state = make()
    with pytest.raises(ConfigError, match=r"'kind' parameter of top must be one of \['item'"):
        state.top("user", 3, T0)
    with pytest.raises(ConfigError, match="'scope' parameter of top must be a room id"):
        state.top("room_item", 3, T0)
    with pytest.raises(ConfigError, match="'scope' parameter of top must be None for kind 'item'"):
        state.top("item", 3, T0, scope="r1")
    with pytest.raises(ConfigError, match="'k' parameter of top must be an int >= 1. Got 0 instead"):
        state.top("item", 0, T0)
    with pytest.raises(ConfigError, match=r"'key' parameter of counter must be a \(room, item\) tuple"):
        state.counter("room_item", "r1", T0)


def test_ties_rank_by_key_descending(make):
    state = make()
    state.apply_events(events([(0, "u", "click", None, k) for k in ("b", "d", "a", "c")]))
    assert [k for k, _ in state.top("item", 3, T0)] == ["d", "c", "b"]


# ------------------------------------------------------------------------------------ on a simulated world
@pytest.fixture(scope="module")
def world():
    from liveshelf.data.simulate import SimConfig, simulate

    return simulate(SimConfig(n_users=300, n_hosts=12, days=1, seed=5, use_review_corpus=False)).dataset


def _oracle_counts(ev: pd.DataFrame, rooms: pd.DataFrame, items: pd.DataFrame, t: float, h: float):
    """Brute-force decayed counters: sum of w * 2 ** (-(t - ts) / h) per key."""
    ts = ev["ts"].map(lambda x: x.timestamp()).to_numpy()
    w = ev["type"].map(EVENT_WEIGHTS).to_numpy() * np.exp2(-(t - ts) / h)
    host = dict(zip(rooms["id"], rooms["host"], strict=True))
    cat = dict(zip(items["id"], items["category"], strict=True))
    out: dict[str, dict] = {k: {} for k in ("item", "room", "host", "room_item", "category")}
    for wi, room, item in zip(w, ev["room"], ev["item"], strict=True):
        room = None if pd.isna(room) else room
        item = None if pd.isna(item) else item
        if wi == 0:
            continue
        keys = []
        if item is not None:
            keys.append(("item", item))
            keys += [("category", c) for c in category_prefixes(cat[item])]
        if room is not None:
            keys += [("room", room), ("host", host[room])]
            if item is not None:
                keys.append(("room_item", (room, item)))
        for kind, key in keys:
            out[kind][key] = out[kind].get(key, 0.0) + wi
    return out


def test_world_counters_match_brute_force_with_out_of_order_batches(make, world):
    h = 1800.0
    state = make(half_life=h)
    state.upsert_rooms(world.rooms)
    state.upsert_items(world.items[["id", "category"]])
    ev = world.events
    order = np.random.default_rng(0).permutation(len(ev))
    for lo in range(0, len(ev), 400):  # batches arrive in random time order
        assert state.apply_events(ev.iloc[order[lo : lo + 400]]) == len(order[lo : lo + 400])
    t = to_seconds(ev["ts"].max()) + 600
    oracle = _oracle_counts(ev, world.rooms, world.items, t, h)
    for kind in ("item", "room", "host", "category"):
        want = sorted(oracle[kind].items(), key=lambda p: (p[1], p[0]), reverse=True)[:10]
        got = state.top(kind, 10, t)
        assert [k for k, _ in got] == [k for k, _ in want], kind
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-9)
    for (room, item), v in list(oracle["room_item"].items())[:50]:
        assert state.counter("room_item", (room, item), t) == pytest.approx(v, rel=1e-9)
    busiest = max(oracle["room"], key=oracle["room"].get)
    top_in_room = state.top("room_item", 3, t, scope=busiest)
    want = sorted(
        ((i, v) for (r, i), v in oracle["room_item"].items() if r == busiest),
        key=lambda p: (p[1], p[0]),
        reverse=True,
    )[:3]
    assert [k for k, _ in top_in_room] == [k for k, _ in want]


def test_world_live_rooms_and_shelves_match_the_timeline(make, world):
    state = make()
    state.upsert_rooms(world.rooms)
    state.upsert_shelf(world.shelf)
    tl = Timeline(world.rooms, world.shelf)
    start = to_seconds(world.rooms["start"].min())
    end = to_seconds(world.rooms["end"].max())
    starts = dict(zip(world.rooms["id"], world.rooms["start"].map(lambda x: x.timestamp()), strict=True))
    checked = 0
    for t in np.linspace(start - 60, end + 60, 97):
        live = state.live_rooms(t)
        assert live == sorted(tl.live_rooms(t).tolist(), key=lambda r: (starts[r], r))
        for room in live:
            shelf = state.shelf(room, t)
            assert sorted(shelf) == sorted(tl.shelf_at(room, t).tolist())
            pinned = set(tl.pinned_at(room, t).tolist())
            assert set(shelf[: len(pinned)]) == pinned
            checked += len(shelf)
    assert checked > 100


def test_world_sequences_and_audience_follow_the_events(make, world):
    state = make(max_seq=25, audience_ttl=900)
    state.upsert_rooms(world.rooms)
    ev = world.events
    ts = ev["ts"].map(lambda x: x.timestamp()).to_numpy()
    cut = float(np.quantile(ts, 0.6))
    early = ev[ts < cut].sort_values("ts", kind="stable")
    for lo in range(0, len(early), 300):
        state.apply_events(early.iloc[lo : lo + 300])
    kept = early[early["type"] != "impression"]
    for user, grp in list(kept.groupby("user", sort=True))[:60]:
        want = [
            (None if pd.isna(i) else i, None if pd.isna(r) else r, t.timestamp(), ty)
            for i, r, t, ty in zip(grp["item"], grp["room"], grp["ts"], grp["type"], strict=True)
        ][-25:]
        assert state.user_sequence(user) == want
    # audience oracle: per (room, user) the latest non-impression event decides
    present = early[early["room"].notna() & (early["type"] != "impression")]
    last = present.groupby(["room", "user"], sort=False).tail(1)
    live = set(state.live_rooms(cut))
    n_checked = 0
    for room in sorted(set(last["room"])):
        rows = last[(last["room"] == room) & (last["type"] != "leave")]
        seen = np.array([x.timestamp() for x in rows["ts"]], dtype=float)
        want = set(rows["user"].to_numpy()[seen > cut - 900]) if room in live else set()
        got = state.audience(room, cut)
        assert set(got) == want
        n_checked += len(got)
    assert n_checked > 0


# ------------------------------------------------------------------------------------ snapshots
def test_snapshot_restore_round_trip(make, tmp_path):
    state = make(half_life=600.0)
    state.upsert_rooms(rooms_frame([("r1", "h1", 0, None)]))
    state.upsert_shelf(shelf_frame([("r1", "a", 0, None, True)]))
    state.upsert_items(pd.DataFrame({"id": ["a"], "category": ["x > y"]}))
    state.apply_events(events([(1, "u1", "enter", "r1", None), (2, "u1", "cart", "r1", "a")]))
    path = state.snapshot(tmp_path / "state" / "snap.json")
    assert [p.name for p in path.parent.iterdir()] == ["snap.json"]  # no temp file left behind
    before = state.export()
    state.clear()
    assert state.user_sequence("u1") == [] and state.live_rooms(T0 + 5) == []
    state.restore(path)
    assert state.export() == before
    assert state.shelf("r1", T0 + 5) == ["a"]
    assert state.audience("r1", T0 + 5) == ["u1"]
    assert state.counter("category", "x > y", T0 + 2) == pytest.approx(3.0)
    other = MemoryState(half_life=60.0)
    with pytest.raises(ConfigError, match="half_life=600.0 s; this state uses half_life=60.0 s"):
        other.restore(path)
    (tmp_path / "bad.json").write_text('{"format": "x"')
    with pytest.raises(DataFormatError, match="not valid JSON"):
        state.restore(tmp_path / "bad.json")
    with pytest.raises(DataFormatError, match="No online-state snapshot"):
        state.restore(tmp_path / "missing.json")


def test_make_state_restores_the_home_snapshot(tmp_path):
    state = make_state("memory")
    state.apply_events(events([(1, "u1", "click", None, "a")]))
    state.snapshot(snapshot_path(tmp_path))
    again = make_state("memory", home=tmp_path)
    assert again.user_sequence("u1") == [("a", None, T0 + 1, "click")]
    assert make_state("memory", home=tmp_path / "empty").user_sequence("u1") == []
    with pytest.raises(ConfigError, match="state spec must be 'memory' or a Redis URL"):
        make_state("postgres://x")


def test_memory_state_is_thread_safe():
    state = MemoryState()
    batches = [
        events([(float(i), f"u{k}", "click", None, f"i{i % 7}") for i in range(200)]) for k in range(6)
    ]
    threads = [threading.Thread(target=state.apply_events, args=(b,)) for b in batches]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    total = sum(v for _, v in state.top("item", 10, T0 + 200))
    assert total == pytest.approx(6 * sum(np.exp2(-(200 - np.arange(200)) / 3600.0)), rel=1e-9)
    assert all(len(state.user_sequence(f"u{k}")) == 200 for k in range(6))


def test_memory_apply_of_10k_events_is_fast():
    rng = np.random.default_rng(1)
    n = 10_000
    batch = events(
        list(
            zip(
                np.sort(rng.uniform(0, 3600, n)).tolist(),
                [f"u{i}" for i in rng.integers(0, 2000, n)],
                rng.choice(["view", "click", "enter", "leave", "cart"], n).tolist(),
                [f"r{i}" for i in rng.integers(0, 50, n)],
                [f"i{i}" for i in rng.integers(0, 3000, n)],
                strict=True,
            )
        )
    )
    state = MemoryState()
    state.apply_events(batch.iloc[:100])
    best = min(_timed(state.apply_events, batch) for _ in range(3))
    assert best < 0.5, f"10k events took {best:.3f} s"


def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------------ Redis only
@pytest.mark.redis
def test_two_redis_workers_see_each_others_writes_at_once(redis_prefix):
    from liveshelf.serving.state.redis import RedisState

    a = RedisState(REDIS_URL, prefix=redis_prefix)
    b = RedisState(REDIS_URL, prefix=redis_prefix)
    a.upsert_rooms(rooms_frame([("r1", "h1", 0, None)]))
    assert b.live_rooms(T0 + 1) == ["r1"]
    b.upsert_shelf(shelf_frame([("r1", "x", 0, None, False)]))
    assert a.shelf("r1", T0 + 1) == ["x"]
    for k in range(5):
        (a if k % 2 else b).apply_events(events([(float(k), "u1", "click", "r1", f"i{k}")]))
        assert [e[0] for e in (b if k % 2 else a).user_sequence("u1")] == [f"i{j}" for j in range(k + 1)]
    assert a.counter("room", "r1", T0 + 4) == pytest.approx(b.counter("room", "r1", T0 + 4))
    b.delete_user("u1")
    assert a.user_sequence("u1") == [] and a.audience("r1", T0 + 5) == []
    with pytest.raises(
        ConfigError, match="half_life=3600.0 s; this RedisState was created with half_life=60.0"
    ):
        RedisState(REDIS_URL, prefix=redis_prefix, half_life=60.0)
    a.close()
    b.close()


@pytest.mark.redis
def test_redis_clear_leaves_longer_prefixes_alone(redis_prefix):
    from liveshelf.serving.state.redis import RedisState

    outer = RedisState(REDIS_URL, prefix=redis_prefix)
    inner = RedisState(REDIS_URL, prefix=redis_prefix + "shop2:")
    for s in (outer, inner):
        s.apply_events(events([(1, "u1", "click", None, "a")]))
    outer.clear()
    assert outer.user_sequence("u1") == [] and outer.top("item", 3, T0 + 1) == []
    assert inner.user_sequence("u1") == [("a", None, T0 + 1, "click")]
    assert list(outer.export()["sequences"]) == []
    outer.close()
    inner.close()


def test_unreachable_redis_is_a_config_error():
    pytest.importorskip("redis")
    from liveshelf.serving.state.redis import RedisState

    with pytest.raises(
        ConfigError, match="Cannot reach Redis at 'redis://127.0.0.1:1/0'.*use the in-memory state"
    ):
        RedisState("redis://127.0.0.1:1/0", socket_timeout=0.5)


@pytest.mark.redis
def test_memory_and_redis_give_equal_state_and_snapshots_move_between_them(redis_prefix, world, tmp_path):
    from liveshelf.serving.state.redis import RedisState

    mem = MemoryState(max_seq=30)
    red = RedisState(REDIS_URL, prefix=redis_prefix, max_seq=30)
    for s in (mem, red):
        s.upsert_rooms(world.rooms)
        s.upsert_shelf(world.shelf)
        s.upsert_items(world.items[["id", "category"]])
        for lo in range(0, len(world.events), 500):
            s.apply_events(world.events.iloc[lo : lo + 500])
    a, b = mem.export(), red.export()
    assert a["sequences"] == b["sequences"]
    assert a["audience"] == b["audience"]
    assert a["rooms"] == b["rooms"] and a["shelf"] == b["shelf"] and a["items"] == b["items"]
    for kind in ("item", "room", "host", "category"):
        assert a["counters"][kind].keys() == b["counters"][kind].keys()
        keys = sorted(a["counters"][kind])
        assert [a["counters"][kind][k] for k in keys] == pytest.approx(
            [b["counters"][kind][k] for k in keys], rel=1e-12
        )
    t = to_seconds(world.events["ts"].max())
    assert [k for k, _ in mem.top("item", 20, t)] == [k for k, _ in red.top("item", 20, t)]
    path = mem.snapshot(tmp_path / "snap.json")
    red.clear()
    assert red.export()["sequences"] == {}
    red.restore(path)
    assert red.export()["sequences"] == a["sequences"]
    assert json.loads(Path(path).read_text())["format"] == "liveshelf-online-state"
    red.close()


# ------------------------------------------------------------------------------------ real data
def test_ml100k_sequences_and_top_items_match_pandas(make, shared_data):
    from liveshelf.data.formats import load_dataset

    ds = load_dataset("recbole:ml-100k")
    ev = ds.events.sort_values("ts", kind="stable").iloc[:6000]
    state = make(max_seq=50, half_life=86_400.0)
    for lo in range(0, len(ev), 500):
        state.apply_events(ev.iloc[lo : lo + 500])
    for user, grp in list(ev.groupby("user", sort=True))[:40]:
        want = [(i, None, t.timestamp(), "view") for i, t in zip(grp["item"], grp["ts"], strict=True)][-50:]
        assert state.user_sequence(user) == want
    t = to_seconds(ev["ts"].max())
    ts = ev["ts"].map(lambda x: x.timestamp()).to_numpy()
    counts = pd.Series(np.exp2(-(t - ts) / 86_400.0)).groupby(ev["item"].to_numpy()).sum()
    want = sorted(counts.items(), key=lambda p: (p[1], p[0]), reverse=True)[:15]
    got = state.top("item", 15, t)
    assert [k for k, _ in got] == [k for k, _ in want]
    assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-9)
