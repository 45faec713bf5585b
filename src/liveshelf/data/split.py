"""From a :class:`Dataset` to index space: :class:`EventIndex` and :class:`TrainData`.

:func:`index_events` turns the string ids of a data set's events into integer indices
once (vectorised, no per-user Python loop), sorted by (user, time, source order).
:func:`to_train_data` then cuts training sequences out of it with a boolean mask.

The *target space* is what gets recommended: ``target="item"`` (items, the default) or
``target="host"`` (the host / streamer of the room an event happened in; live data sets,
where room ids are always cold). Item vocabulary order: the ``items`` frame (or
``hosts`` frame) first, in its order, then ids only seen in events, in order of first
appearance.

Only events that express interest (``schema.POSITIVE_TYPES``) and carry a target are
indexed; impressions and leaves are dropped.

Item vectors (``Dataset.item_vectors``) follow the vocabulary: one float32 ``(n_items, d)`` matrix per
modality, all-NaN rows for items without a vector. In the host space a host's vector is the mean of its
rooms' vectors (``Dataset.room_vectors``), over all of its rooms in the data set.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from liveshelf.core.traindata import Context, TrainData
from liveshelf.data.dataset import Dataset
from liveshelf.data.item_vectors import align, mean_by_group
from liveshelf.errors import ConfigError, DataFormatError, check_param
from liveshelf.schema import POSITIVE_TYPES, host_categories, to_epoch_seconds

TARGETS = ("item", "host")


@dataclass
class EventIndex:
    """A data set's interest events in index space, sorted by (user, ts, source order).

    ``row`` is each event's row in ``dataset.events`` (to align ``dataset.split``);
    ``user_start[u]:user_start[u+1]`` are user ``u``'s events.
    """

    name: str
    target: str
    item_ids: np.ndarray  # (n_items,) object
    user_ids: np.ndarray  # (n_users,) object
    user: np.ndarray  # (E,) int64
    item: np.ndarray  # (E,) int64, target-space index
    ts: np.ndarray  # (E,) float64 epoch seconds
    types: np.ndarray  # (E,) object
    room: np.ndarray  # (E,) object (None when the event has no room)
    row: np.ndarray  # (E,) int64 row in dataset.events
    user_start: np.ndarray  # (n_users + 1,) int64
    item_text: list[str] | None = None
    item_category: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    item_vectors: dict[str, np.ndarray] | None = None  # modality -> (n_items, d) float32, NaN rows: none

    @property
    def n_items(self) -> int:
        return int(len(self.item_ids))

    @property
    def n_users(self) -> int:
        return int(len(self.user_ids))

    @property
    def n_events(self) -> int:
        return int(len(self.user))

    def position(self) -> np.ndarray:
        """Each event's position within its user's sequence (0 = first)."""
        return np.arange(self.n_events) - self.user_start[self.user]

    def is_repeat(self) -> np.ndarray:
        """True where the event's target occurred earlier in the same user's sequence."""
        key = self.user * (self.n_items + 1) + self.item
        return pd.Series(key).duplicated().to_numpy()

    def context(self, e: int, upto: int | None = None, train_user: int = -1) -> Context:
        """The context of event ``e``: the user's events before it (or before ``upto``)."""
        u = int(self.user[e])
        a, b = int(self.user_start[u]), int(e if upto is None else upto)
        return Context(
            items=self.item[a:b],
            ts=self.ts[a:b],
            types=self.types[a:b],
            user=str(self.user_ids[u]),
            user_index=train_user,
            room=self.room[e],
            time=float(self.ts[e]),
        )


def index_events(ds: Dataset, target: str = "item", types: Iterable[str] | None = None) -> EventIndex:
    """Index ``ds.events`` in the ``target`` space (see module docs)."""
    check_param("target", target, target in TARGETS, f"one of {TARGETS}", "index_events")
    keep_types = frozenset(POSITIVE_TYPES if types is None else types)
    ev = ds.events
    type_arr = ev["type"].astype(str).to_numpy(dtype=object)
    keep = pd.Series(type_arr).isin(keep_types).to_numpy().copy()
    room_host: pd.Series | None = None
    if target == "item":
        raw = ev["item"]
        vocab_frame = ds.items
    else:
        if ds.rooms is None:
            raise ConfigError(
                f"The 'target' parameter 'host' needs a data set with rooms; {ds.name!r} has none. "
                "Use target='item' or load a live data set (twitch, kuailive, store)."
            )
        room_host = pd.Series(
            ds.rooms["host"].astype(str).to_numpy(), index=ds.rooms["id"].astype(str).to_numpy()
        )
        room_host = room_host[~room_host.index.duplicated()]
        raw = pd.Series(ev["room"].astype(object).map(room_host).to_numpy(), index=ev.index)
        vocab_frame = ds.hosts
    keep &= raw.notna().to_numpy()
    rows = np.nonzero(keep)[0]
    target_str = raw.to_numpy(dtype=object)[rows].astype(str)
    if len(rows) == 0:
        raise DataFormatError(
            f"The data set {ds.name!r} has no interest events with a {target!r} to recommend "
            f"(types {sorted(keep_types)}). Check the events frame or pick another target."
        )

    # vocabularies: frame order first, then first appearance in events
    known = (
        vocab_frame["id"].astype(str).to_numpy(dtype=object)
        if vocab_frame is not None and len(vocab_frame)
        else np.zeros(0, dtype=object)
    )
    known = pd.unique(known)
    extra = pd.unique(pd.Series(target_str)[~pd.Series(target_str).isin(known)].to_numpy())
    item_ids = np.concatenate([np.asarray(known, dtype=object), np.asarray(extra, dtype=object)])
    item = pd.Index(item_ids).get_indexer(target_str).astype(np.int64)

    users_str = ev["user"].astype(str).to_numpy(dtype=object)[rows]
    user_codes, user_ids = pd.factorize(users_str, sort=False)
    ts = to_epoch_seconds(ev["ts"])[rows]
    ts = np.where(np.isnan(ts), 0.0, ts)
    order = np.lexsort((rows, ts, user_codes))  # user, then ts, then source order
    user = user_codes.astype(np.int64)[order]
    counts = np.bincount(user, minlength=len(user_ids))
    user_start = np.zeros(len(user_ids) + 1, dtype=np.int64)
    np.cumsum(counts, out=user_start[1:])
    room_col = ev["room"].to_numpy(dtype=object)[rows][order]
    room_col = np.where(pd.isna(room_col), None, room_col)

    text, cats = _side_info(vocab_frame, item_ids, target)
    vectors = (
        align(ds.item_vectors, item_ids)
        if room_host is None
        else mean_by_group(ds.room_vectors, room_host, item_ids)
    )
    return EventIndex(
        name=ds.name,
        target=target,
        item_ids=item_ids,
        user_ids=np.asarray(user_ids, dtype=object),
        user=user,
        item=item[order],
        ts=ts[order],
        types=type_arr[rows][order],
        room=room_col,
        row=rows[order].astype(np.int64),
        user_start=user_start,
        item_text=text,
        item_category=cats,
        meta={"synthetic_ts": bool(ds.meta.get("synthetic_ts", False))},
        item_vectors=vectors,
    )


def to_train_data(
    index: EventIndex,
    train: np.ndarray,
    valid: np.ndarray | None = None,
    available: Any = None,
    meta: dict[str, Any] | None = None,
) -> tuple[TrainData, np.ndarray]:
    """TrainData from the events where ``train`` is True (a bool mask over ``index``).

    Users without a training event are left out. ``valid`` marks held-out events; each
    training user's first one becomes ``valid_targets[u]`` (-1 = none). Returns the
    TrainData and ``train_user``: for every user of ``index``, their row in it (-1 = none).
    """
    train = np.asarray(train, dtype=bool)
    counts = np.bincount(index.user[train], minlength=index.n_users)
    has = counts > 0
    train_user = np.full(index.n_users, -1, dtype=np.int64)
    train_user[has] = np.arange(int(has.sum()))
    cuts = np.cumsum(counts[has])[:-1]
    sequences = np.split(index.item[train], cuts)
    timestamps = np.split(index.ts[train], cuts)
    types = np.split(index.types[train], cuts)
    valid_targets = None
    valid_meta: dict[str, Any] = {}
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        vu = train_user[index.user[valid]]
        vi = index.item[valid]
        ok = vu >= 0
        vu, vi = vu[ok], vi[ok]
        first = np.unique(vu, return_index=True)[1]  # events are sorted, so this is the earliest
        valid_targets = np.full(int(has.sum()), -1, dtype=np.int64)
        valid_targets[vu[first]] = vi[first]
        # when each validation target happened (live models validate among what was available then)
        valid_times = np.full(int(has.sum()), np.nan)
        valid_times[vu[first]] = index.ts[valid][ok][first]
        valid_meta["valid_times"] = valid_times
    data = TrainData(
        item_ids=index.item_ids,
        user_ids=index.user_ids[has],
        sequences=sequences,
        timestamps=timestamps,
        types=types,
        valid_targets=valid_targets,
        item_text=index.item_text,
        item_category=index.item_category,
        item_vectors=index.item_vectors,
        available=available,
        meta={"dataset": index.name, "target": index.target, **index.meta, **valid_meta, **(meta or {})},
    )
    return data, train_user


def dataset_to_train_data(ds: Dataset, target: str = "item") -> TrainData:
    """Every interest event of ``ds`` as training data (no hold-out)."""
    index = index_events(ds, target=target)
    return to_train_data(index, np.ones(index.n_events, dtype=bool))[0]


# ---------------------------------------------------------------------------------------
def _side_info(
    frame: pd.DataFrame | None, ids: np.ndarray, target: str
) -> tuple[list[str] | None, np.ndarray]:
    """Item text and first-level category codes in vocabulary order."""
    n = len(ids)
    if frame is None or not len(frame):
        return None, np.full(n, -1, dtype=np.int64)
    uniq = frame.drop_duplicates("id")
    f = uniq.set_index(uniq["id"].astype(str)).reindex(ids)
    if target == "item":
        parts = [f[c] for c in ("title", "category", "brand", "description") if c in f.columns]
        cat_col = f["category"] if "category" in f.columns else None
    else:
        cats = f["categories"].map(_as_path) if "categories" in f.columns else None
        parts = [f[c] for c in ("name",) if c in f.columns] + ([cats] if cats is not None else [])
        cat_col = cats
    cols = [p.astype(object).where(p.notna(), "").astype(str).str.strip().to_numpy() for p in parts]
    text = [". ".join(x for x in row if x) for row in zip(*cols, strict=True)] if cols else [""] * n
    if cat_col is None:
        return text, np.full(n, -1, dtype=np.int64)
    first = cat_col.astype(object).where(cat_col.notna(), "").astype(str).str.split(" > ").str[0].str.strip()
    first = first.where(first != "", None)
    codes, _ = pd.factorize(first.to_numpy(dtype=object), use_na_sentinel=True)
    return text, codes.astype(np.int64)


def _as_path(value: Any) -> str:
    """The host's main category path (first of its JSON list of categories)."""
    cats = host_categories(value)
    return cats[0] if cats else ""


__all__ = ["TARGETS", "EventIndex", "dataset_to_train_data", "index_events", "to_train_data"]
