"""``ranker``: a two-stage hybrid - several sources propose, LightGBM lambdarank orders.

Stage one: each source (any registered family; default ``pop,itemknn,sasrec,textseq``) scores
the catalogue and proposes its top ``top_n``; the candidates of a request are the union.
Stage two: a :class:`~liveshelf.models.ranker.lgbm.LambdaRanker` orders the candidates from
features built by one function, :meth:`HybridRanker._features`, for training and scoring alike:

* per source: its score, the gap to its best score in the request, log(1 + rank) within the
  source (``top_n`` when it did not propose the item) and whether it proposed the item;
* per item: log popularity and log recent popularity (the last 10% of training events by
  time; by position in each sequence when there are no real timestamps), days since the item
  was last seen (log, relative to the request), its category's share of the history;
* per history: length, count of the candidate in it (and per event type: ``cart`` before a
  ``purchase``), positions since its last occurrence, transitions ``last -> candidate`` and
  ``second last -> candidate`` in the training sequences, itemknn similarity to the last item,
  text cosine to the last item and to the recent history (``textseq``'s text vectors);
* per item modality in ``TrainData.item_vectors`` (image, video, a platform's own vectors): the same
  two cosines (``<modality>_last``, ``<modality>_hist``; missing when an item has no vector).

Learning: one query per user, the context is the training sequence and the positive its
validation target (``TrainData.valid_targets``). Without validation targets, each user's last
training item is held out instead: the sources and item statistics are fitted without it for
learning and refitted on all of ``data`` for scoring (``refit_sources``). A target outside the
union is never injected: its query has no positive and is dropped. ``valid_share`` of the
queries (by seeded permutation) early-stop the booster (NDCG@``stop_ndcg_at`` over the candidates,
patience ``early_stopping_rounds``; ``None`` trains all ``n_estimators`` trees), never before
``min_trees`` trees once there are ``MIN_TREES_QUERIES`` (1000) training queries: with a few
hundred validation queries the NDCG of the first trees can win by chance (on Beauty it stopped at
7 trees: 0.0572 NDCG@10 vs 0.0609 with 300), while on a few dozen queries more trees overfit.
Only ``data`` is read: nothing of a split's test cases can reach the ranker.

Scoring: candidates get ``ranker score`` shifted above every other item; the rest keep the
popularity order below, so the full ranking stays meaningful. Artifacts: ``config.json`` +
``vocab.json`` + ``weights.safetensors`` (item statistics), ``ranker/`` (LightGBM text model),
``sources/<name>/`` (each source's own artifact), ``hybrid.json``. No pickle.

>>> model = HybridRanker(sources="pop,itemknn,sasrec", top_n=50).fit(train)   # doctest: +SKIP
>>> model.fit_info_["feature_importance"]                                   # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from liveshelf.errors import ConfigError, check_param
from liveshelf.models.base import BaseRecommender, Context, TrainData
from liveshelf.models.ranker.lgbm import LambdaRanker
from liveshelf.models.ranker.sources import (
    check_source_params,
    fit_sources,
    load_sources,
    parse_sources,
    save_sources,
)
from liveshelf.models.ranker.stats import (
    ItemStats,
    holdout_last,
    pair_lookup,
    ref_time,
    similarity_features,
    top_indices,
)

TEXT_HISTORY = 5  # items averaged for the history text vector
MIN_TREES_QUERIES = 1000  # ``min_trees`` holds from this many training queries; below, trees overfit fast


# ------------------------------------------------------------------------------------------
class HybridRanker(BaseRecommender):
    """Sources propose, LightGBM lambdarank orders the union (see the module docstring)."""

    name: ClassVar[str] = "ranker"

    def __init__(
        self,
        sources: str | list[str] = "pop,itemknn,sasrec,textseq",
        source_params: dict[str, dict[str, Any]] | None = None,
        top_n: int = 100,
        n_estimators: int = 300,
        learning_rate: float = 0.03,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        early_stopping_rounds: int | None = 100,
        stop_ndcg_at: int = 10,
        min_trees: int | None = 200,
        valid_share: float = 0.1,
        max_queries: int | None = None,
        refit_sources: bool = True,
        batch_size: int = 256,
        exclude_features: list[str] | None = None,
        seed: int = 0,
        n_threads: int = 1,
    ) -> None:
        self.sources = sources
        self.source_params = source_params
        self.top_n = top_n
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.early_stopping_rounds = early_stopping_rounds
        self.stop_ndcg_at = stop_ndcg_at
        self.min_trees = min_trees
        self.valid_share = valid_share
        self.max_queries = max_queries
        self.refit_sources = refit_sources
        self.batch_size = batch_size
        self.exclude_features = exclude_features
        self.seed = seed
        self.n_threads = n_threads

    # ------------------------------------------------------------------------------ checks
    def _validate(self) -> tuple[list[str], dict[str, dict[str, Any]]]:
        where = type(self).__name__
        names = parse_sources(self.sources, where)
        params = check_source_params(self.source_params, names, where)

        def is_int(v: Any) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        check_param("top_n", self.top_n, is_int(self.top_n) and self.top_n >= 1, "an int >= 1", where)
        check_param(
            "stop_ndcg_at",
            self.stop_ndcg_at,
            is_int(self.stop_ndcg_at) and self.stop_ndcg_at >= 1,
            "an int >= 1",
            where,
        )
        check_param(
            "min_trees",
            self.min_trees,
            self.min_trees is None or (is_int(self.min_trees) and self.min_trees >= 1),
            "None or an int >= 1",
            where,
        )
        check_param(
            "valid_share",
            self.valid_share,
            isinstance(self.valid_share, (int, float)) and 0 <= self.valid_share < 0.5,
            "a float in [0, 0.5)",
            where,
        )
        check_param(
            "max_queries",
            self.max_queries,
            self.max_queries is None or (is_int(self.max_queries) and self.max_queries >= 10),
            "None or an int >= 10",
            where,
        )
        check_param(
            "refit_sources", self.refit_sources, isinstance(self.refit_sources, bool), "a bool", where
        )
        check_param(
            "batch_size",
            self.batch_size,
            is_int(self.batch_size) and self.batch_size >= 1,
            "an int >= 1",
            where,
        )
        check_param("seed", self.seed, is_int(self.seed) and self.seed >= 0, "an int >= 0", where)
        check_param(
            "exclude_features",
            self.exclude_features,
            self.exclude_features is None
            or (
                isinstance(self.exclude_features, (list, tuple))
                and all(isinstance(f, str) for f in self.exclude_features)
            ),
            "None or a list of feature names (see fit_info_['features'])",
            where,
        )
        self._booster_template()._validate()  # LightGBM parameters, checked before any source is fitted
        return names, params

    def _booster_template(self) -> LambdaRanker:
        return LambdaRanker(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            seed=self.seed,
            n_threads=self.n_threads,
            early_stopping_rounds=self.early_stopping_rounds,
            eval_at=[int(self.stop_ndcg_at)],
            min_rounds=None if self.min_trees is None else min(int(self.min_trees), self.n_estimators),
        )

    # ------------------------------------------------------------------------------ fit
    def fit(self, data: TrainData, sources: dict[str, Any] | None = None) -> HybridRanker:
        """Fit the sources (or take ``sources``: fitted on ``data``, by name) and the ranker."""
        names, params = self._validate()
        t0 = time.perf_counter()
        self._set_vocab(data)
        valid = data.valid_targets
        holdout = valid is None or not (np.asarray(valid) >= 0).any()
        if holdout:  # no validation targets: hold out each user's last training item to learn from
            learn_data, targets = holdout_last(data)
        else:
            learn_data, targets = data, np.asarray(valid, dtype=np.int64)
        stats = ItemStats.from_data(learn_data)
        models, skipped, seconds = fit_sources(
            names, params, learn_data, self.seed, given=None if holdout else sources
        )
        self.source_names_ = list(models)
        self.skipped_sources_ = skipped
        self.stats_ = stats
        self.models_ = models

        users = np.flatnonzero(targets >= 0)
        rng = np.random.default_rng(self.seed)
        if self.max_queries is not None and len(users) > self.max_queries:
            users = np.sort(rng.choice(users, size=self.max_queries, replace=False))
        if len(users) < 2:
            raise ConfigError(
                f"HybridRanker.fit found {len(users)} users with a target to learn from; it needs at "
                "least 2. Pass data with validation targets or sequences of >= 2 items."
            )
        t_feat = time.perf_counter()
        X, y, group = self._training_rows(learn_data, users, targets, models)
        feat_s = time.perf_counter() - t_feat
        n_q = len(group)
        if n_q < 2:
            raise ConfigError(
                f"HybridRanker.fit: only {n_q} users have their target among the candidates; the "
                "ranker needs at least 2. Raise 'top_n' or add sources."
            )
        perm = rng.permutation(n_q)
        n_valid = int(round(self.valid_share * n_q)) if n_q >= 20 else 0
        is_valid = np.zeros(n_q, dtype=bool)
        is_valid[perm[:n_valid]] = True
        row_q = np.repeat(np.arange(n_q), group)
        tr, va = ~is_valid[row_q], is_valid[row_q]
        ranker = self._booster_template()
        if not n_valid:
            ranker.early_stopping_rounds = None
        if n_q - n_valid < MIN_TREES_QUERIES:  # toy data: plain early stopping
            ranker.min_rounds = None
        t_fit = time.perf_counter()
        ranker.fit(
            X[tr],
            y[tr],
            group[~is_valid],
            feature_names=self.feature_names_,
            eval_set=(X[va], y[va], group[is_valid]) if n_valid else None,
        )
        self.ranker_ = ranker

        if holdout:  # score with sources and statistics of all of ``data``
            self.stats_ = ItemStats.from_data(data, types=stats.types)
            if self.refit_sources:
                models, _, refit_s = fit_sources(self.source_names_, params, data, self.seed, given=sources)
                seconds.update({f"{k} (refit)": v for k, v in refit_s.items()})
        self.models_ = models
        importance = ranker.feature_importance()
        total = sum(importance.values()) or 1.0
        self.fit_info_ = {
            "sources": self.source_names_,
            "skipped_sources": skipped,
            "targets": "last training item (held out)" if holdout else "validation targets",
            "users_with_target": int((targets >= 0).sum()),
            "queries": int(n_q - n_valid),
            "valid_queries": int(n_valid),
            "candidate_recall": round(self.candidate_recall_, 4),
            "mean_candidates": round(float(len(y)) / max(self.n_learn_users_, 1), 1),
            "best_iteration": int(ranker.best_iteration_),
            "features": list(self.feature_names_),
            "feature_importance": {
                k: round(v / total, 4) for k, v in sorted(importance.items(), key=lambda kv: -kv[1])
            },
            "source_fit_seconds": seconds,
            "feature_seconds": round(feat_s, 1),
            "ranker_fit_seconds": round(time.perf_counter() - t_fit, 1),
            "fit_seconds": round(time.perf_counter() - t0, 1),
        }
        return self

    def _training_rows(
        self, data: TrainData, users: np.ndarray, targets: np.ndarray, models: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X, y, group) of the users' queries whose target is a candidate; sets candidate_recall_."""
        xs, ys, groups = [], [], []
        hit = 0
        for a in range(0, len(users), self.batch_size):
            batch = users[a : a + self.batch_size]
            ctxs = [data.context(int(u)) for u in batch]
            rows, items, X, _ = self._features(ctxs, models)
            tgt = targets[batch]
            y = (items == tgt[rows]).astype(np.int64)
            sizes = np.bincount(rows, minlength=len(batch))
            pos = np.bincount(rows, weights=y, minlength=len(batch)) > 0
            hit += int(pos.sum())
            keep = pos[rows]
            xs.append(X[keep])
            ys.append(y[keep])
            groups.append(sizes[pos])
        self.candidate_recall_ = hit / max(len(users), 1)
        self.n_learn_users_ = int(hit)
        return np.concatenate(xs), np.concatenate(ys), np.concatenate(groups)

    # ------------------------------------------------------------------------------ features
    def _feature_names(self, models: dict[str, Any]) -> list[str]:
        names: list[str] = []
        for s in models:
            names += [f"{s}_score", f"{s}_gap", f"{s}_logrank", f"{s}_proposed"]
        names += ["log_pop", "log_recent_pop", "log_item_age", "n_sources"]
        if self.stats_.category is not None:
            names += ["cat_share", "cat_last"]
        names += ["hist_len", "in_hist", "hist_count", "since_last"]
        names += [f"hist_{t}" for t in self.stats_.types]
        names += ["trans_last", "trans_prev"]
        if "itemknn" in models:
            names += ["knn_last"]
        if "textseq" in models:
            names += ["text_last", "text_hist"]
        for m in self.stats_.modal:  # one similarity pair per item modality (image, video, ...)
            names += [f"{m}_last", f"{m}_hist"]
        return names

    @property
    def all_feature_names_(self) -> list[str]:
        return self._feature_names(getattr(self, "models_", None) or dict.fromkeys(self.source_names_))

    @property
    def feature_names_(self) -> list[str]:
        """The features the booster reads: all of them but ``exclude_features``."""
        drop = set(self.exclude_features or ())
        return [f for f in self.all_feature_names_ if f not in drop]

    def _features(
        self, contexts: list[Context], models: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Candidates and features of a batch: ``rows`` (P,), ``items`` (P,), ``X`` (P, f), and the
        equal-weight blend of the sources' min-max normalised scores (P,) in [0, 1] (the tie-breaker).

        Pairs are grouped by context (``rows`` ascending), items ascending within a context.
        """
        stats, n, B = self.stats_, self.n_items_, len(contexts)
        N = min(int(self.top_n), n)
        full = {s: np.asarray(m.score_batch(contexts), dtype=np.float64) for s, m in models.items()}  # (B, I)
        member = np.zeros((B, n), dtype=bool)
        rank = {}
        br = np.arange(B)[:, None]
        for s, sc in full.items():
            top = top_indices(sc, N)  # (B, N)
            r = np.full((B, n), float(N), dtype=np.float32)
            r[br, top] = np.arange(N, dtype=np.float32)[None, :]
            rank[s] = r
            member[br, top] = True
        rows, items = np.nonzero(member)  # (P,), grouped by context
        cols: list[np.ndarray] = []
        n_src = np.zeros(len(rows))
        blend = np.zeros(len(rows))
        for s, sc in full.items():
            v = sc[rows, items]
            lo, hi = sc.min(axis=1)[rows], sc.max(axis=1)[rows]
            blend += (v - lo) / np.where(hi > lo, hi - lo, 1.0) / len(full)
            rk = rank[s][rows, items]
            cols += [v, v - sc.max(axis=1)[rows], np.log1p(rk), (rk < N).astype(np.float64)]
            n_src += rk < N
        cols += [np.log1p(stats.counts[items]), np.log1p(stats.recent[items])]

        # histories: clipped to known items, as (B, I) dense counts / distances
        hists = [np.asarray(c.items, dtype=np.int64) for c in contexts]
        hists = [h[(h >= 0) & (h < n)] for h in hists]
        lens = np.array([len(h) for h in hists], dtype=np.int64)
        hr = np.repeat(np.arange(B), lens)
        hi = np.concatenate(hists) if lens.sum() else np.zeros(0, np.int64)
        dist = (
            np.concatenate([np.arange(len(h) - 1, -1, -1) for h in hists])
            if lens.sum()
            else np.zeros(0, np.int64)
        )
        last = np.array([h[-1] if len(h) else -1 for h in hists], dtype=np.int64)
        prev = np.array([h[-2] if len(h) >= 2 else -1 for h in hists], dtype=np.int64)

        # item age: days since the item was last seen in training, relative to the request
        t_ref = np.array([ref_time(c) for c in contexts], dtype=np.float64)
        fallback = np.nanmax(stats.last_ts) if np.isfinite(stats.last_ts).any() else np.nan
        t_ref = np.where(np.isnan(t_ref), fallback, t_ref)
        age = (t_ref[rows] - stats.last_ts[items]) / 86400.0
        cols += [np.where(np.isnan(age), -1.0, np.sign(age) * np.log1p(np.abs(age))), n_src]

        if stats.category is not None:
            cat = stats.category
            n_cat = int(cat.max()) + 1
            hc = cat[hi]
            ok = hc >= 0
            cat_counts = np.zeros((B, n_cat))
            np.add.at(cat_counts, (hr[ok], hc[ok]), 1.0)
            ci = cat[items]
            share = np.where(ci >= 0, cat_counts[rows, np.maximum(ci, 0)] / np.maximum(lens[rows], 1), 0.0)
            lc = np.where(last >= 0, cat[np.maximum(last, 0)], -1)
            cols += [share, ((ci >= 0) & (ci == lc[rows])).astype(np.float64)]

        count = np.zeros((B, n), dtype=np.float32)
        np.add.at(count, (hr, hi), 1.0)
        since = np.full((B, n), np.inf, dtype=np.float64)
        np.minimum.at(since, (hr, hi), dist.astype(np.float64))
        c = count[rows, items].astype(np.float64)
        sl = since[rows, items]
        cols += [
            np.log1p(lens[rows].astype(np.float64)),
            (c > 0).astype(np.float64),
            c,
            np.where(np.isfinite(sl), np.log1p(sl), -1.0),
        ]
        if stats.types:
            tys = [
                np.asarray(ctx.types, dtype=object).astype(str)[-len(ctx.items) :]
                if ctx.types is not None and len(ctx.types) == len(ctx.items)
                else None
                for ctx in contexts
            ]
            valid_mask = [(np.asarray(ctx.items) >= 0) & (np.asarray(ctx.items) < n) for ctx in contexts]
            flat_ty = (
                np.concatenate(
                    [
                        t[m] if t is not None else np.full(int(m.sum()), "", dtype=object)
                        for t, m in zip(tys, valid_mask, strict=True)
                    ]
                )
                if lens.sum()
                else np.zeros(0, dtype=object)
            )
            for t in stats.types:
                m = flat_ty == t
                tc = np.zeros((B, n), dtype=np.float32)
                np.add.at(tc, (hr[m], hi[m]), 1.0)
                cols.append(tc[rows, items].astype(np.float64))

        cols += [
            pair_lookup(stats.trans, last, rows, items, log=True),
            pair_lookup(stats.trans, prev, rows, items, log=True),
        ]
        if "itemknn" in models:
            cols.append(pair_lookup(models["itemknn"].similarity_, last, rows, items, log=False))
        if "textseq" in models:
            emb = self._text_vectors(models["textseq"])  # (I, d), unit rows
            lv = emb[np.maximum(last, 0)] * (last >= 0)[:, None]  # (B, d)
            hv = np.zeros_like(lv)
            for b, h in enumerate(hists):
                if len(h):
                    v = emb[h[-TEXT_HISTORY:]].mean(axis=0)
                    hv[b] = v / max(float(np.linalg.norm(v)), 1e-9)
            ev = emb[items]
            cols += [np.einsum("pd,pd->p", ev, lv[rows]), np.einsum("pd,pd->p", ev, hv[rows])]
        for emb in stats.modal.values():
            cols += list(similarity_features(emb, hists, rows, items, TEXT_HISTORY))
        X = np.stack(cols, axis=1)
        if self.exclude_features:
            drop = set(self.exclude_features)
            X = X[:, [i for i, f in enumerate(self.all_feature_names_) if f not in drop]]
        return rows, items, X, blend

    def _text_vectors(self, textseq: Any) -> np.ndarray:
        cached = getattr(self, "_text_cache", None)
        if cached is not None and cached[0] is textseq:
            return cached[1]
        emb = textseq.net_.text_emb.detach().cpu().numpy().astype(np.float32)
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-9)
        self._text_cache = (textseq, emb)
        return emb

    # ------------------------------------------------------------------------------ score
    def _score_all(self, contexts: list[Context]) -> np.ndarray:
        n = self.n_items_
        out = np.zeros((len(contexts), n), dtype=np.float64)
        order = np.argsort(np.argsort(-self.stats_.counts, kind="stable"), kind="stable")  # pop rank per item
        fall = order / max(n, 1)  # in [0, 1): 0 = most popular
        for a in range(0, len(contexts), self.batch_size):
            batch = contexts[a : a + self.batch_size]
            rows, items, X, blend = self._features(batch, self.models_)
            s = self._tie_broken(self.ranker_.predict(X), rows, blend)
            B = len(batch)
            lo = np.full(B, np.inf)
            np.minimum.at(lo, rows, s)
            lo = np.where(np.isfinite(lo), lo, 0.0)
            block = (lo - 1.0)[:, None] - fall[
                None, :
            ]  # non-candidates: below every candidate, by popularity
            block[rows, items] = s
            out[a : a + B] = block
        return out.astype(np.float32)

    @staticmethod
    def _tie_broken(s: np.ndarray, rows: np.ndarray, blend: np.ndarray) -> np.ndarray:
        """Ranker scores with ties broken by the sources' blend, never reordering distinct scores.

        Trees give many candidates the same score (and ties count against a model); within a tie
        the item the sources' equal-weight blend ranks higher wins: ``s + 0.5 * gap * blend``, with
        ``gap`` the smallest difference between distinct scores of the request and blend in [0, 1).
        """
        if not len(s):
            return s
        tb = np.clip(blend, 0.0, 1.0) * 0.999
        order = np.lexsort((s, rows))  # by request, then score
        ss, rr = s[order], rows[order]
        d = np.diff(ss)
        same = rr[1:] == rr[:-1]
        pos = same & (d > 0)
        gap = np.full(int(rows.max()) + 1, np.inf)
        np.minimum.at(gap, rr[1:][pos], d[pos])
        gap = np.where(np.isfinite(gap), gap, 1.0)
        return s + 0.5 * gap[rows] * tb

    # ------------------------------------------------------------------------------ persistence
    def _arrays(self) -> dict[str, np.ndarray]:
        return self.stats_.arrays()

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._arrays_loaded = arrays

    def save(self, path: Path | str) -> None:
        self._check_fitted()
        path = Path(path)
        super().save(path)
        self.ranker_.save(path / "ranker")
        save_sources(self.models_, path)
        state = {
            "source_names": self.source_names_,
            "skipped_sources": self.skipped_sources_,
            "types": list(self.stats_.types),
            "fit_info": self.fit_info_,
        }
        (path / "hybrid.json").write_text(json.dumps(state, sort_keys=True, indent=2))

    @classmethod
    def load(cls, path: Path | str) -> HybridRanker:
        path = Path(path)
        model = super().load(path)
        assert isinstance(model, HybridRanker)
        state = json.loads((path / "hybrid.json").read_text())
        model.source_names_ = list(state["source_names"])
        model.skipped_sources_ = list(state["skipped_sources"])
        model.fit_info_ = dict(state["fit_info"])
        model.stats_ = ItemStats.from_arrays(model.__dict__.pop("_arrays_loaded"), tuple(state["types"]))
        model.ranker_ = LambdaRanker.load(path / "ranker")
        model.models_ = load_sources(model.source_names_, path)
        if model.ranker_.feature_names_ != model.feature_names_:
            raise ConfigError(
                f"{path}: the saved ranker's features {model.ranker_.feature_names_} differ from "
                f"the model's {model.feature_names_}. The artifact is from another version; refit."
            )
        return model


__all__ = ["HybridRanker", "ItemStats", "top_indices"]
