"""The demo's models: quick models on the live protocol, item models trained, registered and promoted,
and the comment sentiment model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

#: The registry name the demo server serves (ServeSettings.model's default).
SERVED_NAME = "default"
#: Item models trained for serving, baseline first (it becomes the rollback target).
ITEM_MODELS: tuple[str, ...] = ("pop", "itemknn", "textseq")


# ------------------------------------------------------------------------------------ models
def evaluate_quick_models(
    dataset, models: tuple[str, ...], seed: int, console: Console, out: Path
) -> dict[str, Any]:
    """Quick models on the live protocol: which host's live room will the viewer enter next?"""
    from liveshelf.evaluation.runner import run

    t0 = time.perf_counter()
    results = run(dataset, list(models), protocol="live", out=out, seed=seed, progress=False)
    table = Table(
        title=f"live protocol: next room (by host) among rooms live at that moment "
        f"({time.perf_counter() - t0:.1f}s)"
    )
    table.add_column("model")
    for m in ("ndcg@10", "recall@1", "recall@10", "ndcg@10/repeat", "ndcg@10/new"):
        table.add_column(m, justify="right")
    for name, res in results["models"].items():
        met = res["metrics"]
        table.add_row(
            name,
            *[
                _fmt(met.get(m))
                for m in ("ndcg@10", "recall@1", "recall@10", "ndcg@10/repeat", "ndcg@10/new")
            ],
        )
    console.print(table)
    console.print(f"report: {out / 'report.md'}")
    return results


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def train_item_models(
    dataset, *, seed: int, text_epochs: int, console: Console, names: tuple[str, ...] = ITEM_MODELS
) -> dict[str, dict[str, Any]]:
    """Fit the item models on the temporal split of ``dataset`` and evaluate them on its test part.

    The fitted models are the ones registered (what was measured is what is served). ``textseq``
    encodes item texts with the bundled encoder through the embedding cache.
    """
    from liveshelf.evaluation.protocols import make_split
    from liveshelf.evaluation.runner import build_model, evaluate_model, seed_everything

    split = make_split(dataset, "temporal")
    summary = split.summary()
    out: dict[str, dict[str, Any]] = {}
    table = Table(
        title=f"temporal protocol: next item ({summary['cases']['all']:,} test cases, "
        f"{summary['n_items']:,} items)"
    )
    for col in ("model", "ndcg@10", "recall@10", "ndcg@10/new", "coverage@10", "fit s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name in names:
        params: dict[str, Any] = {"epochs": text_epochs, "patience": text_epochs} if name == "textseq" else {}
        seed_everything(seed)
        model = build_model(name, params, seed=seed)
        t0 = time.perf_counter()
        label = f"training {name}" + (
            f" ({text_epochs} epochs, item texts through the bundled MiniLM encoder)"
            if name == "textseq"
            else ""
        )
        with console.status(label + " ..."):
            model.fit(split.train)
        fit_s = time.perf_counter() - t0
        ev = evaluate_model(model, split)
        metrics = {k: v for k, v in ev.metrics.items() if v is not None and not k.startswith("gini")}
        out[name] = {
            "model": model,
            "metrics": metrics,
            "fit_seconds": round(fit_s, 2),
            "split": {
                "protocol": "temporal",
                "train_events": summary["n_train_events"],
                "test_cases": summary["cases"]["all"],
                "t_valid": pd.Timestamp(summary["t_valid"], unit="s", tz="UTC").isoformat(),
                "t_test": pd.Timestamp(summary["t_test"], unit="s", tz="UTC").isoformat(),
            },
        }
        table.add_row(
            name,
            *[_fmt(metrics.get(m)) for m in ("ndcg@10", "recall@10", "ndcg@10/new", "coverage@10")],
            f"{fit_s:.1f}",
        )
    console.print(table)
    return out


def register_models(
    home: Path, trained: dict[str, dict[str, Any]], console: Console, lineage: dict[str, Any]
) -> dict[str, Any]:
    """Register every trained item model under :data:`SERVED_NAME`; promote the baseline, then the best.

    The baseline (first model) is promoted first so the production history has a rollback target;
    the best by ndcg@10 (then recall@10) on the temporal test split is promoted last and served.
    """
    from liveshelf.registry import ModelRegistry

    reg = ModelRegistry(home / "models")
    versions: dict[str, str] = {}
    for i, (name, t) in enumerate(trained.items()):
        keep = {k: v for k, v in t["metrics"].items() if "/" not in k or k.endswith(("/new", "/repeat"))}
        versions[name] = reg.register(
            t["model"],
            name=SERVED_NAME,
            metrics=keep,
            lineage={**lineage, **t["split"], "model": name, "fit_seconds": t["fit_seconds"]},
        )
        if i == 0:
            reg.promote(SERVED_NAME, versions[name])
    best = max(
        trained,
        key=lambda n: (
            trained[n]["metrics"].get("ndcg@10", 0.0),
            trained[n]["metrics"].get("recall@10", 0.0),
        ),
    )
    info = reg.promote(SERVED_NAME, versions[best])
    table = Table(title=f"model registry {reg.root}")
    for col in ("name", "version", "model", "ndcg@10", "parent", "production"):
        table.add_column(col)
    for v in reg.list(SERVED_NAME):
        table.add_row(
            v.name,
            v.version,
            v.model_type,
            _fmt(v.metrics.get("ndcg@10")),
            str(v.lineage.get("parent") or "-"),
            "*" if v.production else "",
        )
    console.print(table)
    console.print(
        f"serving [bold]{best}[/] ({SERVED_NAME} {info.version}): best ndcg@10 on the temporal split"
    )
    return {"name": SERVED_NAME, "versions": versions, "production": info.version, "served_model": best}


def train_sentiment(events: pd.DataFrame, out: Path, *, seed: int, console: Console) -> dict[str, Any] | None:
    """Fit the live-comment sentiment model on the history's comments and save it to ``out``.

    The simulator labels each comment (``value`` 1 positive, 0 negative; its texts are real
    shopping reviews when the review corpus is present, else built-in phrases). A fifth is held
    out for the accuracy printed. The server finds the model at ``<home>/sentiment`` and monitors
    the replayed comments with it (dashboard sparklines, spike alerts, demotion).
    """
    import numpy as np
    from sklearn.model_selection import train_test_split

    from liveshelf.monitor.sentiment import SentimentClassifier, classification_metrics

    comments = events[
        (events["type"] == "comment") & events["text"].notna() & events["value"].isin([0.0, 1.0])
    ]
    labels = comments["value"].to_numpy().astype(np.int64)
    if len(comments) < 20 or np.bincount(labels, minlength=2).min() < 5:
        console.print(
            f"[yellow]only {len(comments)} labelled comments: no sentiment model, the server will not "
            "monitor comments.[/]"
        )
        return None
    texts = comments["text"].astype(str).to_numpy()
    tr, te = train_test_split(np.arange(len(texts)), test_size=0.2, stratify=labels, random_state=seed)
    model = SentimentClassifier(seed=seed).fit(texts[tr].tolist(), labels[tr])
    heldout = classification_metrics(labels[te], model.predict(texts[te].tolist()))
    model.save(out)
    console.print(
        f"comment sentiment model: {len(tr):,} comments, held-out accuracy "
        f"{heldout['accuracy']:.3f}, macro-F1 {heldout['macro_f1']:.3f} -> {out}"
    )
    return {"n_train": int(len(tr)), "heldout": heldout, "path": str(out)}


__all__ = [
    "ITEM_MODELS",
    "SERVED_NAME",
    "evaluate_quick_models",
    "register_models",
    "train_item_models",
    "train_sentiment",
]
