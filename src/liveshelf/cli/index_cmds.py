"""Commands: ``liveshelf index build``: precompute the content neighbours the server's feed searches.

The ``similar`` source looks up the nearest items (content vectors: hashed TF-IDF of the item text,
or the production model's item embeddings) of a viewer's recent items. Searched on demand, each new
item costs a scan of the catalogue on the request; ``index build`` computes every item's neighbours
once and writes them under ``<home>/cache`` (memory-mapped by the server at start-up; used only for
the exact catalogue and settings it was built from - rebuild after the catalogue changes).
"""

from __future__ import annotations

import time

import typer

from liveshelf.cli.app import app
from liveshelf.cli.loop_cmds import HomeOpt, _fail, _home

index_app = typer.Typer(help="Serving indexes built ahead of time.", no_args_is_help=True)
app.add_typer(index_app, name="index")


@index_app.command("build")
def build(home: HomeOpt = None) -> None:
    """Every item's content neighbours, as the server would search them, saved under <home>/cache."""
    from rich.console import Console
    from tqdm import tqdm

    from liveshelf.errors import LiveshelfError
    from liveshelf.serving.deps import build_services
    from liveshelf.serving.settings import ServeSettings

    folder = _home(home)
    if not (folder / "events.duckdb").is_file():
        raise _fail(f"No event store under {folder}: ingest a catalogue first (liveshelf ingest items ...).")
    t0 = time.perf_counter()
    try:
        services = build_services(ServeSettings(home=folder, text=False, log_exposures=False))
    except LiveshelfError as exc:
        raise _fail(str(exc)) from exc
    try:
        pipe = services.pipeline
        index = pipe.content()
        if not index.ids:
            raise _fail(f"The catalogue under {folder} is empty: nothing to index.")
        k = pipe.neighbour_k(index)
        with tqdm(total=len(index.ids), desc="neighbours", unit="item") as bar:
            path = index.save_table(pipe.neighbour_folder(), k, progress=bar.update)
    finally:
        services.close()
    Console().print(
        f"{len(index.ids)} items x {k} neighbours ({index.origin}) in "
        f"{time.perf_counter() - t0:.1f} s -> {path}-{{sims,rows}}.npy"
    )
