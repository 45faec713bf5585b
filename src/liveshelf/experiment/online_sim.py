"""Simulated online evaluation: the simulator's viewers use the running system, their ground truth reacts.

Each visit of a simulated viewer at simulated time ``t``:

1. ``GET /v1/users/{user}/feed`` - the rooms shown;
2. the viewer looks down the feed, a room at position ``p`` is considered with
   ``exam(p)`` (the simulator's position bias) and entered with the viewer's mean
   ``preference`` for the items on its shelf now; at most one room per visit;
3. in the room, ``GET /v1/rooms/{room}/shelf?user=...`` - the items in the served order;
   an item at position ``p`` is viewed with ``exam(p + 1)``, clicked with ``preference``,
   carted with ``kappa_cart * preference`` and bought with ``kappa_buy`` (the truth's funnel,
   the same as ``purchase_prob``);
4. ``POST /v1/events``: enter, views, clicks, carts, purchases (value = price), leave (value =
   dwell seconds), so everything is in the online state before the viewer's next visit.

It talks HTTP through any client with ``get``/``post`` (FastAPI's ``TestClient`` in process,
or ``httpx.Client(base_url=...)`` against a running server), so the full serving path,
experiments included, is what gets evaluated.

>>> sim = OnlineSimulator(world, client, api_key="k")                      # doctest: +SKIP
>>> stats = sim.run(users=world.truth.user_ids[:200], start=t0, visits_per_user=2)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from liveshelf.core.timeutil import to_seconds_array
from liveshelf.data.sim.world import World
from liveshelf.errors import LiveshelfError, check_param
from liveshelf.models.oracle import GroundTruthRanker


@dataclass
class SimStats:
    """What a simulation run did (the experiment's own numbers come from its logs)."""

    visits: int = 0
    requests: int = 0
    entered: int = 0
    clicks: int = 0
    carts: int = 0
    purchases: int = 0
    gmv: float = 0.0
    events: int = 0
    arms: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class OnlineSimulator:
    """Replays simulated viewers against a liveshelf HTTP API (see the module docstring)."""

    def __init__(
        self,
        world: World,
        client: Any,
        *,
        api_key: str | None = None,
        feed_k: int = 6,
        shelf_k: int = 10,
        mean_dwell_s: float = 240.0,
        seed: int = 0,
    ) -> None:
        check_param(
            "feed_k",
            feed_k,
            isinstance(feed_k, int) and 1 <= feed_k <= 500,
            "an int in [1, 500]",
            "OnlineSimulator",
        )
        check_param(
            "shelf_k",
            shelf_k,
            isinstance(shelf_k, int) and 1 <= shelf_k <= 500,
            "an int in [1, 500]",
            "OnlineSimulator",
        )
        check_param("mean_dwell_s", mean_dwell_s, mean_dwell_s > 0, "a float > 0", "OnlineSimulator")
        self.world, self.truth, self.client = world, world.truth, client
        self.headers = {"X-API-Key": api_key} if api_key else {}
        self.feed_k, self.shelf_k, self.mean_dwell_s = feed_k, shelf_k, mean_dwell_s
        self.rng = np.random.default_rng(seed)
        self._seq = 0
        self.clock: float | None = None  # simulated time after the last run
        self._tag = f"sim{seed}"
        shelf = world.dataset.shelf
        self._slot_room = shelf["room"].astype(str).to_numpy()
        self._slot_item = shelf["item"].astype(str).to_numpy()
        self._slot_start = to_seconds_array(shelf["start"])
        end = to_seconds_array(shelf["end"])
        self._slot_end = np.where(np.isnan(end), np.inf, end)
        items = world.dataset.items
        self._price = dict(zip(items["id"].astype(str), items["price"].astype(float), strict=True))

    # ---- HTTP ---------------------------------------------------------------------------------
    def _get(self, url: str, params: dict[str, Any]) -> dict[str, Any]:
        r = self.client.get(url, params=params, headers=self.headers)
        if r.status_code != 200:
            raise LiveshelfError(f"GET {url} answered {r.status_code}: {r.text[:300]}")
        return r.json()

    def _post(self, events: list[dict[str, Any]]) -> None:
        r = self.client.post("/v1/events", json={"events": events}, headers=self.headers)
        if r.status_code != 200:
            raise LiveshelfError(f"POST /v1/events answered {r.status_code}: {r.text[:300]}")
        body = r.json()
        if body.get("rejected"):
            raise LiveshelfError(
                f"POST /v1/events rejected {body['rejected']} simulated event(s): "
                f"{body.get('errors', [])[:3]}"
            )

    def _event(
        self,
        user: str,
        t: float,
        typ: str,
        room: str | None,
        item: str | None = None,
        value: float | None = None,
    ) -> dict[str, Any]:
        self._seq += 1
        return {
            "event_id": f"{self._tag}-{self._seq:09d}",
            "ts": round(float(t), 3),
            "user": user,
            "type": typ,
            "room": room,
            "item": item,
            "value": value,
        }

    def _on_shelf(self, room: str, t: float) -> np.ndarray:
        m = (self._slot_room == room) & (self._slot_start <= t) & (t < self._slot_end)
        return np.unique(self._slot_item[m])

    # ---- one visit ----------------------------------------------------------------------------
    def visit(
        self, user: str, t: float, stats: SimStats | None = None, pending: list[dict[str, Any]] | None = None
    ) -> SimStats:
        """One visit of ``user`` at ``t``; returns (and adds to) ``stats``.

        The visit's events are posted at once, or appended to ``pending`` for the caller to post
        (in one batch, before any of these users' next visit).
        """
        stats = stats if stats is not None else SimStats()
        stats.visits += 1
        feed = self._get(f"/v1/users/{user}/feed", {"at": t, "k": self.feed_k})
        stats.requests += 1
        arm = (feed.get("experiment") or {}).get("arm", "-")
        stats.arms[arm] = stats.arms.get(arm, 0) + 1
        rooms = [r["room"] for r in feed.get("rooms", [])]
        entered = None
        for p, room in enumerate(rooms):
            if self.rng.random() >= float(self.truth.exam(p)):
                continue
            items = self._on_shelf(room, t)
            if not len(items):
                continue
            appeal = float(self.truth.preference(np.full(len(items), user, dtype=object), items).mean())
            if self.rng.random() < appeal:
                entered = room
                break
        if entered is None:
            return stats
        stats.entered += 1
        t_in = t + 1.0
        dwell = float(min(self.rng.exponential(self.mean_dwell_s), 4 * self.mean_dwell_s)) + 5.0
        events = [self._event(user, t_in, "enter", entered)]
        shelf = self._get(f"/v1/rooms/{entered}/shelf", {"at": t_in, "user": user, "k": self.shelf_k})
        stats.requests += 1
        shown = [r["item"] for r in shelf.get("items", [])]
        if shown:
            pref = self.truth.preference(
                np.full(len(shown), user, dtype=object), np.asarray(shown, dtype=object)
            )
            exam = self.truth.exam(np.arange(1, len(shown) + 1))
            par = self.truth.params
            u = self.rng.random((len(shown), 4))
            viewed = u[:, 0] < exam
            clicked = viewed & (u[:, 1] < pref)
            carted = clicked & (u[:, 2] < np.minimum(1.0, par.kappa_cart * pref))
            bought = carted & (u[:, 3] < par.kappa_buy)
            offsets = np.sort(self.rng.uniform(2.0, dwell - 2.0, len(shown)))
            for j, item in enumerate(shown):
                at = t_in + offsets[j]
                if viewed[j]:
                    events.append(self._event(user, at, "view", entered, item))
                if clicked[j]:
                    events.append(self._event(user, at + 0.2, "click", entered, item))
                if carted[j]:
                    events.append(self._event(user, at + 0.4, "cart", entered, item, self._price.get(item)))
                if bought[j]:
                    price = float(self._price.get(item) or 0.0)
                    events.append(self._event(user, at + 0.6, "purchase", entered, item, price))
                    stats.gmv += price
            stats.clicks += int(clicked.sum())
            stats.carts += int(carted.sum())
            stats.purchases += int(bought.sum())
        events.append(self._event(user, t_in + dwell, "leave", entered, value=round(dwell, 1)))
        stats.events += len(events)
        if pending is not None:
            pending.extend(events)
        else:
            self._post(events)
            stats.requests += 1
        return stats

    def post(self, events: list[dict[str, Any]], stats: SimStats | None = None, chunk: int = 5000) -> None:
        """Post ``events`` in batches of at most ``chunk``."""
        for lo in range(0, len(events), chunk):
            self._post(events[lo : lo + chunk])
            if stats is not None:
                stats.requests += 1

    # ---- many visits --------------------------------------------------------------------------
    def run(
        self,
        users: Sequence[str],
        start: float,
        *,
        visits_per_user: int = 1,
        gap_s: float = 2.0,
        batch_users: int = 50,
        on_batch: Callable[[int, SimStats], bool] | None = None,
        progress: bool = False,
    ) -> SimStats:
        """Visits of ``users`` in a shuffled order, ``gap_s`` simulated seconds apart, from ``start``.

        Users come in batches of ``batch_users``; each user of a batch makes ``visits_per_user``
        visits, one round over the batch after the other. A round's events are posted together
        at its end, so every event is in the system before the same viewer's next request.
        After each batch ``on_batch(users_so_far, stats)`` is called; returning True stops the
        run (a sequential test that has decided).
        """
        check_param(
            "visits_per_user",
            visits_per_user,
            isinstance(visits_per_user, int) and visits_per_user >= 1,
            "an int >= 1",
            "OnlineSimulator.run",
        )
        check_param(
            "batch_users",
            batch_users,
            isinstance(batch_users, int) and batch_users >= 1,
            "an int >= 1",
            "OnlineSimulator.run",
        )
        order = [str(u) for u in self.rng.permutation(np.asarray(users, dtype=object))]
        stats = SimStats()
        t = float(start)
        from tqdm.auto import tqdm

        bar = tqdm(total=len(order), desc="simulated users", unit="user", disable=not progress)
        try:
            for lo in range(0, len(order), batch_users):
                batch = order[lo : lo + batch_users]
                for _ in range(visits_per_user):
                    pending: list[dict[str, Any]] = []
                    for user in batch:
                        self.visit(user, t, stats, pending)
                        t += gap_s
                    self.post(pending, stats)
                bar.update(len(batch))
                if on_batch is not None and on_batch(lo + len(batch), stats):
                    break
        finally:
            bar.close()
        self.clock = t
        return stats


def live_window(world: World, min_rooms: int = 3) -> tuple[float, float]:
    """The longest simulated time span in which at least ``min_rooms`` rooms are live (epoch seconds)."""
    rooms = world.dataset.rooms
    start, end = to_seconds_array(rooms["start"]), to_seconds_array(rooms["end"])
    grid = np.arange(np.nanmin(start), np.nanmax(end), 60.0)
    live = ((start[None, :] <= grid[:, None]) & (grid[:, None] < end[None, :])).sum(1) >= min_rooms
    if not live.any():
        return float(grid[0]), float(grid[0])
    best, cur, best_span = (0, 0), None, -1
    for i, ok in enumerate(np.append(live, False)):
        if ok and cur is None:
            cur = i
        elif not ok and cur is not None:
            if i - cur > best_span:
                best, best_span = (cur, i - 1), i - cur
            cur = None
    return float(grid[best[0]]), float(grid[best[1]])


def live_times(world: World, lo: float, hi: float, n: int, *, min_rooms: int = 3) -> list[float]:
    """``n`` times in ``[lo, hi)``, spread evenly over the minutes in which at least ``min_rooms`` rooms are live."""
    rooms = world.dataset.rooms
    start, end = to_seconds_array(rooms["start"]), to_seconds_array(rooms["end"])
    grid = np.arange(lo, hi, 60.0)
    live = ((start[None, :] <= grid[:, None]) & (grid[:, None] < end[None, :])).sum(1) >= min_rooms
    ok = grid[live]
    if not len(ok):
        raise LiveshelfError(f"No minute in [{lo:.0f}, {hi:.0f}) has {min_rooms} live rooms in this world.")
    return [float(ok[int(i)]) for i in np.linspace(0, len(ok) - 1, n).round().astype(int)]


def prepare_home(
    home: Path, world: World, until: float, *, model: str = "itemknn", oracle: bool = True
) -> None:
    """A home for online simulation: the world's catalogue, hosts, rooms and shelves, its events before ``until``,
    ``model`` trained on them and promoted as ``default``, and (``oracle``) the truth oracle registered."""
    import pandas as pd

    from liveshelf.data.ingest import Ingestor
    from liveshelf.data.split import dataset_to_train_data
    from liveshelf.data.store import EventStore
    from liveshelf.models import create_model
    from liveshelf.registry import ModelRegistry

    ds = world.dataset
    with EventStore(home) as store:
        ing = Ingestor(store)
        for kind in ("items", "users", "hosts", "rooms", "shelf"):
            ing.ingest(kind, getattr(ds, kind))
        ing.ingest("events", ds.events[ds.events["ts"] < pd.Timestamp(until, unit="s", tz="UTC")])
        data = dataset_to_train_data(store.to_dataset())
    reg = ModelRegistry(Path(home) / "models")
    reg.promote("default", reg.register(create_model(model).fit(data), name="default"))
    if oracle:  # its own name: promoting it serves nothing unless a setting asks for model="oracle"
        reg.promote("oracle", reg.register(GroundTruthRanker(world.truth).fit(), name="oracle"))


def event_payloads(frame: Any) -> list[dict[str, Any]]:
    """Schema event rows as ``POST /v1/events`` bodies (epoch-second times, missing values left out)."""
    import pandas as pd

    secs = to_seconds_array(frame["ts"].to_numpy())
    out = []
    cols = [c for c in ("event_id", "user", "type", "room", "item", "value", "text") if c in frame.columns]
    for t, rec in zip(secs.tolist(), frame[cols].to_dict("records"), strict=True):
        body = {"ts": round(float(t), 3)}
        for c in cols:
            v = rec[c]
            if v is None or (not isinstance(v, str) and pd.isna(v)):
                continue
            body[c] = float(v) if c == "value" else str(v)
        out.append(body)
    return out


__all__ = [
    "GroundTruthRanker",
    "OnlineSimulator",
    "SimStats",
    "event_payloads",
    "live_times",
    "live_window",
    "prepare_home",
]
