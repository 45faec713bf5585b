"""``liveranker``: the learned ranking stage of serving - one LightGBM lambdarank model per surface.

It learns a function of named features (``liveshelf.serving.features``: source scores and ranks,
repeat, trends, profile shares, item facts, room context) from graded outcomes: purchase (3) >
cart (2) > click (1) > exposure only (0). A query is one request: the candidates one viewer was
shown (or, trained from events, the shelf available when the viewer acted). Surfaces:

* ``item`` - items on a room's shelf (``/shelf``, ``/next-item``);
* ``room`` - live rooms (``/feed``).

Position bias: exposures record where each candidate was shown, and a viewer examines the top
of a list more often. ``position="unbiased"`` hands the positions to LightGBM's unbiased
lambdarank (it learns a per-position examination factor next to the ranker,
``lambdarank_position_bias_regularization``); ``"feature"`` adds the position as a feature that
serving fixes to the first slot; ``"none"`` ignores it. Positions play no part at serving in any
mode.

The model holds no ids: it ranks items and rooms it never saw, in worlds it never saw, as long as
the features can be computed. Saved as ``config.json`` plus one LightGBM text model per surface
(no pickle).

>>> model = LiveRanker().fit({"item": table})                        # doctest: +SKIP
>>> model.predict("item", X)                                         # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from liveshelf.errors import ConfigError, NotFittedError, check_param
from liveshelf.models.ranker.lgbm import LambdaRanker
from liveshelf.models.registry import register_model

SURFACES: tuple[str, ...] = ("item", "room")
POSITION_MODES: tuple[str, ...] = ("unbiased", "feature", "none")
#: Relevance grade of each outcome (the largest one a candidate earned counts).
GRADES: dict[str, int] = {"click": 1, "cart": 2, "purchase": 3}


@dataclass
class RankTable:
    """Training rows of one surface: ``X`` (n, f) over ``names``, graded labels ``y``, query sizes
    ``group`` (rows of a query are contiguous), shown ``position`` per row (0 = first; -1 = unknown)."""

    X: np.ndarray
    y: np.ndarray
    group: np.ndarray
    names: tuple[str, ...]
    position: np.ndarray | None = None
    ts: np.ndarray | None = None  # request time per query (for time-ordered validation)

    def __post_init__(self) -> None:
        self.X = np.asarray(self.X, dtype=np.float64)
        self.y = np.asarray(self.y, dtype=np.int64)
        self.group = np.asarray(self.group, dtype=np.int64)
        if self.X.ndim != 2 or self.X.shape[1] != len(self.names):
            raise ConfigError(
                f"RankTable.X must be (rows, {len(self.names)}) for its feature names; "
                f"got shape {self.X.shape}."
            )
        if len(self.y) != len(self.X) or int(self.group.sum()) != len(self.X):
            raise ConfigError(
                f"RankTable has {len(self.X)} rows, {len(self.y)} labels and query sizes summing "
                f"to {int(self.group.sum())}; they must be equal."
            )

    @property
    def queries(self) -> int:
        return int(len(self.group))

    def take_queries(self, mask: np.ndarray) -> RankTable:
        """The queries where ``mask`` (one bool per query) holds, rows kept together."""
        rows = np.repeat(np.asarray(mask, dtype=bool), self.group)
        return RankTable(
            self.X[rows],
            self.y[rows],
            self.group[mask],
            self.names,
            None if self.position is None else self.position[rows],
            None if self.ts is None else self.ts[mask],
        )


class LiveRanker:
    """One LightGBM lambdarank model per surface over the serving features (see the module docstring)."""

    name: ClassVar[str] = "liveranker"

    def __init__(
        self,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 7,
        min_child_samples: int = 50,
        position: str = "unbiased",
        valid_share: float = 0.15,
        early_stopping_rounds: int | None = None,
        seed: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.position = position
        self.valid_share = valid_share
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.rankers_: dict[str, LambdaRanker] | None = None
        self.names_: dict[str, tuple[str, ...]] = {}
        self.info_: dict[str, Any] = {}

    def get_params(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in (
                "n_estimators",
                "learning_rate",
                "num_leaves",
                "min_child_samples",
                "position",
                "valid_share",
                "early_stopping_rounds",
                "seed",
            )
        }

    def _validate(self) -> None:
        where = "LiveRanker"
        check_param(
            "position", self.position, self.position in POSITION_MODES, f"one of {POSITION_MODES}", where
        )
        check_param(
            "n_estimators",
            self.n_estimators,
            isinstance(self.n_estimators, int) and self.n_estimators >= 1,
            "an int >= 1",
            where,
        )
        check_param(
            "valid_share", self.valid_share, 0 <= self.valid_share < 0.9, "a float in [0, 0.9)", where
        )
        check_param(
            "early_stopping_rounds",
            self.early_stopping_rounds,
            self.early_stopping_rounds is None
            or (isinstance(self.early_stopping_rounds, int) and self.early_stopping_rounds >= 1),
            "None or an int >= 1",
            where,
        )

    # ---- fit ----------------------------------------------------------------------------------
    def fit(self, tables: dict[str, RankTable]) -> LiveRanker:
        """Learn one ranker per surface in ``tables``.

        Defaults are small, regularised trees (7 leaves, >= 50 rows a leaf) and a fixed 200 rounds: logged
        clicks are few and noisy, and early stopping on the NDCG of a held-out slice of them stopped after one
        or two trees in our measurements (``early_stopping_rounds=N`` turns it on, on the newest
        ``valid_share`` of queries).
        """
        self._validate()
        unknown = sorted(set(tables) - set(SURFACES))
        if unknown or not tables:
            raise ConfigError(
                f"LiveRanker.fit takes tables for the surfaces {SURFACES}; got {sorted(tables)}."
            )
        self.rankers_, self.names_, self.info_ = {}, {}, {}
        for surface, table in tables.items():
            useful = np.asarray(
                [table.y[a:b].max() > table.y[a:b].min() for a, b in query_bounds(table.group)]
            )
            if useful.sum() < 2:
                raise ConfigError(
                    f"The {surface!r} ranker needs at least 2 queries whose candidates earned "
                    f"different outcomes; got {int(useful.sum())} of {table.queries}. Log more "
                    "exposures (or train --from events) before training."
                )
            table = table.take_queries(useful)
            order = np.argsort(table.ts, kind="stable") if table.ts is not None else np.arange(table.queries)
            n_valid = (
                int(round(self.valid_share * table.queries))
                if table.queries >= 20 and self.early_stopping_rounds
                else 0
            )
            is_valid = np.zeros(table.queries, dtype=bool)
            is_valid[order[len(order) - n_valid :]] = n_valid > 0
            train, valid = table.take_queries(~is_valid), table.take_queries(is_valid)
            names = table.names + (("position",) if self.position == "feature" else ())
            ranker = LambdaRanker(
                n_estimators=self.n_estimators,
                learning_rate=self.learning_rate,
                num_leaves=self.num_leaves,
                min_child_samples=self.min_child_samples,
                seed=self.seed,
                n_threads=1,
                early_stopping_rounds=self.early_stopping_rounds if n_valid else None,
            )
            fit_kw: dict[str, Any] = {}
            if self.position == "unbiased" and train.position is not None:
                fit_kw["position"] = np.maximum(train.position, 0)
            ranker.fit(
                self._design(train),
                train.y,
                train.group,
                feature_names=list(names),
                eval_set=(self._design(valid), valid.y, valid.group) if n_valid else None,
                **fit_kw,
            )
            self.rankers_[surface] = ranker
            self.names_[surface] = table.names
            self.info_[surface] = {
                "queries": train.queries,
                "valid_queries": valid.queries,
                "rows": int(len(train.X)),
                "dropped_queries": int((~useful).sum()),
            }
        return self

    def _design(self, table: RankTable) -> np.ndarray:
        if self.position != "feature":
            return table.X
        pos = np.zeros(len(table.X)) if table.position is None else np.maximum(table.position, 0)
        return np.column_stack([table.X, pos])

    def drop(self, surface: str) -> None:
        """Forget the ranker of ``surface`` (e.g. one that failed its gate: that surface keeps the hand blend)."""
        if self.rankers_ is not None:
            self.rankers_.pop(surface, None)
            self.names_.pop(surface, None)
            self.info_.pop(surface, None)

    # ---- serve --------------------------------------------------------------------------------
    def ranks(self, surface: str) -> bool:
        return self.rankers_ is not None and surface in self.rankers_

    def _ranker(self, surface: str, X: np.ndarray) -> tuple[LambdaRanker, np.ndarray]:
        if self.rankers_ is None:
            raise NotFittedError("This LiveRanker instance is not fitted yet. Call 'fit' first.")
        if surface not in self.rankers_:
            raise ConfigError(f"This ranker has no {surface!r} model; it ranks {sorted(self.rankers_)}.")
        X = np.asarray(X, dtype=np.float64)
        names = self.names_[surface]
        if X.ndim != 2 or X.shape[1] != len(names):
            raise ConfigError(
                f"The {surface!r} ranker takes {len(names)} features ({', '.join(names[:4])}, ...); "
                f"got rows of shape {X.shape}. Build them with liveshelf.serving.features."
            )
        if self.position == "feature":  # serving fixes the position to the first slot
            X = np.column_stack([X, np.zeros(len(X))])
        return self.rankers_[surface], X

    def predict(self, surface: str, X: np.ndarray) -> np.ndarray:
        """One score per row (higher = better), one LightGBM call for all rows."""
        ranker, X = self._ranker(surface, X)
        return ranker.predict(X) if len(X) else np.zeros(0)

    def contributions(self, surface: str, X: np.ndarray) -> np.ndarray:
        """Per-row, per-feature contributions (SHAP values, ``pred_contrib``) over the features, bias last."""
        ranker, Xd = self._ranker(surface, X)
        if not len(Xd):
            return np.zeros((0, len(self.names_[surface]) + 1))
        c = ranker.contributions(Xd)
        if self.position == "feature":  # the fixed position's part joins the bias
            c = np.column_stack([c[:, :-2], c[:, -2] + c[:, -1]])
        return c

    def feature_importance(self, surface: str) -> dict[str, float]:
        ranker, _ = self._ranker(surface, np.zeros((0, len(self.names_[surface]))))
        return ranker.feature_importance()

    # ---- save / load --------------------------------------------------------------------------
    def save(self, path: Path | str) -> None:
        if self.rankers_ is None:
            raise NotFittedError("This LiveRanker instance is not fitted yet. Call 'fit' first.")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for surface, ranker in self.rankers_.items():
            ranker.save(path / surface)
        config = {
            "model_type": self.name,
            "params": self.get_params(),
            "surfaces": {s: list(n) for s, n in self.names_.items()},
            "info": self.info_,
        }
        (path / "config.json").write_text(json.dumps(config, sort_keys=True, indent=2))

    @classmethod
    def load(cls, path: Path | str) -> LiveRanker:
        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        model = cls(**config["params"])
        model.rankers_ = {s: LambdaRanker.load(path / s) for s in config["surfaces"]}
        model.names_ = {s: tuple(n) for s, n in config["surfaces"].items()}
        model.info_ = dict(config.get("info", {}))
        return model


def query_bounds(group: np.ndarray) -> list[tuple[int, int]]:
    """``(start, end)`` row bounds of each query from its size."""
    ends = np.cumsum(group)
    return list(zip((ends - group).tolist(), ends.tolist(), strict=True))


register_model(LiveRanker.name, LiveRanker, kind="ranker")

__all__ = ["GRADES", "POSITION_MODES", "SURFACES", "LiveRanker", "RankTable", "query_bounds"]
