"""Batch encoding of an item catalogue on Ray Data, identical to the local ``TextEncoder``.

The driver does what only it can do once, then hands the model calls to a pool of Ray actors:

1. it builds the local :class:`~liveshelf.text.encoder.TextEncoder` (same ``model`` and
   settings), drops duplicate texts and looks the rest up in the on-disk cache
   (``cache_dir``; same :class:`~liveshelf.text.cache.EmbeddingCache` and namespace as the
   local path, so the two share entries);
2. it chooses the backend on the whole catalogue exactly as the local path does (the share of
   unknown tokens on the same seeded sample) and, for the Chinese fallback, fits it on all
   texts; the workers are pinned to that choice, so no batch can pick another vector space;
3. it sorts the texts still to encode by token length and cuts them into blocks of
   ``block_rows`` (similar lengths together: little padding, like the local path's sorting);
4. ``ray.data.from_pandas(blocks).map_batches(_EncodeBlock, compute=ActorPoolStrategy(size=N))``
   runs one ``TextEncoder`` per actor (``threads_per_worker`` torch threads each) over the blocks;
5. vectors come back with their row numbers, are put back in input order and written to the
   cache by the driver alone (one writer for the cache's SQLite index).

Vectors equal the local ones up to float rounding of different batch paddings (max abs
difference 0 to ~1e-7 on MiniLM; the test checks ``allclose(atol=1e-5)``), in the same order.

>>> from liveshelf.distributed.encode import RayTextEncoder              # doctest: +SKIP
>>> enc = RayTextEncoder(num_workers=2)                                  # doctest: +SKIP
>>> enc.encode(["lab glass beaker", "nitrile gloves"]).shape             # doctest: +SKIP
(2, 384)
>>> enc.stats_["encoded"], enc.stats_["blocks"]                           # doctest: +SKIP
(2, 1)
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from liveshelf.distributed.cluster import ensure_ray, import_ray
from liveshelf.errors import ConfigError, check_param
from liveshelf.text.cache import text_key
from liveshelf.text.chinese import HashedTfidfEncoder
from liveshelf.text.encoder import TextEncoder


class _EncodeBlock:
    """Ray Data actor: one ``TextEncoder`` per worker, pinned to the driver's backend."""

    def __init__(
        self,
        model: str,
        encoder_kwargs: dict[str, Any],
        backend: str,
        fallback: HashedTfidfEncoder | None,
        unk_share: float | None,
        threads: int,
    ) -> None:
        import torch

        torch.set_num_threads(threads)
        kwargs = dict(encoder_kwargs, cache_dir=None, fallback=fallback if fallback is not None else False)
        self.encoder = TextEncoder(model, **kwargs)
        # the backend was chosen by the driver on the whole catalogue (as the local path does);
        # a block of texts must not choose again
        self.encoder.backend_ = backend
        self.encoder.unk_share_ = unk_share

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        with warnings.catch_warnings():  # the "mixed" warning: the driver decided the backend
            warnings.simplefilter("ignore", UserWarning)
            vectors = self.encoder.encode(texts)
        return {"row": np.asarray(batch["row"], dtype=np.int64), "vector": vectors}


class RayTextEncoder:
    """``TextEncoder.encode`` on a pool of Ray actors, same vectors in the same order.

    Parameters: ``model`` (directory or None for all-MiniLM-L6-v2), ``num_workers`` (actors),
    ``threads_per_worker`` (torch threads per actor), ``block_rows`` (texts per Ray Data block
    and per actor call), ``cache_dir`` (the local path's embedding cache; None: no cache),
    ``address`` (a running Ray cluster; None: the current one, else a local one with
    ``num_cpus`` CPUs is started, only when some text is not cached), and every other ``TextEncoder`` setting (``pooling``, ``max_length``, ``batch_size``,
    ``quantize``, ``runtime``, ``fallback``, ``unk_threshold``, ...).

    Learned state after ``encode``: ``stats_`` (texts, unique, cached, encoded, blocks,
    seconds) and ``backend_`` ("model" or "fallback"), as on the local encoder.

    >>> RayTextEncoder(num_workers=2).encode(["red cotton shirt"]).shape   # doctest: +SKIP
    (1, 384)
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        num_workers: int = 2,
        threads_per_worker: int = 1,
        block_rows: int = 256,
        cache_dir: str | Path | None = None,
        address: str | None = None,
        num_cpus: int | None = None,
        **encoder_kwargs: Any,
    ) -> None:
        where = "RayTextEncoder"
        check_param(
            "num_workers",
            num_workers,
            isinstance(num_workers, int) and num_workers >= 1,
            "an int >= 1",
            where,
        )
        check_param(
            "threads_per_worker",
            threads_per_worker,
            isinstance(threads_per_worker, int) and threads_per_worker >= 1,
            "an int >= 1",
            where,
        )
        check_param(
            "block_rows", block_rows, isinstance(block_rows, int) and block_rows >= 1, "an int >= 1", where
        )
        if "device" in encoder_kwargs and encoder_kwargs["device"] != "cpu":
            raise ConfigError(
                f"The 'device' parameter of RayTextEncoder must be 'cpu' (the actors ask Ray for "
                f"CPUs only). Got {encoder_kwargs['device']!r} instead."
            )
        self.num_workers = num_workers
        self.threads_per_worker = threads_per_worker
        self.block_rows = block_rows
        self.address = address
        self.num_cpus = num_cpus
        self.encoder_kwargs = dict(encoder_kwargs)
        # the driver's encoder: cache namespace, tokenizer (lengths, unknown share), fallback choice
        self.encoder = TextEncoder(model, cache_dir=cache_dir, **encoder_kwargs)
        self.backend_: str | None = None
        self.stats_: dict[str, Any] = {}

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Embed ``texts``: float32 (N, dim), the same vectors as ``TextEncoder.encode`` in the same order."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ConfigError(
                "The 'texts' parameter of RayTextEncoder.encode must be a list of strings. "
                f"Got {type(texts).__name__} {str(texts)[:60]!r} instead."
            )
        t0 = time.perf_counter()
        texts = list(texts)
        enc = self.encoder
        out = np.zeros((len(texts), enc.dim), dtype=np.float32)
        self.stats_ = {
            "texts": len(texts),
            "unique": 0,
            "cached": 0,
            "encoded": 0,
            "blocks": 0,
            "workers": self.num_workers,
            "seconds": 0.0,
        }
        if not texts:
            return out
        enc._choose_backend(texts)  # same decision, same sample, same fallback fit as the local path
        self.backend_ = enc.backend_
        unique = list(dict.fromkeys(texts))
        vectors: dict[str, np.ndarray] = {}
        todo = unique
        cache = enc._cache
        if cache is not None:
            found, cached = cache.get(enc.cache_namespace, [text_key(t) for t in unique])
            if cached is not None:
                vectors.update({t: cached[i] for i, t in enumerate(unique) if found[i]})
            todo = [t for i, t in enumerate(unique) if not found[i]]
        if todo:
            fresh = self._encode_on_ray(todo, progress)
            vectors.update(zip(todo, fresh, strict=True))
            if cache is not None:
                cache.put(enc.cache_namespace, [text_key(t) for t in todo], fresh)
        for i, t in enumerate(texts):
            out[i] = vectors[t]
        self.stats_.update(
            unique=len(unique),
            cached=len(unique) - len(todo),
            encoded=len(todo),
            seconds=time.perf_counter() - t0,
        )
        return out

    # ---------------------------------------------------------------- internals
    def _blocks(self, texts: list[str]) -> list[Any]:
        """Frames of ``block_rows`` (row, text), texts sorted by token length (stable)."""
        import pandas as pd

        if self.backend_ == "model":
            ids = self.encoder.tokenizer(
                texts, add_special_tokens=True, truncation=True, max_length=self.encoder.max_length
            )["input_ids"]
            order = np.argsort([len(x) for x in ids], kind="stable")
        else:  # the fallback has no padding to save
            order = np.arange(len(texts))
        frame = pd.DataFrame({"row": order.astype(np.int64), "text": [texts[i] for i in order]})
        return [
            frame.iloc[s : s + self.block_rows].reset_index(drop=True)
            for s in range(0, len(frame), self.block_rows)
        ]

    def _encode_on_ray(self, texts: list[str], progress: bool) -> np.ndarray:
        import_ray()
        ensure_ray(num_cpus=self.num_cpus, address=self.address)  # only when there is work for Ray
        import ray.data

        blocks = self._blocks(texts)
        self.stats_["blocks"] = len(blocks)
        ctx = ray.data.DataContext.get_current()
        saved = ctx.enable_progress_bars, ctx.enable_operator_progress_bars
        ctx.enable_progress_bars = ctx.enable_operator_progress_bars = progress
        try:
            return self._run(ray.data, blocks, len(texts))
        finally:  # the context is process-wide: leave it as other Ray Data users set it
            ctx.enable_progress_bars, ctx.enable_operator_progress_bars = saved

    def _run(self, data: Any, blocks: list[Any], n: int) -> np.ndarray:
        enc = self.encoder
        fallback = enc._fallback if self.backend_ == "fallback" else None
        ds = data.from_pandas(blocks).map_batches(
            _EncodeBlock,
            batch_size=self.block_rows,
            batch_format="numpy",
            fn_constructor_kwargs={
                "model": str(enc.path),
                "encoder_kwargs": self.encoder_kwargs,
                "backend": self.backend_,
                "fallback": fallback,
                "unk_share": enc.unk_share_,
                "threads": self.threads_per_worker,
            },
            compute=data.ActorPoolStrategy(size=min(self.num_workers, len(blocks))),
            num_cpus=self.threads_per_worker,
        )
        out = np.zeros((n, enc.dim), dtype=np.float32)
        seen = np.zeros(n, dtype=bool)
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            rows = np.asarray(batch["row"], dtype=np.int64)
            out[rows] = np.asarray(batch["vector"], dtype=np.float32)
            seen[rows] = True
        if not seen.all():  # pragma: no cover - Ray Data lost rows: never silently return zeros
            raise RuntimeError(f"Ray Data returned vectors for {int(seen.sum())} of {n} texts.")
        return out


def encode_catalogue(
    texts: Sequence[str],
    model: str | Path | None = None,
    *,
    num_workers: int = 2,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    **kwargs: Any,
) -> np.ndarray:
    """One-call form: ``RayTextEncoder(model, num_workers=..., cache_dir=..., **kwargs).encode(texts)``.

    >>> encode_catalogue(["lab beaker", "gloves"], num_workers=2).shape   # doctest: +SKIP
    (2, 384)
    """
    return RayTextEncoder(model, num_workers=num_workers, cache_dir=cache_dir, **kwargs).encode(
        texts, progress
    )


__all__ = ["RayTextEncoder", "encode_catalogue"]
