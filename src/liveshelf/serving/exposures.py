"""The exposure log: every answer the server gives, candidate by candidate, with the features that ranked it.

One row per shown candidate: ``request_id, ts, user, room, surface, candidate, position, score,
ranked_by, model_version, arm, experiment, feature_set, features``. ``feature_set`` names the
feature list (``item`` or ``room``, see :mod:`liveshelf.serving.features`) and ``features`` holds
the values in that order, exactly as the request computed them, so a ranker trained from the log
sees what serving saw at the time (point-in-time correct by construction).

Rows are buffered and written by a background thread (the A/B code's
:class:`~liveshelf.serving.abtest.EventLog`), each batch as one Parquet file under
``<home>/exposures/date=YYYY-MM-DD/`` - never on the request path. A request is logged with
probability ``exposure_sample`` (decided by a hash of its request id, so all rows of a request go
together). :func:`read_exposures` reads them back; :func:`join_outcomes` joins the outcomes
(click, cart, purchase; for rooms: enter and watch time) that followed within an attribution window.

>>> log = ExposureLog(home, sample=1.0)                                        # doctest: +SKIP
>>> log.log("shelf", user, room, t, ranked, model_version="v0003")            # doctest: +SKIP
>>> frame = read_exposures(home); labelled = label_exposures(frame, events, window_s=1800)
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from liveshelf.core.timeutil import to_seconds_array
from liveshelf.serving.abtest import EventLog
from liveshelf.serving.features import ITEM_FEATURES, ROOM_FEATURES

#: The feature list each ``feature_set`` names.
FEATURE_SETS: dict[str, tuple[str, ...]] = {"item": ITEM_FEATURES, "room": ROOM_FEATURES}
#: Which feature set each surface logs.
SURFACE_SET: dict[str, str] = {"feed": "room", "shelf": "item", "next-item": "item"}

SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("ts", pa.float64()),
        ("user", pa.string()),
        ("room", pa.string()),
        ("surface", pa.string()),
        ("candidate", pa.string()),
        ("position", pa.int32()),
        ("score", pa.float64()),
        ("ranked_by", pa.string()),
        ("model_version", pa.string()),
        ("arm", pa.string()),
        ("experiment", pa.string()),
        ("feature_set", pa.string()),
        ("features", pa.list_(pa.float64())),
        ("logged", pa.float64()),
    ]
)

_files = itertools.count()


class _ParquetBatches(EventLog):
    """:class:`EventLog` whose batches go to one Parquet file each under ``folder``."""

    def __init__(self, folder: Path, flush_s: float = 0.5, max_buffer: int = 20_000) -> None:
        self.folder = Path(folder)
        super().__init__(self.folder / "exposures", flush_s=flush_s, max_buffer=max_buffer)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        day = time.strftime("%Y-%m-%d", time.gmtime())
        out = self.folder / f"date={day}"
        out.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        name = f"part-{time.time_ns()}-{os.getpid()}-{next(_files)}.parquet"
        tmp = out / f".{name}.tmp"
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, out / name)  # readers never see a half-written file


class ExposureLog:
    """Buffered exposure rows of one server process (see the module docstring)."""

    def __init__(self, home: Path | str, *, sample: float = 1.0, flush_s: float = 0.5) -> None:
        self.folder = Path(home) / "exposures"
        self.sample = float(sample)
        self._log = _ParquetBatches(self.folder, flush_s=flush_s)

    def sampled(self, request_id: str) -> bool:
        if self.sample >= 1.0:
            return True
        h = int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "big")
        return h / 2.0**64 < self.sample

    def log(
        self,
        surface: str,
        user: str | None,
        room: str | None,
        t: float,
        ranked: Any,
        *,
        model_version: str | None = None,
        arm: str | None = None,
        experiment: str | None = None,
        request_id: str | None = None,
    ) -> str | None:
        """Buffer the shown candidates of one answer (``ranked``: a pipeline ``Ranked``); returns the request id
        (None when not sampled or nothing was shown)."""
        rid = request_id or uuid.uuid4().hex
        if not ranked.recs or not self.sampled(rid):
            return None
        rows = ranked.rows
        col = {k: j for j, k in enumerate(rows.keys)} if rows is not None else {}
        fset = SURFACE_SET[surface] if rows is not None else None
        now = time.time()
        out = []
        for pos, rec in enumerate(ranked.recs):
            j = col.get(rec.key)
            feats = None if j is None else [float(x) for x in rows.X[j]]
            out.append(
                {
                    "request_id": rid,
                    "ts": float(t),
                    "user": user,
                    "room": room,
                    "surface": surface,
                    "candidate": rec.key,
                    "position": pos,
                    "score": float(rec.score),
                    "ranked_by": ranked.ranked_by,
                    "model_version": model_version,
                    "arm": arm,
                    "experiment": experiment,
                    "feature_set": fset,
                    "features": feats,
                    "logged": now,
                }
            )
        self._log.extend(out)
        return rid

    def flush(self) -> int:
        return self._log.flush()

    def close(self) -> None:
        self._log.close()


# ------------------------------------------------------------------------------------ reading
def read_exposures(
    home: Path | str, *, surface: str | None = None, since: float | None = None, until: float | None = None
) -> pd.DataFrame:
    """All logged exposure rows (optionally one surface and a ``since <= ts < until`` window), by time."""
    folder = Path(home) / "exposures"
    files = sorted(folder.glob("date=*/part-*.parquet")) if folder.is_dir() else []
    if not files:
        return SCHEMA.empty_table().to_pandas()
    frame = pa.concat_tables([pq.read_table(f, schema=SCHEMA) for f in files]).to_pandas()
    if surface is not None:
        frame = frame[frame["surface"] == surface]
    if since is not None:
        frame = frame[frame["ts"] >= since]
    if until is not None:
        frame = frame[frame["ts"] < until]
    return frame.sort_values(["ts", "request_id", "position"], kind="stable").reset_index(drop=True)


#: Graded outcomes of an exposed item (the largest one counts) and of an exposed room.
ITEM_GRADES: dict[str, int] = {"click": 1, "cart": 2, "purchase": 3}
ROOM_GRADES: dict[str, int] = {"enter": 1, "click": 2, "cart": 2, "purchase": 3}


def join_outcomes(exposures: pd.DataFrame, events: pd.DataFrame, *, window_s: float = 1800.0) -> pd.DataFrame:
    """What followed each exposure row within ``(ts, ts + window_s]``, by the same viewer on the candidate
    (items: ``item == candidate``; rooms: ``room == candidate``): ``grade`` (the best outcome, see
    :data:`ITEM_GRADES` / :data:`ROOM_GRADES`), ``clicks``, ``carts``, ``purchases`` and ``watch_s`` (seconds
    of ``leave`` events in the room: rooms only). One row per exposure, in its order; rows without a viewer
    get zeros. ``events``: schema event columns (``ts`` as datetimes or epoch seconds)."""
    n = len(exposures)
    out = pd.DataFrame(
        {
            "grade": np.zeros(n, dtype=np.int64),
            "clicks": np.zeros(n, dtype=np.int64),
            "carts": np.zeros(n, dtype=np.int64),
            "purchases": np.zeros(n, dtype=np.int64),
            "watch_s": np.zeros(n),
        }
    )
    if not n or not len(events):
        return out
    ev = events[["user", "type", "room", "item", "ts", "value"]].copy()
    ev["t"] = to_seconds_array(ev["ts"].to_numpy())
    ex = exposures[["user", "surface", "candidate", "ts"]].reset_index(drop=True)
    ex["row"] = np.arange(n)
    for is_room, grades in ((False, ITEM_GRADES), (True, ROOM_GRADES)):
        part = ex[(ex["surface"] == "feed") == is_room]
        if not len(part):
            continue
        key = "room" if is_room else "item"
        types = [*grades, "leave"] if is_room else list(grades)
        e = ev[ev["type"].isin(types)][["user", key, "type", "t", "value"]].rename(columns={key: "candidate"})
        e = e.dropna(subset=["candidate"])
        m = part.merge(e, on=["user", "candidate"], how="inner")
        m = m[(m["t"] > m["ts"]) & (m["t"] <= m["ts"] + window_s)]
        if not len(m):
            continue
        m["grade"] = m["type"].map(grades).fillna(0).astype(np.int64)
        g = m.groupby("row")
        rows = g.size().index.to_numpy()
        out.loc[rows, "grade"] = g["grade"].max().to_numpy()
        for col, typ in (("clicks", "click"), ("carts", "cart"), ("purchases", "purchase")):
            out.loc[rows, col] = g["type"].apply(lambda s, typ=typ: int((s == typ).sum())).to_numpy()
        if is_room:
            watch = pd.to_numeric(m["value"], errors="coerce").where(m["type"] == "leave", 0.0).fillna(0.0)
            out.loc[rows, "watch_s"] = watch.groupby(m["row"]).sum().to_numpy()
    return out


def label_exposures(exposures: pd.DataFrame, events: pd.DataFrame, *, window_s: float = 1800.0) -> np.ndarray:
    """The graded outcome of each exposure row (:func:`join_outcomes`' ``grade``)."""
    return join_outcomes(exposures, events, window_s=window_s)["grade"].to_numpy()


__all__ = [
    "FEATURE_SETS",
    "ITEM_GRADES",
    "ROOM_GRADES",
    "SURFACE_SET",
    "ExposureLog",
    "join_outcomes",
    "label_exposures",
    "read_exposures",
]
