"""PEFT comparison: full fine-tuning vs LoRA vs AdaLoRA vs IA3 vs bottleneck adapter, same task, same budget.

Model: the bundled all-MiniLM-L6-v2 (22.7 M parameters, English WordPiece vocabulary).

Tasks
-----
* ``scientific-category`` (English, the meaningful comparison): Amazon "Industrial & Scientific"
  items (``amazon-scientific/Scientific.text``). Input: the item title only (the text before
  ". Industrial & Scientific"); label: the item's top category under Industrial & Scientific
  (Industrial Electrical, Additive Manufacturing, Tapes/Adhesives, Test & Measure, Lab, Fasteners,
  Hydraulics/Pneumatics, Janitorial, ...; the ``N_CLASSES`` most frequent, all "Fasteners ..." paths
  merged). Seeded stratified split: ``TRAIN`` / ``TEST`` items.
* ``shopping-sentiment`` (Chinese): positive / negative reviews of online-shopping-10-cats, seeded
  stratified 5k / 1k slice. MiniLM's vocabulary maps most Chinese characters to [UNK]; the bench
  reports that share (``unk_ratio``). No Chinese-capable model is bundled or reachable offline, so
  this row measures the methods on a crippled input, not Chinese sentiment quality.

Each (task, method) runs in its own process so that ``peak_mem_mb`` (peak RSS added during ``fit``:
model load + training; see ``liveshelf.text.finetune.report``) is not masked by an earlier run.
Fixed epochs, no early stopping; the test slice is scored once at the end. ``examples_per_s`` is
training throughput (forward + backward + step), so a GPU run can be compared.

Environment knobs: ``PEFT_BENCH_TASKS`` (comma list), ``PEFT_BENCH_METHODS``, ``PEFT_BENCH_EPOCHS``
(2), ``PEFT_BENCH_THREADS`` (2), ``PEFT_BENCH_SCI_TRAIN`` (2400), ``PEFT_BENCH_SCI_TEST`` (600),
``PEFT_BENCH_SENT_TRAIN`` (5000), ``PEFT_BENCH_SENT_TEST`` (1000), ``PEFT_BENCH_DEVICE`` (auto),
``PEFT_BENCH_MAX_LENGTH`` (64), ``PEFT_BENCH_OVERRIDES`` (JSON ``{method: {setting: value}}`` over
:data:`SETTINGS`, for tuning), ``PEFT_BENCH_PARALLEL`` (1: methods one after another; more runs
that many at once, which only makes sense on a shared machine and slows each one -- the row's
``parallel_runs`` says so and its seconds / examples_per_s are then not comparable to a solo run).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
METHODS = ("full", "lora", "adalora", "ia3", "adapter")
TASKS = ("scientific-category", "shopping-sentiment")
N_CLASSES = 8
#: LoRA on all four attention projections (q, k, v, output) of a BERT-style encoder: 0.66 % of MiniLM.
LORA_ATTENTION = r".*attention\.(self\.(query|key|value)|output\.dense)"
#: Per-method settings for MiniLM (learning rates: PEFT methods need ~10-100x the full-FT step).
SETTINGS: dict[str, dict[str, Any]] = {
    "full": {"lr": 3e-4},
    "lora": {"lr": 5e-3, "r": 8, "alpha": 16, "target_modules": LORA_ATTENTION},
    "adalora": {"lr": 5e-3, "r": 8, "alpha": 16},
    "ia3": {"lr": 1e-2},
    "adapter": {"lr": 5e-3, "adapter_size": 32},
}


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def data_root() -> Path:
    sys.path.insert(0, str(ROOT / "src"))
    from liveshelf.config import data_dir

    return data_dir()


def scientific_task(seed: int = 0) -> tuple[list[str], list[str], list[str], list[str]]:
    """(train titles, train labels, test titles, test labels) of the top-category task."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    lines = (
        (data_root() / "amazon-scientific" / "Scientific.text").read_text(encoding="utf-8").splitlines()[1:]
    )
    rows = []
    for line in lines:
        _, _, text = line.partition("\t")
        m = re.search(r"^(.*?)\. Industrial & Scientific (.*?)\. ", text)
        if not m:
            continue
        words = m.group(2).split()
        top = "Fasteners" if words[0] == "Fasteners" else " ".join(words[:2]).rstrip(" &,")
        rows.append((m.group(1).strip(), top))
    frame = pd.DataFrame(rows, columns=["text", "label"])
    keep = frame["label"].value_counts().index[:N_CLASSES]
    frame = frame[frame["label"].isin(keep)].reset_index(drop=True)
    n_train, n_test = _env_int("PEFT_BENCH_SCI_TRAIN", 2400), _env_int("PEFT_BENCH_SCI_TEST", 600)
    n_test = min(n_test, len(frame) // 4)
    train, test = train_test_split(frame, test_size=n_test, random_state=seed, stratify=frame["label"])
    if n_train < len(train):
        train, _ = train_test_split(train, train_size=n_train, random_state=seed, stratify=train["label"])
    return train["text"].tolist(), train["label"].tolist(), test["text"].tolist(), test["label"].tolist()


def sentiment_task(seed: int = 0) -> tuple[list[str], list[int], list[str], list[int]]:
    from sklearn.model_selection import train_test_split

    from liveshelf.data.formats import read_reviews

    frame = read_reviews(data_root() / "online-shopping-10-cats")
    n_train, n_test = _env_int("PEFT_BENCH_SENT_TRAIN", 5000), _env_int("PEFT_BENCH_SENT_TEST", 1000)
    rest, test = train_test_split(frame, test_size=n_test, random_state=seed, stratify=frame["label"])
    train, _ = train_test_split(rest, train_size=n_train, random_state=seed, stratify=rest["label"])
    return train["text"].tolist(), train["label"].tolist(), test["text"].tolist(), test["label"].tolist()


def unk_ratio(texts: list[str], max_length: int) -> float:
    """Share of [UNK] among the non-special tokens of ``texts`` under the MiniLM tokenizer."""
    from transformers import AutoTokenizer

    from liveshelf.text.encoder import default_model_path

    tok = AutoTokenizer.from_pretrained(default_model_path(), local_files_only=True)
    ids = tok(texts, add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]
    total = sum(len(x) for x in ids)
    return sum(t == tok.unk_token_id for x in ids for t in x) / max(total, 1)


def run_one(task: str, method: str) -> dict[str, Any]:
    """Fine-tune ``method`` on ``task`` in this process; return the result row."""
    import torch

    from liveshelf.text.finetune import FinetuneConfig, Finetuner

    torch.set_num_threads(_env_int("PEFT_BENCH_THREADS", 2))
    max_length = _env_int("PEFT_BENCH_MAX_LENGTH", 64)
    train_x, train_y, test_x, test_y = (
        scientific_task() if task == "scientific-category" else sentiment_task()
    )
    cfg = FinetuneConfig(
        task="classification",
        method=method,
        epochs=_env_int("PEFT_BENCH_EPOCHS", 2),
        batch_size=16,
        eval_batch_size=64,
        max_length=max_length,
        patience=None,
        seed=0,
        warmup=0.06,
        device=os.environ.get("PEFT_BENCH_DEVICE", "auto"),
    )
    settings = {
        **SETTINGS[method],
        **json.loads(os.environ.get("PEFT_BENCH_OVERRIDES", "{}")).get(method, {}),
    }
    cfg = dataclasses.replace(cfg, **settings)
    t0 = time.perf_counter()
    ft = Finetuner(cfg).fit(train_x, train_y)
    seconds = time.perf_counter() - t0
    report = ft.evaluate(test_x, test_y)
    s = ft.fit_stats_
    return {
        "task": task,
        "method": method,
        "trainable_pct": round(s["trainable_pct"], 4),
        "macro_f1": round(report["macro_f1"], 4),
        "auc": round(report["auc"], 4),
        "accuracy": round(report["accuracy"], 4),
        "seconds": round(seconds, 1),
        "examples_per_s": round(s["examples_per_s"], 1),
        "peak_mem_mb": round(s["peak_mem_mb"], 1),
        "n_train": len(train_x),
        "n_test": len(test_x),
        "classes": len(ft.labels_),
        "lr": cfg.learning_rate,
        "epochs": cfg.epochs,
        "max_length": max_length,
        "settings": settings,
        "device": str(ft.device_),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    sys.path.insert(0, str(HERE))
    from common import write_result

    tasks = [t for t in os.environ.get("PEFT_BENCH_TASKS", ",".join(TASKS)).split(",") if t]
    methods = [m for m in os.environ.get("PEFT_BENCH_METHODS", ",".join(METHODS)).split(",") if m]
    root = data_root()
    rows: list[dict[str, Any]] = []
    notes: dict[str, Any] = {}
    for task in tasks:
        needed = root / ("amazon-scientific" if task == "scientific-category" else "online-shopping-10-cats")
        if not needed.is_dir():
            print(f"skipping {task}: {needed} is absent", flush=True)
            continue
        texts = (scientific_task() if task == "scientific-category" else sentiment_task())[0]
        notes[f"{task}_unk_ratio"] = round(unk_ratio(texts[:500], 64), 4)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "src"),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        parallel = max(1, _env_int("PEFT_BENCH_PARALLEL", 1))
        for start in range(0, len(methods), parallel):
            procs = [
                (
                    m,
                    subprocess.Popen(
                        [sys.executable, str(Path(__file__).resolve()), "--one", task, m],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                        env=env,
                    ),
                )
                for m in methods[start : start + parallel]
            ]
            for method, proc in procs:
                stdout, stderr = proc.communicate()
                if proc.returncode != 0:
                    print(f"{task}/{method} failed:\n{stderr[-3000:]}", flush=True)
                    continue
                row = json.loads(stdout.strip().splitlines()[-1])
                row["unk_ratio"] = notes[f"{task}_unk_ratio"]
                row["parallel_runs"] = parallel
                print(json.dumps(row), flush=True)
                rows.append(row)
    verdict = lora_verdict(rows)
    write_result(
        "peft",
        rows,
        model="all-MiniLM-L6-v2 (bundled)",
        verdict=verdict,
        notes=notes,
        settings=SETTINGS,
        peak_mem="peak RSS added during fit (model load + training), own process",
    )
    for line in verdict:
        print(line)


def lora_verdict(rows: list[dict[str, Any]]) -> list[str]:
    """'LoRA within 2 macro-F1 points of full FT at <= 1 % trainable parameters', per task."""
    out = []
    for task in sorted({r["task"] for r in rows}):
        by = {r["method"]: r for r in rows if r["task"] == task}
        if "full" in by and "lora" in by:
            gap = 100 * (by["full"]["macro_f1"] - by["lora"]["macro_f1"])
            ok = gap <= 2.0 and by["lora"]["trainable_pct"] <= 1.0
            out.append(
                f"{task}: LoRA macro-F1 {by['lora']['macro_f1']:.4f} vs full {by['full']['macro_f1']:.4f} "
                f"(gap {gap:+.2f} points) at {by['lora']['trainable_pct']:.2f} % trainable -> "
                f"{'PASS' if ok else 'FAIL'}"
            )
    return out


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        sys.path.insert(0, str(ROOT / "src"))
        print(json.dumps(run_one(sys.argv[2], sys.argv[3])), flush=True)
    else:
        main()
