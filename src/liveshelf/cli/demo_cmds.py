"""Command ``liveshelf demo``: the main job on the embedded defaults, no server to install."""

from __future__ import annotations

from pathlib import Path

import typer

from liveshelf.cli.app import app


@app.command("demo")
def demo_cmd(
    home: Path = typer.Option(Path(".liveshelf/demo"), "--home", help="Folder for the demo store and files."),
    users: int = typer.Option(2000, "--users", help="Simulated viewers."),
    hosts: int = typer.Option(40, "--hosts", help="Simulated hosts."),
    days: int = typer.Option(2, "--days", help="Simulated days."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    fresh: bool = typer.Option(True, "--fresh/--keep", help="Start from an empty demo folder."),
) -> None:
    """Simulate a live-commerce world, ingest it into the event store, train and evaluate quick models."""
    from rich.console import Console

    from liveshelf.demo import run_demo

    run_demo(home=home, users=users, hosts=hosts, days=days, seed=seed, fresh=fresh, console=Console())
