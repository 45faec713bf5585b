"""Train RecBole 1.2.1's SASRec on ml-100k and write its times and test metrics as JSON.

Runs inside ``.venv-peer`` (see ``setup.sh``), never in the main venv. It:

* wraps ``torch.load`` with ``weights_only=False`` at run time (RecBole 1.2.1 reloads its
  own best checkpoint with a plain ``torch.load``, which torch >= 2.6 refuses by default);
* times every epoch with a Trainer subclass (train seconds, valid seconds, wall clock at
  the end of the epoch, validation NDCG@10);
* dumps RecBole's leave-one-out split (per user: valid target, test target, the last
  ``MAX_ITEM_LIST_LENGTH`` items before the test target) so the liveshelf side can check
  that it evaluates on exactly the same split.

Usage: ``.venv-peer/bin/python benchmarks/peer/recbole_sasrec.py --out FILE [--epochs N]``
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "sasrec_ml100k.yaml"


def _patch_torch_load() -> None:
    if getattr(torch.load, "_peer_patched", False):
        return
    patched = functools.partial(torch.load, weights_only=False)
    patched._peer_patched = True  # type: ignore[attr-defined]
    torch.load = patched


def _data_dir() -> Path:
    """``LIVESHELF_DATA_DIR`` or ``../shared/data`` beside the repository (as liveshelf.config)."""
    env = os.environ.get("LIVESHELF_DATA_DIR")
    return Path(env) if env else HERE.parents[2] / "shared" / "data"


def _split_dump(dataset, loader, max_len: int) -> dict[str, dict]:
    """Per user token: target item token and the item tokens of its input sequence."""
    inter = loader._dataset.inter_feat
    uid_field, iid_field = dataset.uid_field, dataset.iid_field
    list_field = iid_field + dataset.config["LIST_SUFFIX"]
    len_field = dataset.config["ITEM_LIST_LENGTH_FIELD"]
    users = dataset.id2token(uid_field, inter[uid_field].numpy())
    targets = dataset.id2token(iid_field, inter[iid_field].numpy())
    seqs = inter[list_field].numpy()
    lens = inter[len_field].numpy()
    out = {}
    for u, t, s, n in zip(users, targets, seqs, lens, strict=True):
        hist = dataset.id2token(iid_field, s[:n]).tolist() if n else []
        out[str(u)] = {"target": str(t), "history": [str(x) for x in hist[-max_len:]]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument(
        "--budget-seconds",
        type=float,
        default=1800.0,
        help="stop after the first epoch that ends past this many seconds of training (default 30 "
        "minutes; 0: no budget; the best checkpoint so far is tested; the result says it was cut)",
    )
    ap.add_argument(
        "--no-test-curve",
        dest="test_curve",
        action="store_false",
        help="skip the per-epoch test NDCG@10 (its time is kept off the clocks either way)",
    )
    args = ap.parse_args(argv)
    args.out = args.out.resolve()  # RecBole runs in a temporary folder (its logs and checkpoints go there)
    if not args.budget_seconds:
        args.budget_seconds = None

    _patch_torch_load()
    torch.set_num_threads(args.threads)
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_logger, init_seed

    data_dir = _data_dir()
    if not (data_dir / "ml-100k" / "ml-100k.inter").exists():
        raise SystemExit(
            f"ml-100k atomic files not found under {data_dir}/ml-100k "
            "(set LIVESHELF_DATA_DIR); RecBole would try to download them."
        )

    work = Path(tempfile.mkdtemp(prefix="recbole-peer-"))
    os.chdir(work)  # RecBole writes ./log, ./log_tensorboard and checkpoints relative to cwd
    overrides = {"data_path": str(data_dir), "checkpoint_dir": str(work / "saved")}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    config = Config(model="SASRec", dataset="ml-100k", config_file_list=[str(CONFIG)], config_dict=overrides)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)

    t_data = time.perf_counter()
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    data_seconds = time.perf_counter() - t_data

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = SASRec(config, train_data._dataset).to(config["device"])

    epochs: list[dict] = []

    class BudgetSpent(Exception):
        pass

    class TimedTrainer(Trainer):
        def _train_epoch(self, train_data, epoch_idx, *a, **kw):
            t0 = time.perf_counter()
            loss = super()._train_epoch(train_data, epoch_idx, *a, **kw)
            epochs.append(
                {"epoch": epoch_idx, "train_seconds": time.perf_counter() - t0, "loss": float(loss)}
            )
            return loss

        def _valid_epoch(self, valid_data, *a, **kw):
            t0 = time.perf_counter()
            score, result = super()._valid_epoch(valid_data, *a, **kw)
            epochs[-1]["valid_seconds"] = time.perf_counter() - t0
            epochs[-1]["valid_ndcg@10"] = float(result["ndcg@10"])
            epochs[-1]["valid_recall@10"] = float(result["recall@10"])
            return score, result

    trainer = TimedTrainer(config, model)
    t_fit, c_fit = time.perf_counter(), time.process_time()

    excluded = {"wall": 0.0, "cpu": 0.0}  # time spent on the per-epoch test curve, kept off the clocks

    def on_epoch_end(epoch_idx: int, valid_score: float) -> None:
        # called after the epoch's checkpoint (if any) is saved
        epochs[-1]["wall_seconds"] = time.perf_counter() - t_fit - excluded["wall"]
        epochs[-1]["cpu_seconds"] = time.process_time() - c_fit - excluded["cpu"]
        if args.test_curve:  # the test metrics of this epoch's weights (the curve; not used to choose)
            w0, c0 = time.perf_counter(), time.process_time()
            res = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
            epochs[-1]["test_ndcg@10"] = float(res["ndcg@10"])
            epochs[-1]["test_recall@10"] = float(res["recall@10"])
            excluded["wall"] += time.perf_counter() - w0
            excluded["cpu"] += time.process_time() - c0
        if args.budget_seconds is not None and epochs[-1]["wall_seconds"] > args.budget_seconds:
            raise BudgetSpent

    cut = False
    try:
        best_valid, best_result = trainer.fit(
            train_data, valid_data, saved=True, show_progress=False, callback_fn=on_epoch_end
        )
    except BudgetSpent:
        cut = True
        best_valid, best_result = trainer.best_valid_score, trainer.best_valid_result
    fit_seconds = time.perf_counter() - t_fit - excluded["wall"]
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)

    best = max(epochs, key=lambda e: (e["valid_ndcg@10"], -e["epoch"]))  # first best, like RecBole
    n_ep = len(epochs)
    max_len = int(config["MAX_ITEM_LIST_LENGTH"])
    result = {
        "system": f"RecBole {__import__('recbole').__version__} SASRec",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "data_dir": str(data_dir),
        "n_users": int(dataset.user_num - 1),
        "n_items": int(dataset.item_num - 1),
        "n_inter": int(dataset.inter_num),
        "train_samples": int(len(train_data._dataset)),
        "data_seconds": data_seconds,
        "epochs_run": n_ep,
        "cut_by_budget": cut,
        "budget_seconds": args.budget_seconds,
        "best_epoch": int(best["epoch"]),
        "best_valid_ndcg@10": float(best_valid),
        "seconds_per_epoch": sum(e["train_seconds"] for e in epochs) / n_ep,
        "eval_seconds_per_epoch": sum(e["valid_seconds"] for e in epochs) / n_ep,
        "seconds_to_best": float(best["wall_seconds"]),
        "cpu_seconds_to_best": float(best["cpu_seconds"]),
        "fit_seconds": fit_seconds,
        "test_ndcg@10": float(test_result["ndcg@10"]),
        "test_recall@10": float(test_result["recall@10"]),
        "valid_at_best": {k: float(v) for k, v in (best_result or {}).items()},
        "history": epochs,
        "config": {
            k: config[k]
            for k in (
                "hidden_size",
                "n_layers",
                "n_heads",
                "inner_size",
                "hidden_dropout_prob",
                "attn_dropout_prob",
                "MAX_ITEM_LIST_LENGTH",
                "loss_type",
                "train_batch_size",
                "learning_rate",
                "epochs",
                "stopping_step",
                "seed",
                "eval_args",
                "valid_metric",
            )
        },
        "split": {
            "valid": _split_dump(dataset, valid_data, max_len),
            "test": _split_dump(dataset, test_data, max_len),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(
        json.dumps({k: v for k, v in result.items() if k not in ("history", "split")}, indent=1, default=str)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
