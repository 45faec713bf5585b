"""Which client holds which users: IID, category-skewed or by user region.

A federated client (a merchant, a region) holds whole users (those with at least 2 training events,
who give a next-item target): every event of a user lives on one
client, so no user's history is split and the validation/test targets stay with their user.

- ``iid``: users shuffled (seeded) and dealt round-robin, so every client sees the same mix;
- ``category``: each user goes with the category most of their training events fall in, and whole
  categories are packed onto clients (largest first onto the emptiest client), so clients differ in
  what they sell: the usual non-IID case of federated recommendation. When the data has no item
  categories, categories are *derived* from the item texts (TF-IDF + k-means, ``2 × clients``
  clusters), and the partition says so (``category_source``);
- ``user-region``: users grouped by the ``region`` of their profile, regions packed onto clients
  like categories. Needs user profiles with regions.

Every client must get at least one user with a training sequence; ``partition_users`` says clearly
why not (more clients than users, fewer categories or regions than clients).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from liveshelf.errors import ConfigError
from liveshelf.models.base import TrainData

PARTITIONS = ("iid", "category", "user-region")


@dataclass
class Partition:
    """``clients[k]``: the user rows (``TrainData`` order) client ``k`` holds, sorted."""

    kind: str
    clients: list[np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)

    def sizes(self) -> list[int]:
        return [len(c) for c in self.clients]

    def describe(self) -> dict[str, Any]:
        sizes = self.sizes()
        return {"kind": self.kind, "users_per_client": sizes, **self.info}


def check_partition_request(kind: str, n_clients: int, n_users: int) -> None:
    """The errors a user can make before any data is touched beyond its size."""
    if kind not in PARTITIONS:
        raise ConfigError(
            f"Unknown partition {kind!r}; expected one of: {', '.join(PARTITIONS)} "
            "(iid: random users per client; category: clients hold different item categories; "
            "user-region: clients are the regions of the users' profiles)."
        )
    if isinstance(n_clients, bool) or not isinstance(n_clients, int) or n_clients < 2:
        raise ConfigError(f"The 'clients' parameter must be an int >= 2. Got {n_clients!r} instead.")
    if n_clients > n_users:
        raise ConfigError(
            f"--clients {n_clients} is more than the {n_users} users with 2 or more training events: every "
            f"client must hold at least one user to train on. Use --clients {n_users} or fewer."
        )


def partition_users(
    data: TrainData,
    kind: str,
    n_clients: int,
    *,
    seed: int = 0,
    user_region: dict[str, str] | None = None,
) -> Partition:
    """Split the users of ``data`` who have training events over ``n_clients`` clients."""
    # a user needs 2 events to give a next-item target; a client of only 1-event users could not train
    active = np.flatnonzero(np.array([len(s) > 1 for s in data.sequences], dtype=bool))
    check_partition_request(kind, n_clients, len(active))
    rng = np.random.default_rng(seed)
    if kind == "iid":
        order = rng.permutation(active)
        return Partition("iid", [np.sort(order[k::n_clients]) for k in range(n_clients)])
    if kind == "category":
        cats, source = _item_categories(data, n_clients, seed)
        groups = _dominant_category(data, active, cats)
        part = _pack(groups, active, n_clients, "category", rng)
        part.info["category_source"] = source
        part.info["categories"] = int(len(set(groups.tolist())))
        return part
    if not user_region:
        raise ConfigError(
            "--partition user-region needs user profiles with a 'region' (ingest a users table with "
            "id,region,...); this data set has none. Use --partition iid or category."
        )
    regions = np.array([str(user_region.get(str(data.user_ids[u]), "") or "") for u in active], dtype=object)
    missing = int((regions == "").sum())
    if missing == len(active):
        raise ConfigError(
            "--partition user-region: none of the users with 2 or more training events has a region in their "
            "profile. Use --partition iid or category."
        )
    regions[regions == ""] = "(unknown)"
    codes = {r: i for i, r in enumerate(sorted(set(regions.tolist())))}
    part = _pack(np.array([codes[r] for r in regions]), active, n_clients, "user-region", rng)
    part.info.update(regions=len(codes), users_without_region=missing)
    return part


def _item_categories(data: TrainData, n_clients: int, seed: int) -> tuple[np.ndarray, str]:
    """One category code per item (-1 unknown) and where the codes came from."""
    cats = data.item_category
    if cats is not None and (np.asarray(cats) >= 0).any():
        return np.asarray(cats, dtype=np.int64), "item catalogue"
    texts = data.item_text
    if not texts or not any(t.strip() for t in texts):
        raise ConfigError(
            f"--partition category needs item categories (at least {n_clients}, one per client) or item "
            "texts to derive them from; this data set has neither. Use --partition iid."
        )
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.feature_extraction.text import TfidfVectorizer

    k = min(2 * n_clients, len(texts))
    x = TfidfVectorizer(min_df=2, max_features=20000, sublinear_tf=True).fit_transform(texts)
    with warnings.catch_warnings():  # fewer distinct texts than clusters: _pack says if too few remain
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(x)
    return labels.astype(np.int64), f"item text clusters (TF-IDF + k-means, k={k})"


def _dominant_category(data: TrainData, users: np.ndarray, cats: np.ndarray) -> np.ndarray:
    """Per user: the category most of their training events fall in (ties: the smallest code)."""
    top = max(int(cats.max(initial=0)) + 2, 2)
    out = np.empty(len(users), dtype=np.int64)
    for i, u in enumerate(users):
        c = cats[np.asarray(data.sequences[u], dtype=np.int64)] + 1  # -1 (unknown) -> bin 0
        counts = np.bincount(c, minlength=top)
        counts[0] = 0 if counts[1:].any() else counts[0]
        out[i] = int(counts.argmax()) - 1
    return out


def _pack(
    groups: np.ndarray, users: np.ndarray, n_clients: int, kind: str, rng: np.random.Generator
) -> Partition:
    """Whole groups (``groups[i]`` of user row ``users[i]``) onto clients: largest group first, each
    onto the client with the fewest users so far."""
    labels, counts = np.unique(groups, return_counts=True)
    if len(labels) < n_clients:
        what = "categories" if kind == "category" else "regions"
        raise ConfigError(
            f"--partition {kind} found {len(labels)} {what} among the users, fewer than --clients "
            f"{n_clients}: some client would hold nothing. Use --clients {len(labels)} or fewer, or "
            "--partition iid."
        )
    order = np.lexsort((rng.random(len(labels)), -counts))
    load = np.zeros(n_clients, dtype=np.int64)
    owner: dict[int, int] = {}
    for j in order:
        k = int(load.argmin())
        owner[int(labels[j])] = k
        load[k] += counts[j]
    client_of = np.array([owner[int(g)] for g in groups])
    return Partition(kind, [np.sort(users[client_of == k]) for k in range(n_clients)])
