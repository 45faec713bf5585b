"""``simulate(SimConfig) -> World``: a live-commerce world with its ground truth, saved as Parquet."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from liveshelf.core.files import atomic_open, atomic_write_text
from liveshelf.core.timeutil import from_epoch_seconds
from liveshelf.data.dataset import Dataset
from liveshelf.data.sim.behaviour import (
    AGE_BANDS,
    REGIONS,
    TIERS,
    TYPE_CODES,
    make_population,
    simulate_events,
)
from liveshelf.data.sim.catalog import leaves, make_supply
from liveshelf.data.sim.truth import GroundTruth, SimConfig
from liveshelf.errors import DataFormatError
from liveshelf.schema import GENDERS

FRAMES = ("events", "items", "users", "rooms", "shelf", "hosts")


@dataclass
class World:
    """A simulated data set (schema frames) plus the truth that generated it."""

    dataset: Dataset
    truth: GroundTruth
    config: SimConfig
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, folder: str | Path) -> Path:
        """Write ``<frame>.parquet`` for every frame, ``truth.npz``/``truth.json`` and ``world.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in FRAMES:
            with atomic_open(folder / f"{name}.parquet", "wb") as fh:
                getattr(self.dataset, name).to_parquet(fh, index=False)
        self.truth.save(folder)
        atomic_write_text(
            folder / "world.json",
            json.dumps(
                {"config": asdict(self.config), **self.meta},
                ensure_ascii=False,
                indent=1,
                sort_keys=True,
                default=str,
            ),
        )
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> World:
        """Read a folder written by :meth:`save` (or ``liveshelf simulate --out``)."""
        folder = Path(folder)
        missing = [f"{n}.parquet" for n in FRAMES if not (folder / f"{n}.parquet").is_file()]
        if missing or not (folder / "world.json").is_file():
            raise DataFormatError(
                f"Folder {folder} is not a simulated world: missing "
                f"{missing or ['world.json']}. Create one with `liveshelf simulate --out DIR`."
            )
        info = json.loads((folder / "world.json").read_text())
        frames = {n: pd.read_parquet(folder / f"{n}.parquet") for n in FRAMES}
        ds = Dataset(name="simulated", **frames, meta=dict(info.get("dataset_meta", {})))
        meta = {k: v for k, v in info.items() if k != "config"}
        return cls(ds, GroundTruth.load(folder), SimConfig(**info["config"]), meta)


def simulate(config: SimConfig | None = None, **overrides: Any) -> World:
    """Simulate a world; identical output for an identical config (seed included)."""
    cfg = SimConfig(**{**asdict(config or SimConfig()), **overrides}).validate()
    rng = np.random.default_rng(cfg.seed)
    day0 = datetime.fromisoformat(cfg.start).replace(tzinfo=UTC).timestamp()
    lv = leaves()
    supply = make_supply(rng, cfg.n_hosts, cfg.items, cfg.days, day0, cfg.utc_offset_hours, cfg.en_share)
    pop, truth = make_population(rng, cfg, supply, len(lv.top))
    truth.categories = list(lv.path_zh)
    ev, texts, comment_source = simulate_events(rng, cfg, supply, pop, truth, day0)

    host_ids = np.array([f"h{h:05d}" for h in range(len(supply.host_pop))], dtype=object)
    truth.fav_hosts = np.concatenate([host_ids, np.array([""], dtype=object)])[pop.fav]
    truth.active_hour = pop.hour % 24.0
    room_ids = np.array([f"r{r:07d}" for r in range(len(supply.room_host))], dtype=object)
    user_ids, item_ids = truth.user_ids, truth.item_ids
    none = np.array([None], dtype=object)

    # events sorted by (user, ts, funnel order)
    order = np.lexsort((ev["type"], ev["ts"], ev["user"]))
    ev = {k: v[order] for k, v in ev.items()}
    n = len(order)
    events = pd.DataFrame(
        {
            "event_id": "e" + pd.Series(np.arange(n)).astype(str).str.zfill(9),
            "ts": from_epoch_seconds(np.floor(ev["ts"] * 1000.0) / 1000.0),  # floor keeps t < end
            "user": user_ids[ev["user"]],
            "type": np.asarray(TYPE_CODES, dtype=object)[ev["type"]],
            "room": np.concatenate([room_ids, none])[ev["room"]],
            "item": np.concatenate([item_ids, none])[ev["item"]],
            "value": ev["value"],
            "text": np.concatenate([texts, none])[ev["text"]],
        }
    )
    items = pd.DataFrame(
        {
            "id": item_ids,
            **{k: supply.item_rows[k] for k in ("title", "description", "category", "brand")},
            "price": supply.item_price,
            "rating": supply.item_rows["rating"],
            "attributes": supply.item_rows["attributes"],
            "language": supply.item_rows["language"],
        }
    )
    users = pd.DataFrame(
        {
            "id": user_ids,
            "gender": np.asarray(GENDERS, dtype=object)[pop.gender],
            "age_band": np.asarray(AGE_BANDS, dtype=object)[pop.age],
            "region": np.asarray(REGIONS, dtype=object)[pop.region],
            "spending_tier": np.asarray(TIERS, dtype=object)[pop.tier],
        }
    )
    rooms = pd.DataFrame(
        {
            "id": room_ids,
            "host": host_ids[supply.room_host],
            "title": supply.room_title,
            "start": from_epoch_seconds(supply.room_start),
            "end": from_epoch_seconds(supply.room_end),
        }
    )
    shelf = pd.DataFrame(
        {
            "room": room_ids[supply.slot_room],
            "item": item_ids[supply.slot_item],
            "start": from_epoch_seconds(supply.slot_start),
            "end": from_epoch_seconds(supply.slot_end),
            "pinned": supply.slot_pinned,
        }
    )
    tops = [
        [
            (lv.path_zh if supply.host_lang[h] == 0 else lv.path_en)[
                int(np.nonzero(lv.top == t)[0][0])
            ].split(" > ")[0]
            for t in supply.host_tops[h]
        ]
        for h in range(len(host_ids))
    ]
    hosts = pd.DataFrame(
        {
            "id": host_ids,
            "name": supply.host_names,
            "categories": [json.dumps(t, ensure_ascii=False) for t in tops],
        }
    )
    meta = {
        "simulated": True,
        "seed": cfg.seed,
        "comment_source": comment_source,
        "shelf_position": "0 = pinned, k = link number k",
    }
    ds = Dataset(
        name="simulated",
        events=events,
        items=items,
        users=users,
        rooms=rooms,
        shelf=shelf,
        hosts=hosts,
        meta=meta,
    )
    return World(ds, truth, cfg, {"dataset_meta": meta})
