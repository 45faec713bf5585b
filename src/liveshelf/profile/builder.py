"""The incremental profile builder (:class:`ProfileBuilder`): per-user decayed sums over categories, brands,
price bands, attributes, hosts, hours and item vectors (see :mod:`liveshelf.profile`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from liveshelf.core.catalog import parse_attributes
from liveshelf.core.timeutil import TimeLike, column_seconds, to_epoch_seconds, to_seconds
from liveshelf.errors import NotFoundError, ValidationError, check_param
from liveshelf.profile.tags import profile_tags
from liveshelf.profile.weights import EVENT_WEIGHTS, event_weight
from liveshelf.schema import EVENT_TYPES
from liveshelf.text.facts import PRICE_BANDS, price_band
from liveshelf.text.hashing import CharHashEncoder
from liveshelf.text.user_profile import UserProfile

_REANCHOR = 400.0  # exponent (in half-lives) above which a user's anchor moves forward
_ATTR_KEYS = ("colour", "color", "shipping", "material")


@dataclass
class _UserState:
    anchor: float
    n_events: int = 0
    last_t: float = -math.inf
    categories: dict[str, float] = field(default_factory=dict)
    brands: dict[str, float] = field(default_factory=dict)
    bands: dict[str, float] = field(default_factory=dict)
    attributes: dict[str, dict[str, float]] = field(default_factory=dict)
    hosts: dict[str, float] = field(default_factory=dict)
    hours: np.ndarray = field(default_factory=lambda: np.zeros(24))
    history: dict[int, float] = field(default_factory=dict)  # item row -> anchored weight
    total: float = 0.0

    def rescale(self, factor: float) -> None:
        families: list[dict[Any, float]] = [
            self.categories,
            self.brands,
            self.bands,
            self.hosts,
            self.history,
            *self.attributes.values(),
        ]
        for d in families:
            for k in d:
                d[k] *= factor
        self.hours *= factor
        self.total *= factor


def _add(d: dict[Any, float], key: Any, x: float) -> None:
    d[key] = d.get(key, 0.0) + x


def _shares(d: Mapping[str, float]) -> dict[str, float]:
    s = sum(d.values())
    if s <= 0:
        return {}
    return {k: v / s for k, v in sorted(d.items(), key=lambda kv: (-kv[1], kv[0])) if v > 0}


class ProfileBuilder:
    """Incremental, time-decayed user profiles over an items frame (and optionally rooms)."""

    bilinear_bias_: float  # set by fit_bilinear

    def __init__(
        self,
        items: pd.DataFrame,
        rooms: pd.DataFrame | None = None,
        *,
        half_life: float = 7 * 86_400.0,
        utc_offset_hours: float = 8.0,
        item_vectors: np.ndarray | None = None,
        encoder: Any = None,
        max_history: int = 50,
        temperature: float = 0.1,
        category_map: Mapping[str, str] | None = None,
        weights: Mapping[str, float] | None = None,
        dim: int = 128,
        seed: int = 0,
    ) -> None:
        where = "ProfileBuilder"
        check_param(
            "half_life",
            half_life,
            isinstance(half_life, (int, float)) and half_life > 0,
            "a number of seconds > 0",
            where,
        )
        check_param(
            "max_history",
            max_history,
            isinstance(max_history, int) and max_history >= 1,
            "an int >= 1",
            where,
        )
        check_param(
            "temperature",
            temperature,
            isinstance(temperature, (int, float)) and temperature > 0,
            "a float > 0",
            where,
        )
        if not isinstance(items, pd.DataFrame) or "id" not in items.columns:
            raise ValidationError(
                "The 'items' argument of ProfileBuilder must be an items frame with an 'id' "
                "column (schema ITEM_COLUMNS). Pass dataset.items.",
                field="items",
                value=type(items).__name__,
            )
        self.half_life = float(half_life)
        self.utc_offset_hours = float(utc_offset_hours)
        self.max_history = max_history
        self.temperature = float(temperature)
        self.category_map = dict(category_map or {})
        self.weights = dict(EVENT_WEIGHTS if weights is None else weights)
        self.seed = seed
        self.bilinear_: np.ndarray | None = None
        self._users: dict[str, _UserState] = {}
        self._host_of: dict[str, str] = {}
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._cat: list[str | None] = []
        self._brand: list[str | None] = []
        self._band: list[str | None] = []
        self._attrs: list[dict[str, str]] = []
        if isinstance(encoder, str):  # "e5" (multilingual, reads Chinese) or a local model directory
            from liveshelf.text.encoder import TextEncoder

            encoder = TextEncoder(encoder)
        self._encoder = encoder
        if item_vectors is None and encoder is None:
            self._encoder = CharHashEncoder(dim=dim)
        self.item_vectors_ = np.zeros(
            (0, dim if item_vectors is None else np.shape(item_vectors)[-1]), np.float32
        )
        self.upsert_items(items, item_vectors=item_vectors)
        if rooms is not None:
            self.add_rooms(rooms)

    # ------------------------------------------------------------------------------ inputs
    def _canon(self, path: str) -> str:
        return self.category_map.get(path, path)

    def upsert_items(self, items: pd.DataFrame, item_vectors: np.ndarray | None = None) -> int:
        """Add or replace catalogue rows (schema ``ITEM_COLUMNS``); returns the number of rows.

        New items are embedded with the builder's encoder unless ``item_vectors`` (one row per
        item) is given. Events of items the builder has never seen count for hosts and hours only.
        """
        if not isinstance(items, pd.DataFrame) or "id" not in items.columns:
            raise ValidationError(
                "The 'items' argument of ProfileBuilder must be an items frame with an 'id' "
                "column (schema ITEM_COLUMNS). Pass dataset.items.",
                field="items",
                value=type(items).__name__,
            )
        n = len(items)

        def col(name: str) -> list[Any]:
            return items[name].tolist() if name in items.columns else [None] * n

        if item_vectors is not None:
            vecs = np.asarray(item_vectors, dtype=np.float32)
            if (
                vecs.ndim != 2
                or len(vecs) != n
                or (len(self._ids) and vecs.shape[1] != self.item_vectors_.shape[1])
            ):
                raise ValidationError(
                    f"The 'item_vectors' argument of ProfileBuilder must be an (N, D) array with "
                    f"one row per item (N={n}) in the builder's dimension. Got shape {vecs.shape}.",
                    field="item_vectors",
                    value=vecs.shape,
                )
        elif self._encoder is None:
            raise ValidationError(
                "This ProfileBuilder was built from item_vectors without an encoder, so new items "
                "need item_vectors= too.",
                field="item_vectors",
                value=None,
            )
        else:
            texts = [
                ". ".join(str(x) for x in (t, c, b, d) if isinstance(x, str) and x)
                for t, c, b, d in zip(
                    col("title"), col("category"), col("brand"), col("description"), strict=True
                )
            ]
            vecs = (
                np.asarray(self._encoder.encode(texts), dtype=np.float32)
                if n
                else np.zeros((0, self.item_vectors_.shape[1]), np.float32)
            )
        vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        if not len(self._ids):
            self.item_vectors_ = np.zeros((0, vecs.shape[1]), np.float32)
        new_rows: list[np.ndarray] = []
        for k, (i, c, b, p, a) in enumerate(
            zip(
                items["id"].astype(str).tolist(),
                col("category"),
                col("brand"),
                col("price"),
                col("attributes"),
                strict=True,
            )
        ):
            fields = (
                self._canon(c) if isinstance(c, str) and c else None,
                b if isinstance(b, str) and b else None,
                None if (band := price_band(_float(p))) is None else PRICE_BANDS[band][2],
                {kk: v for kk, v in parse_attributes(a).items() if kk in _ATTR_KEYS},
            )
            row = self._row.get(i)
            if row is None:
                row = self._row[i] = len(self._ids)
                self._ids.append(i)
                self._cat.append(None)
                self._brand.append(None)
                self._band.append(None)
                self._attrs.append({})
                new_rows.append(vecs[k])
            elif row >= len(self.item_vectors_):  # listed twice in this frame: the last row wins
                new_rows[row - len(self.item_vectors_)] = vecs[k]
            else:
                self.item_vectors_[row] = vecs[k]
            self._cat[row], self._brand[row], self._band[row], self._attrs[row] = fields
        if new_rows:
            self.item_vectors_ = np.concatenate([self.item_vectors_, np.stack(new_rows)]).astype(np.float32)
        return n

    def add_rooms(self, rooms: pd.DataFrame) -> int:
        """Learn ``room -> host`` from a rooms frame (columns ``id``, ``host``)."""
        if not {"id", "host"} <= set(rooms.columns):
            raise ValidationError(
                "The rooms frame given to ProfileBuilder needs columns 'id' and 'host'; got "
                f"{list(rooms.columns)}.",
                field="rooms",
                value=list(rooms.columns),
            )
        for r, h in zip(rooms["id"].astype(str).tolist(), rooms["host"].tolist(), strict=True):
            if isinstance(h, str) and h:
                self._host_of[r] = h
        return len(rooms)

    def encode_texts(self, texts: Iterable[str]) -> np.ndarray:
        """L2-normalised vectors of ``texts`` in the item-vector space (needs an encoder)."""
        if self._encoder is None:
            raise ValidationError(
                "This ProfileBuilder was given item_vectors and no encoder, so it cannot embed "
                "new texts. Pass encoder= as well.",
                field="encoder",
                value=None,
            )
        vecs = np.asarray(self._encoder.encode(list(texts)), dtype=np.float32)
        return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)

    def item_vector(self, item: str) -> np.ndarray:
        row = self._row.get(str(item))
        if row is None:
            raise NotFoundError(
                f"Unknown item id {item!r}: not in the items frame of this ProfileBuilder. "
                "Build it with the current catalogue."
            )
        return self.item_vectors_[row]

    def update(self, events: pd.DataFrame) -> int:
        """Add an events frame (schema ``EVENT_COLUMNS``; any order); returns the events used."""
        missing = [c for c in ("ts", "user", "type") if c not in events.columns]
        if missing:
            raise ValidationError(
                f"The events frame given to ProfileBuilder.update lacks columns {missing}; "
                "expected the schema's EVENT_COLUMNS.",
                field="events",
                value=list(events.columns),
            )
        if not len(events):
            return 0
        types = events["type"].astype(str).to_numpy()
        unknown = sorted(set(types.tolist()) - set(EVENT_TYPES))
        if unknown:
            raise ValidationError(
                f"The 'type' column holds unknown event types {unknown}; expected one of "
                f"{list(EVENT_TYPES)}.",
                field="type",
                value=unknown[0],
            )
        ts = event_seconds(events["ts"])
        users = events["user"].astype(str).tolist()
        items = events["item"].tolist() if "item" in events.columns else [None] * len(events)
        rooms = events["room"].tolist() if "room" in events.columns else [None] * len(events)
        used = 0
        h, off = self.half_life, self.utc_offset_hours
        for u, ty, t, it, rm in zip(users, types.tolist(), ts.tolist(), items, rooms, strict=True):
            w = event_weight(ty, self.weights)
            if w <= 0 or not math.isfinite(t):
                continue
            st = self._users.get(u)
            if st is None:
                st = self._users[u] = _UserState(anchor=t)
            e = (t - st.anchor) / h
            if e > _REANCHOR:
                st.rescale(2.0**-e)
                st.anchor, e = t, 0.0
            x = w * 2.0**e
            st.n_events += 1
            st.last_t = max(st.last_t, t)
            st.total += x
            st.hours[int(((t / 3600.0) + off) % 24.0)] += 2.0**e
            room = rm if isinstance(rm, str) else None
            if room is not None and room in self._host_of:
                _add(st.hosts, self._host_of[room], x)
            row = self._row.get(str(it)) if isinstance(it, str) else None
            if row is None:
                continue
            if (c := self._cat[row]) is not None:
                _add(st.categories, c, x)
            if (b := self._brand[row]) is not None:
                _add(st.brands, b, x)
            if (band := self._band[row]) is not None:
                _add(st.bands, band, x)
            for k, v in self._attrs[row].items():
                _add(st.attributes.setdefault("colour" if k == "color" else k, {}), v, x)
            _add(st.history, row, x)
            if len(st.history) > 2 * self.max_history:
                keep = sorted(st.history.items(), key=lambda kv: -kv[1])[: self.max_history]
                st.history = dict(keep)
            used += 1
        return used

    @property
    def users(self) -> list[str]:
        return sorted(self._users)

    def __contains__(self, user: object) -> bool:
        return user in self._users

    # ------------------------------------------------------------------------------ outputs
    def _state(self, user: str) -> _UserState:
        st = self._users.get(str(user))
        if st is None:
            raise NotFoundError(
                f"Unknown user {user!r}: no events of this user were given to ProfileBuilder.update. "
                "Post the user's events first."
            )
        return st

    def _history(self, st: _UserState) -> tuple[np.ndarray, np.ndarray]:
        top = sorted(st.history.items(), key=lambda kv: -kv[1])[: self.max_history]
        rows = np.array([r for r, _ in top], dtype=np.int64)
        w = np.array([x for _, x in top], dtype=np.float64)
        return rows, w / max(w.sum(), 1e-300)

    def interest_vector(self, user: str, candidate: str | np.ndarray | None = None) -> np.ndarray:
        """``V``: history item vectors pooled by decayed weight, with attention against ``candidate``."""
        return self.attention(user, candidate)[2]

    def attention(
        self, user: str, candidate: str | np.ndarray | None = None
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """``(history item ids, attention weights a_j, V)`` (see the module docstring)."""
        st = self._state(user)
        rows, w = self._history(st)
        if not len(rows):
            return [], np.zeros(0), np.zeros(self.item_vectors_.shape[1], np.float32)
        hist = self.item_vectors_[rows]  # (L, D)
        if candidate is None:
            alpha = w
        else:
            c = (
                self.item_vector(candidate)
                if isinstance(candidate, str)
                else np.asarray(candidate, np.float32)
            )
            wc = c if self.bilinear_ is None else self.bilinear_ @ c
            logits = hist @ wc / self.temperature + np.log(np.maximum(w, 1e-300))
            logits -= logits.max()
            alpha = np.exp(logits)
            alpha /= alpha.sum()
        v = (alpha[:, None] * hist).sum(0).astype(np.float32)
        ids = [self._ids[r] for r in rows.tolist()]
        return ids, alpha, v

    def profile(self, user: str, t: TimeLike | None = None) -> UserProfile:
        """The profile of ``user`` at ``t`` (default: the user's latest event)."""
        st = self._state(user)
        t_s = st.last_t if t is None else to_seconds(t)
        decay = 2.0 ** (-(t_s - st.anchor) / self.half_life)
        hours = st.hours / max(st.hours.sum(), 1e-300)
        _rows, _w = self._history(st)
        interest = self.interest_vector(user) if len(_rows) else None
        cats = _shares(st.categories)
        bands = _shares(st.bands)
        brands = _shares(st.brands)
        zh, en = profile_tags(cats, bands, brands, hours)
        return UserProfile(
            user=str(user),
            t=t_s,
            n_events=st.n_events,
            weight=st.total * decay,
            categories=cats,
            brands=brands,
            price_bands=bands,
            attributes={k: _shares(v) for k, v in sorted(st.attributes.items())},
            hosts=_shares(st.hosts),
            active_hours=hours.tolist(),
            tags_zh=zh,
            tags_en=en,
            interest=interest,
        )

    # ------------------------------------------------------------------------------ learned W
    def fit_bilinear(
        self,
        events: pd.DataFrame,
        *,
        negatives: int = 4,
        epochs: int = 100,
        lr: float = 0.5,
        l2: float = 1e-2,
        max_pairs: int = 5_000,
    ) -> ProfileBuilder:
        """Learn ``W`` of the attention by logistic regression on (history mean, next item) pairs."""
        from liveshelf.profile.bilinear import fit_bilinear

        return fit_bilinear(
            self, events, negatives=negatives, epochs=epochs, lr=lr, l2=l2, max_pairs=max_pairs
        )


def _float(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def event_seconds(col: pd.Series) -> np.ndarray:
    """Float epoch seconds of an events ``ts`` column (NaN for missing): datetimes through
    :func:`~liveshelf.core.timeutil.to_epoch_seconds`, numbers as they are, anything else one value at a time."""
    if isinstance(col.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(col):
        return to_epoch_seconds(col)
    if pd.api.types.is_numeric_dtype(col):
        return column_seconds(col)
    return np.array([to_seconds(x) for x in col.tolist()], dtype=np.float64)


def sequence_frame(user: str, entries: Iterable[tuple[str | None, str | None, float, str]]) -> pd.DataFrame:
    """An events frame from ``OnlineState.user_sequence`` entries ``(item, room, ts, type)``."""
    rows = list(entries)
    return pd.DataFrame(
        {
            "user": [str(user)] * len(rows),
            "item": [r[0] for r in rows],
            "room": [r[1] for r in rows],
            "ts": [float(r[2]) for r in rows],
            "type": [str(r[3]) for r in rows],
        }
    )


def simulator_category_map() -> dict[str, str]:
    """English leaf paths of the built-in catalogue -> their Chinese paths (the simulator's truth keys)."""
    from liveshelf.data.sim.catalog import leaves

    lv = leaves()
    return {en: zh for zh, en in zip(lv.path_zh, lv.path_en, strict=True)}


__all__ = ["ProfileBuilder", "UserProfile", "event_seconds", "sequence_frame", "simulator_category_map"]
