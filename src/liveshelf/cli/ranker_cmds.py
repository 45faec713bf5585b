"""Commands: ``liveshelf ranker train``: the learned ranking stage of serving.

``train`` builds training rows from the exposure log (``--from exposures``: what the server showed
and what viewers did next) or by replaying the store's events (``--from events``: each click / cart /
purchase in a room is a query over the shelf available then), fits a LightGBM lambdarank ranker per
surface, evaluates it against the hand blend on the newest queries, registers it (``--name``) and
promotes it when it is not worse (``--no-promote`` only registers). A running server picks a
promoted ranker up within a second.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from liveshelf.cli.app import app
from liveshelf.cli.loop_cmds import HomeOpt, _fail, _home, parse_params

ranker_app = typer.Typer(
    help="The learned ranker of serving: train, evaluate, register, promote.", no_args_is_help=True
)
app.add_typer(ranker_app, name="ranker")


@ranker_app.command("train")
def train(
    home: HomeOpt = None,
    source: Annotated[
        str,
        typer.Option(
            "--from", help="exposures | events | auto (exposures when enough are labelled, else events)."
        ),
    ] = "auto",
    name: Annotated[
        str, typer.Option("--name", help="Registry name of the ranker (the server's ranker_model).")
    ] = "ranker",
    window: Annotated[
        float,
        typer.Option(
            "--window",
            help="Attribution window in seconds: outcomes this long after an exposure count for it.",
        ),
    ] = 1800.0,
    min_queries: Annotated[
        int, typer.Option("--min-queries", help="auto: the labelled requests needed to train from exposures.")
    ] = 200,
    max_queries: Annotated[
        int,
        typer.Option("--max-queries", help="events: at most this many replayed queries (sampled, seeded)."),
    ] = 3000,
    test_share: Annotated[
        float, typer.Option("--test-share", help="Newest share of queries held out.")
    ] = 0.2,
    margin: Annotated[
        float,
        typer.Option("--margin", help="Promote only when held-out NDCG@5 >= the hand blend's + margin."),
    ] = 0.0,
    promote: Annotated[
        bool, typer.Option("--promote/--no-promote", help="Promote when the gate passes.")
    ] = True,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="Ranker parameter KEY=VALUE (repeatable): "
            "n_estimators, learning_rate, num_leaves, position, ...",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the report as JSON here.", show_default=False)
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            "--tracking-uri",
            help="Log the run to MLflow: a URI, or 'default' for sqlite:///<home>/mlflow.db.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train the serving ranker from exposures or events; evaluate, register and (gated) promote it."""
    from rich.console import Console
    from rich.table import Table

    from liveshelf.errors import LiveshelfError
    from liveshelf.experiment.ranker_train import train_ranker

    console = Console(soft_wrap=True)
    from liveshelf.core.tracking import track_run

    home_dir = _home(home)
    with track_run(
        "ranker",
        tracking_uri=tracking_uri,
        home=home_dir,
        params={
            "home": home_dir,
            "from": source,
            "name": name,
            "window": window,
            "test_share": test_share,
            "margin": margin,
            "seed": seed,
            **parse_params(param),
        },
    ) as tracker:
        try:
            report = train_ranker(
                home_dir,
                source=source,
                window_s=window,
                min_queries=min_queries,
                max_queries=max_queries,
                test_share=test_share,
                margin=margin,
                promote=promote,
                name=name,
                params=parse_params(param),
                seed=seed,
                log=lambda m: console.print(m, highlight=False, markup=False),
                tracker=tracker,
            )
        except LiveshelfError as exc:
            raise _fail(str(exc)) from exc
        table = Table(title=f"ranker {report.version} (from {report.source})")
        for col in (
            "surface",
            "train queries",
            "test queries",
            "ranker NDCG@5",
            "hand blend",
            "trending",
            "p",
        ):
            table.add_column(col)
        for surface, f in report.surfaces.items():
            nd = f.get("ndcg@5", {})
            table.add_row(
                surface,
                str(f.get("train_queries")),
                str(f.get("queries", 0)),
                f"{nd.get('ranker', float('nan')):.4f}",
                f"{nd.get('hand-blend', float('nan')):.4f}",
                f"{nd.get('trending', float('nan')):.4f}",
                f"{f.get('ranker_vs_blend', {}).get('p_ttest', float('nan')):.3g}",
            )
        console.print(table)
        console.print(report.reason, highlight=False, markup=False)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report.to_dict(), indent=2))
        tracker.log_dict(report.to_dict(), "report.json")
