"""Commands: ``liveshelf models list|promote|rollback`` over the registry in ``<home>/models``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from liveshelf.cli.app import app

if TYPE_CHECKING:
    from liveshelf.registry import ModelRegistry

models_app = typer.Typer(help="List, promote and roll back registered model versions.", no_args_is_help=True)
app.add_typer(models_app, name="models")

HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Home folder (default: LIVESHELF_HOME or ~/.liveshelf); the registry is <home>/models.",
        show_default=False,
    ),
]
NameOpt = Annotated[
    str | None,
    typer.Option(
        "--name", help="Model name (may be left out when the registry holds one model).", show_default=False
    ),
]
VersionArg = Annotated[str, typer.Argument(help="A version such as v0003.", show_default=False)]


def _fail(message: str) -> typer.Exit:
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code=2)


def _registry(home: Path | None) -> ModelRegistry:
    from liveshelf.config import Settings
    from liveshelf.registry import ModelRegistry

    return ModelRegistry((home if home is not None else Settings().home) / "models")


def _name(reg: ModelRegistry, name: str | None) -> str:
    if name is not None:
        return name
    names = reg.names()
    if len(names) == 1:
        return names[0]
    if not names:
        raise _fail(f"The registry at '{reg.root}' holds no models. Register one first (training does).")
    raise _fail(f"The registry holds several models ({', '.join(names)}); choose one with --name.")


def _metrics(metrics: dict) -> str:
    parts = []
    for k, v in sorted(metrics.items()):
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(parts) or "-"


@models_app.command("list")
def list_(home: HomeOpt = None, name: NameOpt = None) -> None:
    """Show every registered version with its metrics, parent and production mark."""
    from rich.console import Console
    from rich.table import Table

    from liveshelf.errors import LiveshelfError

    reg = _registry(home)
    try:
        rows = reg.list(name)
    except LiveshelfError as exc:
        raise _fail(str(exc)) from exc
    console = Console(soft_wrap=True)
    if not rows:
        console.print(f"No models registered under {reg.root}.", highlight=False, markup=False)
        return
    table = Table(title=f"models in {reg.root}")
    for col in ("name", "version", "prod", "type", "created", "parent", "metrics"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r.name,
            r.version,
            "*" if r.production else "",
            r.model_type,
            r.created_at,
            str(r.lineage.get("parent") or "-"),
            _metrics(r.metrics),
        )
    console.print(table)


@models_app.command("promote")
def promote(version: VersionArg, home: HomeOpt = None, name: NameOpt = None) -> None:
    """Make VERSION the production model (servers swap to it within their poll interval)."""
    from liveshelf.errors import LiveshelfError

    reg = _registry(home)
    model = _name(reg, name)
    try:
        info = reg.promote(model, version)
    except LiveshelfError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"{model}: production is now {info.version}")


@models_app.command("rollback")
def rollback(home: HomeOpt = None, name: NameOpt = None) -> None:
    """Restore the previous production version."""
    from liveshelf.errors import LiveshelfError

    reg = _registry(home)
    model = _name(reg, name)
    before = reg.production(model) if reg.versions(model) else None
    try:
        info = reg.rollback(model)
    except LiveshelfError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"{model}: rolled back from {before.version if before else '-'} to {info.version}")
