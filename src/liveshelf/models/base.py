"""The one contract every recommender implements, and the shared middle layer.

A model works in an *item index space*: items are ``0 .. n_items-1`` in the order of
``TrainData.item_ids``. Candidates are int arrays in that space. ``score`` returns one
float per candidate, higher = better; evaluation and serving call exactly the same
``score`` / ``score_batch``. Candidate generation, live filtering and reranking are the
pipeline's job, not the model's.

Artifacts: ``save(path)`` writes ``config.json`` (``"model_type"``, the constructor
parameters, sorted keys), ``vocab.json`` (item and user ids) and ``weights.safetensors``
(numpy arrays). No pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
from safetensors.numpy import load_file, save_file

from liveshelf.core.jsonsafe import jsonable
from liveshelf.core.traindata import Context, TrainData
from liveshelf.errors import NotFittedError


@runtime_checkable
class Recommender(Protocol):
    @property
    def name(self) -> str: ...

    def fit(self, data: TrainData) -> Recommender: ...

    def score(self, ctx: Context, candidates: np.ndarray) -> np.ndarray: ...

    def score_batch(self, contexts: list[Context], candidates: np.ndarray | None = None) -> np.ndarray: ...

    def save(self, path: Path) -> None: ...

    @classmethod
    def load(cls, path: Path) -> Recommender: ...


class BaseRecommender:
    """Shared middle layer: ``score``, ``score_batch``, ``recommend``, save/load plumbing.

    Subclasses set ``name``, store constructor parameters unchanged in ``__init__``,
    learn in ``fit`` (state ending in ``_``) and implement :meth:`_score_all`, which
    returns full-catalogue scores ``(B, n_items)`` for a batch of contexts. They
    implement :meth:`_arrays` / :meth:`_restore` to persist learned state.

    Declared learned attributes every model has (``None`` until a fit says otherwise):
    ``fit_info_`` (what the fit decided, e.g. skipped sources) and ``privacy_`` (the differential
    privacy guarantee of a DP-trained model). Optional abilities are the ABCs of
    :mod:`liveshelf.models.capabilities` (``Incremental``, ``EmbedsItems``, ``WarmStartable``).
    """

    name: ClassVar[str] = "base"
    fit_info_: dict[str, Any] | None = None
    privacy_: dict[str, Any] | None = None

    # ---- to implement -------------------------------------------------------------
    def fit(self, data: TrainData) -> BaseRecommender:  # pragma: no cover - abstract
        raise NotImplementedError

    def _score_all(self, contexts: list[Context]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        pass

    # ---- shared -------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        import inspect

        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self" and hasattr(self, p)}

    def _check_fitted(self) -> None:
        if getattr(self, "item_ids_", None) is None:
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' first.")

    def _set_vocab(self, data: TrainData) -> None:
        self.item_ids_ = np.asarray(data.item_ids, dtype=object)
        self.user_ids_ = np.asarray(data.user_ids, dtype=object)

    @property
    def n_items_(self) -> int:
        self._check_fitted()
        return int(len(self.item_ids_))

    def score_batch(self, contexts: list[Context], candidates: np.ndarray | None = None) -> np.ndarray:
        """Scores ``(B, n_items)``, or ``(B, len(candidates))`` for shared candidates."""
        self._check_fitted()
        full = np.asarray(self._score_all(contexts), dtype=np.float32)
        return full if candidates is None else full[:, np.asarray(candidates, dtype=np.int64)]

    def score(self, ctx: Context, candidates: np.ndarray) -> np.ndarray:
        return self.score_batch([ctx])[0][np.asarray(candidates, dtype=np.int64)]

    def recommend(
        self,
        ctx: Context,
        k: int = 10,
        candidates: np.ndarray | None = None,
        exclude: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (item indices, scores) among ``candidates`` (default: all items)."""
        scores = self.score_batch([ctx])[0]
        cand = np.arange(len(scores)) if candidates is None else np.asarray(candidates, dtype=np.int64)
        s = scores[cand].astype(np.float64)
        if exclude is not None and len(exclude):
            s[np.isin(cand, exclude)] = -np.inf
        k = min(k, len(cand))
        top = np.argpartition(-s, k - 1)[:k] if k < len(cand) else np.arange(len(cand))
        top = top[np.argsort(-s[top], kind="stable")]
        return cand[top], s[top]

    def save(self, path: Path | str) -> None:
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = {"model_type": self.name, "params": jsonable(self.get_params())}
        (path / "config.json").write_text(json.dumps(config, sort_keys=True, indent=2))
        vocab = {"item_ids": [str(x) for x in self.item_ids_], "user_ids": [str(x) for x in self.user_ids_]}
        (path / "vocab.json").write_text(json.dumps(vocab))
        arrays = {k: np.ascontiguousarray(v) for k, v in self._arrays().items()}
        save_file(arrays, str(path / "weights.safetensors"))

    @classmethod
    def load(cls, path: Path | str) -> Self:
        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        model = cls(**config["params"])
        vocab = json.loads((path / "vocab.json").read_text())
        model.item_ids_ = np.asarray(vocab["item_ids"], dtype=object)
        model.user_ids_ = np.asarray(vocab["user_ids"], dtype=object)
        wfile = path / "weights.safetensors"
        model._restore(load_file(str(wfile)) if wfile.exists() else {})
        return model


__all__ = ["BaseRecommender", "Context", "Recommender", "TrainData"]
