"""Ingestion: read a source, validate it, pseudonymise user ids, write it to the event store.

>>> store = EventStore(home)                                           # doctest: +SKIP
>>> report = Ingestor(store).ingest_events("events.parquet")          # doctest: +SKIP
>>> report.accepted, report.rejected, report.duplicate                 # doctest: +SKIP

Sources: a path (``.csv``, ``.parquet`` / ``.pq``, ``.jsonl`` / ``.ndjson`` / ``.json`` lines),
a pandas frame, an Arrow table, or a list of dicts. Order of work for every batch:
read -> validate (everything, vectorised) -> one store transaction. Nothing is written
to the store before the whole batch has been validated, and a failure in the store
rolls the batch back. Rejects go to a CSV or JSONL file (by extension) when asked.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from liveshelf.data.store import EventStore, StoredEvents
from liveshelf.data.tables import KINDS, check_kind, frame_to_arrow
from liveshelf.data.validate import Rules, Validated, validate
from liveshelf.errors import ConfigError, DataFormatError, NotFoundError
from liveshelf.privacy.pseudonym import Pseudonymiser

Source = pd.DataFrame | pa.Table | Sequence[Mapping[str, Any]] | str | Path

FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}

#: The order a world folder is ingested in (catalogue before the events that refer to it).
WORLD_ORDER: tuple[str, ...] = ("items", "users", "hosts", "rooms", "shelf", "events")

#: Kinds whose rows carry a user id (pseudonymised; the store's key id must match).
_USER_KINDS = ("events", "users")


def file_format(path: Path) -> str:
    """'csv', 'parquet' or 'jsonl' from the file extension (``.gz`` allowed for CSV/JSONL)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None or (fmt == "parquet" and path.suffix.lower() == ".gz"):
        raise DataFormatError(
            f"Cannot read '{path}': unknown file format {path.suffix or '(no extension)'!r}. "
            f"Use one of: {', '.join(sorted(FORMATS))}."
        )
    return fmt


def read_file(path: str | Path) -> pa.Table:
    """Read a CSV / Parquet / JSONL file as Arrow. CSV cells are read as strings (ids keep leading zeros)."""
    path = Path(path)
    fmt = file_format(path)
    if not path.is_file():
        raise NotFoundError(
            f"Input file '{path}' does not exist (or is not a file). Check the path; expected a {fmt} file."
        )
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if fmt == "csv":
            return _read_csv(path)
        return frame_to_arrow(
            pd.read_json(path, lines=True, dtype=False)
        )  # dtype=False: no date or type guessing
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise DataFormatError(
            f"Cannot read '{path}' as {fmt}: {exc}. Check the file's format and encoding (UTF-8)."
        ) from exc


def _read_csv(path: Path) -> pa.Table:
    import csv
    import gzip

    from pyarrow import csv as pacsv

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        header = next(csv.reader(fh), None)
    if not header:
        raise DataFormatError(
            f"Cannot read '{path}' as csv: the file is empty (no header line). "
            "The first line must name the columns."
        )
    return pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in header},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            null_values=[""],
        ),
    )


def to_table(source: Source) -> tuple[pa.Table, str]:
    """(Arrow table, description of the source) for any accepted source."""
    if isinstance(source, pa.Table):
        return source, "<arrow>"
    if isinstance(source, pd.DataFrame):
        return frame_to_arrow(source), "<frame>"
    if isinstance(source, (str, Path)):
        return read_file(source), str(source)
    if isinstance(source, Sequence):
        if source and not isinstance(source[0], Mapping):
            raise DataFormatError(
                f"Records must be dicts (column -> value); got {type(source[0]).__name__}. "
                f"Pass a list of dicts, a DataFrame, an Arrow table or a file path."
            )
        records = list(source)
        if not records:
            return pa.table({}), "<records>"
        keys = records[0].keys()
        try:
            if all(r.keys() == keys for r in records):
                return pa.Table.from_pylist(records), "<records>"
            # from_pylist takes the columns of the first record only; a struct array takes all
            return pa.Table.from_struct_array(pa.array(records)), "<records>"
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return frame_to_arrow(pd.DataFrame.from_records(records)), "<records>"
    raise DataFormatError(
        f"Cannot ingest a {type(source).__name__}. Pass a file path, a DataFrame, "
        f"an Arrow table or a list of dicts."
    )


def write_rejects(rejects: pd.DataFrame, path: str | Path) -> Path:
    """Write reject lines (row, field, value, reason) as CSV or JSONL, by extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rejects.to_csv(path, index=False)
    elif suffix in (".jsonl", ".ndjson", ".json"):
        rejects.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        raise ConfigError(
            f"The rejects file '{path}' must end in .csv or .jsonl; got {suffix or 'no extension'!r}."
        )
    return path


@dataclass
class IngestReport:
    """What one ingest did. ``rows == accepted + rejected + duplicate``.

    ``accepted`` rows were written (``inserted`` new + ``updated`` replaced by key);
    ``duplicate`` rows were already stored (events: same event_id; other kinds: identical row).
    """

    kind: str
    source: str
    rows: int = 0
    accepted: int = 0
    inserted: int = 0
    updated: int = 0
    rejected: int = 0
    duplicate: int = 0
    warnings: dict[str, int] = field(default_factory=dict)
    rejects_path: Path | None = None
    ignored_columns: list[str] = field(default_factory=list)
    seconds: float = 0.0
    rejects: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("rejects")
        d["rejects_path"] = None if self.rejects_path is None else str(self.rejects_path)
        return d


class Ingestor:
    """Validate and load data into an :class:`EventStore`.

    ``pseudonymiser``: when given, user ids (and event ids) are replaced by keyed HMACs
    before validation, so neither the store nor the rejects file ever sees a raw id.
    A store remembers the key id it was first written with and refuses another.
    """

    def __init__(
        self, store: EventStore, *, pseudonymiser: Pseudonymiser | None = None, rules: Rules | None = None
    ) -> None:
        self.store = store
        self.pseudonymiser = pseudonymiser
        self.rules = rules or Rules()

    # one method per kind, for discoverability
    def ingest_events(self, source: Source, *, rejects_path: str | Path | None = None) -> IngestReport:
        return self.ingest("events", source, rejects_path=rejects_path)

    def ingest_items(self, source: Source, *, rejects_path: str | Path | None = None) -> IngestReport:
        return self.ingest("items", source, rejects_path=rejects_path)

    def ingest_users(self, source: Source, *, rejects_path: str | Path | None = None) -> IngestReport:
        return self.ingest("users", source, rejects_path=rejects_path)

    def ingest_rooms(self, source: Source, *, rejects_path: str | Path | None = None) -> IngestReport:
        return self.ingest("rooms", source, rejects_path=rejects_path)

    def ingest_shelf(self, source: Source, *, rejects_path: str | Path | None = None) -> IngestReport:
        return self.ingest("shelf", source, rejects_path=rejects_path)

    def ingest_hosts(self, source: Source, *, rejects_path: str | Path | None = None) -> IngestReport:
        return self.ingest("hosts", source, rejects_path=rejects_path)

    def stored_user_id(self, raw_id: str) -> str:
        """The id a raw user id is stored under (its pseudonym when pseudonymising)."""
        return self.pseudonymiser(raw_id) if self.pseudonymiser is not None else str(raw_id)

    def _key_meta(self, kind: str) -> dict[str, str]:
        if kind not in _USER_KINDS:
            return {}
        key_id = self.pseudonymiser.key_id if self.pseudonymiser is not None else "none"
        stored = self.store.meta("pseudonym_key_id")
        if stored is not None and stored != key_id:
            want = "no pseudonymisation" if stored == "none" else f"the key with id {stored!r}"
            got = "no pseudonymisation" if key_id == "none" else f"a key with id {key_id!r}"
            raise ConfigError(
                f"The store at '{self.store.path}' holds user ids written with {want}, but this ingest uses "
                f"{got}. Mixing would break the link between a user's events; use the same "
                f"LIVESHELF_PSEUDONYM_KEY (or --no-pseudonymise) as before, or a new --home."
            )
        return {"pseudonym_key_id": key_id}

    def ingest(self, kind: str, source: Source, *, rejects_path: str | Path | None = None) -> IngestReport:
        """Read, validate and store one batch of ``kind``; see :class:`IngestReport`."""
        check_kind(kind)
        t0 = time.perf_counter()
        raw, label = to_table(source)
        if raw.num_rows == 0:
            return IngestReport(kind=kind, source=label, seconds=time.perf_counter() - t0)
        meta = self._key_meta(kind)
        checked: Validated = validate(
            kind, raw, self.rules, self.pseudonymiser if kind in _USER_KINDS else None
        )
        report = IngestReport(
            kind=kind,
            source=label,
            rows=checked.n_rows,
            rejected=checked.n_rejected,
            rejects=checked.rejects,
            ignored_columns=checked.ignored_columns,
        )
        clean = checked.table
        if kind == "events" and clean.num_rows:
            report.warnings.update(self._event_warnings(clean))
        if clean.num_rows:
            if kind == "events":
                report.inserted, report.duplicate = self.store.insert_events(clean, source=label, meta=meta)
            else:
                report.inserted, report.updated, report.duplicate = self.store.upsert(
                    kind, clean, source=label, meta=meta
                )
        report.accepted = report.inserted + report.updated
        if rejects_path is not None and report.rejected:
            report.rejects_path = write_rejects(checked.rejects, rejects_path)
        report.seconds = time.perf_counter() - t0
        return report

    def ingest_checked(
        self, kind: str, checked: Validated, *, source: str = "<checked>", warnings: bool = True
    ) -> IngestReport:
        """Store one batch the caller already validated (``validate(kind, raw, self.rules, ...)``).

        The same as :meth:`ingest` without reading and validating a second time (the API
        validates once to answer per-row errors); ``warnings=False`` skips the event warnings.
        """
        check_kind(kind)
        if kind == "events":
            return self.store_checked_events(checked, source=source, warnings=warnings)[0]
        t0 = time.perf_counter()
        meta = self._key_meta(kind)
        report = IngestReport(
            kind=kind,
            source=source,
            rows=checked.n_rows,
            rejected=checked.n_rejected,
            rejects=checked.rejects,
            ignored_columns=checked.ignored_columns,
        )
        if checked.table.num_rows:
            report.inserted, report.updated, report.duplicate = self.store.upsert(
                kind, checked.table, source=source, meta=meta
            )
        report.accepted = report.inserted + report.updated
        report.seconds = time.perf_counter() - t0
        return report

    def store_checked_events(
        self, checked: Validated, *, source: str = "<checked>", warnings: bool = True
    ) -> tuple[IngestReport, StoredEvents | None]:
        """:meth:`ingest_checked` for events, also returning what the store took as new (None: no clean row),
        so the caller applies exactly those rows (one insert: no read of the known ids first)."""
        t0 = time.perf_counter()
        meta = self._key_meta("events")
        report = IngestReport(
            kind="events",
            source=source,
            rows=checked.n_rows,
            rejected=checked.n_rejected,
            rejects=checked.rejects,
            ignored_columns=checked.ignored_columns,
        )
        clean = checked.table
        stored = None
        if clean.num_rows:
            if warnings:
                report.warnings.update(self._event_warnings(clean))
            stored = self.store.append_events(clean, source=source, meta=meta)
            report.inserted, report.duplicate = stored.new.num_rows, stored.duplicate
        report.accepted = report.inserted
        report.seconds = time.perf_counter() - t0
        return report, stored

    def _event_warnings(self, clean: pa.Table) -> dict[str, int]:
        """Accepted but suspicious: purchases of items never on any shelf (only when shelf data exists)."""
        shelf_items = self.store.shelf_item_ids()
        if len(shelf_items) == 0:
            return {}
        items = clean.column("item").filter(pc.equal(clean.column("type"), "purchase"))
        n_on_shelf = pc.sum(pc.cast(pc.is_in(items, value_set=shelf_items), pa.int64())).as_py() or 0
        return {"purchase_not_on_shelf": len(items) - int(n_on_shelf)}

    def ingest_world(
        self, folder: str | Path, *, rejects_dir: str | Path | None = None
    ) -> list[IngestReport]:
        """Ingest ``items, users, hosts, rooms, shelf, events`` files found in ``folder``, in that order.

        A kind's file is ``<kind>.parquet`` (or ``.csv`` / ``.jsonl``); absent kinds are skipped.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise NotFoundError(
                f"World folder '{folder}' does not exist or is not a folder. "
                f"Pass the output folder of `liveshelf simulate`."
            )
        found = world_files(folder)
        if not found:
            names = ", ".join(f"{k}.parquet" for k in WORLD_ORDER)
            raise DataFormatError(
                f"Folder '{folder}' holds none of the expected files ({names}; .csv / .jsonl also accepted)."
            )
        reports = []
        for kind, path in found.items():
            rejects = None if rejects_dir is None else Path(rejects_dir) / f"{kind}.rejects.csv"
            reports.append(self.ingest(kind, path, rejects_path=rejects))
        return reports


def world_files(folder: Path) -> dict[str, Path]:
    """The data file of each kind present in ``folder``, in :data:`WORLD_ORDER`."""
    out: dict[str, Path] = {}
    for kind in WORLD_ORDER:
        for ext in (".parquet", ".pq", ".csv", ".jsonl", ".ndjson", ".json"):
            p = folder / f"{kind}{ext}"
            if p.is_file():
                out[kind] = p
                break
    return out


__all__ = [
    "FORMATS",
    "KINDS",
    "WORLD_ORDER",
    "IngestReport",
    "Ingestor",
    "Source",
    "file_format",
    "read_file",
    "to_table",
    "world_files",
    "write_rejects",
]
