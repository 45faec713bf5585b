"""The live-room console's figures, computed from the serving services (no HTTP here).

:mod:`liveshelf.serving.routes.dashboard` turns these into JSON for the page
(``src/liveshelf/dashboard/static``). Everything is read from what the server already
holds: the online state (live rooms, audiences, shelves), the event store (purchases
and comments of a room), the pipeline (viewer profiles) and the comment monitor's
sentiment model; nothing here ranks or scores items itself.

* :func:`room_cards` -- the rooms live now: audience, GMV, comment volume and a
  negative-share sparkline;
* :func:`audience_profile` -- the interests of the viewers present, each viewer weighing
  the same;
* :func:`comment_stream` -- a room's latest comments with their sentiment;
* :func:`viewer_burst` -- synthetic viewers entering a room and interacting, as events
  for ``POST /v1/events`` (the console's "simulate 100 viewers");
* :func:`changes` -- what a burst changed (audience, shelf order, next item);
* :func:`model_versions` / :func:`experiments` -- the registry and the A/B experiments.

>>> cards = room_cards(services, time.time(), sentiment=SentimentCache.of(services))  # doctest: +SKIP
>>> [(c["room"], c["audience"], c["gmv"]) for c in cards]                             # doctest: +SKIP
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from liveshelf.core.jsonsafe import jsonable
from liveshelf.core.timeutil import to_epoch_seconds
from liveshelf.errors import check_param
from liveshelf.names import is_safe_name

#: Comment buckets (of the monitor's ``bucket_s``, 30 s by default) in a room card's sparkline.
SPARK_BUCKETS = 10

#: Names of experiments and of their report files the console serves (no path separators, no ``..``).
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def static_dir() -> Path:
    """The folder of the console's page files (``index.html``, ``app.js``, ``style.css``).

    They are package data of ``liveshelf`` under ``dashboard/static`` (read as files: serving imports no
    module of :mod:`liveshelf.dashboard`)."""
    return Path(__file__).resolve().parent.parent / "dashboard" / "static"


# ------------------------------------------------------------------------------------ sentiment
class SentimentCache:
    """P(negative) of comments, scored once per event id with the comment monitor's model.

    The console shows the same comments on every poll; each is scored the first time only.
    At most ``max_size`` scores are kept (least recently used dropped first).
    """

    def __init__(self, model: Any, threshold: float, max_size: int = 100_000) -> None:
        check_param("threshold", threshold, 0 < threshold < 1, "a float in (0, 1)", "SentimentCache")
        check_param(
            "max_size", max_size, isinstance(max_size, int) and max_size >= 1, "an int >= 1", "SentimentCache"
        )
        self.model = model
        self.threshold = float(threshold)
        self.max_size = max_size
        self._scores: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def of(cls, services: Any) -> SentimentCache | None:
        """The cache for a server's comment monitor, or None when comments are not monitored."""
        monitor = getattr(services.text, "monitor", None) if services.text is not None else None
        return None if monitor is None else cls(monitor.model, monitor.threshold)

    def negative(self, ids: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        """P(negative) of each comment (``ids`` are event ids, ``texts`` their texts)."""
        with self._lock:
            todo = [j for j, i in enumerate(ids) if i not in self._scores]
        if todo:
            p = np.asarray(self.model.predict_proba([str(texts[j]) for j in todo]), dtype=np.float64)[:, 0]
            with self._lock:
                for j, v in zip(todo, p.tolist(), strict=True):
                    self._scores[ids[j]] = float(v)
                while len(self._scores) > self.max_size:
                    self._scores.popitem(last=False)
        with self._lock:
            out = []
            for i in ids:
                out.append(self._scores[i])
                self._scores.move_to_end(i)
        return np.asarray(out, dtype=np.float64)


# ------------------------------------------------------------------------------------ rooms
def _gmv(purchases: pd.DataFrame, catalogue: Any) -> tuple[float, int]:
    """Sum of the purchase values (the item's catalogue price where a purchase has none) and the count."""
    if not len(purchases):
        return 0.0, 0
    values = purchases["value"].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    missing = np.isnan(values)
    if missing.any():
        for j in np.nonzero(missing)[0]:
            info = catalogue.get(purchases["item"].iloc[j]) if purchases["item"].iloc[j] is not None else None
            values[j] = info.price if info is not None and info.price is not None else 0.0
    return round(float(values.sum()), 2), len(values)


def _spark(ts: np.ndarray, negative: np.ndarray | None, t: float, bucket_s: float) -> list[dict[str, Any]]:
    """Comment volume and negative share per bucket over the last ``SPARK_BUCKETS`` buckets up to ``t``."""
    current = int(t // bucket_s)
    first = current - SPARK_BUCKETS + 1
    n = np.zeros(SPARK_BUCKETS, dtype=np.int64)
    neg = np.zeros(SPARK_BUCKETS, dtype=np.int64)
    idx = (ts // bucket_s).astype(np.int64) - first
    ok = (idx >= 0) & (idx < SPARK_BUCKETS)
    np.add.at(n, idx[ok], 1)
    if negative is not None:
        np.add.at(neg, idx[ok], negative[ok].astype(np.int64))
    return [
        {
            "start": float((first + b) * bucket_s),
            "n": int(n[b]),
            "negative": int(neg[b]) if negative is not None else None,
            "share": (round(float(neg[b] / n[b]), 4) if n[b] and negative is not None else None),
        }
        for b in range(SPARK_BUCKETS)
    ]


def _bucket_s(services: Any) -> float:
    monitor = getattr(services.text, "monitor", None) if services.text is not None else None
    return float(monitor.bucket_s) if monitor is not None else 30.0


def room_cards(services: Any, t: float, sentiment: SentimentCache | None) -> list[dict[str, Any]]:
    """The rooms live at ``t``, most viewers first: audience, shelf size, GMV so far, comments.

    GMV is the sum of the room's purchase values from its start to ``t``; ``spark`` holds
    the comment volume and negative share of the last :data:`SPARK_BUCKETS` buckets.
    """
    state = services.state
    rooms = list(state.live_rooms(t))
    infos = [i for i in state.rooms(rooms)]
    keep = [j for j, info in enumerate(infos) if info is not None]
    rooms, infos = [rooms[j] for j in keep], [infos[j] for j in keep]
    if not rooms:
        return []
    bucket_s = _bucket_s(services)
    since = min(float(i["start"]) for i in infos)
    with services.store.open() as store:
        purchases = store.room_events(rooms, since, t, types=["purchase"])
        comments = store.room_events(
            rooms, (int(t // bucket_s) - SPARK_BUCKETS + 1) * bucket_s, t, types=["comment"]
        )
    comments = comments[comments["text"].notna()]
    negative = None
    if sentiment is not None and len(comments):
        negative = (
            sentiment.negative(
                comments["event_id"].astype(str).tolist(), comments["text"].astype(str).tolist()
            )
            >= sentiment.threshold
        )
    c_ts = to_epoch_seconds(comments["ts"]) if len(comments) else np.zeros(0)
    c_room = comments["room"].to_numpy(dtype=object)
    p_ts = to_epoch_seconds(purchases["ts"]) if len(purchases) else np.zeros(0)
    p_room = purchases["room"].to_numpy(dtype=object)
    cards = []
    for room, info in zip(rooms, infos, strict=True):
        mine = p_room == room
        gmv, orders = _gmv(purchases[mine & (p_ts >= float(info["start"]))], services.catalogue)
        cm = c_room == room
        snap = services.text.comments(room, t, limit=3) if sentiment is not None else None
        cards.append(
            {
                "room": room,
                "host": info.get("host"),
                "title": info.get("title") or "",
                "start": info["start"],
                "audience": len(state.audience(room, t)),
                "shelf_size": len(state.shelf(room, t)),
                "gmv": gmv,
                "orders": orders,
                "comments": int(cm.sum()),
                "negative_share": None if snap is None else snap["negative_share"],
                "baseline": None if snap is None else snap["baseline"],
                "alerts": [] if snap is None else snap["alerts"],
                "spark": _spark(c_ts[cm], None if negative is None else negative[cm], t, bucket_s),
            }
        )
    cards.sort(key=lambda c: (-c["audience"], -c["gmv"], c["room"]))
    return cards


def room_totals(services: Any, room: str, t: float) -> dict[str, Any]:
    """GMV and orders of ``room`` from its start to ``t``, and its current audience size."""
    info = services.state.room(room) or {"start": t}
    with services.store.open() as store:
        purchases = store.room_events([room], float(info["start"]), t, types=["purchase"])
    gmv, orders = _gmv(purchases, services.catalogue)
    return {"gmv": gmv, "orders": orders, "audience": len(services.state.audience(room, t))}


def comment_stream(
    services: Any,
    room: str,
    t: float,
    sentiment: SentimentCache | None,
    limit: int = 40,
    window_s: float = 1800.0,
) -> list[dict[str, Any]]:
    """The room's ``limit`` latest comments up to ``t`` (within ``window_s``), newest first.

    Each has ``p_negative`` and ``negative`` when comments are monitored (else None).
    """
    with services.store.open() as store:
        frame = store.room_events([room], t - window_s, t, types=["comment"], limit=limit)
    frame = frame[frame["text"].notna()]
    if not len(frame):
        return []
    ids = frame["event_id"].astype(str).tolist()
    texts = frame["text"].astype(str).tolist()
    p = sentiment.negative(ids, texts) if sentiment is not None else None
    threshold = sentiment.threshold if sentiment is not None else 0.0
    out = []
    for j, (ts, user, item) in enumerate(
        zip(to_epoch_seconds(frame["ts"]).tolist(), frame["user"], frame["item"], strict=True)
    ):
        info = services.catalogue.get(item) if isinstance(item, str) else None
        out.append(
            {
                "ts": ts,
                "user": str(user),
                "text": texts[j],
                "item": item if isinstance(item, str) else None,
                "item_title": None if info is None else info.title,
                "p_negative": None if p is None else round(float(p[j]), 4),
                "negative": None if p is None else bool(p[j] >= threshold),
            }
        )
    return out


# ------------------------------------------------------------------------------------ audience
def _shares(weights: dict[str, float], keep: Any) -> dict[str, float]:
    sel = {k: w for k, w in weights.items() if keep(k) and w > 0}
    total = sum(sel.values())
    return {k: w / total for k, w in sel.items()} if total > 0 else {}


def audience_profile(pipeline: Any, audience: Sequence[str], t: float, top: int = 6) -> dict[str, Any]:
    """Top interests of the viewers present: each viewer's decayed category / brand weights as shares,
    averaged over the viewers who have such interests, so every viewer weighs the same.

    ``known`` counts the viewers with any history; ``with_interests`` those whose history
    names items (a viewer who only entered or commented has a history but no item interests).

    >>> audience_profile(pipeline, state.audience("r1", t), t)["categories"][0]   # doctest: +SKIP
    {'key': '美妆', 'share': 0.41}
    """
    sums: dict[str, dict[str, float]] = {"categories": {}, "leaf_categories": {}, "brands": {}}
    counts = {name: 0 for name in sums}
    known = 0
    for user in audience:
        v = pipeline.viewer(user, t)
        if not v.known:
            continue
        known += 1
        parts = {
            "categories": _shares(v.category_weight, lambda c: ">" not in c),
            "leaf_categories": _shares(v.category_weight, lambda c: ">" in c),
            "brands": _shares(v.brand_weight, lambda _b: True),
        }
        for name, shares in parts.items():
            acc = sums[name]
            counts[name] += bool(shares)
            for k, s in shares.items():
                acc[k] = acc.get(k, 0.0) + s
    out: dict[str, Any] = {"viewers": len(audience), "known": known, "with_interests": counts["categories"]}
    for name, acc in sums.items():
        pairs = sorted(acc.items(), key=lambda p: (-p[1], p[0]))[:top]
        out[name] = (
            [{"key": k, "share": round(s / counts[name], 4)} for k, s in pairs] if counts[name] else []
        )
    return out


# ------------------------------------------------------------------------------------ simulated viewers
def _top_category(path: str | None) -> str:
    return str(path).split(">")[0].strip() if path else ""


def viewer_burst(
    room: str,
    shelf: Sequence[Any],
    t: float,
    *,
    n: int = 100,
    seed: int = 0,
    focus: str | None = None,
    focus_share: float = 0.7,
    negative_share: float = 0.1,
    span_s: float = 60.0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``n`` synthetic viewers entering ``room`` in the ``span_s`` seconds before ``t`` and interacting.

    ``shelf`` holds the room's :class:`~liveshelf.serving.pipeline.ItemInfo` rows. A share
    ``focus_share`` of the viewers favour one top-level category (``focus``, else drawn from
    the shelf's), the others a random shelf category. Each viewer enters, views 1-5 items
    (items of the favoured category six times as likely), clicks, carts and buys down the
    funnel (a purchase's value is the item's price), and may comment (a share
    ``negative_share`` of the comments negative, from the simulator's built-in phrases).

    Returns ``(events, summary)``: events as ``POST /v1/events`` rows (epoch-second times,
    event ids ``sim-<room>-<seed>-<viewer>-<k>``, so a repeated seed is a no-op) and counts.

    >>> events, summary = viewer_burst("r1", shelf_infos, time.time(), seed=7)   # doctest: +SKIP
    >>> summary["viewers"], summary["focus"]
    (100, '美妆')
    """
    where = "viewer_burst"
    check_param("n", n, isinstance(n, int) and 1 <= n <= 1000, "an int in [1, 1000]", where)
    check_param("focus_share", focus_share, 0.0 <= focus_share <= 1.0, "a float in [0, 1]", where)
    check_param("negative_share", negative_share, 0.0 <= negative_share <= 1.0, "a float in [0, 1]", where)
    check_param("span_s", span_s, span_s > 0, "a number of seconds > 0", where)
    check_param(
        "shelf",
        len(shelf),
        len(shelf) > 0,
        "the items on the room's shelf now (the shelf is empty: the room has ended or has no items)",
        where,
    )
    from liveshelf.data.sim.behaviour import comment_pools

    rng = np.random.default_rng(seed)
    cats = sorted({_top_category(i.category) for i in shelf})
    if focus is None:
        focus = cats[int(rng.integers(len(cats)))]
    check_param("focus", focus, focus in cats, f"a top-level category of the shelf, one of {cats}", where)
    pools, _ = comment_pools(False)
    item_cat = np.asarray([_top_category(i.category) for i in shelf], dtype=object)
    events: list[dict[str, Any]] = []
    counts = {"enter": 0, "view": 0, "click": 0, "cart": 0, "purchase": 0, "comment": 0}
    negative = 0
    gmv = 0.0
    tag = f"sim-{room}-{seed}"
    for v in range(n):
        taste = focus if rng.random() < focus_share else cats[int(rng.integers(len(cats)))]
        acts: list[tuple[str, str | None, float | None, str | None]] = [("enter", None, None, None)]
        weights = np.where(item_cat == taste, 6.0, 1.0)
        n_views = min(len(shelf), 1 + int(rng.poisson(1.5)), 5)
        seen = rng.choice(len(shelf), size=n_views, replace=False, p=weights / weights.sum())
        for j in seen.tolist():
            info = shelf[j]
            acts.append(("view", info.id, None, None))
            if rng.random() < 0.5:
                acts.append(("click", info.id, None, None))
                if rng.random() < 0.35:
                    acts.append(("cart", info.id, info.price, None))
                    if rng.random() < 0.5:
                        acts.append(("purchase", info.id, info.price, None))
                        gmv += float(info.price or 0.0)
        if rng.random() < 0.35:
            info = shelf[int(seen[0])]
            lang = "en" if (info.language or "").startswith("en") else "zh"
            bad = bool(rng.random() < negative_share)
            pool = pools[(f"builtin-{lang}", 0 if bad else 1)]
            negative += bad
            acts.append(
                (
                    "comment",
                    info.id if rng.random() < 0.5 else None,
                    None,
                    str(pool[int(rng.integers(len(pool)))]),
                )
            )
        # enter in the first half of the span, then act in time order, never after t
        ts = np.minimum(
            t - span_s + rng.random() * span_s * 0.5 + np.cumsum(rng.random(len(acts)) * span_s / 20),
            t - 1e-3,
        )
        for k, ((kind, item, value, text), when) in enumerate(zip(acts, ts.tolist(), strict=True)):
            events.append(
                {
                    "event_id": f"{tag}-{v:04d}-{k}",
                    "ts": round(when, 3),
                    "user": f"sim-{seed}-{v:04d}",
                    "type": kind,
                    "room": room,
                    "item": item,
                    "value": value,
                    "text": text,
                }
            )
            counts[kind] += 1
    summary = {
        "viewers": n,
        "seed": seed,
        "focus": focus,
        "events": len(events),
        "by_type": counts,
        "negative_comments": int(negative),
        "gmv": round(gmv, 2),
    }
    return events, summary


# ------------------------------------------------------------------------------------ before / after
def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What changed between two room snapshots (``audience``, ``shelf`` item order, ``next_item``).

    ``moves`` lists the items whose rank changed (1-based ranks, None when absent).
    """
    b_rank = {it: r + 1 for r, it in enumerate(before["shelf"])}
    a_rank = {it: r + 1 for r, it in enumerate(after["shelf"])}
    moves = [
        {"item": it, "before": b_rank.get(it), "after": a_rank.get(it)}
        for it in dict.fromkeys([*after["shelf"], *before["shelf"]])
        if b_rank.get(it) != a_rank.get(it)
    ]

    def top(snap: dict[str, Any]) -> list[str]:
        return [c["key"] for c in snap["audience"]["categories"][:3]]

    return {
        "audience": {"before": before["audience"]["viewers"], "after": after["audience"]["viewers"]},
        "top_categories": {"before": top(before), "after": top(after)},
        "gmv": {"before": before["gmv"], "after": after["gmv"]},
        "next_item": {
            "before": before["next_item"],
            "after": after["next_item"],
            "changed": before["next_item"] != after["next_item"],
        },
        "shelf_order_changed": before["shelf"] != after["shelf"],
        "moves": moves,
    }


# ------------------------------------------------------------------------------------ models
def model_versions(models: dict[str, Any]) -> list[dict[str, Any]]:
    """Per served model (role -> :class:`~liveshelf.serving.deps.ModelSlot`): its registry versions with
    their offline metrics, the version served now, and the latest promotions / rollbacks."""
    out = []
    for role, slot in models.items():
        reg = slot.registry
        infos = reg.list(slot.name) if reg.versions(slot.name) else []
        history = reg.history(slot.name) if infos else {"stack": [], "events": []}
        out.append(
            {
                "role": role,
                "name": slot.name,
                "serving": slot.holder.version,
                "versions": [
                    {
                        "version": i.version,
                        "model_type": i.model_type,
                        "created_at": i.created_at,
                        "production": i.production,
                        "metrics": jsonable(i.metrics),
                        "parent": i.lineage.get("parent"),
                    }
                    for i in reversed(infos)
                ],
                "history": jsonable(list(history.get("events", []))[-20:]),
            }
        )
    return out


def _as_dict(obj: Any) -> dict[str, Any]:
    import dataclasses

    for name in ("to_dict", "as_dict", "model_dump"):
        fn = getattr(obj, name, None)
        if callable(fn):
            got = fn()
            if isinstance(got, dict):
                return got
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, dict):
        return dict(obj)
    if isinstance(obj, str):
        return {"name": obj}
    return {"name": str(getattr(obj, "name", obj))}


def experiments_root(home: Path) -> Path:
    return Path(home).expanduser() / "experiments"


def experiments(home: Path) -> dict[str, Any]:
    """The A/B experiments of :class:`liveshelf.serving.abtest.ExperimentStore` with their report PNGs.

    ``available`` is always True (the store is part of serving; the field stays for the page); each
    experiment's ``reports`` are the PNG file names in ``<home>/experiments/<name>/`` (see :func:`report_path`).
    """
    from liveshelf.serving.abtest import ExperimentStore

    rows = []
    for entry in ExperimentStore(home).list():
        d = jsonable(_as_dict(entry))
        name = str(d.get("name", ""))
        folder = experiments_root(home) / name
        safe = is_safe_name(name) and SAFE_NAME.match(name)
        pngs = sorted(p.name for p in folder.glob("*.png")) if safe and folder.is_dir() else []
        summary = {k: v for k, v in d.items() if k not in ("folder", "reports")}  # no server paths
        rows.append({"name": name, "summary": summary, "reports": [p for p in pngs if SAFE_NAME.match(p)]})
    return {"available": True, "experiments": rows}


def report_path(home: Path, name: str, file: str) -> Path | None:
    """The report PNG ``<home>/experiments/<name>/<file>``, or None for anything else.

    Only plain names are accepted (letters, digits, ``_ . -``; no separators), the file must
    end in ``.png`` and the resolved path must stay inside the experiments folder, so a
    request can never read another file.
    """
    if not (
        is_safe_name(name)
        and is_safe_name(file)
        and SAFE_NAME.match(name)
        and SAFE_NAME.match(file)
        and file.lower().endswith(".png")
    ):
        return None
    root = experiments_root(home).resolve()
    path = (root / name / file).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


__all__ = [
    "SPARK_BUCKETS",
    "SentimentCache",
    "audience_profile",
    "changes",
    "comment_stream",
    "experiments",
    "model_versions",
    "report_path",
    "room_cards",
    "room_totals",
    "viewer_burst",
]
