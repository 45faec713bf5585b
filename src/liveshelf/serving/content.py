"""Item content vectors for the ``similar`` source, diversity and the feed's room vectors.

:class:`ContentIndex` holds unit item vectors (the model's item embeddings, a text encoder's, or
hashed TF-IDF of the item text) and answers similarities and neighbour searches (faiss).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from liveshelf.core.files import atomic_open
from liveshelf.models.capabilities import EmbedsItems
from liveshelf.text.hashing import hashed_tfidf, text_tokens

#: Content rows at most this dense (share of non-zeros) are also kept sparse for neighbour search.
SPARSE_DENSITY = 0.1

#: Version of the saved neighbour table format (part of its fingerprint).
NEIGHBOUR_TABLE_VERSION = 1

#: Items whose neighbour search results one content index keeps (oldest dropped first).
NEIGHBOUR_CACHE = 100_000  # ~12 bytes x (k + 1) each: ~60 MB at k = 50, all of a 100k catalogue


class ContentIndex:
    """Unit item embeddings and a faiss inner-product index over them.

    faiss runs single-threaded here: a request searches a handful of vectors, and OpenMP
    threads cost far more than they save on a busy server (35 ms against 0.1 ms measured).
    """

    def __init__(self, ids: Sequence[str], vectors: np.ndarray, origin: str) -> None:
        self.ids = list(ids)
        self.row = {it: i for i, it in enumerate(self.ids)}
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        v = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
        self.dim = int(v.shape[1]) if v.ndim == 2 else 0
        self.origin = origin
        # item's neighbour search results, kept: a viewer's recent items change slowly between requests
        self._nn: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        self._nn_lock = threading.Lock()
        self._table: tuple[int, np.ndarray, np.ndarray] | None = None  # (k, sims, rows): see use_table
        # sparse rows (hashed TF-IDF): kept sparse only - a sparse product finds the same neighbours in a fraction
        # of the time, and neither a dense copy nor a faiss index is held (memory); dense rows: a faiss index
        self.sparse = self.sparse_t = self.index = None
        self.vectors: np.ndarray | None = None
        if v.size and int(np.count_nonzero(v)) <= SPARSE_DENSITY * v.size:
            from scipy.sparse import csr_matrix

            self.sparse = csr_matrix(v)
            self.sparse_t = self.sparse.T.tocsr()  # dims x items: a query touches only its dims' items
        else:
            import faiss

            faiss.omp_set_num_threads(1)
            self.vectors = v
            self.index = faiss.IndexFlatIP(self.dim)
            if len(self.ids):
                self.index.add(v)

    def rows(self, idx: Sequence[int] | np.ndarray) -> np.ndarray:
        """Dense unit vectors of the rows ``idx`` (float32)."""
        idx = np.asarray(idx, dtype=np.int64)
        if self.sparse is not None:
            return self.sparse[idx].toarray()
        assert self.vectors is not None
        return self.vectors[idx] if len(idx) else np.zeros((0, self.dim), dtype=np.float32)

    def _dense_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The faiss index's ``k`` best ``(sims, rows)`` for ``queries`` (dense rows only)."""
        assert self.index is not None  # dense rows always have an index (__init__)
        return self.index.search(queries, k)

    def vector(self, item: str) -> np.ndarray | None:
        i = self.row.get(item)
        return None if i is None else self.rows([i])[0]

    def matrix(self, items: Sequence[str]) -> np.ndarray:
        """Rows of the given items (zeros for unknown ones)."""
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        pos, idx = [], []
        for j, it in enumerate(items):
            i = self.row.get(it)
            if i is not None:
                pos.append(j)
                idx.append(i)
        if idx:
            out[pos] = self.rows(idx)
        return out

    # ---- a precomputed neighbour table ----------------------------------------------------------------
    def fingerprint(self) -> str:
        """A digest of the ids and vectors: a saved neighbour table is used only for the index it was built on."""
        import hashlib

        h = hashlib.blake2b(digest_size=12)
        h.update(f"v{NEIGHBOUR_TABLE_VERSION}|{self.origin}|{self.dim}|".encode())
        h.update("\x1f".join(self.ids).encode())
        if self.sparse is not None:
            for part in (self.sparse.indptr, self.sparse.indices, self.sparse.data):
                h.update(np.ascontiguousarray(part).tobytes())
        elif self.vectors is not None:
            h.update(self.vectors.tobytes())
        return h.hexdigest()

    def neighbour_table(self, k: int, progress: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Every item's ``k`` nearest items ``(sims, rows)``, exactly as :meth:`neighbours` finds them one by one
        (row by row the same products; dense rows in batches below faiss's BLAS threshold)."""
        n = len(self.ids)
        sims = np.zeros((n, k), dtype=np.float32)
        rows = np.full((n, k), -1, dtype=np.int64)
        step = 512 if self.sparse is not None else 16
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            batch = list(range(lo, hi))
            if self.sparse is not None:
                sims[lo:hi], rows[lo:hi] = _top_k_sparse(self.sparse[batch] @ self.sparse_t, k)
            else:
                sims[lo:hi], rows[lo:hi] = self._dense_search(self.rows(batch), k)
            if progress is not None:
                progress(hi - lo)
        return sims, rows

    def use_table(self, k: int, sims: np.ndarray, rows: np.ndarray) -> None:
        """Answer :meth:`neighbours` searches of ``k`` from a table of every item's neighbours."""
        if sims.shape != (len(self.ids), k) or rows.shape != sims.shape:
            raise ValueError(
                f"A neighbour table for this index must be {len(self.ids)} x {k}; got {sims.shape} "
                f"and {rows.shape}."
            )
        self._table = (k, sims, rows)

    def save_table(self, folder: Path | str, k: int, progress: Any = None) -> Path:
        """Build the table of ``k`` neighbours and write it under ``folder`` (two .npy files, atomically)."""
        sims, rows = self.neighbour_table(k, progress)
        base = Path(folder) / table_name(self.fingerprint(), k)
        base.parent.mkdir(parents=True, exist_ok=True)
        for suffix, arr in (("sims", sims), ("rows", rows.astype(np.int32))):
            with atomic_open(base.with_name(f"{base.name}-{suffix}.npy"), "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
        self.use_table(k, sims, rows)
        return base

    def load_table(self, folder: Path | str, k: int) -> bool:
        """Use the saved table of ``k`` neighbours built on this exact index, if ``folder`` holds one
        (memory-mapped: pages are read as they are needed)."""
        base = Path(folder) / table_name(self.fingerprint(), k)
        paths = [base.with_name(f"{base.name}-{suffix}.npy") for suffix in ("sims", "rows")]
        if not all(p.is_file() for p in paths):
            return False
        sims, rows = (np.load(p, mmap_mode="r", allow_pickle=False) for p in paths)
        self.use_table(k, sims, rows)
        return True

    def similarities(self, cands: Sequence[str], items: Sequence[str]) -> tuple[np.ndarray, list[str | None]]:
        """Per candidate: the best cosine to one of ``items`` (0 when none is > 0) and that item.

        A direct product over the candidates: for a small candidate set (a shelf) this costs
        a fraction of a search over the whole index. An item is never similar to itself.
        """
        known = [it for it in dict.fromkeys(items) if it in self.row]
        n = len(cands)
        if not known or not n:
            return np.zeros(n), [None] * n
        sims = self.matrix(cands) @ self.rows([self.row[it] for it in known]).T
        sims[np.asarray(cands, dtype=object)[:, None] == np.asarray(known, dtype=object)[None, :]] = -np.inf
        best = sims.argmax(axis=1)
        vals = sims[np.arange(n), best].astype(np.float64)
        ok = vals > 0
        return np.where(ok, vals, 0.0), [
            known[b] if o else None for b, o in zip(best.tolist(), ok.tolist(), strict=True)
        ]

    def neighbours(self, items: Sequence[str], k: int) -> dict[str, tuple[float, str]]:
        """For every item near one of ``items``: (best cosine, the history item it is near)."""
        known = [it for it in items if it in self.row]
        if not known or not self.ids:
            return {}
        kk = min(k + 1, len(self.ids))
        table = self._table if self._table is not None and self._table[0] == kk else None
        if table is not None:  # precomputed for every item (neighbour_table): the same rows a search returns
            found = {it: (table[1][self.row[it]], table[2][self.row[it]]) for it in known}
        else:
            found = {it: got for it in known if (got := self._nn.get((it, kk))) is not None}
        todo = [it for it in known if it not in found]
        if todo:
            rows = [self.row[it] for it in todo]
            if self.sparse is not None:
                sims, idx = _top_k_sparse(self.sparse[rows] @ self.sparse_t, kk)
            else:
                sims, idx = self._dense_search(self.rows(rows), kk)
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


def table_name(fingerprint: str, k: int) -> str:
    """The file stem of a saved neighbour table."""
    return f"content-neighbours-{fingerprint}-k{k}"


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


def model_item_embeddings(model: Any, n_items: int) -> np.ndarray | None:
    """The item embeddings (n_items, D) of a model that declares them (:class:`EmbedsItems`), in its
    vocabulary order; None for any other model, or when they do not cover its ``n_items`` items."""
    if not isinstance(model, EmbedsItems):
        return None
    emb = np.asarray(model.item_embeddings(), dtype=np.float32)
    if emb.ndim != 2 or len(emb) != n_items:
        return None
    return emb


__all__ = ["ContentIndex", "hashed_tfidf", "model_item_embeddings", "table_name", "text_tokens"]
