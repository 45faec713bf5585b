"""The request-time recommendation pipeline: candidates -> live filter -> features -> rank -> rerank -> reasons.

Everything is computed from the online state at request time; nothing here caches a
candidate list. What is cached is keyed by what it derives from and rebuilt when that
changes: a model's id -> index vocabulary (per model object, so a hot swap takes effect
on the next request), the content index (per model and catalogue version) and the live
snapshot (:mod:`liveshelf.serving.live`).

Candidate sources (raw values per candidate, each with its cause):

* ``repeat``   the viewer's decayed engagement with the item (rooms: with the host);
* ``sequence`` the production model's ``score`` of the item given the viewer's sequence;
* ``cf``       an optional second model's score (e.g. a matrix factorisation);
* ``trending`` decayed counters from the online state (item in this room; rooms: the room);
* ``similar``  content neighbours (faiss inner product over unit item embeddings) of the
  viewer's recent items;
* ``profile``  the item's category / brand weight in the viewer's decayed profile.

The order: when a learned ranker is promoted (registry name ``ServeSettings.ranker_model``), it
scores the feature rows of :mod:`liveshelf.serving.features` (one LightGBM call per request) and
the reasons are its per-source contributions; otherwise the hand blend (``ServeSettings.weights``
over the sources normalised to [0, 1]) ranks, as the cold-start fallback, and the answer says
so (``ranked_by``). Then business rules and MMR diversity (:mod:`liveshelf.rerank`).

Rooms are always cold, so the feed scores a room through its host and its shelf.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from liveshelf.profile.viewer import (
    Viewer,
    build_viewer,
    category_levels,
    level_shares,
    profile_match,
    profile_summary,
)
from liveshelf.rerank import mmr, served_order
from liveshelf.serving.catalogue import Catalogue, ItemInfo
from liveshelf.serving.content import ContentIndex, model_item_embeddings
from liveshelf.serving.explain import REASON_NAMES, contributions, learned_scores, reasons, shown_parts
from liveshelf.serving.features import FeatureRows, item_features, normalised, room_features
from liveshelf.serving.live import ItemTable, Lazy, LiveSnapshot, room_cause
from liveshelf.serving.results import Ranked, Scored, Sources, majority
from liveshelf.serving.settings import ServeSettings
from liveshelf.serving.viewer import ModelView
from liveshelf.text.hashing import hashed_tfidf, text_tokens

ModelGetter = Callable[[], Any]
Explain = Callable[[np.ndarray], dict[str, np.ndarray]]  # shown positions -> per-source parts
log = logging.getLogger("liveshelf.serving")


#: How many of a room's item counters one shelf request reads (items beyond count as 0).
TRENDING_SCAN = 1000

#: next-item with the learned ranker: the reasons average the contributions over this many viewers.
EXPLAIN_VIEWERS = 20

#: Up to this many candidates, ``similar`` is the direct cosine to the viewer's recent items
#: (a shelf); above, a neighbour search over the content index.
DIRECT_SIMILAR_MAX = 2000


#: Counters (>= 0) are divided by their max; model scores (any sign) are min-max scaled; NaN -> 0.
_normalise = normalised


# ------------------------------------------------------------------------------------ pipeline
class Pipeline:
    """Recommendations from the online state, the catalogue and the served models."""

    def __init__(
        self,
        state: Any,
        catalogue: Catalogue,
        settings: ServeSettings,
        models: dict[str, ModelGetter] | None = None,
        on_cache: Callable[[str, bool], None] | None = None,
        ranker_version: Callable[[], str | None] | None = None,
    ) -> None:
        self.state = state
        self.ranker_version = ranker_version
        self.catalogue = catalogue
        self.settings = settings
        self.models = models or {}
        self.on_cache = on_cache or (lambda name, hit: None)
        self._views: dict[str, ModelView] = {}
        self._content: tuple[tuple[int, int], ContentIndex] | None = None
        self._live: LiveSnapshot | None = None
        self._items: ItemTable | None = None
        self._lock = threading.Lock()

    # ---- cached derivations -----------------------------------------------------------------
    def view(self, role: str) -> ModelView | None:
        getter = self.models.get(role)
        model = getter() if getter is not None else None
        if model is None or getattr(model, "item_ids_", None) is None:
            return None
        with self._lock:
            v = self._views.get(role)
            hit = v is not None and v.model is model
            if not hit:
                v = ModelView(model)
                self._views[role] = v
        self.on_cache("model_vocab", hit)
        return v

    def content(self) -> ContentIndex:
        """The content index for the current model and catalogue (rebuilt when either changes)."""
        mode = self.settings.content_embedding
        view = self.view("sequence") if mode == "auto" else None
        emb = None if view is None else model_item_embeddings(view.model, len(view.item_ids))
        key = (id(view.model) if emb is not None and view is not None else 0, self.catalogue.version)
        with self._lock:
            cached = self._content
        if cached is not None and cached[0] == key:
            self.on_cache("content_index", True)
            return cached[1]
        self.on_cache("content_index", False)
        if emb is not None and view is not None:
            index = ContentIndex(view.item_ids, emb, "model")
        else:
            ids = self.catalogue.ids()
            texts = []
            for it in ids:
                info = self.catalogue.get(it)
                texts.append(info.text() if info is not None else it)
            if mode == "encoder":
                from liveshelf.text.encoder import TextEncoder

                index = ContentIndex(ids, TextEncoder().encode(texts), "text-encoder")
            else:
                index = ContentIndex(ids, hashed_tfidf(texts, self.settings.content_dim), "hashed-tfidf")
        self._attach_neighbour_table(index)
        with self._lock:
            self._content = (key, index)
        return index

    def neighbour_folder(self) -> Path:
        """Where precomputed content-neighbour tables live (``liveshelf index build``): ``<home>/cache``."""
        return Path(self.settings.home).expanduser() / "cache"

    def neighbour_k(self, index: ContentIndex) -> int:
        """How many neighbours (the item itself included) a search of ``settings.neighbours`` asks for."""
        return min(self.settings.neighbours + 1, len(index.ids))

    def _attach_neighbour_table(self, index: ContentIndex) -> None:
        if not len(index.ids):
            return
        try:
            used = index.load_table(self.neighbour_folder(), self.neighbour_k(index))
        except (OSError, ValueError) as exc:  # a damaged file: searched on demand instead
            log.warning("content neighbour table not used: %s", exc)
            return
        if used:
            log.info("content neighbours from the precomputed table (%d items)", len(index.ids))

    # ---- viewer ------------------------------------------------------------------------------
    def viewer(self, user: str | None, t: float) -> Viewer:
        """What the pipeline knows about ``user`` at ``t`` (an unknown or absent user: an empty viewer)."""
        seq = self.state.user_sequence(user, limit=self.settings.history_len) if user else []
        seq_rooms = list(dict.fromkeys(e[1] for e in seq if e[1] is not None))
        room_host = {
            r: None if row is None else row.get("host")
            for r, row in zip(seq_rooms, self.state.rooms(seq_rooms), strict=True)
        }
        return build_viewer(user, seq, room_host, self.catalogue, t, self.settings.profile_half_life_s)

    # ---- item sources ------------------------------------------------------------------------
    def _on(self, source: str, every: bool) -> bool:
        return every or self.settings.weights.get(source, 0.0) > 0

    def item_sources(
        self, viewers: list[Viewer], items: list[str], room: str | None, t: float, every: bool = False
    ) -> list[Sources]:
        """Per viewer, the raw source values of ``items`` (``every``: also the sources the blend weighs 0)."""
        n = len(items)
        out = [Sources(n) for _ in viewers]
        # model sources: one batch per model over all viewers
        for role in ("sequence", "cf"):
            if not self._on(role, every):
                continue
            view = self.view(role)
            known = [b for b, v in enumerate(viewers) if v.known]
            if view is None or not known:
                continue
            ctxs = [view.context(viewers[b].user, viewers[b].seq, room, t) for b in known]
            scores = view.scores(ctxs, items)
            for row, b in enumerate(known):
                last = viewers[b].recent_items[0] if viewers[b].recent_items else None
                out[b].put(role, scores[row], [{"item": last}] * n)
        # trending: the item in this room (one read of the room's counters); the feed ranks rooms instead
        trend = None
        if room is not None and self._on("trending", every):
            counts = dict(self.state.top("room_item", TRENDING_SCAN, t, scope=room))
            trend = np.asarray([counts.get(it, 0.0) for it in items])
            tcause = [{"room": room}] * n
        content = self.content() if self._on("similar", every) else None
        infos = [self.catalogue.get(it) for it in items]
        for b, v in enumerate(viewers):
            src = out[b]
            if trend is not None:
                src.put("trending", trend, tcause)
            if not v.known:
                continue
            src.put(
                "repeat",
                np.asarray([v.item_weight.get(it, 0.0) for it in items]),
                [{"item": it} for it in items],
            )
            if content is not None and n <= DIRECT_SIMILAR_MAX:
                sim, sim_of = content.similarities(items, v.recent_items)
                src.put("similar", sim, [{"item": it} for it in sim_of])
            elif content is not None:
                near = content.neighbours(v.recent_items, self.settings.neighbours)
                src.put(
                    "similar",
                    np.asarray([near.get(it, (0.0, None))[0] for it in items]),
                    [{"item": near.get(it, (0.0, None))[1]} for it in items],
                )
            src.put("profile", *profile_match(v, infos))
        return out

    def _blend(self, src: Sources) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        total = np.zeros(src.n)
        parts: dict[str, np.ndarray] = {}
        for name, values in src.values.items():
            w = self.settings.weights.get(name, 0.0)
            if w <= 0:
                continue
            parts[name] = w * _normalise(values, signed=name in ("sequence", "cf"))
            total += parts[name]
        return total, parts

    # ---- the ranking stage -------------------------------------------------------------------
    def ranker(self, surface: str) -> Any:
        """The promoted learned ranker when it ranks ``surface`` ("item" | "room"), else None (hand blend)."""
        getter = self.models.get("ranker") if self.settings.use_ranker else None
        model = getter() if getter is not None else None
        if model is None or not model.ranks(surface):
            return None
        return model

    def ranked_by(self, ranker: Any) -> str:
        """What decided an order: ``ranker@<version>`` or ``hand-blend`` (the cold-start fallback)."""
        if ranker is None:
            return "hand-blend"
        version = self.ranker_version() if self.ranker_version is not None else None
        return f"ranker@{version}" if version else "ranker"

    # ---- shelf -------------------------------------------------------------------------------
    def shelf(self, user: str | None, room: str, t: float, k: int) -> list[Scored]:
        """The room's current shelf ranked for the viewer (live-filtered, business rules, MMR)."""
        return self.rank_shelf(user, room, t, k).recs

    def rank_shelf(self, user: str | None, room: str, t: float, k: int) -> Ranked:
        """:meth:`shelf` with the feature rows it was ranked with and what ranked it."""
        items = list(self.state.shelf(room, t))
        ranker = self.ranker("item")
        if not items:
            return Ranked([], None, self.ranked_by(ranker))
        viewer = self.viewer(user, t)
        fallback = {"source": "on-shelf", "score": 0.0, "room": room}
        if ranker is None and not self.settings.log_features:
            src = self.item_sources([viewer], items, room, t)[0]
            total, parts = self._blend(src)
            return Ranked(
                self._rerank_items(items, total, shown_parts(parts), src.causes, k, fallback),
                None,
                self.ranked_by(None),
            )
        rows = item_features(self, [viewer], items, room, t)[0]
        if ranker is not None:
            total = learned_scores(ranker, [rows])[0]
            explain: Explain = partial(contributions, ranker, [rows])
        else:
            total, parts = self._blend(rows.sources)
            explain = shown_parts(parts)
        recs = self._rerank_items(items, total, explain, rows.sources.causes, k, fallback)
        return Ranked(recs, rows, self.ranked_by(ranker))

    def _rerank_items(
        self,
        items: list[str],
        total: np.ndarray,
        explain: Callable[[np.ndarray], dict[str, np.ndarray]],
        causes: dict[str, Any],
        k: int,
        fallback: dict[str, Any],
        diversify: bool = True,
    ) -> list[Scored]:
        infos = [self.catalogue.get(it) for it in items]
        shown = served_order(
            items,
            total,
            [None if i is None else i.attributes for i in infos],
            set(self.settings.blocked_items),
            k,
            lam=self.settings.mmr_lambda if diversify else 1.0,
            vectors=(lambda keep: self.content().matrix([items[i] for i in keep])) if diversify else None,
            groups=[None if i is None else i.brand for i in infos] if diversify else None,
            cap=self.settings.brand_cap if diversify else None,
        )
        if not len(shown):
            return []
        parts = explain(shown)
        return [
            Scored(
                items[j],
                round(float(total[j]), 6),
                reasons({name: p[r] for name, p in parts.items()}, causes, int(j), fallback),
            )
            for r, j in enumerate(shown)
        ]

    # ---- next item ---------------------------------------------------------------------------
    def next_item(self, room: str, t: float, k: int) -> tuple[list[Scored], int]:
        """Shelf items ranked for the room's current audience (mean of the viewers' scores)."""
        ranked = self.rank_next_item(room, t, k)
        return ranked.recs, ranked.audience

    def rank_next_item(self, room: str, t: float, k: int) -> Ranked:
        """:meth:`next_item` with the audience's mean feature rows and what ranked it.

        With the learned ranker, the reasons average the contributions over at most ``EXPLAIN_VIEWERS``
        viewers of the audience (explaining is the costly part).
        """
        items = list(self.state.shelf(room, t))
        ranker = self.ranker("item")
        if not items:
            return Ranked([], None, self.ranked_by(ranker))
        audience = list(self.state.audience(room, t))[: self.settings.audience_limit]
        viewers = [self.viewer(u, t) for u in audience] or [self.viewer(None, t)]
        rows: list[FeatureRows] | None = None
        if ranker is None and not self.settings.log_features:
            sources = self.item_sources(viewers, items, room, t)
        else:
            rows = item_features(self, viewers, items, room, t)
            sources = [r.sources for r in rows]
        total = np.zeros(len(items))
        votes: dict[str, list[dict[str, dict[str, Any]]]] = {}
        if ranker is not None and rows is not None:
            for src, tot in zip(sources, learned_scores(ranker, rows), strict=True):
                total += tot / len(sources)
                for (
                    name,
                    values,
                ) in src.values.items():  # a viewer's cause counts where its source has a value
                    if name in src.causes:
                        votes.setdefault(name, []).append(
                            {it: c for it, c, v in zip(items, src.causes[name], values, strict=True) if v > 0}
                        )
            explain: Explain = partial(contributions, ranker, rows[:EXPLAIN_VIEWERS])
        else:
            parts: dict[str, np.ndarray] = {}
            for src in sources:
                tot, prt = self._blend(src)
                total += tot / len(sources)
                for name, p in prt.items():
                    parts[name] = parts.get(name, np.zeros(len(items))) + p / len(sources)
                    if name in src.causes:
                        votes.setdefault(name, []).append(
                            {it: c for it, c, v in zip(items, src.causes[name], p, strict=True) if v > 0}
                        )
            explain = shown_parts(parts)
        causes = {name: [majority([vote.get(it) for vote in votes[name]]) for it in items] for name in votes}
        recs = self._rerank_items(
            items,
            total,
            explain,
            causes,
            k,
            {"source": "on-shelf", "score": 0.0, "room": room},
            diversify=False,
        )
        mean_rows = None
        if rows is not None:
            mean_rows = FeatureRows(
                "item",
                rows[0].names,
                list(items),
                np.mean(np.stack([r.X for r in rows]), axis=0),
                rows[0].sources,
            )
        return Ranked(recs, mean_rows, self.ranked_by(ranker), audience=len(audience))

    # ---- feed --------------------------------------------------------------------------------
    def live(self, t: float) -> LiveSnapshot:
        """The live layout at ``t`` with its derived arrays, cached while it provably holds.

        Reused only for the same state ``live_version`` (every room / shelf write changes it),
        catalogue version and content index, and only while ``t`` stays inside the interval in
        which no room or shelf slot starts or ends, so an ended room or a removed item never
        shows. A backend without a live version gets a fresh snapshot per request.
        """
        content = self.content()
        version = self.state.live_version()
        key = (version, self.catalogue.version, id(content))
        with self._lock:
            snap = self._live
        hit = (
            snap is not None
            and version is not None
            and snap.key == key
            and snap.layout.valid_from <= t < snap.layout.valid_until
        )
        self.on_cache("live_layout", hit)
        if hit:
            assert snap is not None
            return snap
        tkey = (self.catalogue.version, id(content))
        with self._lock:
            table = self._items
        if table is None or table.key != tkey:
            table = ItemTable(tkey, self.catalogue, content)
        snap = LiveSnapshot(key, self.state.live_layout(t), table)
        with self._lock:
            self._live, self._items = snap, table
        return snap

    def warm(self, t: float) -> None:
        """Build what the first feed request would (content index, live snapshot), e.g. at start-up."""
        self.live(t)

    def feed(self, user: str | None, t: float, k: int) -> tuple[list[Scored], bool]:
        """Live rooms for the viewer and whether the viewer is known (else: trending fallback)."""
        ranked = self.rank_feed(user, t, k)
        return ranked.recs, ranked.known

    def room_sources(self, viewer: Viewer, snap: LiveSnapshot, t: float, every: bool = False) -> Sources:
        """The raw source values of the live rooms of ``snap`` for ``viewer`` (rooms are scored through
        their host and their shelf's best item)."""
        rooms, hosts = snap.layout.rooms, snap.hosts
        n = len(rooms)
        src = Sources(n)
        src.put("trending", self.state.counters("room", rooms, t), Lazy(n, lambda j: {"room": rooms[j]}))
        if viewer.known:
            hw = viewer.host_weight
            src.put(
                "repeat",
                np.append(snap.host_values(hw), 0.0)[snap.host_index] if hw else np.zeros(n),
                Lazy(n, lambda j: {"host": hosts[j]}),
            )  # a room without a host (index -1) reads the 0
            for name, (vals, cause, nz) in self._feed_item_values(viewer, snap, t, every).items():
                best, col = snap.best_per_room(vals) if nz is None else snap.best_per_room_sparse(vals, nz)
                src.put(name, best, Lazy(n, room_cause(cause, col, snap.items)))
        return src

    def rank_feed(self, user: str | None, t: float, k: int) -> Ranked:
        """:meth:`feed` with the feature rows it was ranked with and what ranked it.

        Host affinity, shelf-item scores and trending (learned or blended), then a per-host cap and MMR.
        """
        viewer = self.viewer(user, t)
        snap = self.live(t)
        rooms, hosts = snap.layout.rooms, snap.hosts
        ranker = self.ranker("room")
        if not rooms:
            return Ranked([], None, self.ranked_by(ranker), known=viewer.known)
        rows = None
        if ranker is not None:
            rows = room_features(self, viewer, snap, t)
            src = rows.sources
            total = learned_scores(ranker, [rows])[0]
            explain: Explain = partial(contributions, ranker, [rows])
        else:  # the hand blend needs no feature rows; the exposure log gets those of the rooms shown (below)
            src = self.room_sources(viewer, snap, t, every=self.settings.log_features)
            total, blend_parts = self._blend(src)
            explain = shown_parts(blend_parts)
        order = mmr(
            total,
            snap.vectors,
            k,
            self.settings.mmr_lambda,
            groups=hosts,
            cap=self.settings.host_cap,
            sim_row=snap.sim_row,
        )
        shown = np.asarray(order, dtype=np.int64)
        if ranker is None and self.settings.log_features:
            rows = room_features(self, viewer, snap, t, sources=src, at=shown)
        parts = explain(shown)
        out = []
        for r, j in enumerate(order):
            why = reasons(
                {name: p[r] for name, p in parts.items()},
                src.causes,
                j,
                {"source": "live-now", "score": 0.0, "room": rooms[j]},
            )
            out.append(
                Scored(
                    rooms[j],
                    round(float(total[j]), 6),
                    why,
                    {
                        "host": hosts[j],
                        "title": snap.layout.info[j].get("title") or "",
                        "shelf_size": len(snap.layout.shelves[j]),
                    },
                )
            )
        return Ranked(out, rows, self.ranked_by(ranker), known=viewer.known)

    def _feed_item_values(
        self, v: Viewer, snap: LiveSnapshot, t: float, every: bool = False
    ) -> dict[str, tuple[np.ndarray, Callable[[int], dict[str, Any]], np.ndarray | None]]:
        """Per item source, the raw values over the snapshot's items, each value's cause (lazy) and,
        for a source that is 0 almost everywhere, the positions where it is not (else None).

        The same values as :meth:`_item_sources` computes, gathered with arrays.
        """
        items, n = snap.items, len(snap.items)
        out: dict[str, tuple[np.ndarray, Callable[[int], dict[str, Any]], np.ndarray | None]] = {}
        last = v.recent_items[0] if v.recent_items else None

        def last_cause(_c: int) -> dict[str, Any]:
            return {"item": last}

        for role in ("sequence", "cf"):
            if not self._on(role, every):
                continue
            view = self.view(role)
            if view is None:
                continue
            ctx = view.context(v.user, v.seq, None, t)
            out[role] = (
                view.scores([ctx], items, snap.columns(view))[0],
                last_cause,
                None,
            )
        if self._on("similar", every):
            near = snap.content.neighbours(v.recent_items, self.settings.neighbours)
            sim = np.zeros(n)
            sim_of: dict[int, str] = {}
            for it, (sv, of) in near.items():
                c = snap.col.get(it)
                if c is not None:
                    sim[c] = sv
                    sim_of[c] = of

            def similar_cause(c: int) -> dict[str, Any]:
                return {"item": sim_of.get(c)}

            out["similar"] = (
                sim,
                similar_cause,
                np.fromiter(sim_of, dtype=np.int64, count=len(sim_of)),
            )
        if self._on("profile", every):
            out["profile"] = snap.profile_sparse(v)
        return out

    # ---- profile -----------------------------------------------------------------------------
    def profile(self, user: str, t: float, top: int = 5) -> dict[str, Any]:
        """Recent sequence summary and decayed top categories / brands / hosts."""
        return profile_summary(self.viewer(user, t), top, self.settings.profile_half_life_s)


__all__ = [
    "REASON_NAMES",
    "Catalogue",
    "ContentIndex",
    "ItemInfo",
    "ModelView",
    "Pipeline",
    "Ranked",
    "Scored",
    "Viewer",
    "category_levels",
    "hashed_tfidf",
    "level_shares",
    "model_item_embeddings",
    "text_tokens",
]
