"""Evaluation protocols: what a model may train on and which requests it is tested on.

Each protocol turns a :class:`Dataset` into a :class:`ProtocolSplit`: a
:class:`TrainData` to fit on (with ``valid_targets`` for early stopping) and a list of
:class:`TestCase` (context before the target, target index, optional candidates,
``is_repeat`` = the target already occurs in the user's history).

``loo``
    Leave-one-out, full ranking over all items (the UniSRec / TIGER tables). Uses the
    data set's own ``split`` when it has one, else the last event of each user with at
    least 3 events is test and the one before valid (shorter users only train). Fit on
    train sequences, early-stop on valid targets; the test context is train + valid
    items, the target the test item.
``temporal``
    Global time split at quantiles ``q_valid`` / ``q_test`` of event times: train before
    t1, valid in [t1, t2), test from t2 on. Every test event of a user with training
    history is a case (``per_user="all"``), or only each user's first test event
    (``per_user="first"``); its context is every earlier event of the user (train, valid
    and earlier test events: the model is not refitted, but it sees what happened).
``live``
    The LiveRec protocol on data with rooms. Temporal split as above; the recommended
    thing is the room's host (``target="host"``; room ids are always cold) or, with
    ``target="item"``, the item on the shelf of the event's room. Candidates are exactly
    what is available at the event time per :class:`~liveshelf.data.timeline.Timeline`:
    hosts of the live rooms, or the items on the room's shelf (all live shelves when the
    event has no room). ``TrainData.available`` is ``t -> available indices``. Host targets
    are ``enter`` events (every interest event with a room when the source has no enters).

History items are not masked unless ``mask_history=True`` (the runner applies it and
reports which was used). Repeat targets are common in live data, so results are split
into all / new / repeat cases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from liveshelf.data.dataset import Dataset
from liveshelf.data.split import EventIndex, index_events, to_train_data
from liveshelf.errors import ConfigError, DataFormatError, check_param
from liveshelf.models.base import Context, TrainData

PROTOCOLS = ("loo", "temporal", "live")


@dataclass
class TestCase:
    """One request: the context, the item that happened next, and what was available."""

    __test__ = False  # not a pytest class

    context: Context
    target: int
    candidates: np.ndarray | None = None
    is_repeat: bool = False


@dataclass
class ProtocolSplit:
    protocol: str
    dataset: str
    train: TrainData
    cases: list[TestCase]
    mask_history: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return self.train.n_items

    def targets(self) -> np.ndarray:
        return np.array([c.target for c in self.cases], dtype=np.int64)

    def repeats(self) -> np.ndarray:
        return np.array([c.is_repeat for c in self.cases], dtype=bool)

    def history_lengths(self) -> np.ndarray:
        return np.array([len(c.context.items) for c in self.cases], dtype=np.int64)

    def summary(self) -> dict[str, Any]:
        rep = self.repeats()
        return {
            "protocol": self.protocol,
            "dataset": self.dataset,
            "n_items": self.n_items,
            "n_train_users": self.train.n_users,
            "n_train_events": int(sum(len(s) for s in self.train.sequences)),
            "cases": {"all": len(self.cases), "new": int((~rep).sum()), "repeat": int(rep.sum())},
            "mask_history": self.mask_history,
            **self.meta,
        }


# ---------------------------------------------------------------------------------------
def make_split(ds: Dataset, protocol: str, *, mask_history: bool = False, **kw: Any) -> ProtocolSplit:
    """Dispatch to :func:`loo`, :func:`temporal` or :func:`live`."""
    check_param("protocol", protocol, protocol in PROTOCOLS, f"one of {PROTOCOLS}", "evaluate")
    fn = {"loo": loo, "temporal": temporal, "live": live}[protocol]
    return fn(ds, mask_history=mask_history, **kw)


def loo(ds: Dataset, *, mask_history: bool = False, target: str = "item") -> ProtocolSplit:
    """Leave-one-out (see module docs)."""
    index = index_events(ds, target=target)
    if ds.split is not None:
        labels = np.asarray(ds.split.to_numpy(dtype=object), dtype=object)[index.row]
        bad = ~np.isin(labels, ["train", "valid", "test"])
        if bad.any():
            raise DataFormatError(
                f"The split of {ds.name!r} must hold 'train', 'valid' or 'test' per event; "
                f"found {labels[bad][0]!r}. Fix the reader or drop the split to let 'loo' make one."
            )
        source = "dataset"
    else:
        pos = index.position()
        size = np.diff(index.user_start)[index.user]
        labels = np.full(index.n_events, "train", dtype=object)
        long = size >= 3
        labels[long & (pos == size - 1)] = "test"
        labels[long & (pos == size - 2)] = "valid"
        source = "last=test, second last=valid"
    train, valid, test = labels == "train", labels == "valid", labels == "test"
    data, train_user = to_train_data(index, train, valid, meta={"protocol": "loo"})
    cases = _cases(index, np.nonzero(test)[0], train_user)
    return ProtocolSplit(
        "loo", ds.name, data, cases, mask_history, {"split_source": source, "target": target}
    )


def temporal(
    ds: Dataset,
    *,
    mask_history: bool = False,
    target: str = "item",
    q_valid: float = 0.8,
    q_test: float = 0.9,
    per_user: str = "all",
) -> ProtocolSplit:
    """Global time split (see module docs)."""
    check_param("per_user", per_user, per_user in ("all", "first"), "'all' or 'first'", "temporal")
    index = index_events(ds, target=target)
    train, valid, test, bounds = _time_masks(index, q_valid, q_test)
    data, train_user = to_train_data(index, train, valid, meta={"protocol": "temporal", **bounds})
    picked = _pick_tests(index, test, train_user, per_user)
    cases = _cases(index, picked, train_user)
    return ProtocolSplit(
        "temporal", ds.name, data, cases, mask_history, {"target": target, "per_user": per_user, **bounds}
    )


def live(
    ds: Dataset,
    *,
    mask_history: bool = False,
    target: str = "host",
    q_valid: float = 0.8,
    q_test: float = 0.9,
    per_user: str = "all",
) -> ProtocolSplit:
    """The LiveRec protocol (see module docs)."""
    from liveshelf.data.timeline import Timeline

    check_param("target", target, target in ("host", "item"), "'host' or 'item'", "live")
    check_param("per_user", per_user, per_user in ("all", "first"), "'all' or 'first'", "live")
    if ds.rooms is None or not len(ds.rooms):
        raise ConfigError(
            f"The 'live' protocol needs rooms with start/end times; {ds.name!r} has none. "
            "Use --protocol loo or temporal, or load a live data set (twitch, kuailive, store)."
        )
    if target == "item" and (ds.shelf is None or not len(ds.shelf)):
        raise ConfigError(
            f"The 'live' protocol with target='item' needs shelf slots; {ds.name!r} has none. "
            "Use target='host'."
        )
    # a room choice is an "enter"; sources without enters (clicks into rooms) use every interest event
    has_enter = bool((ds.events["type"].astype(str) == "enter").any())
    types = {"enter"} if target == "host" and has_enter else None
    index = index_events(ds, target=target, types=types)
    timeline = Timeline.from_dataset(ds)
    available = _Availability(timeline, index, target)
    train, valid, test, bounds = _time_masks(index, q_valid, q_test)
    data, train_user = to_train_data(
        index, train, valid, available=available, meta={"protocol": "live", **bounds}
    )
    picked = _pick_tests(index, test, train_user, per_user)
    cands = available.for_events(picked)
    cases = _cases(index, picked, train_user, cands)
    n_missing = int(sum(not np.isin(c.target, cand) for c, cand in zip(cases, cands, strict=True)))
    return ProtocolSplit(
        "live",
        ds.name,
        data,
        cases,
        mask_history,
        {
            "target": target,
            "per_user": per_user,
            "targets_not_available": n_missing,
            "mean_candidates": float(np.mean([len(cand) for cand in cands])) if cases else 0.0,
            **bounds,
        },
    )


# ---------------------------------------------------------------------------------------
class _Availability:
    """``t -> available target indices`` from a Timeline (hosts of live rooms, or shelf items)."""

    def __init__(self, timeline: Any, index: EventIndex, target: str) -> None:
        self.timeline = timeline
        self.index = index
        self.target = target
        vocab = {str(x): i for i, x in enumerate(index.item_ids)}
        self._vocab = vocab
        if target == "host":
            hosts = [str(timeline.host_of(r)) for r in timeline.room_ids]
            self.room_target = np.array([vocab.get(h, -1) for h in hosts], dtype=np.int64)

    def _items(self, ids: np.ndarray) -> np.ndarray:
        idx = np.array([self._vocab.get(str(x), -1) for x in ids], dtype=np.int64)
        return np.unique(idx[idx >= 0])

    def __call__(self, t: float) -> np.ndarray:
        if self.target == "host":
            r = self.timeline.live_room_indices(t)
            h = self.room_target[np.asarray(r, dtype=np.int64)]
            return np.unique(h[h >= 0])
        return self._items(self.timeline.available_items_at(t))

    def for_events(self, events: np.ndarray) -> list[np.ndarray]:
        """Candidates of each indexed event (batched for hosts)."""
        ts = self.index.ts[events]
        if self.target == "host":
            sets = self.timeline.live_rooms_at(ts, as_ids=False)
            out = []
            for q in range(len(events)):
                h = self.room_target[np.asarray(sets[q], dtype=np.int64)]
                out.append(np.unique(h[h >= 0]))
            return out
        out = []
        for e, t in zip(events, ts, strict=True):
            room = self.index.room[e]
            ids = self.timeline.shelf_at(room, t) if room is not None else self.timeline.available_items_at(t)
            out.append(self._items(ids))
        return out


def _time_masks(index: EventIndex, q_valid: float, q_test: float):
    check_param(
        "q_valid", q_valid, 0 < q_valid < q_test, f"a float in (0, q_test={q_test})", "temporal split"
    )
    check_param(
        "q_test", q_test, q_valid < q_test < 1, f"a float in (q_valid={q_valid}, 1)", "temporal split"
    )
    t1, t2 = (float(x) for x in np.quantile(index.ts, [q_valid, q_test]))
    train = index.ts < t1
    valid = (index.ts >= t1) & (index.ts < t2)
    test = index.ts >= t2
    if not train.any() or not test.any():
        raise DataFormatError(
            f"The temporal split of {index.name!r} at t1={t1}, t2={t2} leaves "
            f"{int(train.sum())} train and {int(test.sum())} test events; the event times are too few "
            "or all equal. Use --protocol loo."
        )
    return train, valid, test, {"t_valid": t1, "t_test": t2, "q_valid": q_valid, "q_test": q_test}


def _pick_tests(index: EventIndex, test: np.ndarray, train_user: np.ndarray, per_user: str) -> np.ndarray:
    picked = np.nonzero(test & (train_user[index.user] >= 0))[0]
    if per_user == "first":
        picked = picked[np.unique(index.user[picked], return_index=True)[1]]
    return picked


def _cases(
    index: EventIndex, events: np.ndarray, train_user: np.ndarray, candidates: list[np.ndarray] | None = None
) -> list[TestCase]:
    repeat = index.is_repeat()
    out = []
    for j, e in enumerate(events.tolist()):
        ctx = index.context(e, train_user=int(train_user[index.user[e]]))
        out.append(
            TestCase(
                context=ctx,
                target=int(index.item[e]),
                candidates=None if candidates is None else candidates[j],
                is_repeat=bool(repeat[e]),
            )
        )
    return out


AvailableFn = Callable[[float], np.ndarray]

__all__ = ["PROTOCOLS", "AvailableFn", "ProtocolSplit", "TestCase", "live", "loo", "make_split", "temporal"]
