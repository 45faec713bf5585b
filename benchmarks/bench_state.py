"""Online state: apply_events throughput (batches of 500) and read latency, memory vs Redis.

Workload (seeded): 200 live rooms with 30 shelf slots each, 5,000 users, 5,000 items,
50,000 events over one hour in time order (view/click/like/enter/leave/cart/purchase/
impression). Reads after loading: ``user_sequence`` (limit 50), ``shelf``, ``top(item, 50)``,
``top(room_item, 20, scope=room)``, ``audience``. Redis uses db 13 of 127.0.0.1:6379 under a
unique prefix that is deleted afterwards; it is left out (with a note) when the server does
not answer.
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import pandas as pd
from common import write_result

from liveshelf.schema import EVENT_COLUMNS, from_epoch_seconds

T0 = 1_767_225_600.0
N_EVENTS = 50_000
BATCH = 500
N_READS = 2_000
REDIS_URL = "redis://127.0.0.1:6379/13"


def workload(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n_rooms, n_users, n_items = 200, 5_000, 5_000
    rooms = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n_rooms)],
            "host": [f"h{i % 80}" for i in range(n_rooms)],
            "title": "",
            "start": from_epoch_seconds(np.full(n_rooms, T0 - 60)),
            "end": None,
        }
    )
    slot_room = np.repeat(np.arange(n_rooms), 30)
    slot_item = rng.integers(0, n_items, len(slot_room))
    shelf = pd.DataFrame(
        {
            "room": [f"r{i}" for i in slot_room],
            "item": [f"i{i}" for i in slot_item],
            "start": from_epoch_seconds(T0 - 60 + rng.uniform(0, 600, len(slot_room))),
            "end": None,
            "pinned": rng.random(len(slot_room)) < 0.05,
        }
    )
    types = rng.choice(
        ["impression", "view", "click", "like", "enter", "leave", "cart", "purchase"],
        N_EVENTS,
        p=[0.3, 0.25, 0.15, 0.1, 0.08, 0.07, 0.04, 0.01],
    )
    room_of = rng.integers(0, n_rooms, N_EVENTS)
    item_of = slot_item[room_of * 30 + rng.integers(0, 30, N_EVENTS)]
    events = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(N_EVENTS)],
            "ts": from_epoch_seconds(T0 + np.sort(rng.uniform(0, 3600, N_EVENTS))),
            "user": [f"u{i}" for i in rng.zipf(1.3, N_EVENTS) % n_users],
            "type": types,
            "room": [f"r{i}" for i in room_of],
            "item": np.where(
                np.isin(types, ["enter", "leave"]), None, np.array([f"i{i}" for i in item_of], dtype=object)
            ),
            "value": np.nan,
            "text": None,
        }
    )[list(EVENT_COLUMNS)]
    return rooms, shelf, events


def _pct(samples: list[float]) -> tuple[float, float]:
    arr = np.asarray(samples) * 1e3
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def run_backend(name: str, state, rooms, shelf, events) -> list[dict]:
    state.upsert_rooms(rooms)
    state.upsert_shelf(shelf)
    t0 = time.perf_counter()
    batch_times = []
    for lo in range(0, len(events), BATCH):
        b0 = time.perf_counter()
        state.apply_events(events.iloc[lo : lo + BATCH])
        batch_times.append(time.perf_counter() - b0)
    total = time.perf_counter() - t0
    p50, p99 = _pct(batch_times)
    rows = [
        {
            "backend": name,
            "op": f"apply_events (batch {BATCH})",
            "events_per_s": round(len(events) / total),
            "p50_ms": round(p50, 3),
            "p99_ms": round(p99, 3),
            "n": len(batch_times),
        }
    ]
    rng = np.random.default_rng(1)
    users = events["user"].to_numpy()[rng.integers(0, len(events), N_READS)]
    room_ids = rooms["id"].to_numpy()[rng.integers(0, len(rooms), N_READS)]
    t_read = T0 + 3600
    reads = {
        "user_sequence(limit=50)": lambda i: state.user_sequence(users[i], limit=50),
        "shelf(room, t)": lambda i: state.shelf(room_ids[i], t_read),
        "top(item, 50)": lambda i: state.top("item", 50, t_read),
        "top(room_item, 20)": lambda i: state.top("room_item", 20, t_read, scope=room_ids[i]),
        "audience(room, t)": lambda i: state.audience(room_ids[i], t_read),
    }
    for op, fn in reads.items():
        samples = []
        for i in range(N_READS):
            s0 = time.perf_counter()
            fn(i)
            samples.append(time.perf_counter() - s0)
        p50, p99 = _pct(samples)
        rows.append(
            {
                "backend": name,
                "op": op,
                "events_per_s": "",
                "p50_ms": round(p50, 3),
                "p99_ms": round(p99, 3),
                "n": N_READS,
            }
        )
    return rows


def main() -> None:
    from liveshelf.serving.state import MemoryState

    rooms, shelf, events = workload()
    rows = run_backend("memory", MemoryState(), rooms, shelf, events)
    notes = []
    try:
        from liveshelf.serving.state.redis import RedisState

        prefix = f"lsbench:{uuid.uuid4().hex[:8]}:"
        state = RedisState(REDIS_URL, prefix=prefix)
    except Exception as exc:  # the benchmark still reports the memory backend
        notes.append(f"redis left out: {exc}")
    else:
        try:
            rows += run_backend("redis", state, rooms, shelf, events)
        finally:
            keys = list(state.r.scan_iter(match=prefix + "*", count=1000))
            for lo in range(0, len(keys), 1000):
                state.r.delete(*keys[lo : lo + 1000])
            state.close()
    write_result("state", rows, n_events=N_EVENTS, batch=BATCH, notes=notes)


if __name__ == "__main__":
    main()
