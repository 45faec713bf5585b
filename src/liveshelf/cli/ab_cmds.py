"""Commands: ``liveshelf ab create|status|report|stop`` over the experiments in ``<home>/experiments``.

A running server picks up a created (running) or stopped experiment within a second.

    liveshelf ab create ranker-v2 --arm control=default@v0001 --arm treatment=default@v0002
    liveshelf ab create blend --arm control=production --arm more-trending=production \\
        --settings 'more-trending={"weights": {"trending": 1.2}}' --shares 0.5,0.5
    liveshelf ab status
    liveshelf ab report ranker-v2          # report.md + report.png + report.json in the folder
    liveshelf ab stop ranker-v2
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from liveshelf.cli.app import app

ab_app = typer.Typer(help="Create, watch, report and stop A/B experiments.", no_args_is_help=True)
app.add_typer(ab_app, name="ab")

HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Home folder (default: LIVESHELF_HOME or ~/.liveshelf); experiments live in <home>/experiments.",
        show_default=False,
    ),
]
NameArg = Annotated[str, typer.Argument(help="The experiment's name.", show_default=False)]


def _fail(message: str) -> typer.Exit:
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code=2)


def _store(home: Path | None):  # noqa: ANN202 - imported lazily to keep --help fast
    from liveshelf.config import Settings
    from liveshelf.serving.abtest import ExperimentStore

    return ExperimentStore(home if home is not None else Settings().home)


def _shares(text: str | None, n: int) -> list[float]:
    if text is None:
        return [1.0 / n] * n
    try:
        shares = [float(x) for x in text.split(",")]
    except ValueError:
        raise _fail(
            f"The '--shares' option must be comma-separated numbers such as 0.5,0.5. Got {text!r} instead."
        ) from None
    if len(shares) != n:
        raise _fail(
            f"The '--shares' option must give one share per arm ({n} arms). Got {len(shares)}: {text!r}."
        )
    return shares


def _settings(items: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for text in items:
        name, sep, js = text.partition("=")
        try:
            value = json.loads(js) if sep else None
        except json.JSONDecodeError as exc:
            raise _fail(
                f"The '--settings' option must look like ARM='{{\"mmr_lambda\": 1.0}}' (JSON). Got {text!r} "
                f"instead ({exc.msg})."
            ) from None
        if not isinstance(value, dict):
            raise _fail(
                f"The '--settings' option must look like ARM='{{\"mmr_lambda\": 1.0}}' (a JSON object). "
                f"Got {text!r} instead."
            )
        out[name.strip()] = value
    return out


def _check_models(home: Path, arms: list) -> None:
    """Every pinned model version must exist in the registry (else the server could not serve the arm)."""
    from liveshelf.registry import ModelRegistry

    reg = ModelRegistry(home / "models")
    for a in arms:
        if a.model is None:
            continue
        if a.version is None:
            if reg.production(a.model) is None:
                raise _fail(
                    f"Arm {a.name!r}: model {a.model!r} has no production version in {reg.root}. "
                    "Promote one ('liveshelf models promote') or pin a version as MODEL@VERSION."
                )
        else:
            reg.path(a.model, a.version)  # NotFoundError naming the versions there are


@ab_app.command("create")
def create(
    name: NameArg,
    arm: Annotated[
        list[str],
        typer.Option(
            "--arm",
            help="NAME=MODEL@VERSION, NAME=MODEL (its production) or NAME=production; "
            "the first arm is the control. Repeat for each arm.",
        ),
    ],
    shares: Annotated[
        str | None,
        typer.Option(
            help="Traffic share per arm, e.g. 0.5,0.5 (default even; "
            "a sum < 1 leaves the rest outside the test)."
        ),
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--settings",
            help="ARM='{json}': pipeline settings of an arm (weights, mmr_lambda, host_cap, ...).",
        ),
    ] = None,
    primary: Annotated[
        str,
        typer.Option(
            help="Primary metric: ctr, cart_rate, conversion, gmv_per_viewer or watch_s_per_viewer."
        ),
    ] = "ctr",
    surface: Annotated[
        list[str] | None,
        typer.Option("--surface", help="Where the test runs: feed and/or shelf (default both)."),
    ] = None,
    guardrail: Annotated[
        list[str] | None,
        typer.Option(
            "--guardrail", help="METRIC:MAX_DROP, e.g. conversion:0.05 (relative drop that fails the test)."
        ),
    ] = None,
    alpha: Annotated[float, typer.Option(help="Significance level of the sequential test.")] = 0.05,
    salt: Annotated[
        str | None, typer.Option(help="Bucketing salt (default: derived from name and time).")
    ] = None,
    draft: Annotated[bool, typer.Option("--draft", help="Create without starting it.")] = False,
    home: HomeOpt = None,
) -> None:
    """Create (and start) an experiment; a running server starts assigning viewers within a second."""
    from rich.console import Console

    from liveshelf.errors import LiveshelfError
    from liveshelf.serving.abtest import Arm, Experiment, Guardrail

    try:
        parsed = [Arm.parse(a) for a in arm]
        for a, s in zip(parsed, _shares(shares, len(parsed)), strict=True):
            a.share = s
        extra = _settings(settings or [])
        unknown = sorted(set(extra) - {a.name for a in parsed})
        if unknown:
            raise _fail(
                f"The '--settings' option names arm(s) {unknown} that are not among --arm "
                f"{[a.name for a in parsed]}."
            )
        for a in parsed:
            a.settings = extra.get(a.name, {})
        guards = []
        for g in guardrail or []:
            metric, _, drop = g.partition(":")
            guards.append(Guardrail(metric, float(drop) if drop else 0.05))
        exp = Experiment(
            name,
            parsed,
            salt=salt or "",
            surfaces=surface or ["feed", "shelf"],
            primary=primary,
            guardrails=guards,
            alpha=alpha,
        )
        store = _store(home)
        _check_models(store.home, parsed)
        exp = store.create(exp, start=not draft)
    except (LiveshelfError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    Console(soft_wrap=True).print(
        f"experiment {exp.name} {exp.status}: "
        + ", ".join(f"{a.name} ({a.share:g}) = {a.describe()}" for a in exp.arms),
        markup=False,
        highlight=False,
    )


@ab_app.command("status")
def status(home: HomeOpt = None) -> None:
    """List the experiments with status, arms, shares and exposed users so far."""
    from rich.console import Console
    from rich.table import Table

    store = _store(home)
    rows = store.list()
    console = Console(soft_wrap=True)
    if not rows:
        console.print(f"No experiments under {store.root}.", markup=False, highlight=False)
        return
    table = Table(title=f"experiments in {store.root}")
    for col in ("name", "status", "arms", "shares", "exposed users", "created", "report"):
        table.add_column(col, overflow="fold")
    for r in rows:
        users: dict[str, set] = {}
        for e in store.exposures(r["name"]):
            users.setdefault(e.get("arm", "?"), set()).add(e.get("user"))
        counts = ", ".join(f"{a}: {len(users.get(a, ()))}" for a in r["arms"])
        table.add_row(
            r["name"],
            r["status"],
            ", ".join(f"{a}={r['arm_specs'][a]}" for a in r["arms"]),
            ",".join(f"{s:g}" for s in r["shares"]),
            counts,
            r["created_at"],
            r["reports"].get("markdown", "-"),
        )
    console.print(table)


@ab_app.command("report")
def report(
    name: NameArg,
    home: HomeOpt = None,
    looks: Annotated[int, typer.Option(min=1, max=500, help="Looks of the p-value-over-time curve.")] = 30,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
) -> None:
    """Analyse the logs; write report.md, report.png and report.json into the experiment's folder."""
    from rich.console import Console

    from liveshelf.errors import LiveshelfError
    from liveshelf.experiment.ab_report import analyse, write_report

    store = _store(home)
    try:
        exp = store.get(name)
        result = analyse(exp, store.exposures(name), store.outcomes(name), looks=looks, seed=seed)
    except LiveshelfError as exc:
        raise _fail(str(exc)) from exc
    paths = write_report(result, store.folder(name))
    console = Console(soft_wrap=True)
    console.print(f"{result['users']} users exposed", markup=False, highlight=False)
    for arm, c in result["comparisons"].items():
        m = c["metrics"][c["primary"]]
        console.print(
            f"{arm} vs {result['control']}: {c['primary']} {m['estimate']:+.4g} "
            f"[{m['low']:+.4g}, {m['high']:+.4g}], always-valid p = {c['always_valid_p']:.4g}"
            f"{' (significant)' if c['significant'] else ''}",
            markup=False,
            highlight=False,
        )
    if result["srm"] is not None and result["srm"]["mismatch"]:
        console.print(
            f"[bold red]sample ratio mismatch[/] (p = {result['srm']['p_value']:.2g}): do not trust "
            "this test.",
            highlight=False,
        )
    for kind, p in paths.items():
        console.print(f"{kind}: {p}", markup=False, highlight=False)


@ab_app.command("stop")
def stop(name: NameArg, home: HomeOpt = None) -> None:
    """Stop an experiment: servers go back to the production pipeline for everyone."""
    from rich.console import Console

    from liveshelf.errors import LiveshelfError

    try:
        exp = _store(home).stop(name)
    except LiveshelfError as exc:
        raise _fail(str(exc)) from exc
    Console().print(f"experiment {exp.name} stopped at {exp.stopped_at}", markup=False, highlight=False)
