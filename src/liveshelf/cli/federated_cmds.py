"""Command: ``liveshelf federated train`` — train across clients that never pool their events (Flower).

::

    liveshelf federated train --data unisrec:/data/amazon-scientific --model sasrec --clients 10 \\
        --rounds 30 --partition iid --out results/fed-scientific
    liveshelf federated train ... --partition category --strategy fedprox --proximal-mu 0.1
    liveshelf federated train ... --dp-epsilon 8 --secagg

Writes ``OUT/results.json`` (``federated.metrics`` and ``centralised.metrics`` under the same
names as ``liveshelf evaluate``), ``OUT/rounds.png`` and the federated model in ``OUT/model``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from liveshelf.cli.app import app

federated_app = typer.Typer(
    help="Federated training with Flower: clients (merchants, regions) keep their events.",
    no_args_is_help=True,
)
app.add_typer(federated_app, name="federated")


def _fail(message: str) -> typer.Exit:
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code=2)


@federated_app.command("train")
def train(
    data: Annotated[
        str,
        typer.Option("--data", help="FORMAT:PATH (e.g. unisrec:/data/amazon-scientific) or store:HOMEDIR."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder (results.json, rounds.png, model/).")],
    model: Annotated[
        str, typer.Option("--model", help="sasrec | textseq (ranker: not federated yet; it says why).")
    ] = "sasrec",
    clients: Annotated[
        int, typer.Option("--clients", help="Number of clients (each holds whole users).")
    ] = 10,
    rounds: Annotated[int, typer.Option("--rounds", help="Federated rounds.")] = 20,
    partition: Annotated[
        str,
        typer.Option(
            "--partition",
            help="iid | category (clients hold different item categories) | user-region (the users' regions).",
        ),
    ] = "iid",
    strategy: Annotated[str, typer.Option("--strategy", help="fedavg | fedprox.")] = "fedavg",
    proximal_mu: Annotated[float, typer.Option("--proximal-mu", help="FedProx's proximal weight mu.")] = 0.1,
    local_epochs: Annotated[int, typer.Option("--local-epochs", help="Local epochs per round.")] = 1,
    dp_epsilon: Annotated[
        float | None,
        typer.Option(
            "--dp-epsilon",
            help="Client-level differential privacy: the ε each client spends over all rounds.",
            show_default=False,
        ),
    ] = None,
    dp_delta: Annotated[float, typer.Option("--dp-delta", help="δ of the DP guarantee.")] = 1e-5,
    clip_norm: Annotated[
        float, typer.Option("--clip-norm", help="DP: L2 bound of each client's update.")
    ] = 1.0,
    secagg: Annotated[
        bool, typer.Option("--secagg", help="Secure aggregation (SecAgg+): the server sees only the sum.")
    ] = False,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", help="KEY=VALUE or MODEL.KEY=VALUE model parameter (repeatable).", show_default=False
        ),
    ] = None,
    protocol: Annotated[
        str | None, typer.Option("--protocol", help="Evaluation protocol (default as liveshelf evaluate).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the partition, models and rounds.")] = 0,
    centralised: Annotated[
        bool,
        typer.Option("--centralised/--no-centralised", help="Also fit on the pooled data, for comparison."),
    ] = True,
    register: Annotated[
        str | None,
        typer.Option("--register", help="Register the federated model under this name.", show_default=False),
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home", help="Home folder for --register (default: LIVESHELF_HOME).", show_default=False
        ),
    ] = None,
    num_cpus: Annotated[
        int | None,
        typer.Option("--num-cpus", help="CPUs of the simulation (default: all).", show_default=False),
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            "--tracking-uri",
            help="Log to MLflow: a URI, or 'default' for sqlite:///<home>/mlflow.db.",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show Flower's and Ray's logs.")] = False,
) -> None:
    """Train --model across --clients Flower clients; compare with a centralised fit on the same split."""
    from rich.console import Console
    from rich.table import Table

    from liveshelf.errors import LiveshelfError

    err = Console(stderr=True, soft_wrap=True)
    try:
        from liveshelf.evaluation.runner import parse_params
        from liveshelf.federated.job import HEADLINE, train_federated
        from liveshelf.federated.run import FederatedConfig

        params = _params(param, model, parse_params)
        cfg = FederatedConfig(
            model=model,
            clients=clients,
            rounds=rounds,
            partition=partition,
            strategy=strategy,
            local_epochs=local_epochs,
            proximal_mu=proximal_mu,
            dp_epsilon=dp_epsilon,
            dp_delta=dp_delta,
            clip_norm=clip_norm,
            secagg=secagg,
            seed=seed,
            params=params,
            num_cpus=num_cpus,
        ).validate()
        results = train_federated(
            data,
            cfg,
            out,
            protocol=protocol,
            centralised=centralised,
            register=register,
            home=home,
            tracking_uri=tracking_uri,
            log=lambda m: err.print(f"[dim]{m}[/]", highlight=False),
            verbose=verbose,
        )
    except LiveshelfError as exc:
        raise _fail(str(exc)) from exc

    table = Table(title=f"{results['dataset']}: {model}, {clients} clients, {partition}, {strategy}")
    table.add_column("training")
    for c in HEADLINE:
        table.add_column(c, justify="right")
    table.add_column("seconds", justify="right")
    fed = results["federated"]
    table.add_row("federated", *_cells(fed["metrics"]), f"{fed['wall_seconds']:.0f}")
    if "centralised" in results:
        cen = results["centralised"]
        table.add_row("centralised", *_cells(cen["metrics"]), f"{cen['fit_seconds']:.0f}")
    console = Console()
    Console(width=max(console.width, 110)).print(table)
    notes = [
        f"best round {fed['best_round']}/{len(fed['rounds'])}",
        f"{fed['bytes_per_round']:,} bytes per round",
    ]
    if results.get("ratio_ndcg@10") is not None:
        notes.append(f"federated/centralised NDCG@10 = {results['ratio_ndcg@10']:.3f}")
    if fed.get("privacy"):
        notes.append(
            f"client-level DP: ε={fed['privacy']['dp_epsilon']:.2f} at δ={fed['privacy']['dp_delta']:g}"
        )
    if results.get("registered"):
        notes.append(f"registered {results['registered']['name']} {results['registered']['version']}")
    typer.echo("; ".join(notes))
    typer.echo(f"wrote {out / 'results.json'}")


def _cells(metrics: dict) -> list[str]:
    from liveshelf.federated.job import HEADLINE

    return ["–" if metrics.get(c) is None else f"{metrics[c]:.4f}" for c in HEADLINE]


def _params(items: list[str] | None, model: str, parse_params) -> dict:  # type: ignore[no-untyped-def]
    """``KEY=VALUE`` or ``MODEL.KEY=VALUE`` -> the model's parameters."""
    if not items:
        return {}
    named = [i if "." in i.split("=", 1)[0] else f"{model}.{i}" for i in items]
    return parse_params(named, [model])[model]
