"""The demo's world: a simulated history plus a held-back day for the live replay, and the ingest tables."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
from rich.table import Table

from liveshelf.errors import ConfigError


# ------------------------------------------------------------------------------------ simulate
def simulate_world(
    *, users: int, hosts: int, days: int, seed: int, en_share: float, today: date | None = None
) -> tuple[Any, Any]:
    """A world of ``days`` history days ending at today's UTC midnight, plus the next day for the replay.

    Returns ``(history, replay)`` worlds: history holds every item, user and host, the rooms that
    started before the cut (with their shelves) and the events before it; replay holds the rooms
    starting after the cut, their shelves and events.
    """
    from liveshelf.data.dataset import Dataset
    from liveshelf.data.simulate import SimConfig, World, simulate

    today = today or datetime.now(UTC).date()
    start = today - timedelta(days=days)
    world = simulate(
        SimConfig(
            n_users=users, n_hosts=hosts, days=days + 1, seed=seed, start=start.isoformat(), en_share=en_share
        )
    )
    ds = world.dataset
    cut = pd.Timestamp(today.isoformat(), tz="UTC")
    old_rooms = ds.rooms["start"] < cut
    hist_rooms, new_rooms = ds.rooms[old_rooms], ds.rooms[~old_rooms]
    hist_shelf = ds.shelf[ds.shelf["room"].isin(hist_rooms["id"])]
    new_shelf = ds.shelf[ds.shelf["room"].isin(new_rooms["id"])]
    before = ds.events["ts"] < cut
    hist_events = ds.events[before].reset_index(drop=True)
    new_events = ds.events[~before & (ds.events["room"].isna() | ds.events["room"].isin(new_rooms["id"]))]
    if not len(hist_events) or not len(new_rooms):
        raise ConfigError(
            f"The simulated world is too small for the demo ({len(hist_events)} history events, "
            f"{len(new_rooms)} rooms to replay). Pass more --users or --hosts."
        )
    history = World(
        Dataset(
            name="simulated",
            events=hist_events,
            items=ds.items,
            users=ds.users,
            rooms=hist_rooms.reset_index(drop=True),
            shelf=hist_shelf.reset_index(drop=True),
            hosts=ds.hosts,
            meta=ds.meta,
            item_vectors=ds.item_vectors,
            room_vectors=ds.room_vectors,
        ),
        world.truth,
        world.config,
        {**world.meta, "part": "history", "cut": cut.isoformat()},
    )
    replay = World(
        Dataset(
            name="simulated-replay",
            events=new_events.reset_index(drop=True),
            items=ds.items,
            users=ds.users,
            rooms=new_rooms.reset_index(drop=True),
            shelf=new_shelf.reset_index(drop=True),
            hosts=ds.hosts,
            meta=ds.meta,
            item_vectors=ds.item_vectors,
            room_vectors=ds.room_vectors,
        ),
        world.truth,
        world.config,
        {**world.meta, "part": "replay", "cut": cut.isoformat()},
    )
    return history, replay


def ingest_table(reports: list, seconds: float | None) -> Table:
    table = Table(title="ingest" + (f" ({seconds:.1f}s)" if seconds else ""))
    for col in ("kind", "accepted", "rejected", "duplicate"):
        table.add_column(col, justify="right" if col != "kind" else "left")
    for r in reports:
        d = r.as_dict()
        table.add_row(str(d["kind"]), f"{d['accepted']:,}", f"{d['rejected']:,}", f"{d['duplicate']:,}")
    return table


def store_table(stats: dict[str, Any], path: Any) -> Table:
    summary = Table(title=f"event store {path}")
    summary.add_column("what")
    summary.add_column("value", justify="right")
    for key, value in stats.items():
        if isinstance(value, dict):
            for k2, v2 in value.items():
                summary.add_row(f"{key}: {k2}", f"{v2:,}" if isinstance(v2, int) else str(v2))
        else:
            summary.add_row(str(key), f"{value:,}" if isinstance(value, int) else str(value))
    return summary


__all__ = ["ingest_table", "simulate_world", "store_table"]
