"""What each simulated client holds on its own disk: its users' sequences, plus the public catalogue.

The driver writes one folder per client (``clients/<k>/events.npz``) and one catalogue
(``catalogue.npz``: item ids, texts, categories and item vectors: what a platform publishes
anyway). A client process reads only its own folder and the catalogue, so no client ever holds
another client's behaviour, and Flower ships nothing bigger than a path to its workers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from liveshelf.core.files import atomic_write_bytes
from liveshelf.models.base import TrainData

CATALOGUE = "catalogue.npz"
EVENTS = "events.npz"


def catalogue_of(data: TrainData) -> TrainData:
    """The item side of ``data`` with no users: what the server may know."""
    return TrainData(
        item_ids=np.asarray(data.item_ids),
        user_ids=np.asarray([], dtype=object),
        sequences=[],
        item_text=data.item_text,
        item_category=data.item_category,
        item_vectors=data.item_vectors,
        meta={k: v for k, v in data.meta.items() if k in ("dataset", "target")},
    )


def subset_users(data: TrainData, users: np.ndarray) -> TrainData:
    """``data`` restricted to the user rows ``users`` (same items, same item side information)."""
    users = np.asarray(users, dtype=np.int64)
    pick = [data.sequences[u] for u in users]

    def rows(x: list[np.ndarray] | None) -> list[np.ndarray] | None:
        return None if x is None else [x[u] for u in users]

    meta = dict(data.meta)
    if meta.get("valid_times") is not None:
        meta["valid_times"] = np.asarray(meta["valid_times"])[users]
    return TrainData(
        item_ids=data.item_ids,
        user_ids=np.asarray(data.user_ids)[users],
        sequences=pick,
        timestamps=rows(data.timestamps),
        types=rows(data.types),
        valid_targets=None if data.valid_targets is None else np.asarray(data.valid_targets)[users],
        item_text=data.item_text,
        item_category=data.item_category,
        available=data.available,
        meta=meta,
        item_vectors=data.item_vectors,
    )


def training_targets(data: TrainData) -> int:
    """The next-item targets ``data``'s sequences give (FedAvg's weight of a client; at least 1)."""
    return int(sum(max(len(s) - 1, 0) for s in data.sequences)) or 1


def _ragged(name: str, seqs: list[np.ndarray]) -> dict[str, np.ndarray]:
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    flat = np.concatenate([np.asarray(s) for s in seqs]) if len(seqs) else np.zeros(0)
    return {f"{name}__flat": flat, f"{name}__len": lengths}


def _unragged(z: np.lib.npyio.NpzFile, name: str) -> list[np.ndarray] | None:
    if f"{name}__flat" not in z:
        return None
    flat, lengths = z[f"{name}__flat"], z[f"{name}__len"]
    return np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    atomic_write_bytes(path, buf.getvalue())


def write_catalogue(folder: Path, data: TrainData) -> Path:
    arrays: dict[str, np.ndarray] = {"item_ids": np.asarray(data.item_ids, dtype=str)}
    if data.item_text is not None:
        arrays["item_text"] = np.asarray(data.item_text, dtype=str)
    if data.item_category is not None:
        arrays["item_category"] = np.asarray(data.item_category, dtype=np.int64)
    for m, x in (data.item_vectors or {}).items():
        arrays[f"vec__{m}"] = np.asarray(x, dtype=np.float32)
    path = Path(folder) / CATALOGUE
    _save_npz(path, arrays)
    return path


def write_client(folder: Path, data: TrainData) -> Path:
    """Write one client's users (``data`` already restricted to them) to ``folder/events.npz``."""
    arrays: dict[str, np.ndarray] = {
        "user_ids": np.asarray(data.user_ids, dtype=str),
        **_ragged("seq", [np.asarray(s, dtype=np.int64) for s in data.sequences]),
    }
    if data.timestamps is not None:
        arrays.update(_ragged("ts", [np.asarray(t, dtype=np.float64) for t in data.timestamps]))
    if data.types is not None:
        arrays.update(_ragged("types", [np.asarray(t, dtype=str) for t in data.types]))
    if data.valid_targets is not None:
        arrays["valid_targets"] = np.asarray(data.valid_targets, dtype=np.int64)
    if data.meta.get("valid_times") is not None:
        arrays["valid_times"] = np.asarray(data.meta["valid_times"], dtype=np.float64)
    path = Path(folder) / EVENTS
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_npz(path, arrays)
    (Path(folder) / "meta.json").write_text(json.dumps({"users": len(data.user_ids)}))
    return path


def read_client(folder: Path, catalogue: Path) -> TrainData:
    """A client's own :class:`TrainData`: its events over the public catalogue."""
    with np.load(catalogue, allow_pickle=False) as c:
        item_ids = c["item_ids"].astype(object)
        text = [str(t) for t in c["item_text"]] if "item_text" in c else None
        cats = c.get("item_category", None)
        vectors = {k[5:]: c[k] for k in c.files if k.startswith("vec__")} or None
    with np.load(Path(folder) / EVENTS, allow_pickle=False) as z:
        seqs = _unragged(z, "seq") or []
        ts = _unragged(z, "ts")
        types = _unragged(z, "types")
        meta: dict = {}
        if "valid_times" in z:
            meta["valid_times"] = z["valid_times"]
        return TrainData(
            item_ids=item_ids,
            user_ids=z["user_ids"].astype(object),
            sequences=seqs,
            timestamps=ts,
            types=types,
            valid_targets=z.get("valid_targets", None),
            item_text=text,
            item_category=cats,
            meta=meta,
            item_vectors=vectors,
        )
