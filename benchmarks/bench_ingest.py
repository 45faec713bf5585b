"""Ingest throughput: Parquet bulk load and the Python API in batches of 1,000 records.

Synthetic events (seeded) are generated here: ``N_BULK`` rows written to a Parquet file
in a temporary folder, then ``Ingestor(store).ingest_events(path)`` into a fresh store
(read + validate + load, one transaction). The API mode feeds ``N_API`` events as lists
of 1,000 dicts, one ``ingest_events`` call (one transaction) each.
Targets: >= 300k events/s (Parquet bulk), >= 30k events/s (API batches).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_result  # noqa: E402

from liveshelf.data.ingest import Ingestor  # noqa: E402
from liveshelf.data.store import EventStore  # noqa: E402
from liveshelf.schema import EVENT_TYPES, TS_DTYPE  # noqa: E402

N_BULK = int(os.environ.get("BENCH_INGEST_BULK", 1_000_000))
N_API = int(os.environ.get("BENCH_INGEST_API", 100_000))
BATCH = 1_000
TARGETS = {"parquet_bulk": 300_000.0, "api_batches_1000": 30_000.0}


def synthetic_events(
    n: int, seed: int = 0, n_users: int = 50_000, n_items: int = 20_000, n_rooms: int = 2_000
) -> pd.DataFrame:
    """``n`` valid events in schema columns; every type carries the ids it needs."""
    rng = np.random.default_rng(seed)
    types = np.array(EVENT_TYPES, dtype=object)[rng.integers(0, len(EVENT_TYPES), n)]
    start = pd.Timestamp("2024-06-01", tz="UTC").value // 1000  # microseconds
    ts_us = start + np.sort(rng.integers(0, 30 * 86_400 * 1_000_000, n))
    needs_room = np.isin(
        types, ["enter", "leave", "comment", "gift", "follow", "like", "share", "impression"]
    )
    item = np.char.add("i", rng.integers(0, n_items, n).astype(str)).astype(object)
    room = np.char.add("r", rng.integers(0, n_rooms, n).astype(str)).astype(object)
    item[needs_room & ~np.isin(types, ["like", "impression"])] = None
    room[~needs_room & (rng.random(n) < 0.5)] = None
    value = np.where(np.isin(types, ["purchase", "gift"]), np.round(rng.gamma(2.0, 20.0, n), 2), np.nan)
    text = np.where(types == "comment", "nice!", None).astype(object)
    return pd.DataFrame(
        {
            "event_id": np.char.add("e", np.arange(n).astype(str)).astype(object),
            "ts": pd.Series(pd.to_datetime(ts_us, unit="us", utc=True)).astype(TS_DTYPE),
            "user": np.char.add("u", rng.integers(0, n_users, n).astype(str)).astype(object),
            "type": types,
            "room": room,
            "item": item,
            "value": value,
            "text": text,
        }
    )


def bench_bulk(tmp: Path) -> dict:
    frame = synthetic_events(N_BULK, seed=1)
    path = tmp / "events.parquet"
    frame.to_parquet(path, index=False)
    with EventStore(tmp / "bulk") as store:
        t0, c0 = time.perf_counter(), time.process_time()
        report = Ingestor(store).ingest_events(path)
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        assert report.accepted == N_BULK and store.count("events") == N_BULK, report
    return _row("parquet_bulk", N_BULK, secs, cpu)


def bench_api(tmp: Path) -> dict:
    frame = synthetic_events(N_API, seed=2)
    frame["ts"] = frame["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # as JSON clients send it
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    batches = [records[i : i + BATCH] for i in range(0, N_API, BATCH)]
    with EventStore(tmp / "api") as store:
        ingestor = Ingestor(store)
        t0, c0 = time.perf_counter(), time.process_time()
        accepted = sum(ingestor.ingest_events(b).accepted for b in batches)
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        assert accepted == N_API and store.count("events") == N_API
    return _row("api_batches_1000", N_API, secs, cpu)


def _row(mode: str, n: int, secs: float, cpu: float) -> dict:
    """Wall-clock rate against the target; CPU seconds (all threads of this process) alongside,
    because the benchmark machine may be shared (see load_avg_1m)."""
    rate = n / secs
    return {
        "mode": mode,
        "events": n,
        "seconds": round(secs, 3),
        "events_per_s": round(rate),
        "target": TARGETS[mode],
        "ratio_to_target": round(rate / TARGETS[mode], 2),
        "cpu_seconds": round(cpu, 3),
        "events_per_cpu_s": round(n / cpu),
        "load_avg_1m": round(os.getloadavg()[0], 1),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = [bench_bulk(tmp), bench_api(tmp)]
    write_result("ingest", rows, batch=BATCH)


if __name__ == "__main__":
    main()
