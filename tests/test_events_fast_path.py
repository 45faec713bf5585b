"""The events write path: one idempotent insert that says what was new, applied to the state without a read-back,
and text services that build in the background without losing writes made meanwhile."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from liveshelf.data.store import EventStore
from liveshelf.data.validate import Rules, validate
from liveshelf.serving.state.memory import MemoryState
from liveshelf.serving.sync import Fresh, StateSync
from liveshelf.serving.text_services import TextServices


def _events(ids: list[str], t0: float = 1.7e9) -> pa.Table:
    n = len(ids)
    raw = pa.table(
        {
            "event_id": ids,
            "ts": [t0 + i for i in range(n)],
            "user": ["u1"] * n,
            "type": ["click"] * n,
            "room": [None] * n,
            "item": ["i1"] * n,
            "value": pa.array([None] * n, pa.float64()),
            "text": [None] * n,
        }
    )
    return validate("events", raw, Rules()).table


def test_append_events_returns_only_the_new_rows_with_their_seq(tmp_path):
    with EventStore(tmp_path) as store:
        first = store.append_events(_events(["a", "b", "c"]))
        assert first.new.column("event_id").to_pylist() == ["a", "b", "c"]
        assert (first.head_before, first.head, first.duplicate) == (-1, 2, 0)
        again = store.append_events(_events(["b", "d", "c", "e"]))
        assert again.new.column("event_id").to_pylist() == ["d", "e"]
        assert again.head_before == 2 and again.head == again.new.column("seq")[-1].as_py()
        assert again.duplicate == 2
        none = store.append_events(_events(["a"]))
        assert none.new.num_rows == 0 and none.head == none.head_before and none.duplicate == 1
        assert store.insert_events(_events(["x", "a"])) == (1, 1)
        assert store.count("events") == 6


class _Gateway:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    def open(self):  # noqa: ANN201 - a context manager like StoreGateway.open
        from contextlib import nullcontext

        return nullcontext(self.store)


def test_a_fresh_batch_is_applied_without_reading_it_back_and_a_gap_falls_back_to_the_store(tmp_path):
    with EventStore(tmp_path) as store:
        state = MemoryState()
        sync = StateSync(state, _Gateway(store), window_s=86_400.0)
        sync.catch_up(store)  # empty store: synced at -1
        stored = store.append_events(_events(["a", "b"]))
        frame = pd.DataFrame(
            {
                "event_id": ["a", "b"],
                "ts": pd.to_datetime([1.7e9, 1.7e9 + 1], unit="s", utc=True),
                "user": ["u1", "u1"],
                "type": ["click", "click"],
                "room": [None, None],
                "item": ["i1", "i1"],
                "value": [None, None],
                "text": [None, None],
            }
        )
        store.events_after = None  # the fast path must not read the batch back
        assert sync.catch_up(store, fresh=Fresh(frame, stored.head_before, stored.head)) == 2
        assert state.sync_point()[1] == stored.head
        assert len(state.user_sequence("u1")) == 2
        del store.events_after
        missed = store.append_events(_events(["c"], t0=1.7e9 + 10))  # stored, never applied: a gap
        later = store.append_events(_events(["d"], t0=1.7e9 + 20))
        frame_d = frame.iloc[:1].assign(event_id="d")
        assert later.head_before == missed.head
        sync.catch_up(store, fresh=Fresh(frame_d, later.head_before, later.head))  # not at head_before: reads
        assert state.sync_point()[1] == later.head
        assert len(state.user_sequence("u1")) == 4


def _items() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["i1", "i2"],
            "title": ["Red mug", "Blue cup"],
            "category": ["Home", "Home"],
            "brand": ["Acme", "Acme"],
            "price": [10.0, 12.0],
        }
    )


def test_background_text_services_apply_writes_queued_during_the_build_in_order():
    text = TextServices(_items(), background=True, start_after_s=3600.0)  # waits for start() or a read
    assert not text.ready
    ev = pd.DataFrame(
        {
            "event_id": ["e1"],
            "ts": pd.to_datetime([1.7e9], unit="s", utc=True),
            "user": ["u1"],
            "type": ["click"],
            "room": [None],
            "item": ["i1"],
            "value": [None],
            "text": [None],
        }
    )
    assert text.update_events(ev) == 1
    text.delete_user("u1")
    text.update_events(ev.assign(user="u2"))
    assert text.profile("u1", 1.7e9 + 1) is None  # the read starts the build and waits for it
    assert text.ready
    prof = text.profile("u2", 1.7e9 + 1)
    assert prof is not None and prof["n_events"] == 1
    assert text.pitch("i1")["item"] == "i1"


def test_text_services_built_on_first_use_read_earlier_writes_from_the_store_once():
    """With a source (the store), writes before the build are not queued (no unbounded queue on a server whose
    text routes are never called): the build reads them back; writes during the build are queued, and an event
    both read back and queued counts once."""
    import threading

    def frame(ids: list[str], user: str) -> pd.DataFrame:
        n = len(ids)
        return pd.DataFrame(
            {
                "event_id": ids,
                "ts": pd.to_datetime([1.7e9 + i for i in range(n)], unit="s", utc=True),
                "user": [user] * n,
                "type": ["click"] * n,
                "room": [None] * n,
                "item": ["i1"] * n,
                "value": [None] * n,
                "text": [None] * n,
            }
        )

    stored = [frame(["e1", "e2"], "u1")]
    reading, release = threading.Event(), threading.Event()

    def source():
        events = pd.concat(stored, ignore_index=True)  # the store as the build reads it
        reading.set()
        release.wait(10)
        return _items(), None, events

    text = TextServices(_items(), background=True, start_after_s=None, source=source)
    text.update_events(stored[0])  # before the build: dropped, the store has it
    assert text._pending == []
    text.start()
    assert reading.wait(10)
    late = frame(["e2", "e3"], "u1")  # e2 was read back already; e3 is new
    stored.append(late.iloc[1:])
    text.update_events(late)
    release.set()
    assert text.wait_ready(10)
    assert text.profile("u1", 1.7e9 + 5)["n_events"] == 3  # e1, e2, e3 once each
