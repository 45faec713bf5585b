"""Commands: ``liveshelf loop run|status|forget``: continuous training with a promotion gate.

``run`` watches the event store in ``--home`` and, every ``--every`` new events (or every
``--interval`` seconds), trains a candidate, evaluates it against production on the newest
window, and promotes it only when the gate passes; ``--once`` runs one cycle now.
``status`` shows the watermark, pending events and recent decisions. ``forget`` deletes a
user and marks the models trained on them stale, so the next cycle retrains without them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from liveshelf.cli.app import app

loop_app = typer.Typer(
    help="Continuous training: retrain, gate, promote; forget users.", no_args_is_help=True
)
app.add_typer(loop_app, name="loop")

HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Home folder with the event store (default: LIVESHELF_HOME or ~/.liveshelf).",
        show_default=False,
    ),
]
NameOpt = Annotated[str, typer.Option("--name", help="Registry name the loop trains and promotes.")]


def _home(home: Path | None) -> Path:
    from liveshelf.config import Settings

    return (home if home is not None else Settings().home).expanduser()


def _fail(message: str) -> typer.Exit:
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code=2)


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``["factors=32", "alpha=5.0"]`` -> ``{"factors": 32, "alpha": 5.0}`` (values read as JSON when they parse)."""
    from liveshelf.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"The '--param' option must look like KEY=VALUE (e.g. factors=32). Got {item!r} instead."
            )
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


@loop_app.command("run")
def run(
    home: HomeOpt = None,
    name: NameOpt = "default",
    model: Annotated[
        str, typer.Option("--model", help="Model family to train (pop, itemknn, als, sasrec, ...).")
    ] = "itemknn",
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Model parameter KEY=VALUE (repeatable).")
    ] = None,
    mode: Annotated[str, typer.Option("--mode", help="auto | update | finetune | refit.")] = "auto",
    every: Annotated[int, typer.Option("--every", help="Run a cycle every N new events.")] = 1000,
    interval: Annotated[
        float | None,
        typer.Option(
            "--interval", help="Also run every S seconds when events are pending.", show_default=False
        ),
    ] = None,
    refit_every: Annotated[
        int, typer.Option("--refit-every", help="Full refit every K cycles (0: only when needed).")
    ] = 0,
    metric: Annotated[str, typer.Option("--metric", help="Primary metric of the gate.")] = "ndcg@10",
    margin: Annotated[float, typer.Option("--margin", help="Allowed drop of the primary metric.")] = 0.0,
    relative: Annotated[
        bool,
        typer.Option(
            "--relative/--absolute", help="Margin as a fraction of production's value, or in metric units."
        ),
    ] = False,
    min_coverage: Annotated[
        float,
        typer.Option("--min-coverage-ratio", help="coverage@10 guardrail: at least this x production's."),
    ] = 0.5,
    latency_factor: Annotated[
        float, typer.Option("--latency-factor", help="p95 latency guardrail: at most this x production's.")
    ] = 3.0,
    eval_fraction: Annotated[
        float,
        typer.Option("--eval-fraction", help="First cycle: share of event time held out for evaluation."),
    ] = 0.2,
    once: Annotated[bool, typer.Option("--once", help="Run one cycle now and exit.")] = False,
    max_cycles: Annotated[
        int | None, typer.Option("--max-cycles", help="Stop after this many cycles.", show_default=False)
    ] = None,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between checks of the store.")] = 5.0,
    ranker: Annotated[
        bool,
        typer.Option(
            "--ranker/--no-ranker",
            help="Also retrain the serving ranker every cycle "
            "(from exposures or events), gated per surface against the hand blend.",
        ),
    ] = False,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            "--tracking-uri",
            help="Log each cycle to MLflow: a URI, or 'default' for sqlite:///<home>/mlflow.db.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Watch the store; train, evaluate and gate candidates; promote the ones that pass."""
    from rich.console import Console

    from liveshelf.errors import LiveshelfError
    from liveshelf.experiment.gate import GateConfig
    from liveshelf.experiment.loop import ContinuousLoop, LoopConfig

    console = Console(soft_wrap=True)
    try:
        config = LoopConfig(
            name=name,
            model=model,
            params=parse_params(param),
            mode=mode,
            every_events=every,
            interval_s=interval,
            refit_every=refit_every,
            eval_fraction=eval_fraction,
            ranker=ranker,
            gate=GateConfig(
                metric=metric,
                margin=margin,
                relative=relative,
                min_coverage_ratio=min_coverage,
                latency_factor=latency_factor,
            ),
        )
        loop = ContinuousLoop(
            _home(home),
            config,
            log=lambda m: console.print(m, highlight=False, markup=False),
            tracking_uri=tracking_uri,
        )
        if once:
            results = [loop.run_once(trigger="manual")]
        else:
            console.print(
                f"watching {loop.source!r}: a cycle every {every} new events"
                + (f" or {interval:g}s" if interval else "")
                + " (Ctrl-C stops)",
                highlight=False,
            )
            try:
                results = loop.run(max_cycles=max_cycles, poll_s=poll)
            except KeyboardInterrupt:
                results = []
    except LiveshelfError as exc:
        raise _fail(str(exc)) from exc
    _print_results(console, [r.as_dict() for r in results if r is not None])


def _print_results(console: Any, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    if not rows:
        return
    table = Table(title="loop decisions")
    for col in (
        "cycle",
        "trigger",
        "mode",
        "version",
        "parent",
        "decision",
        "metric",
        "production",
        "reasons",
    ):
        table.add_column(col, overflow="fold")
    for r in rows:
        metric = next((k for k in r.get("checks", {}) if "@" in k and k != "coverage@10"), None)
        m = r["checks"].get(metric, {}) if metric else {}
        cand, prod = m.get("candidate"), m.get("production")
        table.add_row(
            str(r["cycle"]),
            str(r["trigger"]),
            str(r["mode"]),
            str(r["version"] or "-"),
            str(r["production"] or "-"),
            r["decision"],
            f"{metric}={cand:.4f}" if metric and cand is not None else "-",
            f"{prod:.4f}" if prod is not None else "-",
            "; ".join(r["reasons"]) or "-",
        )
    console.print(table)


@loop_app.command("status")
def status(
    home: HomeOpt = None,
    name: NameOpt = "default",
    last: Annotated[int, typer.Option("--last", help="Decisions to show.")] = 10,
) -> None:
    """Watermark, pending events, production version (stale or not) and the latest decisions."""
    from rich.console import Console

    from liveshelf.errors import LiveshelfError
    from liveshelf.experiment.loop import ContinuousLoop, LoopConfig

    console = Console(soft_wrap=True)
    try:
        loop = ContinuousLoop(_home(home), LoopConfig(name=name))
        state = loop.state()
        prod = loop.registry.production(name) if loop.registry.versions(name) else None
        pending = loop.pending()
        stale = loop.production_stale()
    except LiveshelfError as exc:
        raise _fail(str(exc)) from exc
    wm = state.get("watermark") or {}
    console.print(
        f"loop {name!r}: {state.get('cycles', 0)} cycles, last run {state.get('last_run_at') or '-'}",
        highlight=False,
    )
    console.print(
        f"watermark: seq {wm.get('seq', '-')}, {wm.get('events', 0)} events; pending: {pending}",
        highlight=False,
    )
    console.print(
        f"production: {prod.version if prod else '-'}" + (" (STALE: retrained next cycle)" if stale else ""),
        highlight=False,
    )
    _print_results(console, loop.decisions()[-last:])


@loop_app.command("forget")
def forget(
    user: Annotated[str, typer.Argument(help="The raw user id (or the stored pseudonym with --pseudonym).")],
    home: HomeOpt = None,
    pseudonym: Annotated[
        bool, typer.Option("--pseudonym", help="USER is the stored pseudonym, not the raw id.")
    ] = False,
) -> None:
    """Delete a user's events and mark the model versions trained on them stale (retrained next cycle).

    Raw ids of a pseudonymised store are hashed with LIVESHELF_PSEUDONYM_KEY.
    """
    from liveshelf.errors import LiveshelfError
    from liveshelf.serving.deletion import forget_user

    try:
        report = forget_user(_home(home), None if pseudonym else user, pseudonym=user if pseudonym else None)
    except LiveshelfError as exc:
        raise _fail(str(exc)) from exc
    stale = ", ".join(f"{n}: {' '.join(v)}" for n, v in report.stale.items()) or "none"
    typer.echo(
        f"deleted {report.events} events and {report.users} profile rows; stale model versions: {stale}"
    )
