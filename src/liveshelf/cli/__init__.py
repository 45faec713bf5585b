"""Command line: ``liveshelf ingest|simulate|evaluate|serve|demo|...``.

Each command lives in its own module and attaches itself to :data:`app`; heavy imports
happen inside the command functions so ``liveshelf --help`` stays fast.
"""

from __future__ import annotations

import sys

from liveshelf.cli import (  # noqa: F401  (each module registers its commands)
    ab_cmds,
    demo_cmds,
    distributed_cmds,
    evaluate_cmds,
    federated_cmds,
    finetune_cmds,
    index_cmds,
    ingest_cmds,
    loop_cmds,
    models_cmds,
    ranker_cmds,
    sentiment_cmds,
    serve_cmds,
    simulate_cmds,
)
from liveshelf.cli.app import app
from liveshelf.errors import LiveshelfError


def main() -> None:
    try:
        app()
    except LiveshelfError as exc:
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


__all__ = ["app", "main"]
