"""The event store: one DuckDB file ``<home>/events.duckdb`` with the schema's tables.

Tables: ``events`` (schema columns + ``seq``, the ingest order used to break timestamp
ties), ``items``, ``users``, ``rooms``, ``shelf``, ``hosts``, plus ``meta`` (key/value,
e.g. the pseudonym key id), ``loads`` (one audit row per committed batch) and the per-item
vectors of any modality, ``item_vectors`` + ``vector_modalities`` (:mod:`liveshelf.data.item_vectors`).
Timestamps are stored as UTC ``TIMESTAMP`` and come back as ``datetime64[us, UTC]``.

Writes take validated frames (see :mod:`liveshelf.data.validate`), go through Arrow and
run in one transaction per batch: a failure anywhere rolls the whole batch back, so an
interrupted ingest leaves the store exactly as it was. Events are idempotent by
``event_id`` (a unique index: one ``INSERT OR IGNORE ... RETURNING`` stores the new ones and says
which they were); the other kinds upsert by their key.

Interval semantics everywhere: a room / shelf slot is live at ``t`` when
``start <= t < end``; ``end`` NULL means still live.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from liveshelf.data import item_vectors as vec
from liveshelf.data.dataset import Dataset
from liveshelf.data.item_vectors import ItemVectorMethods, ItemVectors
from liveshelf.data.tables import (
    ARROW_SCHEMAS,
    COLUMNS,
    KEYS,
    check_kind,
    frame_to_table,
    table_to_frame,
)
from liveshelf.errors import ConfigError, check_param
from liveshelf.schema import EVENT_COLUMNS, EVENT_TYPES, TS_DTYPE, utc

STORE_FILE = "events.duckdb"
_EVENT_ID_INDEX = "events_event_id"

_SQL_TYPES = {
    pa.string(): "VARCHAR",
    pa.timestamp("us"): "TIMESTAMP",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
}
_NOT_NULL = {
    "events": {"event_id", "ts", "user", "type"},
    "items": {"id", "title"},
    "users": {"id"},
    "rooms": {"id", "host", "start"},
    "shelf": {"room", "item", "start"},
    "hosts": {"id"},
}


def _q(name: str) -> str:
    return f'"{name}"'


def _ddl(kind: str) -> str:
    cols = []
    for f in ARROW_SCHEMAS[kind]:
        null = " NOT NULL" if f.name in _NOT_NULL[kind] else ""
        cols.append(f"{_q(f.name)} {_SQL_TYPES[f.type]}{null}")
    if kind == "events":
        cols.append('"seq" BIGINT NOT NULL')
    return f"CREATE TABLE IF NOT EXISTS {kind} ({', '.join(cols)})"


def _naive(t: datetime | str | float | int | pd.Timestamp) -> datetime:
    """A naive UTC datetime, the form the TIMESTAMP columns hold."""
    return utc(t).replace(tzinfo=None)


class UserSequence(NamedTuple):
    """One user's events in time order; ``ts`` are float epoch seconds."""

    items: np.ndarray  # object: item id or None
    rooms: np.ndarray  # object: room id or None
    ts: np.ndarray  # float64 epoch seconds
    types: np.ndarray  # object: event type


class StoredEvents(NamedTuple):
    """What one :meth:`EventStore.append_events` stored: the new rows (``seq`` appended, ingest order) and the
    store's newest seq before the batch (-1: empty store). ``duplicate`` rows were stored before."""

    new: pa.Table
    head_before: int
    duplicate: int

    @property
    def head(self) -> int:
        """The store's newest seq once the batch is in (``head_before`` when nothing was new)."""
        return int(self.new.column("seq")[-1].as_py()) if self.new.num_rows else self.head_before


#: Store files whose tables and event-id index this process has created or found ("path:inode" -> unique ids
#: indexed): several workers reopen the store for every write, and need not re-run the DDL each time.
_SCHEMA_READY: dict[str, bool] = {}


class EventStore(ItemVectorMethods):
    """DuckDB-backed store of events, catalogue (with per-item vectors: :class:`ItemVectorMethods`), rooms,
    shelf slots and hosts.

    >>> with EventStore(tmp_path) as store:          # doctest: +SKIP
    ...     store.stats()["events"]
    0
    """

    def __init__(self, home: Path | str | None = None, *, read_only: bool = False) -> None:
        if home is None:
            from liveshelf.config import get_settings

            home = get_settings().home
        import duckdb

        self.home = Path(home).expanduser()
        self.path = self.home / STORE_FILE
        if read_only and not self.path.exists():
            raise ConfigError(
                f"No event store at '{self.path}' to open read-only. Ingest data first "
                f"(`liveshelf ingest ... --home {self.home}`)."
            )
        self.home.mkdir(parents=True, exist_ok=True)
        self.read_only = read_only
        self._lock = threading.RLock()
        self._meta_cache: dict[str, str | None] = {}
        self._shelf_items: pa.Array | None = None
        try:
            self._con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            raise ConfigError(
                f"Cannot open the event store '{self.path}': {exc}. Another process (e.g. `liveshelf serve`) "
                "may hold it for writing; stop it, open it with read_only=True, or use another --home."
            ) from exc
        self._con.execute("SET enable_progress_bar = false").fetchall()
        if not read_only:
            key = f"{self.path.resolve()}:{self.path.stat().st_ino}"  # the inode: a recreated file is new
            known = _SCHEMA_READY.get(key)
            if known is None:  # once per process and file: several workers reopen the store for every write
                with self._transaction() as con:
                    for kind in ARROW_SCHEMAS:
                        con.execute(_ddl(kind)).fetchall()
                    con.execute(
                        "CREATE TABLE IF NOT EXISTS meta (key VARCHAR NOT NULL, value VARCHAR)"
                    ).fetchall()
                    con.execute(
                        "CREATE TABLE IF NOT EXISTS loads (loaded_at TIMESTAMP, kind VARCHAR, "
                        "source VARCHAR, n_rows BIGINT, inserted BIGINT, updated BIGINT)"
                    ).fetchall()
                    for ddl in vec.DDL:
                        con.execute(ddl).fetchall()
                known = _SCHEMA_READY[key] = self._index_event_ids()
            self._unique_ids = known
        else:
            self._unique_ids = False  # nothing is inserted through a read-only store

    def _index_event_ids(self) -> bool:
        """The unique index on ``events.event_id`` that makes a batch insert idempotent in one statement (built
        once, in a fraction of a second for 300k events). False when the table holds a repeated id (a store
        written by an old version): inserts then anti-join against the table instead."""
        import duckdb

        try:
            with self._transaction() as con:
                con.execute(
                    f"CREATE UNIQUE INDEX IF NOT EXISTS {_EVENT_ID_INDEX} ON events (event_id)"
                ).fetchall()
        except duckdb.ConstraintException:
            return False
        return True

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    @property
    def closed(self) -> bool:
        return self._con is None

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EventStore({str(self.home)!r}{', read_only=True' if self.read_only else ''})"

    def _conn(self) -> Any:
        if self._con is None:
            raise ConfigError(f"The event store at '{self.path}' is closed. Open a new EventStore.")
        return self._con

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """BEGIN ... COMMIT; ROLLBACK on any exception (then re-raise)."""
        with self._lock:
            con = self._conn()
            con.begin()
            try:
                yield con
            except BaseException:
                con.rollback()
                raise
            con.commit()

    def _rows(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        with self._lock:
            return self._conn().execute(sql, list(params or [])).fetchall()

    def _frame(
        self, sql: str, params: Sequence[Any] | None = None, ts_columns: Sequence[str] = ()
    ) -> pd.DataFrame:
        with self._lock:
            table = self._conn().sql(sql, params=list(params or [])).to_arrow_table()
        df = table.to_pandas()
        for c in ts_columns:
            if c in df.columns:
                df[c] = pd.to_datetime(df[c]).dt.tz_localize("UTC").astype(TS_DTYPE)
        return df

    # ------------------------------------------------------------------ writes

    def _arrow(self, kind: str, data: pa.Table | pd.DataFrame) -> pa.Table:
        """Validated rows in the table's Arrow layout (a clean schema frame is converted)."""
        if isinstance(data, pd.DataFrame):
            return frame_to_table(kind, data)
        schema = ARROW_SCHEMAS[kind]
        if not data.schema.equals(schema):
            raise ConfigError(
                f"The {kind} table to store must have the Arrow schema {schema}; got {data.schema}. "
                "Pass the output of liveshelf.data.validate.validate (or a clean schema frame)."
            )
        return data

    def _log_load(self, con: Any, kind: str, source: str, rows: int, inserted: int, updated: int) -> None:
        """Audit row, written inside the batch's transaction (so it commits or rolls back with it)."""
        con.execute(
            "INSERT INTO loads VALUES (now()::TIMESTAMP, ?, ?, ?, ?, ?)",
            [kind, source, rows, inserted, updated],
        ).fetchall()

    def _set_meta(self, con: Any, meta: dict[str, str] | None) -> None:
        for key, value in (meta or {}).items():
            if self._meta_cache.get(key) == value:
                continue
            self._meta_cache.pop(key, None)
            con.execute("DELETE FROM meta WHERE key = ?", [key]).fetchall()
            con.execute("INSERT INTO meta VALUES (?, ?)", [key, value]).fetchall()

    def insert_events(
        self, frame: pa.Table | pd.DataFrame, *, source: str = "", meta: dict[str, str] | None = None
    ) -> tuple[int, int]:
        """Append validated events not yet stored; returns ``(inserted, duplicate)``."""
        stored = self.append_events(frame, source=source, meta=meta)
        return stored.new.num_rows, stored.duplicate

    def append_events(
        self, frame: pa.Table | pd.DataFrame, *, source: str = "", meta: dict[str, str] | None = None
    ) -> StoredEvents:
        """Append validated events not yet stored (ids unique within ``frame``, as validation makes them) in one
        transaction; returns the rows that were new, with their ``seq``, so a caller can apply exactly those."""
        table = self._arrow("events", frame)
        n = table.num_rows
        with self._transaction() as con:
            base = con.execute("SELECT coalesce(max(seq) + 1, 0) FROM events").fetchall()[0][0]
            table = table.append_column("seq", pa.array(np.arange(base, base + n, dtype=np.int64)))
            con.register("_batch", table)
            try:
                sql = (
                    "INSERT OR IGNORE INTO events SELECT * FROM _batch RETURNING seq"
                    if self._unique_ids
                    else "INSERT INTO events SELECT b.* FROM _batch b ANTI JOIN events e USING (event_id) RETURNING seq"
                )
                seqs = con.execute(sql).fetchnumpy()["seq"]
            finally:
                con.unregister("_batch")
            self._set_meta(con, meta)
            self._log_load(con, "events", source, n, len(seqs), 0)
        new = table if len(seqs) == n else table.take(pa.array(np.sort(np.asarray(seqs, np.int64)) - base))
        return StoredEvents(new=new, head_before=int(base) - 1, duplicate=n - len(seqs))

    def upsert(
        self,
        kind: str,
        frame: pa.Table | pd.DataFrame,
        *,
        source: str = "",
        meta: dict[str, str] | None = None,
        vectors: Mapping[str, ItemVectors] | None = None,
    ) -> tuple[int, int, int]:
        """Insert or replace rows of ``kind`` by key; returns ``(inserted, updated, unchanged)``.

        ``vectors`` (items only; checked with :func:`~liveshelf.data.item_vectors.check_vectors`) are
        stored in the same transaction, after the rows: an item may arrive with its vectors."""
        check_kind(kind)
        if kind == "events":
            raise ConfigError("Events are append-only: use insert_events, not upsert('events', ...).")
        if vectors and kind != "items":
            raise ConfigError(f"Only items carry vectors; got vectors with upsert({kind!r}, ...).")
        table = self._arrow(kind, frame)
        if kind == "shelf":
            self._shelf_items = None
        on = " AND ".join(f"b.{_q(k)} = t.{_q(k)}" for k in KEYS[kind])
        same = " AND ".join(f"b.{_q(c)} IS NOT DISTINCT FROM t.{_q(c)}" for c in COLUMNS[kind])
        with self._transaction() as con:
            con.register("_batch", table)
            try:
                existing, unchanged = con.execute(
                    f"SELECT count(*), count(*) FILTER (WHERE {same}) FROM _batch b JOIN {kind} t ON {on}"
                ).fetchall()[0]
                con.execute(f"DELETE FROM {kind} t USING _batch b WHERE {on} AND NOT ({same})").fetchall()
                con.execute(
                    f"INSERT INTO {kind} SELECT b.* FROM _batch b "
                    f"WHERE NOT EXISTS (SELECT 1 FROM {kind} t WHERE {on})"
                ).fetchall()
            finally:
                con.unregister("_batch")
            inserted, updated = table.num_rows - int(existing), int(existing) - int(unchanged)
            self._set_meta(con, meta)
            self._log_load(con, kind, source, table.num_rows, inserted, updated)
            for modality, checked in (vectors or {}).items():
                self._put_vectors(con, modality, checked, source)
        return inserted, updated, int(unchanged)

    def delete_user(self, user: str) -> dict[str, int]:
        """Purge a user's events and profile row (pass the stored id, i.e. the pseudonym if any)."""
        with self._transaction() as con:
            n_events = con.execute('DELETE FROM events WHERE "user" = ?', [user]).fetchall()[0][0]
            n_users = con.execute("DELETE FROM users WHERE id = ?", [user]).fetchall()[0][0]
        with self._lock:
            self._conn().execute("CHECKPOINT").fetchall()
        return {"events": int(n_events), "users": int(n_users)}

    # ------------------------------------------------------------------ metadata

    def meta(self, key: str) -> str | None:
        """A value of the ``meta`` table (cached; writes through this store keep the cache true)."""
        if key not in self._meta_cache:
            rows = self._rows("SELECT value FROM meta WHERE key = ?", [key])
            self._meta_cache[key] = rows[0][0] if rows else None
        return self._meta_cache[key]

    def count(self, kind: str) -> int:
        check_kind(kind)
        return int(self._rows(f"SELECT count(*) FROM {kind}")[0][0])

    def stats(self) -> dict[str, Any]:
        """Row counts per table, distinct users, time range, file size, pseudonym key id."""
        out: dict[str, Any] = {kind: self.count(kind) for kind in ARROW_SCHEMAS}
        n_users, first, last = self._rows('SELECT count(DISTINCT "user"), min(ts), max(ts) FROM events')[0]
        out["event_users"] = int(n_users)
        out["first_ts"] = None if first is None else utc(first).isoformat()
        out["last_ts"] = None if last is None else utc(last).isoformat()
        out["event_types"] = dict(self._rows("SELECT type, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC"))
        out["loads"] = int(self._rows("SELECT count(*) FROM loads")[0][0])
        out["pseudonym_key_id"] = self.meta("pseudonym_key_id")
        out["path"] = str(self.path)
        # the database file plus its write-ahead log (recent batches live there until a checkpoint)
        wal = self.path.with_name(self.path.name + ".wal")
        out["bytes"] = sum(p.stat().st_size for p in (self.path, wal) if p.exists())
        return out

    def shelf_item_ids(self) -> pa.Array:
        """Distinct items that were ever on any shelf (any room, any time)."""
        with self._lock:
            if self._shelf_items is None:
                table = self._conn().sql("SELECT DISTINCT item FROM shelf ORDER BY item").to_arrow_table()
                self._shelf_items = table.column(0).combine_chunks()
            return self._shelf_items

    # ------------------------------------------------------------------ queries

    def existing_event_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the store already holds (events a re-post must not apply twice)."""
        if not ids:
            return set()
        con = self._conn()
        with self._lock:
            con.register("_ids", pa.table({"event_id": pa.array(list(ids), pa.string())}))
            try:
                rows = con.execute(
                    "SELECT DISTINCT e.event_id FROM events e SEMI JOIN _ids i USING (event_id)"
                ).fetchall()
            finally:
                con.unregister("_ids")
        return {r[0] for r in rows}

    def sequence(
        self, user: str, until: datetime | str | float | None = None, limit: int | None = None
    ) -> UserSequence:
        """One user's events with ``ts < until`` in time order (ties: ingest order).

        With ``limit``, the most recent ``limit`` events (still oldest first).
        """
        if limit is not None:
            check_param(
                "limit",
                limit,
                isinstance(limit, int) and limit >= 1,
                "an int >= 1 or None",
                "EventStore.sequence",
            )
        sql = 'SELECT item, room, epoch_us(ts), type FROM events WHERE "user" = ?'
        params: list[Any] = [user]
        if until is not None:
            sql += " AND ts < ?"
            params.append(_naive(until))
        sql += " ORDER BY ts DESC, seq DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self._rows(sql, params)[::-1]
        return UserSequence(
            items=np.array([r[0] for r in rows], dtype=object),
            rooms=np.array([r[1] for r in rows], dtype=object),
            ts=np.array([r[2] for r in rows], dtype=np.int64) / 1e6,
            types=np.array([r[3] for r in rows], dtype=object),
        )

    def sequences(self, until: datetime | str | float | None = None) -> pd.DataFrame:
        """One row per user: ``user``, ``items``, ``rooms``, ``ts`` (epoch seconds), ``types`` as arrays,
        events with ``ts < until`` in time order."""
        where, params = ("WHERE ts < ?", [_naive(until)]) if until is not None else ("", [])
        order = "ORDER BY ts, seq"
        return self._frame(
            f'SELECT "user", list(item {order}) AS items, list(room {order}) AS rooms, '
            f"list(epoch_us(ts) / 1e6 {order}) AS ts, list(type {order}) AS types "
            f'FROM events {where} GROUP BY "user" ORDER BY "user"',
            params,
        )

    def room_events(
        self,
        rooms: Sequence[str],
        start: datetime | str | float,
        end: datetime | str | float,
        types: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Events of ``rooms`` with ``start <= ts < end`` (of ``types``), newest first; the ``limit`` newest."""
        cols = ", ".join(_q(c) for c in EVENT_COLUMNS)
        if not rooms or (types is not None and not types):
            return self._frame(f"SELECT {cols} FROM events WHERE FALSE", (), ("ts",))
        conds = [f"room IN ({', '.join('?' for _ in rooms)})", "ts >= ?", "ts < ?"]
        params: list[Any] = [*rooms, _naive(start), _naive(end)]
        if types is not None:
            conds.append(f"type IN ({', '.join('?' for _ in types)})")
            params += list(types)
        tail = f" LIMIT {int(limit)}" if limit is not None else ""
        return self._frame(
            f"SELECT {cols} FROM events WHERE {' AND '.join(conds)} ORDER BY ts DESC, seq DESC{tail}",
            params,
            ("ts",),
        )

    def max_seq(self) -> int:
        """The ingest order of the newest stored event (-1 when there is none)."""
        return int(self._rows("SELECT coalesce(max(seq), -1) FROM events")[0][0])

    def events_after(self, seq: int, limit: int | None = None) -> tuple[pd.DataFrame, int]:
        """Events stored after ingest order ``seq`` (schema columns, in ingest order; the first ``limit``) and
        the seq of the last one returned (``seq`` itself when none): what a view of the store catches up on."""
        cols = ", ".join(_q(c) for c in EVENT_COLUMNS)
        tail = f" LIMIT {int(limit)}" if limit is not None else ""
        frame = self._frame(
            f"SELECT {cols}, seq FROM events WHERE seq > ? ORDER BY seq{tail}", [int(seq)], ("ts",)
        )
        last = int(frame["seq"].iloc[-1]) if len(frame) else int(seq)
        return frame.drop(columns=["seq"]), last

    def training_frame(self, until: datetime | str | float | None = None) -> pd.DataFrame:
        """Events with ``ts < until`` in schema columns, sorted by (user, ts, ingest order)."""
        where, params = ("WHERE ts < ?", [_naive(until)]) if until is not None else ("", [])
        cols = ", ".join(_q(c) for c in EVENT_COLUMNS)
        return self._frame(f'SELECT {cols} FROM events {where} ORDER BY "user", ts, seq', params, ("ts",))

    def frame(self, kind: str) -> pd.DataFrame:
        """A whole table in schema columns (events: see :meth:`training_frame`)."""
        check_kind(kind)
        if kind == "events":
            return self.training_frame()
        cols = ", ".join(_q(c) for c in COLUMNS[kind])
        order = ", ".join(_q(k) for k in KEYS[kind])
        with self._lock:
            table = self._conn().sql(f"SELECT {cols} FROM {kind} ORDER BY {order}").to_arrow_table()
        return table_to_frame(kind, table)

    def live_rooms(self, t: datetime | str | float) -> pd.DataFrame:
        """Rooms live at ``t`` (``start <= t < end``, ``end`` NULL = still live), by start time."""
        tn = _naive(t)
        return self._frame(
            'SELECT id, host, title, start, "end" FROM rooms WHERE start <= ? AND ("end" IS NULL OR ? < "end") '
            "ORDER BY start, id",
            [tn, tn],
            ("start", "end"),
        )

    def shelf_items(self, room: str, t: datetime | str | float) -> list[str]:
        """Items on ``room``'s shelf at ``t`` (same interval semantics); pinned first, then by slot start."""
        tn = _naive(t)
        rows = self._rows(
            'SELECT item FROM shelf WHERE room = ? AND start <= ? AND ("end" IS NULL OR ? < "end") '
            "GROUP BY item ORDER BY bool_or(pinned) DESC, min(start), item",
            [room, tn, tn],
        )
        return [r[0] for r in rows]

    def counts(
        self,
        kind: str = "item",
        start: datetime | str | float | None = None,
        end: datetime | str | float | None = None,
        types: Sequence[str] | None = None,
    ) -> pd.Series:
        """Event counts per item or room over ``start <= ts < end`` (either bound optional), most first."""
        check_param("kind", kind, kind in ("item", "room"), "'item' or 'room'", "EventStore.counts")
        conds, params = [f"{_q(kind)} IS NOT NULL"], []
        if start is not None:
            conds.append("ts >= ?")
            params.append(_naive(start))
        if end is not None:
            conds.append("ts < ?")
            params.append(_naive(end))
        if types is not None:
            types = list(types)
            unknown = [t for t in types if t not in EVENT_TYPES]
            check_param(
                "types", unknown, not unknown, f"event types among {list(EVENT_TYPES)}", "EventStore.counts"
            )
            conds.append(f"type IN ({', '.join('?' for _ in types)})" if types else "FALSE")
            params += types
        rows = self._rows(
            f"SELECT {_q(kind)}, count(*) AS n FROM events WHERE {' AND '.join(conds)} "
            f"GROUP BY 1 ORDER BY n DESC, 1",
            params,
        )
        return pd.Series(
            [r[1] for r in rows], index=pd.Index([r[0] for r in rows], name=kind), name="count", dtype="int64"
        )

    def to_dataset(self, name: str = "store") -> Dataset:
        """Everything as a :class:`Dataset` (a frame is None when its table is empty)."""
        frames: dict[str, pd.DataFrame | None] = {}
        for kind in ("items", "users", "rooms", "shelf", "hosts"):
            df = self.frame(kind)
            frames[kind] = df if len(df) else None
        return Dataset(
            name=name,
            events=self.training_frame(),
            **frames,
            item_vectors=self.item_vector_sets(),
            meta={
                "source": "event_store",
                "path": str(self.path),
                "pseudonym_key_id": self.meta("pseudonym_key_id"),
            },
        )
