"""Command ``liveshelf demo``: the whole product on a simulated world, in one command, no server to install."""

from __future__ import annotations

from pathlib import Path

import typer

from liveshelf.cli.app import app


@app.command("demo")
def demo_cmd(
    home: Path | None = typer.Option(
        None,
        "--home",
        help="Folder for the demo store, registry and files "
        "(default: <LIVESHELF_HOME or ~/.liveshelf>/demo).",
        show_default=False,
    ),
    users: int = typer.Option(2000, "--users", min=1, help="Simulated viewers."),
    hosts: int = typer.Option(40, "--hosts", min=1, help="Simulated hosts."),
    days: int = typer.Option(
        2, "--days", min=1, help="Simulated days of history (one more day is replayed live)."
    ),
    en_share: float = typer.Option(
        0.3,
        "--en-share",
        min=0.0,
        max=1.0,
        help="Share of English-speaking hosts (and their items); the rest is Chinese.",
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    fresh: bool = typer.Option(True, "--fresh/--keep", help="Start from an empty demo folder."),
    text_epochs: int = typer.Option(
        3, "--text-epochs", min=1, help="Training epochs of the text model (textseq)."
    ),
    serve: bool = typer.Option(
        True,
        "--serve/--no-serve",
        help="Start the server and replay live traffic "
        "(--no-serve stops after training and registering the models).",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address the server listens on."),
    port: int = typer.Option(
        8000,
        "--port",
        min=0,
        max=65535,
        help="Port of the server; a free one is used when it is taken (0: any free port).",
    ),
    duration: float | None = typer.Option(
        None,
        "--duration",
        min=1.0,
        show_default=False,
        help="Seconds the server and the live traffic run, then everything "
        "stops by itself (default: until Ctrl-C).",
    ),
    speed: float = typer.Option(60.0, "--speed", min=0.1, help="Simulated seconds replayed per real second."),
    rate: float = typer.Option(
        10.0, "--rate", min=0.0, help="Feed/shelf/next-item requests per second (at most)."
    ),
) -> None:
    """Simulate a live-commerce world, ingest it, train, evaluate and register models, then serve it with the
    dashboard and replay live traffic against it."""
    from rich.console import Console

    from liveshelf.config import Settings
    from liveshelf.demo import run_demo

    run_demo(
        home=home if home is not None else Settings().home / "demo",
        users=users,
        hosts=hosts,
        days=days,
        seed=seed,
        fresh=fresh,
        console=Console(),
        text_epochs=text_epochs,
        en_share=en_share,
        serve=serve,
        host=host,
        port=port,
        duration=duration,
        speed=speed,
        rate=rate,
    )
