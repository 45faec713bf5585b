"""On-disk embedding cache keyed by (namespace, sha1(text)).

Layout under ``root``::

    root/
      index.sqlite                      one table: (namespace, key) -> (shard, row)
      <namespace-digest>/shard-<uuid>.npy   one float32 (n, dim) array per ``put``

A *namespace* is whatever identifies the vector space: ``TextEncoder.cache_namespace``
(model id + pooling + normalisation + max length + runtime). Writing an encoder's vectors
under a namespace that already holds vectors of another width raises ``ConfigError``.

Shards are written to a temporary name and renamed before their rows enter the index,
so a crash never leaves index rows that point to a missing or half-written file. Reads
memory-map the shards, so a cache of a whole catalogue costs no RAM until it is used.
"""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from liveshelf.errors import ConfigError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    shard TEXT NOT NULL,
    row INTEGER NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE TABLE IF NOT EXISTS spaces (
    namespace TEXT PRIMARY KEY,
    dim INTEGER NOT NULL
);
"""


def text_key(text: str) -> str:
    """The cache key of one text: sha1 of its UTF-8 bytes, hex."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Vectors of texts already encoded, per namespace, on disk.

    >>> import tempfile
    >>> c = EmbeddingCache(tempfile.mkdtemp())
    >>> c.put("m", ["a"], np.ones((1, 3), np.float32))
    >>> found, vecs = c.get("m", ["a", "b"])
    >>> found.tolist(), vecs.shape
    ([True, False], (2, 3))
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.root / "index.sqlite", timeout=30.0)
        self._db.executescript(_SCHEMA)
        self._shards: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ reads
    def dim(self, namespace: str) -> int | None:
        row = self._db.execute("SELECT dim FROM spaces WHERE namespace = ?", (namespace,)).fetchone()
        return None if row is None else int(row[0])

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def count(self, namespace: str) -> int:
        q = "SELECT COUNT(*) FROM vectors WHERE namespace = ?"
        return int(self._db.execute(q, (namespace,)).fetchone()[0])

    def get(self, namespace: str, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """Look ``keys`` up. Returns (found mask (N,), vectors (N, D) or None if none found).

        Rows of keys not found are zero.
        """
        found = np.zeros(len(keys), dtype=bool)
        dim = self.dim(namespace)
        if dim is None or not keys:
            return found, None
        out = np.zeros((len(keys), dim), dtype=np.float32)
        where: dict[str, tuple[str, int]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):  # SQLite caps the number of bound parameters
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            q = f"SELECT key, shard, row FROM vectors WHERE namespace = ? AND key IN ({marks})"
            for key, shard, row in self._db.execute(q, (namespace, *chunk)):
                where[key] = (shard, int(row))
        for i, key in enumerate(keys):
            hit = where.get(key)
            if hit is not None:
                out[i] = self._shard(namespace, hit[0])[hit[1]]
                found[i] = True
        return found, (out if found.any() else None)

    # ----------------------------------------------------------------- writes
    def put(self, namespace: str, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store ``vectors[i]`` under ``keys[i]``; keys already present keep their old vector."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(keys):
            raise ConfigError(
                f"The 'vectors' parameter of EmbeddingCache.put must be a 2-d array with one row per key "
                f"({len(keys)} keys). Got shape {vectors.shape} instead."
            )
        if not keys:
            return
        dim = self.dim(namespace)
        if dim is not None and dim != vectors.shape[1]:
            raise ConfigError(
                f"The cache namespace {namespace!r} holds {dim}-d vectors; got {vectors.shape[1]}-d ones. "
                f"Use another cache_dir or clear {self.root}."
            )
        folder = self.root / _folder(namespace)
        folder.mkdir(parents=True, exist_ok=True)
        shard = f"shard-{uuid.uuid4().hex}.npy"
        tmp = folder / (shard + ".tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, vectors)
        tmp.replace(folder / shard)
        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO spaces(namespace, dim) VALUES (?, ?)",
                (namespace, int(vectors.shape[1])),
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO vectors(namespace, key, shard, row) VALUES (?, ?, ?, ?)",
                [(namespace, k, shard, i) for i, k in enumerate(keys)],
            )

    def close(self) -> None:
        self._shards.clear()
        self._db.close()

    def _shard(self, namespace: str, name: str) -> np.ndarray:
        arr = self._shards.get(name)
        if arr is None:
            arr = np.load(self.root / _folder(namespace) / name, mmap_mode="r")
            self._shards[name] = arr
        return arr


def _folder(namespace: str) -> str:
    return hashlib.sha1(namespace.encode("utf-8")).hexdigest()[:16]


def encode_through_cache(
    texts: list[str],
    dim: int,
    cache: EmbeddingCache | None,
    namespace: str,
    compute: Callable[[list[str]], np.ndarray],
) -> np.ndarray:
    """``(len(texts), dim)`` float32: each distinct text once, from ``cache`` (under ``namespace``)
    when it is there, else from ``compute(missing texts)``, whose rows are then stored."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    if not texts:
        return out
    unique = list(dict.fromkeys(texts))
    vectors: dict[str, np.ndarray] = {}
    todo = unique
    if cache is not None:
        found, cached = cache.get(namespace, [text_key(t) for t in unique])
        if cached is not None:
            vectors.update({t: cached[i] for i, t in enumerate(unique) if found[i]})
        todo = [t for i, t in enumerate(unique) if not found[i]]
    if todo:
        fresh = compute(todo)
        vectors.update(zip(todo, fresh, strict=True))
        if cache is not None:
            cache.put(namespace, [text_key(t) for t in todo], fresh)
    for i, t in enumerate(texts):
        out[i] = vectors[t]
    return out
