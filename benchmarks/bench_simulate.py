"""Simulator speed: 100k users x 1 day (target: under 120 s), plus writing the Parquet files."""

from __future__ import annotations

import tempfile
import time

from common import write_result

from liveshelf.data.simulate import SimConfig, simulate

TARGET_S = 120.0


def main() -> None:
    rows = []
    for users, hosts, days in ((100_000, 1000, 1),):
        t0 = time.perf_counter()
        world = simulate(SimConfig(n_users=users, n_hosts=hosts, days=days, seed=0))
        sim_s = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            t1 = time.perf_counter()
            world.save(tmp)
            save_s = time.perf_counter() - t1
        ds = world.dataset
        counts = ds.events["type"].value_counts()
        rows.append(
            {
                "users": users,
                "hosts": hosts,
                "days": days,
                "events": len(ds.events),
                "items": len(ds.items),
                "rooms": len(ds.rooms),
                "shelf_slots": len(ds.shelf),
                "purchases": int(counts.get("purchase", 0)),
                "simulate_s": round(sim_s, 2),
                "save_s": round(save_s, 2),
                "events_per_s": round(len(ds.events) / sim_s),
                "target_s": TARGET_S,
                "ratio": round(sim_s / TARGET_S, 3),
                "ok": sim_s <= TARGET_S,
            }
        )
    write_result("simulate", rows)


if __name__ == "__main__":
    main()
