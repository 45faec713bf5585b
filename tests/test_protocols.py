"""Protocols and the Dataset -> TrainData conversion."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from liveshelf.data.dataset import Dataset
from liveshelf.data.split import index_events, to_train_data
from liveshelf.errors import ConfigError
from liveshelf.evaluation.protocols import live, loo, make_split, temporal
from liveshelf.schema import from_epoch_seconds


def _events(rows: list[tuple]) -> pd.DataFrame:
    """rows: (user, item, ts[, type[, room]])"""
    full = [(r + ("purchase", None))[:5] if len(r) == 3 else (r + (None,))[:5] for r in rows]
    return pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(len(full))],
            "ts": from_epoch_seconds([r[2] for r in full]),
            "user": [r[0] for r in full],
            "type": [r[3] for r in full],
            "room": [r[4] for r in full],
            "item": [r[1] for r in full],
            "value": np.nan,
            "text": None,
        }
    )


def _seq_dataset(split: bool) -> Dataset:
    seqs = {"u1": ["a", "b", "c", "d", "b"], "u2": ["c", "a", "e"], "u3": ["a", "b"]}
    rows, labels = [], []
    for u, items in seqs.items():
        for p, it in enumerate(items):
            rows.append((u, it, float(p)))
            labels.append("test" if p == len(items) - 1 else "valid" if p == len(items) - 2 else "train")
    if split:  # u3: only train + test to check that the given split is used as is
        labels[-2:] = ["train", "test"]
    items = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e"],
            "title": ["A", "B", "C", "D", "E"],
            "description": "",
            "category": ["x > y", "x", "z", "", None],
            "brand": "",
        }
    )
    return Dataset("toy", _events(rows), items=items, split=pd.Series(labels) if split else None)


def test_loo_uses_the_given_split():
    sp = loo(_seq_dataset(split=True))
    ids = list(sp.train.item_ids)
    assert ids == ["a", "b", "c", "d", "e"]
    assert [list(np.asarray(ids)[s]) for s in sp.train.sequences] == [["a", "b", "c"], ["c"], ["a"]]
    assert [ids[t] if t >= 0 else None for t in sp.train.valid_targets] == ["d", "a", None]
    assert [ids[c.target] for c in sp.cases] == ["b", "e", "b"]
    # test context = train + valid items; target never in its own context position
    assert [list(np.asarray(ids)[c.context.items]) for c in sp.cases] == [
        ["a", "b", "c", "d"],
        ["c", "a"],
        ["a"],
    ]
    assert [c.is_repeat for c in sp.cases] == [True, False, False]
    assert [c.context.user_index for c in sp.cases] == [0, 1, 2]
    assert sp.meta["split_source"] == "dataset"
    assert sp.train.item_category.tolist() == [0, 0, 1, -1, -1]
    assert sp.train.item_text[0] == "A. x > y"


def test_loo_makes_a_split_when_none_is_given():
    sp = loo(_seq_dataset(split=False))
    ids = np.asarray(sp.train.item_ids)
    assert [list(ids[s]) for s in sp.train.sequences] == [["a", "b", "c"], ["c"], ["a", "b"]]
    assert [ids[c.target] for c in sp.cases] == ["b", "e"]  # u3 has 2 events: train only
    assert sp.summary()["cases"] == {"all": 2, "new": 1, "repeat": 1}


def test_loo_on_real_data_has_no_leak(shared_data):
    from liveshelf.data.formats.unisrec import read_unisrec

    ds = read_unisrec(shared_data / "amazon-scientific-small")
    sp = loo(ds)
    assert sp.train.n_users == len(sp.cases) == 2928
    full = ds.events.groupby("user", sort=False)["item"].apply(list)
    ids = np.asarray(sp.train.item_ids)
    for u in range(0, sp.train.n_users, 97):
        case = sp.cases[u]
        seq = full[case.context.user]
        assert list(ids[sp.train.sequences[u]]) == seq[:-2]
        assert ids[sp.train.valid_targets[u]] == seq[-2]
        assert ids[case.target] == seq[-1]
        assert list(ids[case.context.items]) == seq[:-1]
    n_train = sum(len(s) for s in sp.train.sequences)
    assert n_train == len(ds.events) - 2 * 2928


def test_conversion_is_fast_on_amazon_beauty(shared_data):
    from liveshelf.data.formats.p5 import read_p5

    ds = read_p5(shared_data / "amazon-beauty")
    t0 = time.perf_counter()
    index = index_events(ds)
    data, _ = to_train_data(index, np.ones(index.n_events, dtype=bool))
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0, elapsed
    assert (data.n_users, data.n_items) == (22363, 12101)
    assert sum(len(s) for s in data.sequences) == 198502


def _timed_dataset() -> Dataset:
    rng = np.random.default_rng(0)
    rows = []
    for u in range(12):
        for _ in range(10):
            rows.append((f"u{u}", f"i{rng.integers(0, 15)}", float(rng.integers(0, 1000))))
    rows.append(("late", "i1", 999.0))  # a user with test events only: no case
    return Dataset("timed", _events(rows))


def test_temporal_boundaries():
    ds = _timed_dataset()
    sp = temporal(ds)
    t1, t2 = sp.meta["t_valid"], sp.meta["t_test"]
    ts = np.sort(np.concatenate([np.asarray(t) for t in sp.train.timestamps]))
    assert ts.max() < t1 <= t2
    assert all(c.context.time >= t2 for c in sp.cases)
    assert all((c.context.ts < c.context.time + 1e-9).all() for c in sp.cases)
    assert "late" not in {c.context.user for c in sp.cases}
    all_ts = np.asarray(ds.events["ts"].astype("int64")) / 1e6
    n_test_events = int(((all_ts >= t2) & (ds.events["user"] != "late").to_numpy()).sum())
    assert len(sp.cases) == n_test_events
    first = temporal(ds, per_user="first")
    assert len(first.cases) == len({c.context.user for c in sp.cases})
    with pytest.raises(ConfigError, match="'q_valid' parameter"):
        temporal(ds, q_valid=0.95, q_test=0.9)


def _live_dataset() -> Dataset:
    """3 hosts, rooms with known spans, enter events; items on shelves."""
    rooms = pd.DataFrame(
        {
            "id": ["r1", "r2", "r3", "r4", "r5"],
            "host": ["h1", "h2", "h3", "h1", "h2"],
            "title": "",
            "start": from_epoch_seconds([0, 0, 50, 60, 90]),
            "end": from_epoch_seconds([60, 95, 100, 120, 130]),
        }
    )
    shelf = pd.DataFrame(
        {
            "room": ["r1", "r2", "r3", "r4", "r4", "r5"],
            "item": ["p1", "p2", "p3", "p1", "p4", "p2"],
            "start": from_epoch_seconds([0, 0, 50, 60, 100, 90]),
            "end": from_epoch_seconds([60, 95, 100, 120, 120, 130]),
            "pinned": False,
        }
    )
    rows = [
        ("a", None, 1.0, "enter", "r1"),
        ("a", None, 10.0, "enter", "r2"),
        ("a", None, 55.0, "enter", "r3"),
        ("b", None, 5.0, "enter", "r2"),
        ("b", None, 20.0, "enter", "r1"),
        ("b", None, 30.0, "enter", "r1"),
        ("a", None, 70.0, "enter", "r4"),
        ("b", None, 80.0, "enter", "r3"),
        ("a", None, 91.0, "enter", "r5"),
        ("b", None, 92.0, "enter", "r4"),
        ("a", None, 110.0, "enter", "r4"),
        ("b", None, 111.0, "impression", "r5"),
        ("b", None, 112.0, "enter", "r5"),
    ]
    rows += [
        ("a", "p1", 2.0, "click", "r1"),
        ("b", "p2", 6.0, "cart", "r2"),
        ("a", "p4", 111.0, "purchase", "r4"),
        ("b", "p2", 115.0, "click", "r5"),
    ]
    return Dataset("live-toy", _events(rows), rooms=rooms, shelf=shelf)


def _live_hosts(rooms: pd.DataFrame, t: float) -> set[str]:
    start = rooms["start"].astype("int64") / 1e6
    end = rooms["end"].astype("int64") / 1e6
    return set(rooms["host"][(start <= t) & (t < end)])


def test_live_candidates_are_exactly_the_live_hosts():
    ds = _live_dataset()
    sp = live(ds, q_valid=0.5, q_test=0.7)
    ids = np.asarray(sp.train.item_ids)
    assert sp.cases, "the toy data must yield test cases"
    for c in sp.cases:
        assert set(ids[c.candidates]) == _live_hosts(ds.rooms, c.context.time)
        assert ids[c.target] in set(ids[c.candidates])
        assert c.is_repeat == (c.target in set(c.context.items.tolist()))
    for t in (0.5, 55.0, 96.0, 125.0, 200.0):
        assert set(ids[sp.train.available(t)]) == _live_hosts(ds.rooms, t)
    # impressions are no targets; enter events only
    assert all(c.context.time != 111.0 for c in sp.cases)
    assert sp.summary()["cases"]["repeat"] >= 1


def test_live_item_target_uses_the_room_shelf():
    ds = _live_dataset()
    sp = live(ds, target="item", q_valid=0.4, q_test=0.5)
    ids = np.asarray(sp.train.item_ids)
    got = {(c.context.time, c.context.room): set(ids[c.candidates]) for c in sp.cases}
    assert got == {(111.0, "r4"): {"p1", "p4"}, (115.0, "r5"): {"p2"}}
    assert set(ids[sp.train.available(100.0)]) == {"p1", "p2", "p4"}


def test_live_needs_rooms():
    with pytest.raises(ConfigError, match="needs rooms"):
        make_split(_timed_dataset(), "live")
    with pytest.raises(ConfigError, match="'protocol' parameter of evaluate"):
        make_split(_timed_dataset(), "kfold")
