"""EventStore queries: sequences, availability at time t (start <= t < end), counts, deletion, reopening."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from liveshelf.data.dataset import Dataset
from liveshelf.data.ingest import Ingestor
from liveshelf.data.store import EventStore
from liveshelf.data.validate import Rules
from liveshelf.errors import ConfigError
from liveshelf.schema import TS_DTYPE

RULES = Rules(now=datetime(2024, 7, 1, tzinfo=UTC))


def T(hhmm: str) -> pd.Timestamp:
    return pd.Timestamp(f"2024-06-01T{hhmm}:00Z")


def _ev(eid: str, hhmm: str, user: str, typ: str, item: str | None = None, room: str | None = "r1") -> dict:
    return {"event_id": eid, "ts": T(hhmm).isoformat(), "user": user, "type": typ, "item": item, "room": room}


EVENTS = [  # deliberately out of time order; e3/e4 share a timestamp
    _ev("e5", "10:05", "alice", "purchase", "i2"),
    _ev("e1", "10:00", "alice", "enter"),
    _ev("e3", "10:02", "alice", "click", "i1"),
    _ev("e4", "10:02", "alice", "cart", "i2"),
    _ev("e2", "10:01", "bob", "view", "i1"),
    _ev("e6", "10:30", "bob", "click", "i3", room="r2"),
    _ev("e7", "11:10", "bob", "view", "i1", room="r2"),
]


@pytest.fixture()
def store(tmp_path: Path):
    with EventStore(tmp_path / "home") as s:
        ing = Ingestor(s, rules=RULES)
        ing.ingest_events(EVENTS)
        ing.ingest_users([{"id": "alice", "gender": "f"}, {"id": "bob", "gender": "m"}])
        ing.ingest_rooms(
            [
                {"id": "r1", "host": "h1", "start": T("10:00"), "end": T("11:00")},
                {"id": "r2", "host": "h2", "start": T("10:30"), "end": None},
                {"id": "r0", "host": "h1", "start": T("09:00"), "end": T("10:00")},
            ]
        )
        ing.ingest_shelf(
            [
                {"room": "r1", "item": "i1", "start": T("10:00"), "end": T("10:20"), "pinned": False},
                {"room": "r1", "item": "i2", "start": T("10:10"), "end": None, "pinned": False},
                {"room": "r1", "item": "i3", "start": T("10:15"), "end": None, "pinned": True},
                {"room": "r2", "item": "i1", "start": T("10:30"), "end": None, "pinned": False},
            ]
        )
        yield s


def test_sequence_is_in_time_order_with_ingest_order_for_ties(store):
    seq = store.sequence("alice")
    assert seq.types.tolist() == ["enter", "click", "cart", "purchase"]
    assert seq.items.tolist() == [None, "i1", "i2", "i2"]
    assert seq.rooms.tolist() == ["r1"] * 4
    assert np.all(np.diff(seq.ts) >= 0)
    assert seq.ts[0] == T("10:00").timestamp()


def test_sequence_until_is_exclusive_and_limit_keeps_the_latest(store):
    assert store.sequence("alice", until=T("10:02")).types.tolist() == ["enter"]
    just_after = T("10:02") + pd.Timedelta(seconds=1)
    assert store.sequence("alice", until=just_after).types.tolist() == ["enter", "click", "cart"]
    assert store.sequence("alice", limit=2).types.tolist() == ["cart", "purchase"]
    assert store.sequence("nobody").items.shape == (0,)
    with pytest.raises(ConfigError, match=r"'limit' parameter of EventStore.sequence must be an int >= 1"):
        store.sequence("alice", limit=0)


def test_sequences_frame_has_one_row_per_user(store):
    seqs = store.sequences().set_index("user")
    assert list(seqs.index) == ["alice", "bob"]
    assert list(seqs.loc["bob", "items"]) == ["i1", "i3", "i1"]
    assert list(seqs.loc["alice", "types"]) == ["enter", "click", "cart", "purchase"]
    early = store.sequences(until=T("10:30")).set_index("user")
    assert list(early.loc["bob", "items"]) == ["i1"]
    assert list(early.loc["bob", "ts"]) == [T("10:01").timestamp()]


def test_live_rooms_use_half_open_intervals(store):
    def live(t: str) -> list[str]:
        return store.live_rooms(T(t))["id"].tolist()

    assert live("09:59") == ["r0"]
    assert live("10:00") == ["r1"]  # r0 ended exactly at 10:00, r1 starts at 10:00
    assert live("10:45") == ["r1", "r2"]
    assert live("11:00") == ["r2"]  # end is exclusive; r2 has no end: still live
    assert live("08:00") == []
    rooms = store.live_rooms(T("10:45"))
    assert str(rooms["start"].dtype) == TS_DTYPE and pd.isna(rooms.set_index("id").loc["r2", "end"])


def test_shelf_items_at_time_t(store):
    assert store.shelf_items("r1", T("10:05")) == ["i1"]
    assert store.shelf_items("r1", T("10:15")) == ["i3", "i1", "i2"]  # pinned first, then slot start
    assert store.shelf_items("r1", T("10:20")) == ["i3", "i2"]  # i1's slot ended at 10:20
    assert store.shelf_items("r1", T("09:59")) == []
    assert store.shelf_items("r2", T("23:00")) == ["i1"]


def test_counts_in_window(store):
    all_items = store.counts("item")
    assert all_items.to_dict() == {"i1": 3, "i2": 2, "i3": 1}
    window = store.counts("item", start=T("10:01"), end=T("10:30"))
    assert window.to_dict() == {"i1": 2, "i2": 2}  # e6 at 10:30 excluded, e2 at 10:01 included
    assert store.counts("item", types=["purchase", "cart"]).to_dict() == {"i2": 2}
    assert store.counts("room", end=T("10:30")).to_dict() == {"r1": 5}
    assert store.counts("room").to_dict() == {"r1": 5, "r2": 2}
    with pytest.raises(ConfigError, match="'kind' parameter of EventStore.counts must be 'item' or 'room'"):
        store.counts("host")
    with pytest.raises(ConfigError, match="'types' parameter"):
        store.counts("item", types=["buy"])


def test_training_frame_and_dataset(store):
    frame = store.training_frame(until=T("11:00"))
    assert frame["event_id"].tolist() == ["e1", "e3", "e4", "e5", "e2", "e6"]
    assert str(frame["ts"].dtype) == TS_DTYPE
    ds = store.to_dataset("shop")
    assert isinstance(ds, Dataset) and ds.name == "shop"
    assert len(ds.events) == 7 and len(ds.rooms) == 3 and len(ds.shelf) == 4 and len(ds.users) == 2
    assert ds.items is None and ds.hosts is None  # empty tables -> None
    assert ds.summary()["event_types"]["click"] == 2


def test_delete_user_purges_events_and_profile(store):
    assert store.delete_user("alice") == {"events": 4, "users": 1}
    assert store.sequence("alice").types.shape == (0,)
    assert store.frame("users")["id"].tolist() == ["bob"]
    assert len(store.sequence("bob").items) == 3
    assert store.delete_user("alice") == {"events": 0, "users": 0}


def test_stats_and_reopen(store, tmp_path):
    stats = store.stats()
    assert (stats["events"], stats["event_users"], stats["rooms"], stats["shelf"]) == (7, 2, 3, 4)
    assert stats["first_ts"] == T("10:00").isoformat() and stats["event_types"]["view"] == 2
    home = store.home
    store.close()
    with pytest.raises(ConfigError, match="is closed"):
        store.count("events")
    with EventStore(home) as again:
        assert again.count("events") == 7
        assert again.shelf_items("r1", T("10:15")) == ["i3", "i1", "i2"]
    with EventStore(home, read_only=True) as ro:
        assert ro.count("rooms") == 3
    with pytest.raises(ConfigError, match="No event store at"):
        EventStore(tmp_path / "empty", read_only=True)


def test_existing_event_ids_finds_only_stored_ids(tmp_path):
    import pandas as pd

    from liveshelf.data.ingest import Ingestor
    from liveshelf.data.store import EventStore

    with EventStore(tmp_path) as store:
        Ingestor(store).ingest_events(
            pd.DataFrame(
                {
                    "event_id": ["e1", "e2"],
                    "ts": ["2026-11-01T10:00:00Z", "2026-11-01T10:01:00Z"],
                    "user": ["u1", "u1"],
                    "type": ["view", "view"],
                    "room": [None, None],
                    "item": ["i1", "i2"],
                    "value": [None, None],
                    "text": [None, None],
                }
            )
        )
        assert store.existing_event_ids(["e2", "e3", "e1"]) == {"e1", "e2"}
        assert store.existing_event_ids([]) == set()
