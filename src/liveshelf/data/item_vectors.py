"""Per-item vectors of any modality: cover images, video frames, audio, a platform's own text vectors.

Platforms embed their items with their own encoders; liveshelf stores those vectors with the item and
hands them to training. A *modality* is a named set of vectors of one dimension (``image``, ``video``,
``title_pca128``); an item has at most one vector per modality.

* :func:`check_modality` and :func:`check_vectors` are the rules every entry point applies (the store,
  ``liveshelf ingest embeddings``, ``PUT /v1/items``): a plain lower-case name; a 2-D array of finite
  numbers, each of magnitude at most :data:`MAX_ABS` (so dot products stay finite in float32); one row per
  item id, no id twice. They raise :class:`~liveshelf.errors.ValidationError` naming the field, the item
  and the value.
* :func:`write` and :func:`read` are the store's half (tables ``item_vectors`` and ``vector_modalities``
  of the event store, called inside its transaction): a modality keeps the dimension of its first
  vectors, and vectors are only stored for items already in the catalogue.
* :func:`read_vector_file` reads ``.npy`` + an id list, or Parquet with ``item_id, vector``.
* :func:`align` and :func:`mean_by_group` turn stored vectors into the ``(n_items, d)`` float32 matrices
  of :attr:`liveshelf.core.traindata.TrainData.item_vectors` (all-NaN rows where an item has none).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from liveshelf.errors import DataFormatError, ValidationError
from liveshelf.names import is_printable_id

#: A modality name: a lower-case letter, then lower-case letters, digits or underscores (at most 64 in all).
MODALITY_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: The largest dimension a modality may have.
MAX_DIM = 8192
#: The largest magnitude of one vector entry (larger ones overflow float32 dot products).
MAX_ABS = 1e6

#: The store's tables (created with the others when a store is opened for writing).
DDL: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS item_vectors (modality VARCHAR NOT NULL, item VARCHAR NOT NULL, "
    "vector FLOAT[] NOT NULL)",
    "CREATE TABLE IF NOT EXISTS vector_modalities (name VARCHAR NOT NULL, dim INTEGER NOT NULL, "
    "updated_at TIMESTAMP)",
)

_CATALOGUE_HINT = "add it with `liveshelf ingest items` or PUT /v1/items first"


class ItemVectors(NamedTuple):
    """One modality's vectors: ``ids`` (object array of str, unique) and ``vectors`` float32 ``(n, d)``."""

    ids: np.ndarray
    vectors: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


# ------------------------------------------------------------------------------------ rules
def check_modality(name: object, field: str = "modality") -> str:
    """``name`` when it is a valid modality name; else ValidationError naming ``field``."""
    if not isinstance(name, str) or MODALITY_RE.fullmatch(name) is None:
        shown = name[:80] if isinstance(name, str) else name
        raise ValidationError(
            f"A modality name ('{field}') must be a lower-case letter, then lower-case letters, digits or "
            f"'_' (at most 64 characters), e.g. 'image', 'video' or 'title_pca128'. Got {shown!r} instead.",
            field=field,
            value=name,
        )
    return name


def check_vectors(
    modality: str,
    item_ids: Sequence[Any] | np.ndarray,
    vectors: Any,
    *,
    field: str = "vectors",
    kind: str = "item",
) -> ItemVectors:
    """The checked vectors of ``modality`` as :class:`ItemVectors` (float32); ValidationError naming
    ``field``, the item and the value at the first problem. Store-dependent rules (the modality's stored
    dimension, items in the catalogue) are :func:`write`'s."""
    check_modality(modality)
    ids = _ids(item_ids, modality, kind)
    try:
        arr = np.asarray(vectors)
    except ValueError as exc:  # ragged rows
        raise ValidationError(
            f"The {field} of modality {modality!r} must be a matrix with rows of one length: {exc}",
            field=field,
        ) from exc
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise ValidationError(
            f"The {field} of modality {modality!r} must be numbers (a float matrix); got dtype {arr.dtype}.",
            field=field,
            value=str(arr.dtype),
        )
    if np.iscomplexobj(arr):
        raise ValidationError(
            f"The {field} of modality {modality!r} must be real numbers; got complex values.", field=field
        )
    if arr.ndim != 2:
        raise ValidationError(
            f"The {field} of modality {modality!r} must be a 2-D matrix (one row per item); "
            f"got shape {arr.shape}.",
            field=field,
            value=arr.shape,
        )
    if arr.shape[0] != len(ids):
        raise ValidationError(
            f"Modality {modality!r}: {len(ids)} item id(s) but {arr.shape[0]} vector row(s); "
            "give one id per row, in the same order.",
            field=field,
            value=arr.shape[0],
        )
    if not 1 <= arr.shape[1] <= MAX_DIM:
        raise ValidationError(
            f"The vectors of modality {modality!r} must have a dimension in [1, {MAX_DIM}]; got {arr.shape[1]}.",
            field=field,
            value=arr.shape[1],
        )
    row = _first_row(arr, lambda block: ~np.isfinite(block))
    if row is not None:
        col = int(np.argmax(~np.isfinite(arr[row])))
        raise ValidationError(
            f"The vector of {kind} {ids[row]!r} (modality {modality!r}) holds {float(arr[row, col])!r} at "
            f"position {col}: vectors must be finite numbers (no NaN or infinity). Nothing was stored.",
            field=field,
            value=ids[row],
        )
    row = _first_row(arr, lambda block: np.abs(block) > MAX_ABS)
    if row is not None:
        col = int(np.argmax(np.abs(arr[row]) > MAX_ABS))
        raise ValidationError(
            f"The vector of {kind} {ids[row]!r} (modality {modality!r}) holds {float(arr[row, col])!r} at "
            f"position {col}: entries must lie in [-{MAX_ABS:g}, {MAX_ABS:g}] (normalise the vectors). "
            "Nothing was stored.",
            field=field,
            value=ids[row],
        )
    return ItemVectors(ids, np.ascontiguousarray(arr, dtype=np.float32))


def _first_row(arr: np.ndarray, bad: Any, block: int = 65_536) -> int | None:
    """The first row where ``bad(rows)`` holds anywhere (checked a block of rows at a time: no full-size
    temporary for millions of vectors), or None."""
    for start in range(0, len(arr), block):
        hit = bad(arr[start : start + block]).any(axis=1)
        if hit.any():
            return start + int(np.argmax(hit))
    return None


def _ids(item_ids: Sequence[Any] | np.ndarray, modality: str, kind: str = "item") -> np.ndarray:
    raw = np.asarray(item_ids, dtype=object)
    if raw.ndim != 1:
        raise ValidationError(
            f"The {kind} ids of modality {modality!r} must be a flat list; got shape {raw.shape}.",
            field="item_ids",
            value=raw.shape,
        )
    for i, v in enumerate(raw):
        if not isinstance(v, str) or not v or len(v) > 256 or not is_printable_id(v):
            raise ValidationError(
                f"{kind.capitalize()} id {i} of modality {modality!r} must be a non-empty printable string of "
                f"at most 256 characters; got {v!r}.",
                field="item_ids",
                value=v,
            )
    dup = pd.Index(raw).duplicated()
    if dup.any():
        first = raw[int(np.argmax(dup))]
        raise ValidationError(
            f"{kind.capitalize()} {first!r} appears more than once in the vectors of modality {modality!r} "
            f"({int(dup.sum())} repeated id(s)); give each {kind} one vector per call.",
            field="item_ids",
            value=first,
        )
    return raw


def check_dim(
    modality: str, got: int, stored: int | None, field: str = "vectors", item: str | None = None
) -> None:
    """ValidationError unless ``got`` equals the modality's ``stored`` dimension (None: a new modality)."""
    if stored is not None and got != stored:
        of = f" (item {item!r})" if item is not None else ""
        raise ValidationError(
            f"The vectors of modality {modality!r} must have dimension {stored}, the dimension already "
            f"stored for it; got dimension {got}{of}. Use another modality name for vectors of another "
            "encoder. Nothing was stored.",
            field=field,
            value=got,
        )


# ------------------------------------------------------------------------------------ the store's half
def has_tables(con: Any) -> bool:
    """Whether the store holds the vector tables (a store written by an older version may not)."""
    rows = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name IN ('item_vectors', 'vector_modalities')"
    ).fetchall()
    return int(rows[0][0]) == 2


def stored_dims(con: Any) -> dict[str, int]:
    """Modality name -> dimension, by name."""
    if not has_tables(con):
        return {}
    return {
        str(n): int(d)
        for n, d in con.execute("SELECT name, dim FROM vector_modalities ORDER BY name").fetchall()
    }


def write(con: Any, modality: str, vecs: ItemVectors) -> tuple[int, int]:
    """Store checked vectors inside the caller's transaction; returns ``(inserted, replaced)``.

    Raises ValidationError (the caller rolls back) when the dimension differs from the modality's stored
    one or an item is not in the catalogue."""
    check_dim(
        modality, vecs.dim, stored_dims(con).get(modality), item=str(vecs.ids[0]) if len(vecs.ids) else None
    )
    batch = pa.table(
        {
            "item": pa.array(vecs.ids.tolist(), pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(vecs.vectors.reshape(-1), pa.float32()), vecs.dim
            ).cast(pa.list_(pa.float32())),
        }
    )
    con.register("_vectors", batch)
    try:
        unknown = [
            r[0]
            for r in con.execute(
                "SELECT b.item FROM _vectors b ANTI JOIN items i ON b.item = i.id ORDER BY b.item"
            ).fetchall()
        ]
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise ValidationError(
                f"Item {unknown[0]!r} is not in the catalogue, so its {modality!r} vector cannot be stored; "
                f"{_CATALOGUE_HINT}. {len(unknown)} unknown item(s): {shown}. Nothing was stored.",
                field="item_ids",
                value=unknown[0],
            )
        replaced = con.execute(
            "DELETE FROM item_vectors v USING _vectors b WHERE v.modality = ? AND v.item = b.item", [modality]
        ).fetchall()[0][0]
        con.execute("INSERT INTO item_vectors SELECT ?, item, vector FROM _vectors", [modality]).fetchall()
    finally:
        con.unregister("_vectors")
    con.execute("DELETE FROM vector_modalities WHERE name = ?", [modality]).fetchall()
    con.execute(
        "INSERT INTO vector_modalities VALUES (?, ?, now()::TIMESTAMP)", [modality, vecs.dim]
    ).fetchall()
    return len(vecs.ids) - int(replaced), int(replaced)


def read(con: Any, modality: str) -> ItemVectors:
    """One modality's vectors, by item id (empty ``(0, 0)`` when the store has none)."""
    dim = stored_dims(con).get(modality)
    if dim is None:
        return ItemVectors(np.zeros(0, dtype=object), np.zeros((0, 0), dtype=np.float32))
    table = con.sql(
        "SELECT item, vector FROM item_vectors WHERE modality = ? ORDER BY item", params=[modality]
    ).to_arrow_table()
    flat = pc.list_flatten(table.column("vector")).to_numpy(zero_copy_only=False)
    ids = np.asarray(table.column("item").to_pylist(), dtype=object)
    return ItemVectors(ids, np.ascontiguousarray(flat, dtype=np.float32).reshape(len(ids), dim))


def item_modalities(con: Any, item: str) -> dict[str, int]:
    """The modalities ``item`` has a vector of -> their dimension."""
    if not has_tables(con):
        return {}
    rows = con.execute(
        "SELECT m.name, m.dim FROM item_vectors v JOIN vector_modalities m ON v.modality = m.name "
        "WHERE v.item = ? ORDER BY m.name",
        [item],
    ).fetchall()
    return {str(n): int(d) for n, d in rows}


class ItemVectorMethods:
    """The event store's item-vector methods (mixed into :class:`~liveshelf.data.store.EventStore`, whose
    lock, connection, transaction and load log they use)."""

    _lock: Any

    if TYPE_CHECKING:  # EventStore's own methods, which these use

        def _conn(self) -> Any: ...

        def _transaction(self) -> AbstractContextManager[Any]: ...

        def _log_load(
            self, con: Any, kind: str, source: str, rows: int, inserted: int, updated: int
        ) -> None: ...

    def put_item_vectors(
        self, modality: str, item_ids: Sequence[str], vectors: np.ndarray, *, source: str = "api"
    ) -> int:
        """Insert or replace the ``modality`` vectors of catalogue items (row ``i`` of ``vectors`` is
        ``item_ids[i]``'s) in one transaction; returns how many were stored. Every rule is checked before
        anything is written: a ValidationError names the item, the field and the value."""
        checked = check_vectors(modality, item_ids, vectors)
        if not len(checked.ids):
            return 0
        with self._transaction() as con:
            self._put_vectors(con, modality, checked, source)
        return len(checked.ids)

    def _put_vectors(self, con: Any, modality: str, checked: ItemVectors, source: str) -> None:
        inserted, replaced = write(con, modality, checked)
        self._log_load(con, f"item_vectors:{modality}", source, len(checked.ids), inserted, replaced)

    def item_vectors(self, modality: str) -> ItemVectors:
        """``(ids, vectors)`` of ``modality``: item ids (object array, sorted) and float32 ``(n, d)``."""
        with self._lock:
            return read(self._conn(), check_modality(modality))

    def modalities(self) -> dict[str, int]:
        """The stored modalities: name -> dimension."""
        with self._lock:
            return stored_dims(self._conn())

    def item_modalities(self, item: str) -> dict[str, int]:
        """The modalities ``item`` has a vector of: name -> dimension."""
        with self._lock:
            return item_modalities(self._conn(), item)

    def item_vector_sets(self) -> dict[str, ItemVectors]:
        """Every stored modality's vectors (what ``to_dataset`` carries)."""
        with self._lock:
            con = self._conn()
            return {m: read(con, m) for m in stored_dims(con)}


# ------------------------------------------------------------------------------------ files
def read_vector_file(
    path: str | Path, ids: str | Path | None = None, modality: str = "vectors"
) -> ItemVectors:
    """Vectors from ``path``: a ``.npy`` matrix with ``ids`` (a text file of one item id per line in row
    order, or a ``.npy`` / ``.json`` list), or a Parquet file with columns ``item_id`` and ``vector``
    (a list of floats). The result is checked with :func:`check_vectors`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".parquet", ".pq"):
        raise DataFormatError(
            f"Cannot read vectors from '{path}': unknown file format {path.suffix or '(no extension)'!r}. "
            "Use a .npy matrix with --ids, or a .parquet file with columns item_id, vector."
        )
    if not path.is_file():
        raise DataFormatError(f"Vector file '{path}' does not exist (or is not a file). Check the path.")
    if suffix == ".npy":
        if ids is None:
            raise DataFormatError(
                f"'{path}' is a .npy matrix, which holds no item ids: pass --ids FILE (one item id per line, "
                "in the matrix's row order, or a .npy / .json list)."
            )
        return check_vectors(modality, _read_ids(Path(ids)), _load_npy(path), field="vectors")
    if ids is not None:
        raise DataFormatError(
            f"'{path}' is a Parquet file, whose item_id column gives the ids: drop --ids (it is for .npy matrices)."
        )
    return check_vectors(modality, *_read_parquet(path), field="vectors")


def _load_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataFormatError(
            f"Cannot read '{path}' as a .npy array: {exc}. Save it with numpy.save."
        ) from exc
    if not isinstance(arr, np.ndarray):
        raise DataFormatError(
            f"'{path}' holds several arrays (an .npz archive?); save one matrix with numpy.save."
        )
    return arr


def _read_ids(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataFormatError(f"Id file '{path}' does not exist (or is not a file). Check the --ids path.")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = _load_npy(path)
        if arr.ndim != 1:
            raise DataFormatError(
                f"The id file '{path}' must hold a 1-D array of ids; got shape {arr.shape}."
            )
        values: list[Any] = arr.tolist()
    elif suffix == ".json":
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataFormatError(f"Cannot read '{path}' as JSON: {exc}.") from exc
        if not isinstance(values, list):
            raise DataFormatError(
                f"The id file '{path}' must hold a JSON list of ids; got {type(values).__name__}."
            )
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DataFormatError(f"The id file '{path}' is not UTF-8 text: {exc}.") from exc
        values = text.splitlines()
        if values and values[-1] == "":
            values = values[:-1]
    # integer ids (as numpy or JSON numbers) become their decimal text, as ingest stores them
    return np.asarray(
        [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in values], dtype=object
    )


def _read_parquet(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataFormatError(f"Cannot read '{path}' as Parquet: {exc}.") from exc
    missing = [c for c in ("item_id", "vector") if c not in table.column_names]
    if missing:
        raise DataFormatError(
            f"The vector file '{path}' must have the columns ['item_id', 'vector'] (vector: a list of floats); "
            f"{missing} are missing (found {table.column_names})."
        )
    ids = np.asarray(table.column("item_id").cast(pa.string()).to_pylist(), dtype=object)
    col = table.column("vector").combine_chunks()
    if not (
        pa.types.is_list(col.type)
        or pa.types.is_large_list(col.type)
        or pa.types.is_fixed_size_list(col.type)
    ):
        raise DataFormatError(
            f"The 'vector' column of '{path}' must be a list of floats; got the Arrow type {col.type}."
        )
    if not (pa.types.is_floating(col.type.value_type) or pa.types.is_integer(col.type.value_type)):
        raise DataFormatError(
            f"The 'vector' column of '{path}' must hold floats; got lists of {col.type.value_type}."
        )
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    nulls = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if len(col) and nulls.any():
        row = int(np.argmax(nulls))
        raise ValidationError(
            f"The vector of item {ids[row]!r} (row {row + 1} of '{path}') is empty (null); give every row a vector.",
            field="vector",
            value=ids[row],
        )
    if len(col) and (lengths != lengths[0]).any():
        row = int(np.argmax(lengths != lengths[0]))
        raise ValidationError(
            f"The vector of item {ids[row]!r} (row {row + 1} of '{path}') has {int(lengths[row])} entries, "
            f"the first row {int(lengths[0])}: every vector of a modality must have the same dimension.",
            field="vector",
            value=ids[row],
        )
    flat = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.float64)
    dim = int(lengths[0]) if len(col) else 0
    return ids, flat.reshape(len(col), dim)


# ------------------------------------------------------------------------------------ training
def align(sets: Mapping[str, ItemVectors], ids: np.ndarray) -> dict[str, np.ndarray] | None:
    """For each modality a float32 ``(len(ids), d)`` matrix in the order of ``ids``; all-NaN rows where an
    id has no vector. None when ``sets`` is empty."""
    if not sets:
        return None
    out: dict[str, np.ndarray] = {}
    for name, vecs in sets.items():
        mat = np.full((len(ids), vecs.dim), np.nan, dtype=np.float32)
        pos = pd.Index(vecs.ids).get_indexer(np.asarray(ids, dtype=object))
        has = pos >= 0
        mat[has] = vecs.vectors[pos[has]]
        out[name] = mat
    return out


def mean_by_group(
    sets: Mapping[str, ItemVectors], group_of: pd.Series, groups: np.ndarray
) -> dict[str, np.ndarray] | None:
    """For each modality the mean vector of each of ``groups`` over the ids ``group_of`` maps to it (e.g.
    the rooms of a host), float32 ``(len(groups), d)``; all-NaN rows for a group with none."""
    if not sets:
        return None
    import scipy.sparse as sp

    out: dict[str, np.ndarray] = {}
    index = pd.Index(np.asarray(groups, dtype=object))
    for name, vecs in sets.items():
        code = index.get_indexer(group_of.reindex(vecs.ids).to_numpy(dtype=object))
        keep = np.flatnonzero(code >= 0)
        member = sp.csr_matrix(
            (np.ones(len(keep), np.float32), (code[keep], keep)), shape=(len(groups), len(vecs.ids))
        )
        sums = np.asarray(member @ vecs.vectors)
        counts = np.asarray(member.sum(axis=1)).reshape(-1, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = (sums / counts).astype(np.float32)  # 0 / 0 -> NaN where a group has none
    return out


__all__ = [
    "DDL",
    "ItemVectorMethods",
    "MAX_ABS",
    "MAX_DIM",
    "MODALITY_RE",
    "ItemVectors",
    "align",
    "check_dim",
    "check_modality",
    "check_vectors",
    "item_modalities",
    "mean_by_group",
    "read",
    "read_vector_file",
    "stored_dims",
    "write",
]
