"""``llmrank``: a pretrained cross-encoder, fine-tuned with LoRA, re-scoring a cheaper model's top-N.

A base recommender (``sasrec`` by default; any registered family) proposes the top ``top_n``
candidates. A cross-encoder reads ``(the user's recent item texts, the candidate's text)`` and
gives a relevance logit; within the top-N the final order blends that logit with the base
score (both z-scored per request), the blend weight chosen on held-out users at fit time.
Items outside the top-N keep the base order, below the re-ranked ones.

Training data come from the training sequences themselves: for a user, the context is their
training history and the positive is their held-out validation item (``TrainData.valid_targets``;
else the last training item, with the history before it); negatives are the base model's own top
candidates (hard negatives) plus one random item. The loss is BPR over (context, positive,
negative) triples; the encoder is adapted with LoRA (or any :mod:`liveshelf.text.finetune` method).

Text is what helps where IDs know little: ``max_history`` limits re-ranking to short histories
(``None``: every request). Serving uses the same ``score`` path.

>>> model = LLMRank(base="sasrec", base_params={"epochs": 50}, top_n=20).fit(train)   # doctest: +SKIP
>>> model.score(ctx, candidates)                                                     # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from liveshelf.errors import ConfigError, check_param
from liveshelf.models.base import BaseRecommender, Context, TrainData

if TYPE_CHECKING:  # the fine-tuning package is imported only when a fit needs it
    from liveshelf.text.finetune.config import Method

BLEND_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


def history_text(texts: list[str], items: np.ndarray, n: int, words: int) -> str:
    """The ``n`` most recent item texts of a sequence, newest first, each cut to ``words`` words."""
    recent = [int(i) for i in np.asarray(items, dtype=np.int64)[-n:][::-1] if 0 <= int(i) < len(texts)]
    if not recent:
        return "no history"
    return " | ".join(" ".join(texts[i].split()[:words]) for i in recent)


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=-1, keepdims=True)
    return (x - x.mean(axis=-1, keepdims=True)) / np.where(sd > 1e-9, sd, 1.0)


class LLMRank(BaseRecommender):
    """Cross-encoder re-ranker over a base recommender's top-N (see the module docstring)."""

    name: ClassVar[str] = "llmrank"

    def __init__(
        self,
        base: str = "sasrec",
        base_params: dict[str, Any] | None = None,
        top_n: int = 20,
        encoder: str | None = None,
        method: Method = "lora",
        epochs: int = 1,
        train_users: int = 3000,
        hard_negatives: int = 3,
        history_items: int = 5,
        item_words: int = 24,
        max_length: int = 192,
        batch_size: int = 16,
        lr: float | None = None,
        max_history: int | None = None,
        blend: float | None = None,
        valid_share: float = 0.15,
        seed: int = 0,
        n_threads: int | None = None,
    ) -> None:
        self.base = base
        self.base_params = base_params
        self.top_n = top_n
        self.encoder = encoder
        self.method = method
        self.epochs = epochs
        self.train_users = train_users
        self.hard_negatives = hard_negatives
        self.history_items = history_items
        self.item_words = item_words
        self.max_length = max_length
        self.batch_size = batch_size
        self.lr = lr
        self.max_history = max_history
        self.blend = blend
        self.valid_share = valid_share
        self.seed = seed
        self.n_threads = n_threads

    # ------------------------------------------------------------------------------ checks
    def _validate(self) -> None:
        where = "LLMRank"
        check_param(
            "top_n", self.top_n, isinstance(self.top_n, int) and self.top_n >= 2, "an int >= 2", where
        )
        check_param(
            "epochs", self.epochs, isinstance(self.epochs, int) and self.epochs >= 1, "an int >= 1", where
        )
        check_param(
            "train_users",
            self.train_users,
            isinstance(self.train_users, int) and self.train_users >= 10,
            "an int >= 10",
            where,
        )
        check_param(
            "hard_negatives",
            self.hard_negatives,
            isinstance(self.hard_negatives, int) and 0 <= self.hard_negatives < self.top_n,
            "an int in [0, top_n)",
            where,
        )
        check_param(
            "history_items",
            self.history_items,
            isinstance(self.history_items, int) and self.history_items >= 1,
            "an int >= 1",
            where,
        )
        check_param(
            "max_history",
            self.max_history,
            self.max_history is None or (isinstance(self.max_history, int) and self.max_history >= 0),
            "None or an int >= 0",
            where,
        )
        check_param(
            "blend",
            self.blend,
            self.blend is None or (isinstance(self.blend, (int, float)) and self.blend >= 0),
            "None or a number >= 0",
            where,
        )
        check_param(
            "valid_share",
            self.valid_share,
            isinstance(self.valid_share, (int, float)) and 0 <= self.valid_share < 0.9,
            "a float in [0, 0.9)",
            where,
        )

    # ------------------------------------------------------------------------------ fit
    def fit(self, data: TrainData, base_model: BaseRecommender | None = None) -> LLMRank:
        """Fit the base model (or take ``base_model``, already fitted on ``data``) and the cross-encoder."""
        from liveshelf.models.registry import create_model
        from liveshelf.text.finetune import FinetuneConfig, Finetuner

        self._validate()
        if data.item_text is None or len(data.item_text) != data.n_items:
            raise ConfigError(
                "LLMRank.fit needs one text per item in TrainData.item_text (got "
                f"{None if data.item_text is None else len(data.item_text)} for {data.n_items} items). "
                "Load a data set with item text (e.g. unisrec:...)."
            )
        t0 = time.perf_counter()
        self._set_vocab(data)
        self.texts_ = [str(t) for t in data.item_text]
        params = dict(self.base_params or {})
        if "seed" in _init_params(self.base):
            params.setdefault("seed", self.seed)
        if base_model is not None:
            if (
                base_model.name != self.base
                or len(getattr(base_model, "item_ids_", ())) != data.n_items  # unfitted: no vocabulary
            ):
                raise ConfigError(
                    f"LLMRank.fit got a base_model that is not a {self.base!r} model fitted on these "
                    f"{data.n_items} items. Pass one fitted on the same TrainData, or none."
                )
            self.base_model_ = base_model
        else:
            self.base_model_ = create_model(self.base, **params).fit(data)
        rng = np.random.default_rng(self.seed)

        contexts, positives = self._examples(data, rng)
        if len(contexts) < 10:
            raise ConfigError(
                f"LLMRank.fit found only {len(contexts)} users with a next item to learn from; it "
                "needs at least 10. Pass more users or longer sequences."
            )
        n_valid = int(round(self.valid_share * len(contexts))) if self.blend is None else 0
        order = rng.permutation(len(contexts))
        valid_idx, train_idx = order[:n_valid], order[n_valid:]
        train_ctx = [contexts[i] for i in train_idx]
        top = self._base_top(train_ctx)
        triples = []
        for ctx, pos, cand in zip(train_ctx, positives[train_idx], top, strict=True):
            hist = self._history(ctx)
            negs = [int(c) for c in cand if c != pos][: self.hard_negatives]
            rand = int(rng.integers(data.n_items))
            if rand != pos and rand not in negs:
                negs.append(rand)
            triples += [(hist, self.texts_[pos], self.texts_[n]) for n in negs]
        cfg = FinetuneConfig(
            task="ranking",
            method=self.method,
            model=self.encoder,
            epochs=self.epochs,
            batch_size=self.batch_size,
            max_length=self.max_length,
            ranking_loss="bpr",
            lr=self.lr,
            patience=None,
            seed=self.seed,
        )
        self.ranker_ = Finetuner(cfg, verbose=False).fit(triples)
        self.train_triples_ = len(triples)
        self.blend_ = (
            float(self.blend)
            if self.blend is not None
            else self._choose_blend([contexts[i] for i in valid_idx], positives[valid_idx])
        )
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _examples(self, data: TrainData, rng: np.random.Generator) -> tuple[list[Context], np.ndarray]:
        """(context, positive item) per sampled user: the validation target, else the last training item."""
        contexts, positives = [], []
        valid = data.valid_targets
        users = rng.permutation(data.n_users)
        for u in users:
            seq = np.asarray(data.sequences[u], dtype=np.int64)
            if valid is not None and valid[u] >= 0 and len(seq) >= 1:
                contexts.append(data.context(int(u)))
                positives.append(int(valid[u]))
            elif len(seq) >= 2:
                contexts.append(data.context(int(u), upto=len(seq) - 1))
                positives.append(int(seq[-1]))
            if len(contexts) >= self.train_users:
                break
        return contexts, np.asarray(positives, dtype=np.int64)

    def _history(self, ctx: Context) -> str:
        return history_text(self.texts_, ctx.items, self.history_items, self.item_words)

    def _base_top(self, contexts: list[Context], batch: int = 512) -> np.ndarray:
        """(B, top_n) base-model top candidates, best first."""
        out = []
        n = min(self.top_n, self.n_items_)
        for s in range(0, len(contexts), batch):
            scores = np.asarray(self.base_model_.score_batch(contexts[s : s + batch]), dtype=np.float64)
            part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
            rows = np.arange(len(part))[:, None]
            out.append(
                np.take_along_axis(part, np.argsort(-scores[rows, part], axis=1, kind="stable"), axis=1)
            )
        return np.concatenate(out) if out else np.zeros((0, n), dtype=np.int64)

    def _cross_scores(self, contexts: list[Context], cands: np.ndarray) -> np.ndarray:
        """(B, N) cross-encoder logits of each context with each of its candidates."""
        pairs = [
            (self._history(c), self.texts_[int(i)])
            for c, row in zip(contexts, cands, strict=True)
            for i in row
        ]
        if not pairs:
            return np.zeros(cands.shape, dtype=np.float64)
        return np.asarray(self.ranker_.score(pairs), dtype=np.float64).reshape(cands.shape)

    def _choose_blend(self, contexts: list[Context], positives: np.ndarray) -> float:
        """The base-score weight with the best NDCG of the held-out positive within the top-N."""
        self.blend_grid_ = {}
        if not contexts:
            return 1.0
        top = self._base_top(contexts)
        hit = top == positives[:, None]
        rows = hit.any(axis=1)
        if rows.sum() < 5:  # too few positives inside the top-N to choose: keep the base order mostly
            return 1.0
        top, hit = top[rows], hit[rows]
        ce = _zscore(self._cross_scores([c for c, r in zip(contexts, rows, strict=True) if r], top))
        base = _zscore(-np.log1p(np.arange(top.shape[1], dtype=np.float64)))[None, :].repeat(len(top), axis=0)
        best, best_w = -1.0, 1.0
        for w in BLEND_GRID:
            s = ce + w * base
            rank = (s > s[hit][:, None]).sum(axis=1)
            ndcg = float(np.mean(np.where(rank < 10, 1.0 / np.log2(rank + 2.0), 0.0)))
            self.blend_grid_[str(w)] = ndcg
            if ndcg > best + 1e-12:
                best, best_w = ndcg, w
        return float(best_w)

    # ------------------------------------------------------------------------------ score
    def _score_all(self, contexts: list[Context]) -> np.ndarray:
        import torch

        base = np.asarray(self.base_model_.score_batch(contexts), dtype=np.float64)
        use = np.array([self.max_history is None or len(c.items) <= self.max_history for c in contexts])
        if not use.any():
            return base.astype(np.float32)
        idx = np.flatnonzero(use)
        sub = [contexts[i] for i in idx]
        n = min(self.top_n, base.shape[1])
        part = np.argpartition(-base[idx], n - 1, axis=1)[:, :n]
        rows = np.arange(len(idx))[:, None]
        top = np.take_along_axis(part, np.argsort(-base[idx][rows, part], axis=1, kind="stable"), axis=1)
        threads = torch.get_num_threads()
        if self.n_threads:
            torch.set_num_threads(self.n_threads)
        try:
            ce = _zscore(self._cross_scores(sub, top))
        finally:
            torch.set_num_threads(threads)
        rank_prior = _zscore(-np.log1p(np.arange(n, dtype=np.float64)))[None, :]
        blended = ce + self.blend_ * rank_prior
        out = base.copy()
        floor = base[idx].max(axis=1, keepdims=True) + 1.0  # re-ranked items stay above the rest
        out[idx[:, None], top] = floor + (blended - blended.min(axis=1, keepdims=True))
        return out.astype(np.float32)

    # ------------------------------------------------------------------------------ persistence
    def save(self, path: Path | str) -> None:
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        super().save(path)
        self.base_model_.save(path / "base")
        self.ranker_.save(path / "ranker")
        state = {"blend": self.blend_, "texts": self.texts_, "train_triples": self.train_triples_}
        (path / "llmrank.json").write_text(json.dumps(state, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path | str) -> LLMRank:
        from liveshelf.models.registry import load_model
        from liveshelf.text.finetune import Finetuner

        path = Path(path)
        model = super().load(path)
        assert isinstance(model, LLMRank)
        state = json.loads((path / "llmrank.json").read_text())
        model.blend_ = float(state["blend"])
        model.texts_ = list(state["texts"])
        model.train_triples_ = int(state["train_triples"])
        model.base_model_ = load_model(path / "base")
        model.ranker_ = Finetuner.load(path / "ranker")
        return model


def _init_params(name: str) -> set[str]:
    import inspect

    from liveshelf.models.registry import get_model_class

    return set(inspect.signature(get_model_class(name).__init__).parameters)
