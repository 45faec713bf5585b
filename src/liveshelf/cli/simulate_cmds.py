"""Command ``liveshelf simulate``: write a simulated live-commerce world to a folder."""

from __future__ import annotations

from pathlib import Path

import typer

from liveshelf.cli.app import app


@app.command("simulate")
def simulate_cmd(
    users: int = typer.Option(1000, "--users", help="Number of viewers."),
    hosts: int = typer.Option(50, "--hosts", help="Number of hosts (streamers)."),
    days: int = typer.Option(1, "--days", help="Simulated days."),
    items: int | None = typer.Option(None, "--items", help="Catalogue size (default: 20 per host per day)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives identical files."),
    out: Path = typer.Option(..., "--out", help="Folder for the Parquet files and the ground truth."),
    start: str = typer.Option("2026-11-01", "--start", help="First simulated day (ISO date, UTC)."),
) -> None:
    """Simulate hosts, rooms, shelves, items, users and their events; write Parquet + ground truth."""
    import time

    from rich.console import Console
    from rich.table import Table

    from liveshelf.data.simulate import SimConfig, simulate

    t0 = time.perf_counter()
    world = simulate(
        SimConfig(n_users=users, n_hosts=hosts, days=days, n_items=items, seed=seed, start=start)
    )
    folder = world.save(out)
    ds = world.dataset
    console = Console()
    table = Table(title=f"simulated world (seed {seed}, {time.perf_counter() - t0:.1f}s)")
    table.add_column("what")
    table.add_column("count", justify="right")
    for name in ("users", "hosts", "rooms", "items", "shelf"):
        table.add_row(name if name != "shelf" else "shelf slots", f"{len(getattr(ds, name)):,}")
    counts = ds.events["type"].value_counts()
    for etype, n in counts.items():
        table.add_row(f"event: {etype}", f"{int(n):,}")
    table.add_row("events (all)", f"{len(ds.events):,}")
    console.print(table)
    console.print(f"comments from: {ds.meta.get('comment_source')}")
    console.print(
        f"wrote {', '.join(f'{n}.parquet' for n in ('events', 'items', 'users', 'rooms', 'shelf', 'hosts'))}"
        f", truth.npz, truth.json, world.json to [bold]{folder}[/]"
    )
