"""Commands: ``liveshelf ingest events|items|users|rooms|shelf|hosts FILE``, ``ingest world DIR`` and
``ingest embeddings FILE --modality NAME``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from liveshelf.cli.app import app

if TYPE_CHECKING:
    from liveshelf.data.ingest import IngestReport

ingest_app = typer.Typer(
    help="Validate, clean and load data files (CSV, Parquet, JSONL) into the event store.",
    no_args_is_help=True,
)
app.add_typer(ingest_app, name="ingest")

FileArg = Annotated[Path, typer.Argument(help="A .csv, .parquet or .jsonl file.", show_default=False)]
HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home", help="Store folder (default: LIVESHELF_HOME or ~/.liveshelf).", show_default=False
    ),
]
RejectsOpt = Annotated[
    Path | None,
    typer.Option(
        "--rejects",
        help="Where to write rejected rows (.csv or .jsonl); default <home>/rejects/.",
        show_default=False,
    ),
]
PseudoOpt = Annotated[
    bool | None,
    typer.Option(
        "--pseudonymise/--no-pseudonymise",
        help="Replace user ids by keyed HMACs (key: LIVESHELF_PSEUDONYM_KEY). Default: on when the key is set.",
        show_default=False,
    ),
]
FutureOpt = Annotated[
    float,
    typer.Option(
        "--max-future-days",
        min=0.0,
        help="Reject timestamps more than this many days after now (simulated worlds dated ahead need more).",
    ),
]


def _fail(message: str) -> typer.Exit:
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code=2)


def _ingestor(home: Path | None, pseudonymise: bool | None, max_future_days: float):  # -> (store, ingestor)
    from datetime import timedelta

    from liveshelf.config import Settings
    from liveshelf.data.ingest import Ingestor
    from liveshelf.data.store import EventStore
    from liveshelf.data.validate import Rules
    from liveshelf.privacy.pseudonym import from_settings

    settings = Settings()
    pseudonymiser = None if pseudonymise is False else from_settings(settings, required=bool(pseudonymise))
    store = EventStore(home if home is not None else settings.home)
    rules = Rules(max_future=timedelta(days=max_future_days))
    return store, Ingestor(store, pseudonymiser=pseudonymiser, rules=rules)


def _default_rejects(home: Path, kind: str, source: Path) -> Path:
    import time

    return home / "rejects" / f"{kind}-{source.stem}-{time.strftime('%Y%m%dT%H%M%S')}.csv"


def _print_reports(reports: list[IngestReport]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)
    table = Table(title="ingest summary")
    for col in ("kind", "rows", "accepted", "rejected", "duplicate", "warnings", "seconds"):
        table.add_column(col, justify="left" if col in ("kind", "warnings") else "right")
    for r in reports:
        warnings = ", ".join(f"{k}={v}" for k, v in r.warnings.items()) or "-"
        table.add_row(
            r.kind,
            str(r.rows),
            str(r.accepted),
            str(r.rejected),
            str(r.duplicate),
            warnings,
            f"{r.seconds:.2f}",
        )
    console.print(table)
    for r in reports:
        line = (
            f"{r.kind}: accepted={r.accepted} (new={r.inserted}, updated={r.updated}) "
            f"rejected={r.rejected} duplicate={r.duplicate}"
        )
        for k, v in r.warnings.items():
            line += f" warning {k}={v}"
        console.print(line, highlight=False, markup=False)
        if r.rejects_path is not None:
            console.print(f"  rejected rows written to {r.rejects_path}", highlight=False, markup=False)
        if r.ignored_columns:
            console.print(f"  ignored columns: {', '.join(r.ignored_columns)}", highlight=False, markup=False)


def _ingest_file(
    kind: str,
    file: Path,
    home: Path | None,
    rejects: Path | None,
    pseudonymise: bool | None,
    max_future_days: float = 1.0,
) -> None:
    from liveshelf.data.ingest import file_format
    from liveshelf.errors import LiveshelfError

    try:
        file_format(file)
        if not file.is_file():
            raise _fail(f"Input file '{file}' does not exist (or is not a file). Check the path.")
        store, ingestor = _ingestor(home, pseudonymise, max_future_days)
        try:
            target = rejects if rejects is not None else _default_rejects(store.home, kind, file)
            report = ingestor.ingest(kind, file, rejects_path=target)
        finally:
            store.close()
    except LiveshelfError as exc:
        raise _fail(str(exc)) from exc
    _print_reports([report])


@ingest_app.command("events")
def events(
    file: FileArg,
    home: HomeOpt = None,
    rejects: RejectsOpt = None,
    pseudonymise: PseudoOpt = None,
    max_future_days: FutureOpt = 1.0,
) -> None:
    """Ingest events (event_id, ts, user, type, room, item, value, text); idempotent by event_id."""
    _ingest_file("events", file, home, rejects, pseudonymise, max_future_days)


@ingest_app.command("items")
def items(file: FileArg, home: HomeOpt = None, rejects: RejectsOpt = None) -> None:
    """Ingest the item catalogue; rows upsert by id."""
    _ingest_file("items", file, home, rejects, False)


@ingest_app.command("users")
def users(
    file: FileArg, home: HomeOpt = None, rejects: RejectsOpt = None, pseudonymise: PseudoOpt = None
) -> None:
    """Ingest user profiles; rows upsert by id (pseudonymised like the events)."""
    _ingest_file("users", file, home, rejects, pseudonymise)


@ingest_app.command("rooms")
def rooms(
    file: FileArg, home: HomeOpt = None, rejects: RejectsOpt = None, max_future_days: FutureOpt = 1.0
) -> None:
    """Ingest live rooms (id, host, title, start, end); rows upsert by id."""
    _ingest_file("rooms", file, home, rejects, False, max_future_days)


@ingest_app.command("shelf")
def shelf(
    file: FileArg, home: HomeOpt = None, rejects: RejectsOpt = None, max_future_days: FutureOpt = 1.0
) -> None:
    """Ingest shelf slots (room, item, start, end, pinned); rows upsert by (room, item, start)."""
    _ingest_file("shelf", file, home, rejects, False, max_future_days)


@ingest_app.command("hosts")
def hosts(file: FileArg, home: HomeOpt = None, rejects: RejectsOpt = None) -> None:
    """Ingest hosts (id, name, categories); rows upsert by id."""
    _ingest_file("hosts", file, home, rejects, False)


@ingest_app.command("world")
def world(
    folder: Annotated[
        Path,
        typer.Argument(help="A folder with items/users/hosts/rooms/shelf/events files.", show_default=False),
    ],
    home: HomeOpt = None,
    pseudonymise: PseudoOpt = None,
    max_future_days: FutureOpt = 1.0,
) -> None:
    """Ingest a whole folder (e.g. the output of `liveshelf simulate`): items, users, hosts, rooms, shelf, events."""
    from liveshelf.errors import LiveshelfError

    try:
        store, ingestor = _ingestor(home, pseudonymise, max_future_days)
        try:
            reports = ingestor.ingest_world(folder, rejects_dir=store.home / "rejects" / folder.name)
        finally:
            store.close()
    except LiveshelfError as exc:
        raise _fail(str(exc)) from exc
    _print_reports(reports)


@ingest_app.command("embeddings")
def embeddings(
    file: Annotated[
        Path,
        typer.Argument(
            help="A .npy matrix (one row per item; pass --ids) or a .parquet file with columns item_id, vector.",
            show_default=False,
        ),
    ],
    modality: Annotated[
        str,
        typer.Option(
            "--modality",
            help="Name of the vectors' modality, e.g. image, video, audio, title_pca128 (lower case, digits, _).",
            show_default=False,
        ),
    ],
    ids: Annotated[
        Path | None,
        typer.Option(
            "--ids",
            help="With a .npy matrix: the item ids in row order (text, one per line; or a .npy / .json list).",
            show_default=False,
        ),
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Store per-item vectors of one modality (cover image, video, audio, the platform's own text vectors)
    with catalogue items; all or nothing, replacing an item's earlier vector of that modality."""
    from liveshelf.config import Settings
    from liveshelf.data.item_vectors import check_modality, read_vector_file
    from liveshelf.data.store import EventStore
    from liveshelf.errors import LiveshelfError

    try:
        check_modality(modality, "--modality")
        vectors = read_vector_file(file, ids, modality)
        if not len(vectors.ids):
            raise _fail(f"'{file}' holds no vectors; nothing was stored.")
        with EventStore(home if home is not None else Settings().home) as store:
            n = store.put_item_vectors(modality, vectors.ids, vectors.vectors, source=str(file))
            path = store.path
    except LiveshelfError as exc:
        raise _fail(str(exc)) from exc
    from rich.console import Console

    Console(soft_wrap=True).print(
        f"stored {n} {modality} vector(s) of dimension {vectors.dim} in {path}", highlight=False, markup=False
    )
