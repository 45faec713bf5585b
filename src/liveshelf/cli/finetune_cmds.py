"""``liveshelf finetune``: fine-tune a local transformer (full, LoRA, AdaLoRA, IA3, adapter) on a labelled file.

Data specs:

* ``reviews:PATH``: labelled reviews (``cat,label,review`` CSV, ``label,review`` CSV or a
  ``pos.txt``/``neg.txt`` folder) for ``--task classification``;
* ``csv:PATH``: a CSV whose columns depend on the task: ``text,label`` (classification),
  ``context,item,label`` with 0/1 labels (ranking, pointwise), ``prompt,target`` (generation).

``--limit N`` keeps a seeded (stratified for labels) sample of N rows. A seeded, stratified
``--test-size`` share is held out for the final report and ``--valid-size`` of the rest drives
early stopping. The run is saved to ``--out`` (adapters only for PEFT methods; ``--merge`` also
writes a merged, plain Hugging Face folder to ``OUT/merged``) with ``metrics.json``; one JSON line
with the held-out metrics goes to stdout, progress and the parameter / throughput summary to stderr.

``--dp-epsilon X`` trains with DP-SGD (opacus) so the weights are (X, delta)-differentially private
with respect to the training rows (delta = 1 / rows unless ``--dp-delta``); the achieved epsilon
and delta go to the summary line and ``metrics.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from liveshelf.cli.app import app

_CSV_COLUMNS = {
    "classification": ("text", "label"),
    "ranking": ("context", "item", "label"),
    "generation": ("prompt", "target"),
}


def read_finetune_data(spec: str, task: str) -> Any:
    """A frame with the task's columns (see module docstring) from ``reviews:PATH`` or ``csv:PATH``."""
    import pandas as pd

    from liveshelf.data.formats import read_reviews, resolve_path
    from liveshelf.errors import DataFormatError

    fmt, _, path = spec.partition(":")
    fmt = fmt.strip().lower()
    if fmt == "reviews" and task == "classification":
        return read_reviews(resolve_path(path.strip()))[["text", "label"]]
    if fmt == "csv" and path.strip():
        file = resolve_path(path.strip())
        frame = pd.read_csv(file, dtype=str, keep_default_na=False)
        need = _CSV_COLUMNS[task]
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise DataFormatError(
                f"The '--data' CSV {str(file)!r} for task {task!r} must have the columns "
                f"{list(need)}; missing {missing} (found {list(frame.columns)}). Rename the header."
            )
        frame = frame[list(need)]
        if task == "ranking":
            frame = frame.assign(label=pd.to_numeric(frame["label"], errors="raise").astype(int))
        return frame
    raise DataFormatError(
        f"The '--data' option of 'liveshelf finetune' must be 'reviews:PATH' (task classification) or 'csv:PATH'. "
        f"Got {spec!r} for task {task!r}. Write e.g. 'reviews:online-shopping-10-cats/online_shopping_10_cats.csv'."
    )


def _split(frame: Any, size: float, seed: int, stratify: bool) -> tuple[Any, Any]:
    from sklearn.model_selection import train_test_split

    if size <= 0 or len(frame) < 4:
        return frame, frame.iloc[:0]
    labels = frame["label"] if stratify else None
    if labels is not None and labels.value_counts().min() < 2:
        labels = None
    a, b = train_test_split(frame, test_size=size, random_state=seed, stratify=labels)
    return a, b


def _inputs(frame: Any, task: str) -> tuple[list[Any], list[Any]]:
    if task == "classification":
        return frame["text"].tolist(), frame["label"].tolist()
    if task == "ranking":
        return list(zip(frame["context"], frame["item"], strict=True)), frame["label"].astype(int).tolist()
    return frame["prompt"].tolist(), frame["target"].tolist()


@app.command("finetune")
def finetune(
    data: str = typer.Option(..., "--data", help="reviews:PATH or csv:PATH (columns depend on --task)."),
    out: Path = typer.Option(..., "--out", help="Folder to write the run to."),
    task: str = typer.Option("classification", "--task", help="classification | ranking | generation."),
    method: str = typer.Option("lora", "--method", help="full | lora | adalora | ia3 | adapter."),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Local Hugging Face model folder (default: the "
        "bundled all-MiniLM-L6-v2; required for generation).",
    ),
    epochs: int = typer.Option(3, "--epochs"),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (default per method)."),
    batch_size: int = typer.Option(16, "--batch-size"),
    grad_accum: int = typer.Option(1, "--grad-accum"),
    max_length: int = typer.Option(128, "--max-length"),
    r: int = typer.Option(8, "--r", help="LoRA / AdaLoRA rank."),
    alpha: int = typer.Option(16, "--alpha", help="LoRA / AdaLoRA alpha."),
    patience: int = typer.Option(2, "--patience", help="Early-stopping patience in epochs (0 = off)."),
    class_weights: bool = typer.Option(False, "--balanced", help="Balanced class weights."),
    bf16: bool = typer.Option(False, "--bf16", help="bf16 autocast where the device supports it."),
    limit: int | None = typer.Option(None, "--limit", help="Keep a seeded sample of N rows."),
    test_size: float = typer.Option(0.2, "--test-size", help="Held-out share for the final report."),
    valid_size: float = typer.Option(0.1, "--valid-size", help="Share of the rest used for early stopping."),
    merge: bool = typer.Option(
        False, "--merge", help="Also write a merged model to OUT/merged (LoRA/AdaLoRA/IA3)."
    ),
    seed: int = typer.Option(0, "--seed"),
    # differential privacy (DP-SGD with opacus; see liveshelf.text.finetune.private)
    dp_epsilon: float | None = typer.Option(
        None,
        "--dp-epsilon",
        help="Train with DP-SGD to this epsilon (full, lora or adapter; off by default).",
    ),
    dp_delta: float | None = typer.Option(None, "--dp-delta", help="DP delta (default 1 / training rows)."),
    dp_max_grad_norm: float = typer.Option(1.0, "--dp-max-grad-norm", help="DP per-example clipping bound."),
    tracking_uri: str | None = typer.Option(
        None,
        "--tracking-uri",
        help="Log the run to MLflow: a URI, or 'default' for sqlite:///<home>/mlflow.db "
        "(default: $LIVESHELF_TRACKING_URI, else off).",
    ),
) -> None:
    """Fine-tune and report held-out metrics as one JSON line."""
    from liveshelf.errors import check_param
    from liveshelf.text.finetune import FinetuneConfig, Finetuner

    check_param("--test-size", test_size, 0 <= test_size < 1, "a share in [0, 1)", "liveshelf finetune")
    check_param("--valid-size", valid_size, 0 <= valid_size < 1, "a share in [0, 1)", "liveshelf finetune")
    config = FinetuneConfig(
        task=task,
        method=method,
        model=model,
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_length=max_length,
        r=r,
        alpha=alpha,
        patience=patience or None,
        class_weights="balanced" if class_weights else None,
        bf16=bf16,
        seed=seed,
        dp_epsilon=dp_epsilon,
        dp_delta=dp_delta,
        dp_max_grad_norm=dp_max_grad_norm,
    ).validate()
    frame = read_finetune_data(data, task)
    stratify = task != "generation"
    if limit is not None and limit < len(frame):
        check_param("--limit", limit, limit >= 4, "an int >= 4", "liveshelf finetune")
        frame, _ = _split(frame, len(frame) - limit, seed, stratify)
    train, test = _split(frame, test_size, seed, stratify)
    train, valid = _split(train, valid_size, seed, stratify)
    from dataclasses import asdict

    from liveshelf.core.tracking import track_run

    with track_run(
        "finetune",
        tracking_uri=tracking_uri,
        params={
            "data": data,
            "limit": limit,
            "test_size": test_size,
            "valid_size": valid_size,
            **asdict(config),
        },
        tags={"task": task, "method": method},
    ) as tracker:
        ft = Finetuner(config)
        train_x, train_y = _inputs(train, task)
        valid_x, valid_y = _inputs(valid, task) if len(valid) else (None, None)
        ft.fit(train_x, train_y, valid_x, valid_y)
        ft.save(out)
        if merge:
            ft.merge_and_save(out / "merged")
        report: dict[str, Any] = ft.evaluate(*_inputs(test, task)) if len(test) else {}
        summary = {
            k: report.get(k) for k in ("accuracy", "macro_f1", "auc", "loss", "perplexity") if k in report
        }
        summary.update(
            {
                "task": task,
                "method": method,
                "n_train": len(train),
                "n_valid": len(valid),
                "n_test": len(test),
                "trainable_pct": ft.fit_stats_["trainable_pct"],
                "examples_per_s": ft.fit_stats_["examples_per_s"],
                "train_seconds": ft.fit_stats_["train_seconds"],
            }
        )
        if "privacy" in ft.fit_stats_:  # achieved (epsilon, delta) of a DP run
            summary.update({k: ft.fit_stats_["privacy"][k] for k in ("dp_epsilon", "dp_delta")})
        (out / "metrics.json").write_text(
            json.dumps(
                {"summary": summary, "report": report, "fit_stats": ft.fit_stats_, "history": ft.history_},
                indent=2,
                sort_keys=True,
                default=str,
            )
        )
        tracker.log_history(ft.history_)
        tracker.log_metrics({f"test.{k}": v for k, v in summary.items()})
        tracker.log_artifact(out / "metrics.json")
        typer.echo(json.dumps(summary, sort_keys=True))
