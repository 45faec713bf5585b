"""Training the learned ranker of serving: rows from logged exposures or replayed events, a time-ordered
evaluation against the hand blend, registration with metrics and lineage, and a gated promotion.

Two ways to get training rows, both through the one feature function (:mod:`liveshelf.serving.features`):

* ``exposures`` - what the server logged (``<home>/exposures``): each answer is a query, its shown
  candidates the rows with the features they were ranked with at the time; labels are the best
  outcome of the viewer on the candidate within an attribution window (purchase 3 > cart 2 >
  click 1 > none 0; rooms: enter 1). Point-in-time correct by construction.
* ``events`` - the store's events replayed in time order through an in-memory online state: each
  click / cart / purchase of a viewer in a room (the first of a visit) is a query over the shelf
  available just before it, its rows computed from a state holding only the events before that
  moment; labels are the viewer's outcomes on those items in the room within the window. Shelf
  (item) queries only: the store does not know which rooms a viewer was shown.

``auto`` takes exposures when at least ``min_queries`` labelled queries exist, else events.

The newest ``test_share`` of queries (by time) are held out: the ranker and the hand blend (its
weights applied to the same rows) are scored there by NDCG@k, with a paired test; the ranker is
promoted only when it is not worse than the hand blend (``margin``) and its scores are finite.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from liveshelf.core.timeutil import to_seconds_array
from liveshelf.core.tracking import Tracker
from liveshelf.errors import ConfigError, check_param
from liveshelf.models.ranker.live import LiveRanker, RankTable, query_bounds
from liveshelf.serving.exposures import FEATURE_SETS, label_exposures, read_exposures
from liveshelf.serving.features import ITEM_FEATURES, ITEM_SOURCES, ROOM_SOURCES, item_features
from liveshelf.serving.settings import DEFAULT_WEIGHTS

SOURCES = ("exposures", "events", "auto")


# ------------------------------------------------------------------------------------ rows
def tables_from_exposures(
    home: Path | str,
    *,
    window_s: float = 1800.0,
    events: pd.DataFrame | None = None,
    since: float | None = None,
    until: float | None = None,
) -> dict[str, RankTable]:
    """One :class:`RankTable` per feature set from the exposure log, labelled from the store's events."""
    ex = read_exposures(home, since=since, until=until)
    ex = ex[ex["features"].notna() & ex["user"].notna()]
    if not len(ex):
        return {}
    if events is None:
        events = _store_events(home)
    y = label_exposures(ex, events, window_s=window_s)
    out: dict[str, RankTable] = {}
    for fset, names in FEATURE_SETS.items():
        m = (ex["feature_set"] == fset).to_numpy()
        if not m.any():
            continue
        part, yy = ex[m], y[m]
        X = np.asarray(part["features"].tolist(), dtype=np.float64)
        if X.shape[1] != len(names):
            raise ConfigError(
                f"Exposures of feature set {fset!r} hold {X.shape[1]} features, but this version "
                f"computes {len(names)}; train from rows logged by the same version (--since)."
            )
        rid = part["request_id"].to_numpy()  # rows of a request are contiguous (read_exposures' order)
        starts = np.flatnonzero(np.r_[True, rid[1:] != rid[:-1]])
        sizes = np.diff(np.r_[starts, len(rid)])
        ts = part["ts"].to_numpy()[starts]
        out[fset] = RankTable(X, yy, sizes, names, position=part["position"].to_numpy(), ts=ts)
    return out


def tables_from_events(
    home: Path | str,
    *,
    window_s: float = 1800.0,
    max_queries: int = 3000,
    seed: int = 0,
    since: float | None = None,
    until: float | None = None,
    settings: Any = None,
) -> dict[str, RankTable]:
    """Item-surface rows rebuilt by replaying the store's events (see the module docstring)."""
    from liveshelf.data.store import EventStore

    with EventStore(home, read_only=True) as store:
        items, rooms, shelf = store.frame("items"), store.frame("rooms"), store.frame("shelf")
        events = store.training_frame()
    return tables_from_frames(
        items,
        rooms,
        shelf,
        events,
        home=home,
        window_s=window_s,
        max_queries=max_queries,
        seed=seed,
        since=since,
        until=until,
        settings=settings,
    )


class Replay:
    """The store's frames replayed in time order through an in-memory online state and a pipeline.

    :meth:`rows` answers queries ``(user, room, t)`` in time order with the item feature rows of the
    room's shelf at ``t``, computed from a state that holds exactly the events with ``ts < t``: the
    same function, state and models a server would use at ``t`` (point-in-time correct).
    ``models``: role -> model getter (default: the production models of ``home``'s registry).
    """

    def __init__(
        self,
        items: pd.DataFrame,
        rooms: pd.DataFrame,
        shelf: pd.DataFrame,
        events: pd.DataFrame,
        *,
        home: Path | str | None = None,
        settings: Any = None,
        models: dict[str, Any] | None = None,
    ) -> None:
        from liveshelf.serving.pipeline import Catalogue, Pipeline
        from liveshelf.serving.settings import ServeSettings
        from liveshelf.serving.state import MemoryState

        self.settings = settings or ServeSettings(home=home or Path("."), text=False)
        self.events = events.sort_values("ts", kind="stable").reset_index(drop=True)
        self.t = to_seconds_array(self.events["ts"].to_numpy())
        self.state = MemoryState()
        if len(items):
            self.state.upsert_items(items[["id", "category"]])
        if len(rooms):
            self.state.upsert_rooms(rooms)
        if len(shelf):
            self.state.upsert_shelf(shelf)
        catalogue = Catalogue()
        catalogue.replace(items)
        if models is None:
            models = _production_models(home, self.settings) if home is not None else {}
        self.pipeline = Pipeline(self.state, catalogue, self.settings, models)
        self.applied = 0

    def advance(self, t: float) -> int:
        """Apply the events with ``ts < t`` not applied yet; returns the index of the first event at or after t."""
        upto = int(np.searchsorted(self.t, t, side="left"))
        if upto < self.applied:
            raise ConfigError(
                f"Replay queries must come in time order; got t={t} after events up to "
                f"{self.t[self.applied - 1]}."
            )
        if upto > self.applied:
            self.state.apply_events(self.events.iloc[self.applied : upto])
            self.applied = upto
        return upto

    def rows(self, user: str | None, room: str, t: float) -> Any:
        """Feature rows of ``room``'s shelf at ``t`` for ``user`` (None: an empty shelf)."""
        self.advance(t)
        cands = list(self.state.shelf(room, t))
        if not cands:
            return None
        p = self.pipeline
        return item_features(p, [p.viewer(user, t)], cands, room, t)[0]


def tables_from_frames(
    items: pd.DataFrame,
    rooms: pd.DataFrame,
    shelf: pd.DataFrame,
    events: pd.DataFrame,
    *,
    home: Path | str | None = None,
    window_s: float = 1800.0,
    max_queries: int = 3000,
    seed: int = 0,
    since: float | None = None,
    until: float | None = None,
    settings: Any = None,
    models: dict[str, Any] | None = None,
) -> dict[str, RankTable]:
    """:func:`tables_from_events` over frames (schema columns); see :class:`Replay` for ``models``."""
    replay = Replay(items, rooms, shelf, events, home=home, settings=settings, models=models)
    ev, t_all = replay.events, replay.t
    queries = _event_queries(ev, t_all, window_s, max_queries, seed, since, until)
    Xs, ys, sizes, ts = [], [], [], []
    grades = {"click": 1, "cart": 2, "purchase": 3}
    ev_user = ev["user"].astype(str).to_numpy()
    ev_room = ev["room"].astype(object).to_numpy()
    ev_item = ev["item"].astype(object).to_numpy()
    ev_type = ev["type"].astype(str).to_numpy()
    from tqdm.auto import tqdm

    for q in tqdm(
        queries.itertuples(index=False),
        total=len(queries),
        desc="replay",
        unit="query",
        mininterval=1.0,
        leave=False,
    ):
        t = float(q.t) - 1e-3  # just before the viewer acted
        rows = replay.rows(q.user, q.room, t)
        if rows is None or len(rows.keys) < 2:
            continue
        lo, hi = replay.applied, int(np.searchsorted(t_all, t + window_s, side="right"))
        sel = np.nonzero((ev_user[lo:hi] == q.user) & (ev_room[lo:hi] == q.room))[0] + lo
        label: dict[str, int] = {}
        for i in sel:
            g = grades.get(ev_type[i], 0)
            if g and ev_item[i] is not None:
                label[ev_item[i]] = max(label.get(ev_item[i], 0), g)
        y = np.asarray([label.get(c, 0) for c in rows.keys], dtype=np.int64)
        if y.max() == 0:
            continue
        Xs.append(rows.X)
        ys.append(y)
        sizes.append(len(rows.keys))
        ts.append(t)
    if not Xs:
        return {}
    return {
        "item": RankTable(
            np.concatenate(Xs),
            np.concatenate(ys),
            np.asarray(sizes),
            ITEM_FEATURES,
            position=None,
            ts=np.asarray(ts),
        )
    }


def _event_queries(
    ev: pd.DataFrame,
    t_all: np.ndarray,
    window_s: float,
    max_queries: int,
    seed: int,
    since: float | None,
    until: float | None,
) -> pd.DataFrame:
    """The first click / cart / purchase of each visit (viewer, room; a gap over ``window_s`` starts a new one)."""
    m = ev["type"].astype(str).isin(["click", "cart", "purchase"]).to_numpy() & ev["room"].notna().to_numpy()
    if since is not None:
        m &= t_all >= since
    if until is not None:
        m &= t_all < until
    q = pd.DataFrame(
        {
            "user": ev["user"].astype(str).to_numpy()[m],
            "room": ev["room"].astype(str).to_numpy()[m],
            "t": t_all[m],
        }
    )
    if not len(q):
        return q
    q = q.sort_values(["user", "room", "t"], kind="stable")
    gap = q["t"].diff().to_numpy()
    same = (q["user"].to_numpy()[1:] == q["user"].to_numpy()[:-1]) & (
        q["room"].to_numpy()[1:] == q["room"].to_numpy()[:-1]
    )
    first = np.ones(len(q), dtype=bool)
    first[1:] = ~(same & (gap[1:] <= window_s))
    q = q[first]
    if len(q) > max_queries:
        q = q.sample(n=max_queries, random_state=seed)
    return q.sort_values("t", kind="stable").reset_index(drop=True)


def _store_events(home: Path | str) -> pd.DataFrame:
    from liveshelf.data.store import EventStore

    with EventStore(home, read_only=True) as store:
        return store.training_frame()


def _production_models(home: Path | str, settings: Any) -> dict[str, Any]:
    from liveshelf.errors import NotFoundError
    from liveshelf.registry import ModelRegistry

    reg = ModelRegistry(Path(home) / "models")
    out: dict[str, Any] = {}
    for role, name in (("sequence", settings.model), ("cf", settings.cf_model)):
        if not name:
            continue
        try:
            model = reg.load(name)
        except NotFoundError:
            continue
        out[role] = lambda m=model: m
    return out


# ------------------------------------------------------------------------------------ evaluation
def hand_blend_scores(table: RankTable, weights: dict[str, float] | None = None) -> np.ndarray:
    """The hand blend over the same rows: ``sum_s weight_s * src_s_norm`` (what serving computes)."""
    weights = DEFAULT_WEIGHTS if weights is None else weights
    col = {n: j for j, n in enumerate(table.names)}
    sources = ITEM_SOURCES if table.names == ITEM_FEATURES else ROOM_SOURCES
    out = np.zeros(len(table.X))
    for s in sources:
        w = weights.get(s, 0.0)
        if w > 0:
            out += w * np.nan_to_num(table.X[:, col[f"src_{s}_norm"]], nan=0.0)
    return out


def query_ndcg(table: RankTable, scores: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k of each query (graded gains ``2^y - 1``; ties broken against the scorer: pessimistic)."""
    out = []
    lo = 0
    for g in table.group:
        hi = lo + int(g)
        y, s = table.y[lo:hi], scores[lo:hi]
        order = np.lexsort((y, -s))  # ties: the lower label first (pessimistic)
        gains = (2.0 ** y[order][:k] - 1) / np.log2(np.arange(2, min(k, len(y)) + 2))
        ideal = (2.0 ** np.sort(y)[::-1][:k] - 1) / np.log2(np.arange(2, min(k, len(y)) + 2))
        out.append(gains.sum() / ideal.sum() if ideal.sum() > 0 else math.nan)
        lo = hi
    return np.asarray(out)


@dataclass
class RankerReport:
    """What one training run did: rows, held-out figures, the version and the promotion decision."""

    source: str
    surfaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    version: str | None = None
    promoted: bool = False
    surfaces_kept: list[str] = field(default_factory=list)
    reason: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "surfaces": self.surfaces,
            "version": self.version,
            "promoted": self.promoted,
            "surfaces_kept": self.surfaces_kept,
            "reason": self.reason,
            "seconds": round(self.seconds, 2),
        }


def evaluate_tables(
    model: LiveRanker,
    tests: dict[str, RankTable],
    *,
    weights: dict[str, float] | None = None,
    k: int = 5,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Held-out NDCG@k per surface: the ranker, the hand blend and trending alone, with paired tests."""
    from liveshelf.evaluation.significance import compare

    out = {}
    for surface, test in tests.items():
        useful = np.asarray([test.y[a:b].max() > 0 for a, b in query_bounds(test.group)])
        test = test.take_queries(useful)
        if not test.queries:
            continue
        trend_col = test.names.index("src_trending_norm")
        r = query_ndcg(test, model.predict(surface, test.X), k)
        b = query_ndcg(test, hand_blend_scores(test, weights), k)
        tr = query_ndcg(test, np.nan_to_num(test.X[:, trend_col], nan=0.0), k)
        sig = compare(b, r, seed=seed).to_dict()
        out[surface] = {
            "queries": int(test.queries),
            f"ndcg@{k}": {
                "ranker": float(np.nanmean(r)),
                "hand-blend": float(np.nanmean(b)),
                "trending": float(np.nanmean(tr)),
            },
            "ranker_vs_blend": sig,
        }
    return out


# ------------------------------------------------------------------------------------ the whole run
def train_ranker(
    home: Path | str,
    *,
    source: str = "auto",
    window_s: float = 1800.0,
    min_queries: int = 200,
    max_queries: int = 3000,
    test_share: float = 0.2,
    margin: float = 0.0,
    promote: bool = True,
    name: str = "ranker",
    params: dict[str, Any] | None = None,
    seed: int = 0,
    since: float | None = None,
    until: float | None = None,
    log: Any = None,
    tracker: Tracker | None = None,
) -> RankerReport:
    """Build rows, fit a :class:`LiveRanker`, evaluate on the newest queries, register, promote when it passes.

    ``tracker`` (an open MLflow run, :func:`liveshelf.core.tracking.track_run`) receives the held-out
    figures per surface, and its run id goes into the registered version's lineage."""
    from liveshelf.registry import ModelRegistry

    check_param("source", source, source in SOURCES, f"one of {SOURCES}", "train_ranker")
    check_param("test_share", test_share, 0 < test_share < 0.9, "a float in (0, 0.9)", "train_ranker")
    check_param("window_s", window_s, window_s > 0, "seconds > 0", "train_ranker")
    say = log or (lambda msg: None)
    t0 = time.perf_counter()
    home = Path(home)
    tables: dict[str, RankTable] = {}
    used = source
    if source in ("exposures", "auto"):
        tables = tables_from_exposures(home, window_s=window_s, since=since, until=until)
        labelled = sum(_labelled_queries(t) for t in tables.values())
        say(f"exposures: {sum(t.queries for t in tables.values())} requests, {labelled} with an outcome")
        if source == "auto" and labelled < min_queries:
            tables, used = {}, "events"
        elif source == "exposures" and labelled < 2:
            raise ConfigError(
                f"The exposure log under {home / 'exposures'} has {labelled} request(s) with an "
                "outcome; serve traffic first, or train with --from events."
            )
        else:
            used = "exposures"
    if used == "events":
        tables = tables_from_events(
            home, window_s=window_s, max_queries=max_queries, seed=seed, since=since, until=until
        )
        say(f"events: {sum(t.queries for t in tables.values())} replayed queries")
    if not tables:
        raise ConfigError(
            f"No training rows in {home}: no exposures with outcomes and no click / cart / purchase "
            "events in a room with a shelf. Ingest or serve traffic first."
        )
    train, test = {}, {}
    for surface, table in tables.items():
        order = np.argsort(table.ts, kind="stable")
        n_test = int(round(test_share * table.queries))
        is_test = np.zeros(table.queries, dtype=bool)
        is_test[order[len(order) - n_test :]] = n_test > 0
        train[surface], test[surface] = table.take_queries(~is_test), table.take_queries(is_test)
    model = LiveRanker(**{"seed": seed, **(params or {})}).fit(train)
    figures = evaluate_tables(model, test, seed=seed)
    report = RankerReport(source=used)
    for surface in tables:
        report.surfaces[surface] = {
            "train_queries": train[surface].queries,
            **model.info_.get(surface, {}),
            **figures.get(surface, {}),
            "importance": _top(model.feature_importance(surface), 8),
        }
    if tracker is not None:
        tracker.log_metrics(metrics_of(figures))
        tracker.log_metrics({f"{s}.train_queries": t.queries for s, t in train.items()})
    kept, why = _gate(model, test, figures, margin)
    for surface in set(model.names_) - set(kept):  # a surface that failed its gate stays with the hand blend
        model.drop(surface)
    report.surfaces_kept = sorted(kept)
    reg = ModelRegistry(home / "models")
    metrics = {f"{s}/{k}": v for s, f in figures.items() for k, v in f.get("ndcg@5", {}).items()}
    lineage = {
        "trained_from": used,
        "window_s": window_s,
        "since": since,
        "until": until,
        "queries": {s: t.queries for s, t in tables.items()},
        "gate": why,
        **(tracker.lineage() if tracker is not None else {}),
    }
    if not kept:
        report.reason = "refused: " + why
        report.seconds = time.perf_counter() - t0
        return report
    report.version = reg.register(model, name=name, metrics=metrics, lineage=lineage)
    if promote:
        reg.promote(name, report.version)
        report.promoted = True
    report.reason = ("promoted: " if promote else "passed (not promoted): ") + why
    report.seconds = time.perf_counter() - t0
    return report


def metrics_of(figures: dict[str, dict[str, Any]]) -> dict[str, float]:
    """``<surface>.ndcg@5.<scorer>`` for every held-out figure of every surface (for tracking)."""
    return {
        f"{s}.ndcg@5.{k}": float(v)
        for s, f in figures.items()
        for k, v in f.get("ndcg@5", {}).items()
        if isinstance(v, (int, float))
    }


def _labelled_queries(t: RankTable) -> int:
    return int(sum(t.y[a:b].max() > 0 for a, b in query_bounds(t.group)))


def _gate(
    model: LiveRanker, test: dict[str, RankTable], figures: dict[str, dict[str, Any]], margin: float
) -> tuple[list[str], str]:
    """The surfaces whose ranker passes: finite scores and held-out NDCG@5 >= the hand blend's + ``margin``."""
    kept, notes = [], []
    for surface, table in test.items():
        f = figures.get(surface)
        if f is None:
            notes.append(f"{surface}: no held-out query with an outcome")
            continue
        if table.queries and not np.isfinite(model.predict(surface, table.X)).all():
            notes.append(f"{surface}: non-finite scores")
            continue
        r, b = f["ndcg@5"]["ranker"], f["ndcg@5"]["hand-blend"]
        if r < b + margin:
            notes.append(
                f"{surface}: NDCG@5 {r:.4f} < hand blend {b:.4f} + margin {margin} (kept on the hand blend)"
            )
            continue
        kept.append(surface)
        notes.append(f"{surface}: NDCG@5 {r:.4f} vs hand blend {b:.4f}")
    return kept, "; ".join(notes)


def _top(d: dict[str, float], n: int) -> dict[str, float]:
    return {k: round(float(v), 2) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:n]}


__all__ = [
    "RankerReport",
    "Replay",
    "evaluate_tables",
    "hand_blend_scores",
    "query_ndcg",
    "tables_from_events",
    "tables_from_exposures",
    "tables_from_frames",
    "train_ranker",
]
