"""Simulator settings and the ground truth that drives (and later judges) behaviour.

Preference of user u for item i (probability-like, in (0, 1))::

    logit = b0 + b_int * log(C * interest[u, leaf(i)] + eps)
               + b_q * quality[i] - price_sens[u] * price_z[i]
               + b_vec * <user_vec[u], item_vec[i]> / sqrt(d)
    preference = sigmoid(logit)

One look at an item shown at shelf position p (0 = pinned, k = link number k) leads to
view with ``exam(p) = (1 + p) ** -eta``, click with ``preference``, cart with
``kappa_cart * preference`` and purchase with ``kappa_buy``; ``purchase_prob`` is the product.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from liveshelf.core.files import atomic_open, atomic_write_text
from liveshelf.errors import DataFormatError, NotFoundError, check_param


@dataclass
class SimConfig:
    """Size, seed and behaviour knobs of one simulated world."""

    n_users: int = 1000
    n_hosts: int = 50
    days: int = 1
    n_items: int | None = None  # default: 20 per host per day
    seed: int = 0
    start: str = "2026-11-01"  # first simulated day (UTC midnight)
    utc_offset_hours: float = 8.0  # viewers' and hosts' local time (peak hours are local)
    en_share: float = 0.2  # share of hosts (and their items, comments) in English
    interest_alpha: float = 0.25  # Dirichlet concentration of user interests over leaf categories
    sessions_per_day: float = 2.5
    feed_size: int = 6  # rooms shown per session besides favourite hosts
    mean_dwell_s: float = 300.0
    looks_per_min: float = 2.0
    use_review_corpus: bool = True  # sample comments from online-shopping-10-cats when present

    @property
    def items(self) -> int:
        return self.n_items if self.n_items is not None else 20 * self.n_hosts * self.days

    def validate(self) -> SimConfig:
        w = "SimConfig"
        check_param(
            "n_users", self.n_users, isinstance(self.n_users, int) and self.n_users >= 1, "an int >= 1", w
        )
        check_param(
            "n_hosts", self.n_hosts, isinstance(self.n_hosts, int) and self.n_hosts >= 1, "an int >= 1", w
        )
        check_param(
            "days", self.days, isinstance(self.days, int) and 1 <= self.days <= 366, "an int in [1, 366]", w
        )
        check_param(
            "n_items",
            self.n_items,
            self.n_items is None or (isinstance(self.n_items, int) and self.n_items >= self.n_hosts),
            "None or an int >= n_hosts (every host sells)",
            w,
        )
        check_param("en_share", self.en_share, 0.0 <= self.en_share <= 1.0, "a float in [0, 1]", w)
        check_param("interest_alpha", self.interest_alpha, self.interest_alpha > 0, "a float > 0", w)
        check_param("sessions_per_day", self.sessions_per_day, self.sessions_per_day > 0, "a float > 0", w)
        check_param(
            "feed_size",
            self.feed_size,
            isinstance(self.feed_size, int) and self.feed_size >= 1,
            "an int >= 1",
            w,
        )
        check_param("mean_dwell_s", self.mean_dwell_s, self.mean_dwell_s > 0, "a float > 0", w)
        try:
            date.fromisoformat(self.start)
        except (TypeError, ValueError):
            check_param("start", self.start, False, "an ISO date such as '2026-11-01'", w)
        return self


@dataclass
class TruthParams:
    b0: float = -1.8
    b_int: float = 0.9
    eps: float = 0.05
    b_q: float = 0.5
    b_vec: float = 0.6
    eta: float = 0.7
    kappa_cart: float = 0.45
    kappa_buy: float = 0.55


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class GroundTruth:
    """The hidden preferences of a simulated world, with the functions that used them."""

    user_ids: np.ndarray  # (U,) str
    item_ids: np.ndarray  # (I,) str
    categories: list[str]  # leaf category paths, index = column of ``interests``
    interests: np.ndarray  # (U, C) rows sum to 1
    price_sens: np.ndarray  # (U,)
    user_vec: np.ndarray  # (U, d)
    item_vec: np.ndarray  # (I, d)
    item_cat: np.ndarray  # (I,) leaf index
    item_quality: np.ndarray  # (I,)
    item_price_z: np.ndarray  # (I,) log price, standardised within the leaf
    params: TruthParams = field(default_factory=TruthParams)
    fav_hosts: np.ndarray | None = None  # (U, 3) favourite host ids, "" where none
    active_hour: np.ndarray | None = None  # (U,) habitual local hour of the day

    def __post_init__(self) -> None:
        self._u = {u: k for k, u in enumerate(self.user_ids.tolist())}
        self._i = {i: k for k, i in enumerate(self.item_ids.tolist())}

    # ---------------------------------------------------------------- lookups
    def user_index(self, users: Any) -> np.ndarray:
        return self._lookup(self._u, users, "user")

    def item_index(self, items: Any) -> np.ndarray:
        return self._lookup(self._i, items, "item")

    @staticmethod
    def _lookup(table: dict[str, int], keys: Any, what: str) -> np.ndarray:
        arr = np.asarray(keys, dtype=object)
        flat = arr.ravel().tolist()
        try:
            out = np.fromiter((table[k] for k in flat), np.int64, len(flat))
        except KeyError as exc:
            raise NotFoundError(f"Unknown {what} id {exc.args[0]!r}: not in this simulated world.") from None
        return out.reshape(arr.shape)

    @property
    def user_interests(self) -> dict[str, dict[str, float]]:
        """user id -> {leaf category path: weight} (weights sum to 1)."""
        cats = self.categories
        return {
            u: dict(zip(cats, row.tolist(), strict=True))
            for u, row in zip(self.user_ids, self.interests, strict=True)
        }

    def top_categories(self, k: int = 2) -> np.ndarray:
        """(U, k) leaf indices of every user's k strongest interests."""
        return np.argsort(-self.interests, axis=1, kind="stable")[:, :k]

    # ---------------------------------------------------------------- the functions
    def preference_idx(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        p = self.params
        u, i = np.broadcast_arrays(np.asarray(u, np.int64), np.asarray(i, np.int64))
        c = self.interests.shape[1]
        d = self.user_vec.shape[1]
        logit = (
            p.b0
            + p.b_int * np.log(c * self.interests[u, self.item_cat[i]] + p.eps)
            + p.b_q * self.item_quality[i]
            - self.price_sens[u] * self.item_price_z[i]
            + p.b_vec * np.einsum("...d,...d->...", self.user_vec[u], self.item_vec[i]) / np.sqrt(d)
        )
        return _sigmoid(logit)

    def preference(self, user_ids: Any, item_ids: Any) -> np.ndarray:
        """Affinity in (0, 1) for each (user, item) pair; arrays broadcast (``u[:, None]`` gives a matrix)."""
        return self.preference_idx(self.user_index(user_ids), self.item_index(item_ids))

    def exam(self, position: Any) -> np.ndarray:
        """Probability that a look at shelf position ``position`` (0 = pinned) turns into a view."""
        return (1.0 + np.asarray(position, np.float64)) ** -self.params.eta

    def purchase_prob_idx(self, u: np.ndarray, i: np.ndarray, position: Any) -> np.ndarray:
        pref = self.preference_idx(u, i)
        p = self.params
        return self.exam(position) * pref * np.minimum(1.0, p.kappa_cart * pref) * p.kappa_buy

    def purchase_prob(self, user: Any, item: Any, position: Any = 1) -> np.ndarray:
        """Probability that one look at ``item`` at shelf ``position`` in a room ends in a purchase."""
        return self.purchase_prob_idx(self.user_index(user), self.item_index(item), position)

    # ---------------------------------------------------------------- persistence
    def save(self, folder: Path) -> None:
        folder = Path(folder)
        with atomic_open(folder / "truth.npz", "wb") as fh:
            np.savez_compressed(
                fh,
                user_ids=self.user_ids.astype(str),
                item_ids=self.item_ids.astype(str),
                interests=self.interests,
                price_sens=self.price_sens,
                user_vec=self.user_vec,
                item_vec=self.item_vec,
                item_cat=self.item_cat,
                item_quality=self.item_quality,
                item_price_z=self.item_price_z,
                **({} if self.fav_hosts is None else {"fav_hosts": self.fav_hosts.astype(str)}),
                **({} if self.active_hour is None else {"active_hour": self.active_hour}),
            )
        meta = {
            "categories": self.categories,
            "params": asdict(self.params),
            "formula": "sigmoid(b0 + b_int*log(C*interest[u,leaf(i)]+eps) + b_q*quality[i] "
            "- price_sens[u]*price_z[i] + b_vec*<user_vec[u],item_vec[i]>/sqrt(d))",
            "purchase_prob": "(1+position)**-eta * pref * min(1, kappa_cart*pref) * kappa_buy",
        }
        atomic_write_text(
            folder / "truth.json", json.dumps(meta, ensure_ascii=False, indent=1, sort_keys=True)
        )

    @classmethod
    def load(cls, folder: Path) -> GroundTruth:
        folder = Path(folder)
        npz, js = folder / "truth.npz", folder / "truth.json"
        if not npz.is_file() or not js.is_file():
            raise DataFormatError(
                f"Folder {folder} lacks truth.npz / truth.json; it is not a simulated world. "
                "Create one with `liveshelf simulate --out DIR`."
            )
        meta = json.loads(js.read_text())
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        return cls(
            user_ids=arrays["user_ids"].astype(object),
            item_ids=arrays["item_ids"].astype(object),
            categories=list(meta["categories"]),
            interests=arrays["interests"],
            price_sens=arrays["price_sens"],
            user_vec=arrays["user_vec"],
            item_vec=arrays["item_vec"],
            item_cat=arrays["item_cat"],
            item_quality=arrays["item_quality"],
            item_price_z=arrays["item_price_z"],
            params=TruthParams(**meta["params"]),
            fav_hosts=arrays["fav_hosts"].astype(object) if "fav_hosts" in arrays else None,
            active_hour=arrays.get("active_hour"),
        )
