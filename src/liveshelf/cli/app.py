"""The typer application; command modules attach their commands to ``app``."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="liveshelf",
    help="Real-time recommendation for live-stream commerce.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def version() -> None:
    """Print the liveshelf version."""
    from liveshelf import __version__

    typer.echo(__version__)
