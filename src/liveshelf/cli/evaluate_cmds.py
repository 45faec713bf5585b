"""``liveshelf evaluate``: fit and compare recommenders under one protocol, write results + report."""

from __future__ import annotations

from pathlib import Path

import typer

from liveshelf.cli.app import app


@app.command("evaluate")
def evaluate(
    data: str = typer.Option(
        ..., "--data", help="FORMAT:PATH (e.g. unisrec:/data/amazon-scientific) or store:HOMEDIR."
    ),
    model: str = typer.Option(..., "--model", help="Model name(s), comma separated (e.g. pop,itemknn,als)."),
    protocol: str | None = typer.Option(
        None, "--protocol", help="loo | temporal | live (default: live for twitch/kuailive/store, else loo)."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Output folder (default results/<dataset>-<protocol>)."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed for numpy/torch and models that take seed/random_state."
    ),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs, for models that accept 'epochs'."),
    mask_history: bool = typer.Option(
        False, "--mask-history", help="Never rank items already in the history."
    ),
    param: list[str] | None = typer.Option(
        None, "--param", help="NAME.KEY=VALUE model parameter (repeatable)."
    ),
    batch_size: int = typer.Option(512, "--batch-size", help="Test contexts scored per batch."),
    target: str | None = typer.Option(
        None,
        "--target",
        help="What to recommend: item | host (default: host "
        "under live, item otherwise; item under live = shelf items).",
    ),
    rerank: list[str] | None = typer.Option(
        None,
        "--rerank",
        help="Fair re-ranking sweep (repeatable): "
        "fair:lambda=0,0.1,0.3 | cap:0.01,0.02 | calib:lambda=0.5,0.9; "
        "adds results.json 'rerank' and tradeoff.png.",
    ),
    rerank_candidates: int = typer.Option(
        100, "--rerank-candidates", help="Top-N candidates per case that --rerank re-orders."
    ),
    tracking_uri: str | None = typer.Option(
        None,
        "--tracking-uri",
        help="Log the run to MLflow: a tracking URI, or 'default' for sqlite:///<home>/mlflow.db "
        "(default: $LIVESHELF_TRACKING_URI, else off).",
    ),
) -> None:
    """Evaluate recommenders; writes OUT/results.json, OUT/report.md and PNG plots."""
    from rich.console import Console

    from liveshelf.errors import LiveshelfError

    err = Console(stderr=True, soft_wrap=True)
    try:
        from liveshelf.evaluation.report import LIVE_COLUMNS, MAIN_COLUMNS
        from liveshelf.evaluation.runner import parse_params, run

        names = [m.strip() for m in model.split(",") if m.strip()]
        params = parse_params(param, names)
        results = run(
            data,
            names,
            protocol=protocol,
            out=out,
            seed=seed,
            epochs=epochs,
            mask_history=mask_history,
            params=params,
            batch_size=batch_size,
            progress=True,
            target=target,
            log=lambda msg: err.print(f"[dim]{msg}[/]"),
            rerank=rerank,
            rerank_candidates=rerank_candidates,
            tracking_uri=tracking_uri,
        )
    except LiveshelfError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None

    from rich.table import Table

    cols = LIVE_COLUMNS if results["protocol"] == "live" else MAIN_COLUMNS
    table = Table(title=f"{results['dataset']} — {results['protocol']}")
    table.add_column("model")
    for c in (*cols, "coverage@10"):
        table.add_column(c, justify="right")
    table.add_column("fit s", justify="right")
    for name, entry in results["models"].items():
        m = entry["metrics"]
        table.add_row(
            name,
            *[("–" if m.get(c) is None else f"{m[c]:.4f}") for c in (*cols, "coverage@10")],
            f"{entry['fit_seconds']:.1f}",
        )
    console = Console()
    Console(width=max(console.width, 130)).print(table)  # never squeeze the metric names
    if results.get("rerank"):
        _print_rerank(results["rerank"], Console(width=max(console.width, 130)))
    out_dir = out if out is not None else Path("results") / _slug(results)
    typer.echo(f"wrote {out_dir / 'results.json'} and {out_dir / 'report.md'}")


def _print_rerank(rerank: dict, console) -> None:
    from rich.table import Table

    cols = ("ndcg@10", "recall@10", "exposure_gini@10", "tail_share@10", "coverage@10", "ndcg_cost")
    table = Table(title=f"fair re-ranking over the top {rerank['candidates']}")
    table.add_column("model")
    table.add_column("setting")
    for c in cols:
        table.add_column(c, justify="right")
    for name, rows in rerank["models"].items():
        for r in rows:
            table.add_row(name, r["label"], *[f"{r[c]:.4f}" for c in cols])
    console.print(table)


def _slug(results: dict) -> str:
    from liveshelf.evaluation.runner import dataset_slug

    return f"{dataset_slug(results['dataset'])}-{results['protocol']}"
