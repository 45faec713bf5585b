"""A small wrapper over LightGBM lambdarank, shared by the offline and the serving rankers.

``LambdaRanker`` learns a ranking function of named features from queries (groups of
contiguous rows) with graded integer labels. It is deterministic for a given ``seed`` and
``n_threads`` (``deterministic=True``, ``force_row_wise``), predicts with the same thread
count, explains predictions (``pred_contrib``) and saves as LightGBM's **text** model
format plus a JSON of its parameters and feature names: ``ranker.txt`` + ``ranker.json``,
no pickle.

>>> r = LambdaRanker(n_estimators=100).fit(X, y, group, feature_names=names)   # doctest: +SKIP
>>> r.save(folder); LambdaRanker.load(folder).predict(X)                      # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from liveshelf.errors import ConfigError, NotFittedError, check_param

MODEL_FILE = "ranker.txt"
CONFIG_FILE = "ranker.json"


class LambdaRanker:
    """LightGBM lambdarank over named features (see the module docstring).

    ``label_gain`` is the gain of each label value (default LightGBM's ``2**l - 1``);
    ``early_stopping_rounds`` stops on the NDCG of ``eval_set`` when given; ``extra`` are
    passed to LightGBM as they are (e.g. ``feature_fraction=0.8``). ``min_rounds`` (default None:
    plain early stopping) trains at least that many trees before early stopping may stop, and
    picks the best iteration among those >= ``min_rounds``: on a small, noisy validation set the
    NDCG of the first few trees can win by chance.
    """

    def __init__(
        self,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        seed: int = 0,
        n_threads: int = 1,
        label_gain: list[float] | None = None,
        early_stopping_rounds: int | None = None,
        min_rounds: int | None = None,
        **extra: Any,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.seed = seed
        self.n_threads = n_threads
        self.label_gain = label_gain
        self.early_stopping_rounds = early_stopping_rounds
        self.min_rounds = min_rounds
        self.extra = extra
        self.booster_: Any = None
        self.feature_names_: list[str] | None = None
        self.best_iteration_: int = 0

    # ------------------------------------------------------------------------------ checks
    def get_params(self) -> dict[str, Any]:
        return {
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "seed": self.seed,
            "n_threads": self.n_threads,
            "label_gain": self.label_gain,
            "early_stopping_rounds": self.early_stopping_rounds,
            **({"min_rounds": self.min_rounds} if self.min_rounds is not None else {}),
            **self.extra,
        }

    def _validate(self) -> None:
        where = "LambdaRanker"

        def is_int(v: Any) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        check_param(
            "n_estimators",
            self.n_estimators,
            is_int(self.n_estimators) and self.n_estimators >= 1,
            "an int >= 1",
            where,
        )
        check_param(
            "learning_rate",
            self.learning_rate,
            isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate <= 1,
            "a float in (0, 1]",
            where,
        )
        check_param(
            "num_leaves",
            self.num_leaves,
            is_int(self.num_leaves) and self.num_leaves >= 2,
            "an int >= 2",
            where,
        )
        check_param(
            "min_child_samples",
            self.min_child_samples,
            is_int(self.min_child_samples) and self.min_child_samples >= 1,
            "an int >= 1",
            where,
        )
        check_param("seed", self.seed, is_int(self.seed) and self.seed >= 0, "an int >= 0", where)
        check_param(
            "n_threads", self.n_threads, is_int(self.n_threads) and self.n_threads >= 1, "an int >= 1", where
        )
        check_param(
            "label_gain",
            self.label_gain,
            self.label_gain is None
            or (
                isinstance(self.label_gain, (list, tuple))
                and len(self.label_gain) >= 2
                and all(isinstance(g, (int, float)) and g >= 0 for g in self.label_gain)
            ),
            "None or a list of >= 2 gains >= 0",
            where,
        )
        check_param(
            "early_stopping_rounds",
            self.early_stopping_rounds,
            self.early_stopping_rounds is None
            or (is_int(self.early_stopping_rounds) and self.early_stopping_rounds >= 1),
            "None or an int >= 1",
            where,
        )
        check_param(
            "min_rounds",
            self.min_rounds,
            self.min_rounds is None or (is_int(self.min_rounds) and self.min_rounds >= 1),
            "None or an int >= 1",
            where,
        )

    def _lgb_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [10],
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "seed": self.seed,
            "num_threads": self.n_threads,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        if self.label_gain is not None:
            params["label_gain"] = [float(g) for g in self.label_gain]
        params.update(self.extra)
        return params

    def _check_rows(self, X: Any, y: Any, group: Any, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        group = np.asarray(group, dtype=np.int64)
        if X.ndim != 2:
            raise ConfigError(
                f"LambdaRanker.fit: {what} X must be 2-D (rows, features). Got shape {X.shape}."
            )
        if len(y) != len(X):
            raise ConfigError(
                f"LambdaRanker.fit: {what} y has {len(y)} labels for {len(X)} rows. Pass one label per row."
            )
        if len(group) == 0 or (group <= 0).any():
            raise ConfigError(
                f"LambdaRanker.fit: {what} group must hold query sizes >= 1 (no empty query). "
                f"Got {len(group)} queries, smallest {int(group.min()) if len(group) else None}."
            )
        if int(group.sum()) != len(X):
            raise ConfigError(
                f"LambdaRanker.fit: {what} group sizes sum to {int(group.sum())} but X has "
                f"{len(X)} rows. The rows of each query must be contiguous and all counted."
            )
        if not np.issubdtype(y.dtype, np.integer) and not np.all(np.mod(y, 1) == 0):
            raise ConfigError(
                f"LambdaRanker.fit: {what} y must hold integer relevance labels >= 0. "
                f"Got values such as {y[np.mod(y, 1) != 0][:3].tolist()}."
            )
        y = y.astype(np.int64)
        if len(y) and y.min() < 0:
            raise ConfigError(
                f"LambdaRanker.fit: {what} y must hold integer relevance labels >= 0. Got {int(y.min())}."
            )
        return X, y, group

    # ------------------------------------------------------------------------------ fit / predict
    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        group: np.ndarray,
        feature_names: list[str],
        eval_set: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        position: np.ndarray | None = None,
    ) -> LambdaRanker:
        """Learn from ``X`` (n, f), labels ``y`` (n,), query sizes ``group`` (q,); ``eval_set`` =
        ``(X, y, group)`` for early stopping; ``position`` (n,) for unbiased lambdarank."""
        import lightgbm as lgb

        self._validate()
        X, y, group = self._check_rows(X, y, group, "training")
        names = [str(n) for n in feature_names]
        if len(names) != X.shape[1] or len(set(names)) != len(names):
            raise ConfigError(
                f"LambdaRanker.fit: feature_names must name each of the {X.shape[1]} columns once. "
                f"Got {len(names)} names ({len(set(names))} distinct)."
            )
        gains = self.label_gain if self.label_gain is not None else None
        if gains is not None and len(y) and y.max() >= len(gains):
            raise ConfigError(
                f"LambdaRanker.fit: label {int(y.max())} has no gain in label_gain "
                f"({len(gains)} values). Give one gain per label value."
            )
        params = self._lgb_params()
        ds_kw: dict[str, Any] = (
            {"position": np.asarray(position, dtype=np.int64)} if position is not None else {}
        )
        train = lgb.Dataset(
            X, label=y, group=group, feature_name=names, free_raw_data=True, params={"verbosity": -1}, **ds_kw
        )
        valid_sets: list[Any] = []
        callbacks: list[Callable[..., Any]] = []  # lightgbm callbacks: called with the training env
        if eval_set is not None:
            vx, vy, vg = self._check_rows(*eval_set, what="eval_set")
            if vx.shape[1] != X.shape[1]:
                raise ConfigError(
                    f"LambdaRanker.fit: eval_set has {vx.shape[1]} features, training {X.shape[1]}. "
                    "Build both with the same feature function."
                )
            valid_sets = [lgb.Dataset(vx, label=vy, group=vg, feature_name=names, reference=train)]
            if self.early_stopping_rounds and self.min_rounds:
                callbacks.append(_MinRoundsStopping(int(self.early_stopping_rounds), int(self.min_rounds)))
            elif self.early_stopping_rounds:
                callbacks.append(
                    lgb.early_stopping(int(self.early_stopping_rounds), first_metric_only=True, verbose=False)
                )
        self.booster_ = lgb.train(
            params,
            train,
            num_boost_round=int(self.n_estimators),
            valid_sets=valid_sets,
            valid_names=["valid"] if valid_sets else None,
            callbacks=callbacks,
        )
        self.feature_names_ = names
        best = int(self.booster_.best_iteration or 0)
        picked = [c.best_iter for c in callbacks if isinstance(c, _MinRoundsStopping)]
        if picked and picked[0] > 0:
            best = picked[0]
        self.best_iteration_ = best if best > 0 else int(self.booster_.current_iteration())
        return self

    def _check_fitted(self) -> None:
        if self.booster_ is None:
            raise NotFittedError("This LambdaRanker instance is not fitted yet. Call 'fit' first.")

    def _check_X(self, X: Any) -> np.ndarray:
        self._check_fitted()
        X = np.asarray(X, dtype=np.float64)
        n = len(self.feature_names_ or ())
        if X.ndim != 2 or X.shape[1] != n:
            raise ConfigError(
                f"LambdaRanker: X must have shape (rows, {n}) for the features "
                f"{self.feature_names_}. Got shape {X.shape}."
            )
        return X

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Scores (n,) of the rows of ``X`` (n, f); higher = better."""
        X = self._check_X(X)
        if not len(X):
            return np.zeros(0, dtype=np.float64)
        return np.asarray(
            self.booster_.predict(X, num_iteration=self.best_iteration_, num_threads=self.n_threads),
            dtype=np.float64,
        )

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-row feature contributions (n, f + 1) (SHAP values), the bias last; rows sum to ``predict``."""
        X = self._check_X(X)
        if not len(X):
            return np.zeros((0, X.shape[1] + 1), dtype=np.float64)
        return np.asarray(
            self.booster_.predict(
                X, num_iteration=self.best_iteration_, pred_contrib=True, num_threads=self.n_threads
            ),
            dtype=np.float64,
        )

    def feature_importance(self) -> dict[str, float]:
        """Total gain of each feature's splits, by feature name."""
        self._check_fitted()
        gain = self.booster_.feature_importance(importance_type="gain", iteration=self.best_iteration_)
        return {n: float(g) for n, g in zip(self.feature_names_ or [], gain, strict=True)}

    # ------------------------------------------------------------------------------ persistence
    def save(self, path: Path | str) -> None:
        """Write ``ranker.txt`` (LightGBM text model) and ``ranker.json`` into the folder ``path``."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(str(path / MODEL_FILE), num_iteration=self.best_iteration_)
        config = {
            "params": self.get_params(),
            "feature_names": self.feature_names_,
            "best_iteration": self.best_iteration_,
        }
        (path / CONFIG_FILE).write_text(json.dumps(config, sort_keys=True, indent=2))

    @classmethod
    def load(cls, path: Path | str) -> LambdaRanker:
        import lightgbm as lgb

        path = Path(path)
        if not (path / MODEL_FILE).exists() or not (path / CONFIG_FILE).exists():
            raise ConfigError(
                f"{path} is not a LambdaRanker folder: it needs {MODEL_FILE} and {CONFIG_FILE}."
            )
        config = json.loads((path / CONFIG_FILE).read_text())
        ranker = cls(**config["params"])
        ranker.booster_ = lgb.Booster(model_file=str(path / MODEL_FILE))
        ranker.feature_names_ = list(config["feature_names"])
        # the saved model holds exactly the kept iterations
        ranker.best_iteration_ = int(ranker.booster_.current_iteration())
        return ranker

    def model_text(self) -> str:
        """The booster in LightGBM's text format (what :meth:`save` writes)."""
        self._check_fitted()
        return str(self.booster_.model_to_string(num_iteration=self.best_iteration_))


class _MinRoundsStopping:
    """Early stopping on the first validation metric that neither stops nor picks before ``min_rounds``."""

    order = 30

    def __init__(self, patience: int, min_rounds: int) -> None:
        self.patience = patience
        self.min_rounds = min_rounds
        self.best_iter = 0  # 1-based; 0 = none yet
        self.best_score = -np.inf

    def __call__(self, env: Any) -> None:
        import lightgbm as lgb

        it = env.iteration + 1  # trees so far
        if not env.evaluation_result_list or it < self.min_rounds:
            return
        score = float(env.evaluation_result_list[0][2])
        if score > self.best_score:
            self.best_score, self.best_iter = score, it
        elif it - self.best_iter >= self.patience:
            raise lgb.callback.EarlyStopException(self.best_iter - 1, env.evaluation_result_list)


__all__ = ["LambdaRanker"]
