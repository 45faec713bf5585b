"""Timeline: point, batch and incremental availability queries against a brute-force oracle."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from liveshelf.data.timeline import IntervalIndex, Timeline, seconds_to_ts, to_seconds
from liveshelf.errors import NotFoundError, ValidationError


def _random_world(seed: int, n_rooms: int = 300, open_share: float = 0.1):
    rng = np.random.default_rng(seed)
    start = rng.uniform(0, 10_000, n_rooms).round()
    end = start + rng.uniform(0, 2_000, n_rooms).round()  # some zero-length rooms too
    end_open = rng.random(n_rooms) < open_share
    rooms = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n_rooms)],
            "host": [f"h{i % 17}" for i in range(n_rooms)],
            "start": seconds_to_ts(start),
            "end": seconds_to_ts(np.where(end_open, np.nan, end)),
        }
    )
    rows = []
    for r in range(n_rooms):
        for _ in range(rng.integers(0, 6)):
            s = start[r] + rng.uniform(0, 1_500)
            e = s + rng.uniform(1, 800)
            rows.append((f"r{r}", f"i{rng.integers(0, 40)}", s, np.nan if rng.random() < 0.1 else e))
    shelf = pd.DataFrame(rows, columns=["room", "item", "s", "e"])
    shelf = pd.DataFrame(
        {
            "room": shelf["room"],
            "item": shelf["item"],
            "start": seconds_to_ts(shelf["s"]),
            "end": seconds_to_ts(shelf["e"]),
            "pinned": False,
        }
    )
    r_end = np.where(end_open, np.inf, end)
    s_start = shelf["start"].map(lambda x: x.timestamp()).to_numpy()
    s_end = np.array([np.inf if pd.isna(x) else x.timestamp() for x in shelf["end"]])
    return rooms, shelf, start, r_end, s_start, s_end


def _oracle_live(start, end, t):
    return {f"r{i}" for i in np.nonzero((start <= t) & (end > t))[0]}


def _oracle_shelf(shelf, s_start, s_end, start, end, room, t):
    r = int(room[1:])
    if not (start[r] <= t < end[r]):
        return set()
    m = (shelf["room"].to_numpy() == room) & (s_start <= t) & (s_end > t)
    return set(shelf["item"].to_numpy()[m])


def test_interval_index_matches_brute_force_including_endpoints():
    rng = np.random.default_rng(3)
    s = rng.integers(0, 50, 400).astype(float)
    e = s + rng.integers(0, 10, 400)
    e[rng.random(400) < 0.05] = np.inf
    idx = IntervalIndex(s, e)
    for t in np.concatenate([np.arange(-1, 62, 0.5), s[:20], e[np.isfinite(e)][:20]]):
        got = np.sort(idx.query(t))
        want = np.nonzero((s <= t) & (e > t))[0]
        np.testing.assert_array_equal(got, want)
    q, i = idx.query_batch(np.array([3.0, 17.0, -5.0, 49.5]))
    for k, t in enumerate([3.0, 17.0, -5.0, 49.5]):
        np.testing.assert_array_equal(np.sort(i[q == k]), np.nonzero((s <= t) & (e > t))[0])


def test_point_queries_match_oracle():
    rooms, shelf, start, end, s_start, s_end = _random_world(0)
    tl = Timeline(rooms, shelf)
    rng = np.random.default_rng(1)
    for t in np.concatenate([rng.uniform(-100, 13_000, 60), start[:10], end[np.isfinite(end)][:10]]):
        assert set(tl.live_rooms(t)) == _oracle_live(start, end, t)
        for room in ("r0", "r5", "r77", "r123"):
            want = _oracle_shelf(shelf, s_start, s_end, start, end, room, t)
            assert set(tl.shelf_at(room, t)) == want
            assert tl.is_live(room, t) == (start[int(room[1:])] <= t < end[int(room[1:])])
            for item in ("i1", "i2", "i3"):
                assert tl.on_shelf(room, item, t) == (item in want)
        live = _oracle_live(start, end, t)
        want_items = set().union(*[_oracle_shelf(shelf, s_start, s_end, start, end, r, t) for r in live])
        assert set(tl.available_items_at(t)) == want_items


def test_interval_semantics_start_inclusive_end_exclusive():
    rooms = pd.DataFrame(
        {"id": ["a"], "host": ["h"], "start": seconds_to_ts([100.0]), "end": seconds_to_ts([200.0])}
    )
    tl = Timeline(rooms, None)
    assert not tl.is_live("a", 99.999)
    assert tl.is_live("a", 100.0)
    assert tl.is_live("a", 199.999)
    assert not tl.is_live("a", 200.0)
    assert list(tl.live_rooms(100.0)) == ["a"]
    assert list(tl.live_rooms(200.0)) == []
    assert not tl.is_live("unknown", 150.0)


def test_batch_queries_equal_point_queries():
    rooms, shelf, start, end, *_ = _random_world(2)
    tl = Timeline(rooms, shelf)
    ts = np.random.default_rng(5).uniform(0, 12_000, 200)
    sets = tl.live_rooms_at(ts)
    assert len(sets) == 200
    for k, t in enumerate(ts):
        assert set(sets[k]) == _oracle_live(start, end, t)
    assert sets.counts().sum() == len(sets.ids)
    rooms_q = np.array([f"r{i}" for i in np.random.default_rng(6).integers(0, 300, 200)], dtype=object)
    items_q = np.array([f"i{i}" for i in np.random.default_rng(7).integers(0, 40, 200)], dtype=object)
    np.testing.assert_array_equal(
        tl.is_live_batch(rooms_q, ts), [tl.is_live(r, t) for r, t in zip(rooms_q, ts, strict=True)]
    )
    np.testing.assert_array_equal(
        tl.on_shelf_batch(rooms_q, items_q, ts),
        [tl.on_shelf(r, i, t) for r, i, t in zip(rooms_q, items_q, ts, strict=True)],
    )


def test_datetimes_are_accepted_everywhere():
    t0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
    rooms = pd.DataFrame({"id": ["a"], "host": ["h"], "start": [pd.Timestamp(t0)], "end": [pd.NaT]})
    tl = Timeline(rooms, None)
    assert tl.is_live("a", t0)
    assert tl.is_live("a", "2026-11-02T00:00:00Z")
    assert tl.is_live("a", np.datetime64("2026-11-01T12:00:00"))
    assert not tl.is_live("a", datetime(2026, 11, 1, 11, 59))  # naive = UTC
    assert to_seconds(t0) == t0.timestamp()


def test_incremental_updates_match_a_fresh_rebuild():
    rooms, shelf, start, end, *_ = _random_world(4, n_rooms=100)
    tl = Timeline(rooms, shelf, rebuild_every=8)  # small threshold: exercises both paths
    rng = np.random.default_rng(9)
    new_rooms = []
    for k in range(40):
        s = float(rng.uniform(0, 10_000))
        tl.add_room(f"n{k}", "hx", s)
        tl.add_slot(f"n{k}", f"i{k % 7}", s + 10)
        new_rooms.append((f"n{k}", s))
    for k, (room, s) in enumerate(new_rooms):
        if k % 2 == 0:
            tl.end_room(room, s + 500)
    tl.end_slot("n1", "i1", new_rooms[1][1] + 50)
    long_id = "room-with-a-much-longer-id-than-the-others"
    tl.add_room(long_id, "hy", 20_000.0)
    tl.add_slot(long_id, "item-with-a-long-id", 20_000.0, 20_100.0, pinned=True)
    assert long_id in set(tl.live_rooms(20_050.0))  # (open rooms of the base world are live too)
    assert list(tl.pinned_at(long_id, 20_050.0)) == ["item-with-a-long-id"]
    assert "item-with-a-long-id" in set(tl.available_items_at(20_050.0))
    assert "item-with-a-long-id" not in set(tl.available_items_at(20_150.0))
    # the same world built at once
    all_rooms = [(f"r{i}", start[i], end[i]) for i in range(100)]
    all_rooms += [(r, s, s + 500 if k % 2 == 0 else np.inf) for k, (r, s) in enumerate(new_rooms)]
    for t in rng.uniform(0, 12_000, 80):
        want = {r for r, s, e in all_rooms if s <= t < e}
        assert set(tl.live_rooms(t)) == want
        sets = tl.live_rooms_at(np.array([t]))
        assert set(sets[0]) == want
    r1, s1 = new_rooms[1]
    assert tl.on_shelf(r1, "i1", s1 + 20)
    assert not tl.on_shelf(r1, "i1", s1 + 60)
    r0, s0 = new_rooms[0]
    assert list(tl.shelf_at(r0, s0 + 100)) == ["i0"]
    assert list(tl.shelf_at(r0, s0 + 600)) == []  # room ended, slot closed with it
    assert "i0" in set(tl.available_items_at(s0 + 100))


def test_errors_name_the_field_and_the_fix():
    rooms = pd.DataFrame(
        {"id": ["a"], "host": ["h"], "start": seconds_to_ts([100.0]), "end": seconds_to_ts([200.0])}
    )
    tl = Timeline(rooms, None)
    with pytest.raises(ValidationError, match="already in the timeline"):
        tl.add_room("a", "h", 0)
    with pytest.raises(ValidationError, match=r"must lie in \[100.0, 200.0\]"):
        tl.end_room("a", 300)
    with pytest.raises(NotFoundError, match="add it with add_room"):
        tl.end_room("zz", 150)
    with pytest.raises(NotFoundError, match="not on the shelf"):
        tl.end_slot("a", "nope", 150)
    bad = rooms.assign(end=seconds_to_ts([50.0]))
    with pytest.raises(ValidationError, match="end that is not before it"):
        Timeline(bad, None)
    shelf = pd.DataFrame(
        {"room": ["ghost"], "item": ["i"], "start": seconds_to_ts([1.0]), "end": [pd.NaT], "pinned": [False]}
    )
    with pytest.raises(ValidationError, match="absent from the rooms frame"):
        Timeline(rooms, shelf)
    with pytest.raises(ValidationError, match="lacks columns"):
        Timeline(rooms.drop(columns=["start"]), None)
