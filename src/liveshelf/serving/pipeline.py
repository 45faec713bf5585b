"""The request-time recommendation pipeline: candidates -> live filter -> rank -> rerank -> reasons.

Everything is computed from the online state at request time; nothing here caches a
candidate list. What is cached is keyed by what it derives from and rebuilt when that
changes: a model's id -> index vocabulary (per model object, so a hot swap takes effect
on the next request) and the content index (per model and catalogue version).

Candidate sources (each normalised to [0, 1] over the candidates, then blended with
``ServeSettings.weights``):

* ``repeat``   the viewer's decayed engagement with the item (rooms: with the host);
* ``sequence`` the production model's ``score`` of the item given the viewer's sequence;
* ``cf``       an optional second model's score (e.g. a matrix factorisation);
* ``trending`` decayed counters from the online state (item in this room; rooms: the room);
* ``similar``  content neighbours (faiss inner product over unit item embeddings) of the
  viewer's recent items;
* ``profile``  the item's category / brand weight in the viewer's decayed profile.

Rooms are always cold, so the feed scores a room through its host and its shelf.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from liveshelf.schema import EVENT_WEIGHTS
from liveshelf.serving.rerank import allowed, mmr, parse_attributes
from liveshelf.serving.settings import ServeSettings

#: Reason ``source`` written for each internal source.
REASON_NAMES: dict[str, str] = {
    "repeat": "repeat", "sequence": "sequence", "cf": "cf", "trending": "trending-in-room",
    "similar": "similar-to", "profile": "profile-match",
}

ModelGetter = Callable[[], Any]

#: How many of a room's item counters one shelf request reads (items beyond count as 0).
TRENDING_SCAN = 1000

#: Content rows at most this dense (share of non-zeros) are also kept sparse for neighbour search.
SPARSE_DENSITY = 0.1

#: Items whose neighbour search results one content index keeps (oldest dropped first).
NEIGHBOUR_CACHE = 20_000

#: Shelves whose mean content vector the feed keeps (all dropped when full).
SHELF_VECTOR_CACHE = 50_000

#: Up to this many candidates, ``similar`` is the direct cosine to the viewer's recent items
#: (a shelf); above, a neighbour search over the content index.
DIRECT_SIMILAR_MAX = 2000


# ------------------------------------------------------------------------------------ catalogue
@dataclass(frozen=True)
class ItemInfo:
    id: str
    title: str = ""
    description: str = ""
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    rating: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    language: str | None = None

    def text(self) -> str:
        return ". ".join(p for p in (self.title, self.category or "", self.brand or "", self.description) if p)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "description": self.description, "category": self.category,
                "brand": self.brand, "price": self.price, "rating": self.rating,
                "attributes": dict(self.attributes), "language": self.language}


def _opt(v: Any) -> Any:
    if v is None:
        return None
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return v


class Catalogue:
    """Item attributes by id (thread-safe). ``version`` grows with every change."""

    def __init__(self) -> None:
        self._items: dict[str, ItemInfo] = {}
        self._lock = threading.Lock()
        self.version = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, item: str) -> ItemInfo | None:
        return self._items.get(item)

    @staticmethod
    def _infos(frame: pd.DataFrame) -> list[ItemInfo]:
        rows = []
        for rec in frame.to_dict("records"):
            price, rating = _opt(rec.get("price")), _opt(rec.get("rating"))
            rows.append(ItemInfo(
                id=str(rec["id"]), title=str(_opt(rec.get("title")) or ""),
                description=str(_opt(rec.get("description")) or ""), category=_opt(rec.get("category")),
                brand=_opt(rec.get("brand")), price=None if price is None else float(price),
                rating=None if rating is None else float(rating),
                attributes=parse_attributes(_opt(rec.get("attributes"))), language=_opt(rec.get("language"))))
        return rows

    def upsert_frame(self, frame: pd.DataFrame) -> int:
        """Insert or replace items from a schema items frame."""
        rows = self._infos(frame)
        with self._lock:
            items = dict(self._items)
            items.update((r.id, r) for r in rows)
            self._items = items  # one reference swap: readers see the old or the new catalogue
            self.version += 1
        return len(rows)

    def replace(self, frame: pd.DataFrame) -> int:
        """Replace the whole catalogue at once."""
        rows = self._infos(frame)
        with self._lock:
            self._items = {r.id: r for r in rows}
            self.version += 1
        return len(rows)

    def ids(self) -> list[str]:
        return list(self._items)


# ------------------------------------------------------------------------------------ content
class ContentIndex:
    """Unit item embeddings and a faiss inner-product index over them.

    faiss runs single-threaded here: a request searches a handful of vectors, and OpenMP
    threads cost far more than they save on a busy server (35 ms against 0.1 ms measured).
    """

    def __init__(self, ids: Sequence[str], vectors: np.ndarray, origin: str) -> None:
        import faiss

        faiss.omp_set_num_threads(1)

        self.ids = list(ids)
        self.row = {it: i for i, it in enumerate(self.ids)}
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        self.vectors = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
        self.origin = origin
        # item's neighbour search results, kept: a viewer's recent items change slowly between requests
        self._nn: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        self._nn_lock = threading.Lock()
        self.index = faiss.IndexFlatIP(self.vectors.shape[1])
        if len(self.ids):
            self.index.add(self.vectors)
        # sparse rows (hashed TF-IDF): a sparse product finds the same neighbours in a fraction of the time
        nnz = int(np.count_nonzero(self.vectors))
        self.sparse = None
        if self.vectors.size and nnz <= SPARSE_DENSITY * self.vectors.size:
            from scipy.sparse import csr_matrix

            self.sparse = csr_matrix(self.vectors)
            self.sparse_t = csr_matrix(self.vectors.T)  # dims x items: a query touches only its dims' items

    def vector(self, item: str) -> np.ndarray | None:
        i = self.row.get(item)
        return None if i is None else self.vectors[i]

    def matrix(self, items: Sequence[str]) -> np.ndarray:
        """Rows of the given items (zeros for unknown ones)."""
        out = np.zeros((len(items), self.vectors.shape[1]), dtype=np.float32)
        for j, it in enumerate(items):
            i = self.row.get(it)
            if i is not None:
                out[j] = self.vectors[i]
        return out

    def similarities(self, cands: Sequence[str], items: Sequence[str]) -> tuple[np.ndarray, list[str | None]]:
        """Per candidate: the best cosine to one of ``items`` (0 when none is > 0) and that item.

        A direct product over the candidates: for a small candidate set (a shelf) this costs
        a fraction of a search over the whole index. An item is never similar to itself.
        """
        known = [it for it in dict.fromkeys(items) if it in self.row]
        n = len(cands)
        if not known or not n:
            return np.zeros(n), [None] * n
        sims = self.matrix(cands) @ self.vectors[[self.row[it] for it in known]].T
        sims[np.asarray(cands, dtype=object)[:, None] == np.asarray(known, dtype=object)[None, :]] = -np.inf
        best = sims.argmax(axis=1)
        vals = sims[np.arange(n), best].astype(np.float64)
        ok = vals > 0
        return np.where(ok, vals, 0.0), [known[b] if o else None for b, o in zip(best.tolist(), ok.tolist(),
                                                                                 strict=True)]

    def neighbours(self, items: Sequence[str], k: int) -> dict[str, tuple[float, str]]:
        """For every item near one of ``items``: (best cosine, the history item it is near)."""
        known = [it for it in items if it in self.row]
        if not known or not self.ids:
            return {}
        kk = min(k + 1, len(self.ids))
        found = {it: got for it in known if (got := self._nn.get((it, kk))) is not None}
        todo = [it for it in known if it not in found]
        if todo:
            rows = [self.row[it] for it in todo]
            if self.sparse is not None:
                sims, idx = _top_k_sparse(self.sparse[rows] @ self.sparse_t, kk)
            else:
                sims, idx = self.index.search(self.vectors[rows], kk)
            with self._nn_lock:
                for it, srow, irow in zip(todo, sims, idx, strict=True):
                    found[it] = self._nn[(it, kk)] = (srow, irow)
                while len(self._nn) > NEIGHBOUR_CACHE:
                    del self._nn[next(iter(self._nn))]  # oldest first
        out: dict[str, tuple[float, str]] = {}
        for src in known:
            srow, irow = found[src]
            for s, i in zip(srow.tolist(), irow.tolist(), strict=True):
                if i < 0:
                    continue
                it = self.ids[i]
                if it == src or s <= 0:
                    continue
                if it not in out or s > out[it][0]:
                    out[it] = (float(s), src)
        return out


def _top_k_sparse(sims: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a sparse similarity matrix, its ``k`` largest positive entries, best first.

    ``(values, columns)`` padded with ``(0, -1)``: what a flat index search over all items
    returns once the entries ``<= 0`` (which the callers skip) are dropped.
    """
    sims = sims.tocsr()
    vals = np.zeros((sims.shape[0], k), dtype=np.float32)
    idx = np.full((sims.shape[0], k), -1, dtype=np.int64)
    for r in range(sims.shape[0]):
        lo, hi = sims.indptr[r], sims.indptr[r + 1]
        d, c = sims.data[lo:hi], sims.indices[lo:hi]
        pos = d > 0
        d, c = d[pos], c[pos]
        if len(d) > k:
            part = np.argpartition(-d, k - 1)[:k]
            d, c = d[part], c[part]
        order = np.lexsort((c, -d))
        vals[r, : len(d)], idx[r, : len(d)] = d[order], c[order]
    return vals, idx


_TOKEN = re.compile(r"[\u3400-\u9fff]|[a-z0-9]+")


def text_tokens(text: str) -> list[str]:
    """Latin words / numbers, single CJK characters and adjacent CJK pairs (no segmenter needed)."""
    toks = _TOKEN.findall(text.lower())
    pairs = [a + b for a, b in zip(toks, toks[1:], strict=False) if len(a) == 1 and len(b) == 1
             and a >= "\u3400" and b >= "\u3400"]
    return toks + pairs


def hashed_tfidf(texts: Sequence[str], dim: int) -> np.ndarray:
    """Cheap content embedding: :func:`text_tokens` hashed into ``dim`` columns, TF-IDF weighted."""
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

    if not texts:
        return np.zeros((0, dim), dtype=np.float32)
    counts = HashingVectorizer(n_features=dim, analyzer=text_tokens, alternate_sign=False,
                               norm=None).transform(list(texts))
    return TfidfTransformer(sublinear_tf=True).fit_transform(counts).astype(np.float32).toarray()


def model_item_embeddings(model: Any) -> np.ndarray | None:
    """``model.item_embeddings()`` (n_items, D) in the model's vocabulary order, when it exposes them."""
    fn = getattr(model, "item_embeddings", None)
    if not callable(fn):
        return None
    emb = np.asarray(fn(), dtype=np.float32)
    if emb.ndim != 2 or len(emb) != len(getattr(model, "item_ids_", ())):
        return None
    return emb


# ------------------------------------------------------------------------------------ models
class ModelView:
    """A model plus its id -> index maps, built once per model object."""

    def __init__(self, model: Any) -> None:
        from liveshelf.models.base import Context

        self.model = model
        self._context = Context
        items = getattr(model, "item_ids_", None)
        self.item_ids = [str(x) for x in ([] if items is None else items)]
        self.item_index = {it: i for i, it in enumerate(self.item_ids)}
        users = getattr(model, "user_ids_", None)
        self.user_index = {str(u): i for i, u in enumerate([] if users is None else users)}

    def context(self, user: str | None, seq: Sequence[tuple], room: str | None, t: float) -> Any:
        keep = [(self.item_index[e[0]], e[2], e[3]) for e in seq if e[0] is not None and e[0] in self.item_index]
        items = np.asarray([k[0] for k in keep], dtype=np.int64)
        ts = np.asarray([k[1] for k in keep], dtype=np.float64)
        types = np.asarray([k[2] for k in keep], dtype=object)
        return self._context(items=items, ts=ts, types=types, user=user,
                             user_index=self.user_index.get(user or "", -1), room=room, time=t)

    def columns(self, items: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Positions in ``items`` of the items the model knows, and their model indices."""
        cols = [(j, self.item_index[it]) for j, it in enumerate(items) if it in self.item_index]
        return (np.asarray([c[0] for c in cols], dtype=np.int64), np.asarray([c[1] for c in cols], dtype=np.int64))

    def scores(self, contexts: list[Any], items: Sequence[str],
               cols: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """``(B, len(items))`` model scores; NaN for items outside the model's vocabulary.

        ``cols``: :meth:`columns` of ``items``, when the caller keeps them.
        """
        out = np.full((len(contexts), len(items)), np.nan, dtype=np.float64)
        j_idx, cand = self.columns(items) if cols is None else cols
        if not len(cand) or not contexts:
            return out
        batch = getattr(self.model, "score_batch", None)
        if callable(batch):
            s = np.asarray(batch(contexts, cand), dtype=np.float64)
        else:
            s = np.stack([np.asarray(self.model.score(c, cand), dtype=np.float64) for c in contexts])
        out[:, j_idx] = s
        return out


# ------------------------------------------------------------------------------------ viewer
@dataclass
class Viewer:
    """What the pipeline knows about one viewer at request time."""

    user: str | None
    seq: list[tuple]  # (item, room, ts, type), oldest first
    item_weight: dict[str, float]
    host_weight: dict[str, float]
    category_weight: dict[str, float]
    brand_weight: dict[str, float]
    recent_items: list[str]  # distinct, most recent first

    @property
    def known(self) -> bool:
        return bool(self.seq)


def _decay(age: float, half_life: float) -> float:
    return math.pow(2.0, -max(age, 0.0) / half_life)


def category_levels(path: str | None) -> list[str]:
    if not path:
        return []
    parts = [p.strip() for p in str(path).split(">") if p.strip()]
    return [" > ".join(parts[: i + 1]) for i in range(len(parts))]


def level_shares(category_weight: dict[str, float]) -> dict[str, float]:
    """Each category level's share among the viewer's levels of the same depth.

    ``{"A": 3, "A > x": 2, "A > y": 1, "B": 1}`` -> A 0.75, B 0.25, A > x 0.67, A > y 0.33. The profile
    source averages these over an item's levels, so items of one top category (a room's shelf) still
    differ by sub-category, and a deeper match counts as much as a broad one.
    """
    totals: dict[int, float] = {}
    for c, w in category_weight.items():
        d = c.count(">")
        totals[d] = totals.get(d, 0.0) + w
    return {c: w / totals[c.count(">")] for c, w in category_weight.items() if totals[c.count(">")] > 0}


# ------------------------------------------------------------------------------------ results
@dataclass
class Scored:
    key: str
    score: float
    reasons: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Sources:
    """Raw per-source values over the candidates, and the cause of each value."""

    n: int
    values: dict[str, np.ndarray] = field(default_factory=dict)
    causes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def put(self, source: str, values: np.ndarray, causes: list[dict[str, Any]]) -> None:
        self.values[source] = np.asarray(values, dtype=np.float64)
        self.causes[source] = causes


def _normalise(values: np.ndarray, signed: bool) -> np.ndarray:
    """Counters (>= 0) are divided by their max; model scores (any sign) are min-max scaled.

    NaN (a candidate the source knows nothing about) becomes 0.
    """
    v = np.where(np.isfinite(values), values, np.nan)
    if np.all(np.isnan(v)):
        return np.zeros(len(v))
    if signed:
        lo, hi = np.nanmin(v), np.nanmax(v)
        if hi > lo:
            out = (v - lo) / (hi - lo)
        else:  # one value: it says nothing, unless some candidates have none (the scored ones go first)
            out = np.where(np.isnan(v), 0.0, 1.0 if np.isnan(v).any() else 0.0)
    else:
        hi = np.nanmax(v)
        out = v / hi if hi > 0 else np.zeros(len(v))
    return np.nan_to_num(out, nan=0.0)


# ------------------------------------------------------------------------------------ pipeline
class Pipeline:
    """Recommendations from the online state, the catalogue and the served models."""

    def __init__(self, state: Any, catalogue: Catalogue, settings: ServeSettings,
                 models: dict[str, ModelGetter] | None = None, on_cache: Callable[[str, bool], None] | None = None
                 ) -> None:
        self.state = state
        self.catalogue = catalogue
        self.settings = settings
        self.models = models or {}
        self.on_cache = on_cache or (lambda name, hit: None)
        self._views: dict[str, ModelView] = {}
        self._content: tuple[tuple[int, int], ContentIndex] | None = None
        self._live: _LiveSnapshot | None = None
        self._items: _ItemTable | None = None
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
        emb = None if view is None else model_item_embeddings(view.model)
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
        with self._lock:
            self._content = (key, index)
        return index

    # ---- viewer ------------------------------------------------------------------------------
    def viewer(self, user: str | None, t: float) -> Viewer:
        seq = self.state.user_sequence(user, limit=self.settings.history_len) if user else []
        hl = self.settings.profile_half_life_s
        items: dict[str, float] = {}
        hosts: dict[str, float] = {}
        cats: dict[str, float] = {}
        brands: dict[str, float] = {}
        seq_rooms = list(dict.fromkeys(e[1] for e in seq if e[1] is not None))
        room_host: dict[str, str | None] = {r: None if row is None else row.get("host")
                                            for r, row in zip(seq_rooms, self.state.rooms(seq_rooms), strict=True)}
        recent: list[str] = []
        for item, room, ts, typ in seq:
            w = EVENT_WEIGHTS.get(str(typ), 1.0) * _decay(t - float(ts), hl)
            if w <= 0:
                continue
            if item is not None:
                items[item] = items.get(item, 0.0) + w
                info = self.catalogue.get(item)
                if info is not None:
                    for level in category_levels(info.category):
                        cats[level] = cats.get(level, 0.0) + w
                    if info.brand:
                        brands[info.brand] = brands.get(info.brand, 0.0) + w
            if room is not None:
                h = room_host[room]
                if h:
                    hosts[h] = hosts.get(h, 0.0) + w
        for item, _room, _ts, _typ in reversed(seq):
            if item is not None and item not in recent:
                recent.append(item)
        return Viewer(user=user, seq=list(seq), item_weight=items, host_weight=hosts, category_weight=cats,
                      brand_weight=brands, recent_items=recent[:10])

    # ---- item sources ------------------------------------------------------------------------
    def _item_sources(self, viewers: list[Viewer], items: list[str], room: str | None, t: float) -> list[_Sources]:
        """Per viewer, the raw source values of ``items``."""
        n = len(items)
        out = [_Sources(n) for _ in viewers]
        # model sources: one batch per model over all viewers
        for role in ("sequence", "cf"):
            if self.settings.weights.get(role, 0.0) <= 0:
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
        if room is not None and self.settings.weights.get("trending", 0.0) > 0:
            counts = dict(self.state.top("room_item", TRENDING_SCAN, t, scope=room))
            trend = np.asarray([counts.get(it, 0.0) for it in items])
            tcause = [{"room": room}] * n
        content = self.content() if self.settings.weights.get("similar", 0.0) > 0 else None
        infos = [self.catalogue.get(it) for it in items]
        for b, v in enumerate(viewers):
            src = out[b]
            if trend is not None:
                src.put("trending", trend, tcause)
            if not v.known:
                continue
            src.put("repeat", np.asarray([v.item_weight.get(it, 0.0) for it in items]),
                    [{"item": it} for it in items])
            if content is not None and n <= DIRECT_SIMILAR_MAX:
                sim, sim_of = content.similarities(items, v.recent_items)
                src.put("similar", sim, [{"item": it} for it in sim_of])
            elif content is not None:
                near = content.neighbours(v.recent_items, self.settings.neighbours)
                src.put("similar", np.asarray([near.get(it, (0.0, None))[0] for it in items]),
                        [{"item": near.get(it, (0.0, None))[1]} for it in items])
            prof, pcause = np.zeros(n), [{} for _ in range(n)]
            shares = level_shares(v.category_weight)
            btot = max(sum(v.brand_weight.values()), 1e-12)
            for j, info in enumerate(infos):
                if info is None:
                    continue
                levels = category_levels(info.category)
                g = [shares.get(level, 0.0) for level in levels]
                deep = max((d for d, x in enumerate(g) if x > 0), default=-1)  # the most specific match
                b = v.brand_weight.get(info.brand, 0.0) / btot if info.brand else 0.0
                prof[j] = (sum(g) / len(g) if g else 0.0) + b
                if b > 0 and b > (g[deep] if deep >= 0 else 0.0):
                    pcause[j] = {"interest": f"brand:{info.brand}"}
                elif deep >= 0:
                    pcause[j] = {"interest": f"category:{levels[deep]}"}
            src.put("profile", prof, pcause)
        return out

    def _blend(self, src: _Sources) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        total = np.zeros(src.n)
        parts: dict[str, np.ndarray] = {}
        for name, values in src.values.items():
            w = self.settings.weights.get(name, 0.0)
            if w <= 0:
                continue
            parts[name] = w * _normalise(values, signed=name in ("sequence", "cf"))
            total += parts[name]
        return total, parts

    @staticmethod
    def _reasons(parts: dict[str, np.ndarray], causes: dict[str, list[dict[str, Any]]], j: int,
                 fallback: dict[str, Any]) -> list[dict[str, Any]]:
        rs = [{"source": REASON_NAMES[name], "score": round(float(p[j]), 6), **causes[name][j]}
              for name, p in parts.items() if p[j] >= 1e-3]
        rs.sort(key=lambda r: -r["score"])
        return rs or [fallback]

    # ---- shelf -------------------------------------------------------------------------------
    def shelf(self, user: str | None, room: str, t: float, k: int) -> list[Scored]:
        """The room's current shelf ranked for the viewer (live-filtered, business rules, MMR)."""
        items = list(self.state.shelf(room, t))
        if not items:
            return []
        viewer = self.viewer(user, t)
        src = self._item_sources([viewer], items, room, t)[0]
        total, parts = self._blend(src)
        return self._rerank_items(items, total, parts, src.causes, k, {"source": "on-shelf", "score": 0.0,
                                                                       "room": room})

    def _rerank_items(self, items: list[str], total: np.ndarray, parts: dict[str, np.ndarray],
                      causes: dict[str, list[dict[str, Any]]], k: int, fallback: dict[str, Any],
                      diversify: bool = True) -> list[Scored]:
        infos = [self.catalogue.get(it) for it in items]
        ok = allowed(items, [None if i is None else i.attributes for i in infos], set(self.settings.blocked_items))
        keep = np.nonzero(ok)[0]
        if not len(keep):
            return []
        vectors = self.content().matrix([items[i] for i in keep]) if diversify else None
        brands = [None if infos[i] is None else infos[i].brand for i in keep]
        order = mmr(total[keep], vectors, k, self.settings.mmr_lambda if diversify else 1.0,
                    groups=brands if diversify else None, cap=self.settings.brand_cap if diversify else None,
                    demote=True)
        out = []
        for o in order:
            j = int(keep[o])
            out.append(Scored(items[j], round(float(total[j]), 6), self._reasons(parts, causes, j, fallback)))
        return out

    # ---- next item ---------------------------------------------------------------------------
    def next_item(self, room: str, t: float, k: int) -> tuple[list[Scored], int]:
        """Shelf items ranked for the room's current audience (mean of the viewers' blended scores)."""
        items = list(self.state.shelf(room, t))
        if not items:
            return [], 0
        audience = list(self.state.audience(room, t))[: self.settings.audience_limit]
        viewers = [self.viewer(u, t) for u in audience] or [self.viewer(None, t)]
        sources = self._item_sources(viewers, items, room, t)
        total = np.zeros(len(items))
        parts: dict[str, np.ndarray] = {}
        votes: dict[str, list[dict[str, dict[str, Any]]]] = {}
        for src in sources:
            tot, prt = self._blend(src)
            total += tot / len(sources)
            for name, p in prt.items():
                parts[name] = parts.get(name, np.zeros(len(items))) + p / len(sources)
                votes.setdefault(name, []).append({it: c for it, c, v in zip(items, src.causes[name], p,
                                                                             strict=True) if v > 0})
        causes = {name: [_majority([vote.get(it) for vote in votes[name]]) for it in items] for name in parts}
        ranked = self._rerank_items(items, total, parts, causes, k, {"source": "on-shelf", "score": 0.0,
                                                                     "room": room}, diversify=False)
        return ranked, len(audience)

    # ---- feed --------------------------------------------------------------------------------
    def live(self, t: float) -> _LiveSnapshot:
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
        hit = (snap is not None and version is not None and snap.key == key
               and snap.layout.valid_from <= t < snap.layout.valid_until)
        self.on_cache("live_layout", hit)
        if hit:
            assert snap is not None
            return snap
        tkey = (self.catalogue.version, id(content))
        with self._lock:
            table = self._items
        if table is None or table.key != tkey:
            table = _ItemTable(tkey, self.catalogue, content)
        snap = _LiveSnapshot(key, self.state.live_layout(t), table)
        with self._lock:
            self._live, self._items = snap, table
        return snap

    def warm(self, t: float) -> None:
        """Build what the first feed request would (content index, live snapshot), e.g. at start-up."""
        self.live(t)

    def feed(self, user: str | None, t: float, k: int) -> tuple[list[Scored], bool]:
        """Live rooms for the viewer and whether the viewer is known (else: trending fallback).

        Host affinity, shelf-item scores and trending, then a per-host cap and MMR.
        """
        viewer = self.viewer(user, t)
        snap = self.live(t)
        rooms, hosts = snap.layout.rooms, snap.hosts
        if not rooms:
            return [], viewer.known
        n = len(rooms)
        src = _Sources(n)
        src.put("trending", self.state.counters("room", rooms, t), _Lazy(n, lambda j: {"room": rooms[j]}))
        if viewer.known:
            hw = viewer.host_weight
            src.put("repeat", np.asarray([hw.get(h or "", 0.0) for h in hosts]) if hw else np.zeros(n),
                    _Lazy(n, lambda j: {"host": hosts[j]}))
            for name, (vals, cause) in self._feed_item_values(viewer, snap, t).items():
                best, col = snap.best_per_room(vals)
                src.put(name, best, _Lazy(n, _room_cause(cause, col, snap.items)))
        total, parts = self._blend(src)
        order = mmr(total, snap.vectors, k, self.settings.mmr_lambda, groups=hosts, cap=self.settings.host_cap,
                    sim_row=snap.sim_row)
        out = []
        for j in order:
            reasons = self._reasons(parts, src.causes, j, {"source": "live-now", "score": 0.0, "room": rooms[j]})
            out.append(Scored(rooms[j], round(float(total[j]), 6), reasons,
                              {"host": hosts[j], "title": snap.layout.info[j].get("title") or "",
                               "shelf_size": len(snap.layout.shelves[j])}))
        return out, viewer.known

    def _feed_item_values(self, v: Viewer, snap: _LiveSnapshot, t: float
                          ) -> dict[str, tuple[np.ndarray, Callable[[int], dict[str, Any]]]]:
        """Per item source, the raw values over the snapshot's items and each value's cause (lazy).

        The same values as :meth:`_item_sources` computes, gathered with arrays.
        """
        items, n = snap.items, len(snap.items)
        out: dict[str, tuple[np.ndarray, Callable[[int], dict[str, Any]]]] = {}
        w = self.settings.weights
        last = v.recent_items[0] if v.recent_items else None
        for role in ("sequence", "cf"):
            if w.get(role, 0.0) <= 0:
                continue
            view = self.view(role)
            if view is None:
                continue
            ctx = view.context(v.user, v.seq, None, t)
            out[role] = (view.scores([ctx], items, snap.columns(view))[0], lambda _c, last=last: {"item": last})
        if w.get("similar", 0.0) > 0:
            near = snap.content.neighbours(v.recent_items, self.settings.neighbours)
            sim = np.zeros(n)
            sim_of: dict[int, str] = {}
            for it, (sv, of) in near.items():
                c = snap.col.get(it)
                if c is not None:
                    sim[c] = sv
                    sim_of[c] = of
            out["similar"] = (sim, lambda c, sim_of=sim_of: {"item": sim_of.get(c)})
        if w.get("profile", 0.0) > 0:
            out["profile"] = snap.profile(v)
        return out

    # ---- profile -----------------------------------------------------------------------------
    def profile(self, user: str, t: float, top: int = 5) -> dict[str, Any]:
        """Recent sequence summary and decayed top categories / brands / hosts."""
        v = self.viewer(user, t)
        types: dict[str, int] = {}
        for e in v.seq:
            types[str(e[3])] = types.get(str(e[3]), 0) + 1

        def top_of(d: dict[str, float], keep: Callable[[str], bool] = lambda _k: True) -> list[dict[str, Any]]:
            pairs = sorted(((key, w) for key, w in d.items() if keep(key)), key=lambda p: (-p[1], p[0]))
            return [{"key": key, "weight": round(w, 6)} for key, w in pairs[:top]]

        return {
            "events": len(v.seq),
            "first_ts": v.seq[0][2] if v.seq else None,
            "last_ts": v.seq[-1][2] if v.seq else None,
            "event_types": dict(sorted(types.items())),
            "recent_items": v.recent_items,
            "top_categories": top_of(v.category_weight, lambda c: ">" not in c),
            "top_leaf_categories": top_of(v.category_weight, lambda c: ">" in c),
            "top_brands": top_of(v.brand_weight),
            "top_hosts": top_of(v.host_weight),
            "half_life_s": self.settings.profile_half_life_s,
        }


class _Lazy:
    """A read-only sequence whose item ``j`` is ``fn(j)``, computed when read (causes of the few shown)."""

    def __init__(self, n: int, fn: Callable[[int], dict[str, Any]]) -> None:
        self.n, self.fn = n, fn

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, j: int) -> dict[str, Any]:
        return self.fn(j)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self.fn(j) for j in range(self.n))


def _room_cause(cause: Callable[[int], dict[str, Any]], col: np.ndarray, items: list[str]
                ) -> Callable[[int], dict[str, Any]]:
    def at(j: int) -> dict[str, Any]:
        c = int(col[j])
        return {} if c < 0 else {**cause(c), "shelf_item": items[c]}
    return at


class _ItemTable:
    """Per catalogue version and content index: each item's category-level ids and brand id, and
    each shelf's mean unit content vector, kept across live snapshots (a shelf write then
    rebuilds only what changed)."""

    def __init__(self, key: tuple, catalogue: Catalogue, content: ContentIndex) -> None:
        self.key, self.catalogue, self.content = key, catalogue, content
        self.levels: dict[str, int] = {}
        self.brands: dict[str, int] = {}
        self._items: dict[str, tuple[list[int], int]] = {}
        self._shelves: dict[tuple[str, ...], np.ndarray] = {}
        self._lock = threading.Lock()

    def item(self, it: str) -> tuple[list[int], int]:
        """(category-level ids, brand id or -1) of one item."""
        got = self._items.get(it)
        if got is None:
            info = self.catalogue.get(it)
            with self._lock:
                if info is None:
                    got = ([], -1)
                else:
                    lv = [self.levels.setdefault(x, len(self.levels)) for x in category_levels(info.category)]
                    got = (lv, self.brands.setdefault(info.brand, len(self.brands)) if info.brand else -1)
                self._items[it] = got
        return got

    def shelf_vector(self, shelf: list[str]) -> np.ndarray:
        """The mean unit content vector of a shelf (zeros when empty)."""
        key = tuple(shelf)
        v = self._shelves.get(key)
        if v is None:
            v = _mean_unit(self.content.matrix(shelf), self.content.vectors.shape[1])
            with self._lock:
                if len(self._shelves) >= SHELF_VECTOR_CACHE:
                    self._shelves.clear()
                self._shelves[key] = v
        return v


class _LiveSnapshot:
    """A :class:`LiveLayout` plus the arrays the feed scores with.

    ``items`` are the distinct shelf items (sorted by id), ``grid`` the (rooms x longest
    shelf) matrix of their positions (``len(items)`` pads), ``vectors`` each room's mean
    unit content vector; per item its category-level and brand ids for the profile source.
    """

    def __init__(self, key: tuple, layout: Any, table: _ItemTable) -> None:
        self.key, self.layout, self.content = key, layout, table.content
        shelves = layout.shelves
        self.hosts: list[str | None] = [row.get("host") for row in layout.info]
        self.items: list[str] = sorted({it for sh in shelves for it in sh})
        self.col = {it: j for j, it in enumerate(self.items)}
        n = len(self.items)
        width = max((len(sh) for sh in shelves), default=0)
        self.grid = np.full((len(shelves), max(width, 1)), n, dtype=np.int64)
        for j, sh in enumerate(shelves):
            self.grid[j, : len(sh)] = [self.col[it] for it in sh]
        dim = self.content.vectors.shape[1]
        self.vectors = (np.stack([table.shelf_vector(sh) for sh in shelves]) if shelves
                        else np.zeros((0, dim), dtype=np.float32))
        # profile: item -> category-level ids (padded with -1) and brand id (-1: none)
        rows = [table.item(it) for it in self.items]
        self.brand_ids = np.asarray([b for _, b in rows], dtype=np.int64).reshape(n)
        depth = max((len(lv) for lv, _ in rows), default=0)
        self.level_ids = np.full((n, max(depth, 1)), -1, dtype=np.int64)
        for j, (lv, _) in enumerate(rows):
            if lv:
                self.level_ids[j, : len(lv)] = lv
        with table._lock:  # the table's vocabularies grow; this snapshot keeps its own copy
            self._levels, self._brands = dict(table.levels), dict(table.brands)
        self.level_names = list(self._levels)
        self.brand_names = list(self._brands)
        self._columns: dict[int, tuple[Any, tuple[np.ndarray, np.ndarray]]] = {}
        self._sim_rows: dict[int, np.ndarray] = {}

    def sim_row(self, i: int) -> np.ndarray:
        """``vectors @ vectors[i]`` (room i's content similarity to every room), computed once per snapshot."""
        row = self._sim_rows.get(i)
        if row is None:
            # einsum: no BLAS threads, which cost far more than this small product on a busy server
            row = self._sim_rows[i] = np.einsum("ij,j->i", self.vectors, self.vectors[i])
        return row

    def columns(self, view: ModelView) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`ModelView.columns` of the snapshot's items, kept per model view."""
        got = self._columns.get(id(view))
        if got is None or got[0] is not view:
            got = (view, view.columns(self.items))
            self._columns[id(view)] = got
        return got[1]

    def best_per_room(self, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per room: the best finite value over its shelf (NaN: none) and the item position holding it.

        Ties go to the larger item id, as ``max`` over ``(value, item)`` pairs does.
        """
        ext = np.append(np.where(np.isfinite(vals), vals, np.nan), np.nan)
        m = ext[self.grid]
        has = ~np.all(np.isnan(m), axis=1)
        best = np.full(len(m), np.nan)
        best[has] = np.nanmax(m[has], axis=1)
        at = np.where(m == best[:, None], self.grid, -1).max(axis=1)
        return best, np.where(has, at, -1)

    def profile(self, v: Viewer) -> tuple[np.ndarray, Callable[[int], dict[str, Any]]]:
        """The ``profile`` source over the items (as :meth:`Pipeline._item_sources`) and its cause."""
        n = len(self.items)
        shares = level_shares(v.category_weight)
        btot = max(sum(v.brand_weight.values()), 1e-12)
        lw = np.zeros(len(self.level_names) + 1)  # the last slot: padding (-1)
        for c, x in shares.items():
            i = self._levels.get(c)
            if i is not None:
                lw[i] = x
        bw = np.zeros(len(self.brand_names) + 1)
        for b, w in v.brand_weight.items():
            i = self._brands.get(b)
            if i is not None:
                bw[i] = w / btot
        if not n:
            return np.zeros(0), lambda _c: {}
        g = lw[self.level_ids]  # (n, depth); padding reads the zero slot
        depth = np.maximum((self.level_ids >= 0).sum(axis=1), 1)
        cols = np.arange(g.shape[1])[None, :]
        lvl = np.where(g > 0, cols, -1).max(axis=1)  # the most specific matching level (-1: none)
        best = np.where(lvl >= 0, g[np.arange(n), np.maximum(lvl, 0)], 0.0)
        bv = bw[self.brand_ids]
        use_brand = (bv > 0) & (bv > best)
        value = g.sum(axis=1) / depth + bv
        level_names, brand_names, level_ids, brand_ids = (self.level_names, self.brand_names, self.level_ids,
                                                          self.brand_ids)

        def cause(c: int) -> dict[str, Any]:
            if use_brand[c]:
                return {"interest": f"brand:{brand_names[brand_ids[c]]}"}
            if lvl[c] >= 0:
                return {"interest": f"category:{level_names[level_ids[c, lvl[c]]]}"}
            return {}
        return value, cause


def _mean_unit(m: np.ndarray, dim: int) -> np.ndarray:
    if not len(m):
        return np.zeros(dim, dtype=np.float32)
    v = m.mean(axis=0)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def _majority(causes: Iterable[dict[str, Any] | None]) -> dict[str, Any]:
    """The most frequent non-empty cause (ties: first seen)."""
    counts: dict[str, tuple[int, dict[str, Any]]] = {}
    for c in causes:
        if not c:
            continue
        key = repr(sorted(c.items()))
        n, _ = counts.get(key, (0, c))
        counts[key] = (n + 1, c)
    if not counts:
        return {}
    return max(counts.values(), key=lambda p: p[0])[1]
