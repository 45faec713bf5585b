"""``Finetuner``: one trainer over transformers + peft for classification, ranking and generation.

Tasks
-----
* ``classification``: texts (or text pairs) -> one of the labels seen in training; softmax head,
  cross-entropy (optionally class-weighted "balanced"). ``evaluate`` returns per-class
  precision / recall / F1, accuracy, macro-F1 and AUC.
* ``ranking``: a cross-encoder over ``(user context text, item text)`` pairs with one logit.
  ``ranking_loss="pointwise"`` trains on labelled pairs (1 relevant, 0 not) with BCE;
  ``"bpr"`` / ``"margin"`` train on ``(context, positive item, negative item)`` triples
  (``fit(triples)``, no labels) with ``-log sigmoid(s+ - s-)`` or ``max(0, margin - (s+ - s-))``.
  Validation / ``evaluate`` always take labelled pairs and report AUC.
* ``generation``: a causal LM on ``(prompt, target)``; the loss covers only target tokens (+ eos).
  ``evaluate`` returns the token-level loss and perplexity; ``generate`` decodes greedily within a
  token budget.

Methods: ``full`` (all weights), ``lora``, ``adalora``, ``ia3`` (peft), ``adapter`` (the
bottleneck adapter of ``adapters.py``). With PEFT methods the task head trains too (peft
``modules_to_save``). AdaLoRA's rank allocation runs after every optimiser step; its orthogonality
regulariser is not added because the loss is computed here (class weights), not by the model.

Models are local directories only (``local_files_only=True``): any Hugging Face model folder.
``model=None`` is the bundled all-MiniLM-L6-v2 for classification and ranking.

Artifacts (``save``): ``finetune_config.json`` + tokenizer files + either the full model
(``full``), peft's ``adapter_config.json`` / ``adapter_model.safetensors`` (LoRA, AdaLoRA, IA3:
adapters and head only), or ``bottleneck_adapter.safetensors`` (adapters and head only). PEFT
folders need the base model at load time (``load(folder, model=...)`` overrides where it is).
``merge_and_save`` folds LoRA / AdaLoRA / IA3 into the base weights and writes a plain Hugging
Face folder for serving (also loadable by ``load``).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from liveshelf.core.jsonsafe import plain
from liveshelf.core.seeding import seed_everything
from liveshelf.core.trainer import AccumulateStrategy, EarlyStopping, LRSchedule, NaNGuard, OnStep, Trainer
from liveshelf.errors import ConfigError, DataFormatError, NotFittedError, NotFoundError, ValidationError
from liveshelf.text.finetune.adapters import add_bottleneck_adapters, count_parameters, trainable_state
from liveshelf.text.finetune.config import CONFIG_FILE, FinetuneConfig
from liveshelf.text.finetune.data import (
    IGNORE,
    Feature,
    batch_indices,
    encode,
    encode_generation,
    pad_batch,
)
from liveshelf.text.finetune.loading import (
    ADAPTER_FILE,
    apply_method,
    bf16_supported,
    load_base,
    resolve_model_path,
)
from liveshelf.text.finetune.private import make_private, per_example_generation_loss
from liveshelf.text.finetune.report import PeakMemory, classification_report, ranking_report

#: The hint of the NaN guard: what to change when the loss is no longer finite.
NAN_HINT = "lower the learning rate ('lr') or turn bf16 off."


class Finetuner:
    """Fine-tune a local transformer with ``config.method`` on ``config.task`` (see module docstring)."""

    def __init__(
        self, config: FinetuneConfig | None = None, console: Any = None, verbose: bool = True
    ) -> None:
        self.config = config if config is not None else FinetuneConfig()
        self.console = console
        self.verbose = verbose

    # ------------------------------------------------------------------ set-up
    def _say(self, message: str) -> None:
        if not self.verbose:
            return
        if self.console is None:
            from rich.console import Console

            self.console = Console(stderr=True, soft_wrap=True)
        self.console.print(message)

    def _device(self) -> torch.device:
        if self.config.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.config.device)

    def _load_base(self, path: Path, labels: list[Any] | None) -> tuple[Any, Any]:
        return load_base(path, self.config.task, labels)

    def _require_fitted(self) -> None:
        if getattr(self, "model_", None) is None:
            raise NotFittedError(
                "This Finetuner instance is not fitted yet. Call 'fit' (or Finetuner.load) first."
            )

    # ------------------------------------------------------------------ data
    def _label_index(self, labels: Sequence[Any], name: str) -> np.ndarray:
        index = {v: i for i, v in enumerate(self.labels_)}
        try:
            return np.array([index[plain(v)] for v in labels], dtype=np.int64)
        except KeyError as exc:
            raise ValidationError(
                f"The '{name}' argument holds the label {exc.args[0]!r}, which was not in the "
                f"training labels {self.labels_}. Drop those rows or retrain with them.",
                field=name,
            ) from None

    def _features(self, texts: Sequence[Any], name: str) -> list[Feature]:
        return encode(self.tokenizer_, texts, self.config.max_length, name)

    def _batch(self, feats: Sequence[Feature], side: str = "right") -> dict[str, torch.Tensor]:
        batch = pad_batch(feats, int(self.tokenizer_.pad_token_id), side)
        return {k: v.to(self.device_) for k, v in batch.items()}

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        train_texts: Sequence[Any],
        train_labels: Sequence[Any] | None = None,
        valid_texts: Sequence[Any] | None = None,
        valid_labels: Sequence[Any] | None = None,
    ) -> Finetuner:
        """Train on ``train_texts`` / ``train_labels``; validate each epoch when ``valid_texts`` is given.

        Classification: texts or pairs + labels. Ranking: pairs + 0/1 labels (pointwise) or
        (context, pos, neg) triples without labels (bpr / margin). Generation: prompts + targets.
        """
        cfg = self.config.validate()
        seed_everything(cfg.seed)
        self.device_ = self._device()
        pairwise = cfg.task == "ranking" and cfg.ranking_loss != "pointwise"
        if pairwise:
            if train_labels is not None or any(
                not (isinstance(t, (tuple, list)) and len(t) == 3) for t in train_texts
            ):
                raise ValidationError(
                    f"ranking_loss={cfg.ranking_loss!r} trains on (context, positive item, "
                    "negative item) triples with train_labels=None. Pass triples, or use "
                    "ranking_loss='pointwise' for labelled pairs.",
                    field="train_texts",
                )
        elif train_labels is None or len(train_labels) != len(train_texts):
            raise ValidationError(
                f"The 'train_labels' argument must hold one label per text ({len(train_texts)}). Got "
                f"{None if train_labels is None else len(train_labels)} instead.",
                field="train_labels",
            )
        if valid_texts is not None and (valid_labels is None or len(valid_labels) != len(valid_texts)):
            raise ValidationError(
                "The 'valid_labels' argument must hold one label per validation text.", field="valid_labels"
            )
        if cfg.task == "classification":
            self.labels_ = sorted({plain(v) for v in train_labels}, key=lambda v: (str(type(v)), v))
            if len(self.labels_) < 2:
                raise ValidationError(
                    f"Classification needs at least two distinct labels; got {self.labels_}.",
                    field="train_labels",
                )
        elif cfg.task == "ranking":
            self.labels_ = [0, 1]
        else:
            self.labels_ = None
        self.model_path_ = resolve_model_path(cfg.model, cfg.task)
        with PeakMemory(self.device_.type) as mem:
            self.tokenizer_, model = self._load_base(self.model_path_, self.labels_)
            train = self._train_set(train_texts, train_labels, pairwise)
            steps_per_epoch = math.ceil(math.ceil(len(train["n"]) / cfg.batch_size) / cfg.grad_accum)
            total_steps = steps_per_epoch * cfg.epochs
            seed_everything(cfg.seed)
            self.model_ = apply_method(model, cfg, total_steps).to(self.device_)
            trainable, total = count_parameters(self.model_.named_parameters())
            self._say(
                f"[bold]{cfg.method}[/] on {cfg.task}: trainable params {trainable:,} / {total:,} "
                f"({100 * trainable / total:.3f} %)"
            )
            loop, keeper = self._make_trainer(train, total_steps, valid_texts, valid_labels)
            loop.fit()
            if self._dp is not None:
                self._dp.finish(self.model_)
        examples = int(loop.strategy_report["examples"])
        self.history_ = loop.history
        self.fit_stats_ = {
            "trainable_params": trainable,
            "total_params": total,
            "trainable_pct": 100.0 * trainable / total,
            "train_seconds": loop.train_seconds,
            "examples": examples,
            "examples_per_s": examples / max(loop.train_seconds, 1e-9),
            "epochs_run": loop.epoch,
            "best_epoch": keeper.best_epoch if keeper else loop.epoch,
            "optimizer_steps": loop.step,
            "peak_mem_mb": mem.peak_mb,
            "peak_mem_how": mem.how,
            "bf16": self._use_bf16,
        }
        if self._dp is not None:
            privacy = self.fit_stats_["privacy"] = self._dp.report()
            self._say(
                "differential privacy: epsilon {dp_epsilon:.3f} at delta {dp_delta:.2e} "
                "(noise multiplier {dp_noise_multiplier:.3f}, {dp_steps} steps)".format(**privacy)
            )
        self._say(
            f"{examples:,} examples in {loop.train_seconds:.1f} s = "
            f"{self.fit_stats_['examples_per_s']:.1f} examples/s; peak memory +{mem.peak_mb:.0f} MB ({mem.how})"
        )
        self.model_.eval()
        return self

    def _train_set(
        self, texts: Sequence[Any], labels: Sequence[Any] | None, pairwise: bool
    ) -> dict[str, Any]:
        cfg = self.config
        if cfg.task == "generation":
            feats = encode_generation(
                self.tokenizer_, [str(t) for t in texts], [str(t) for t in labels or []], cfg.max_length
            )
            return {"n": feats, "feats": feats}
        if pairwise:
            pos = self._features([(t[0], t[1]) for t in texts], "train_texts")
            neg = self._features([(t[0], t[2]) for t in texts], "train_texts")
            return {"n": pos, "pos": pos, "neg": neg}
        feats = self._features(texts, "train_texts")
        if cfg.task == "ranking":
            y = np.asarray(labels, dtype=np.float32)
            if not np.isin(y, (0.0, 1.0)).all():
                raise ValidationError(
                    "Pointwise ranking labels must be 0 (irrelevant) or 1 (relevant).", field="train_labels"
                )
        else:
            y = self._label_index(labels or [], "train_labels")
        return {"n": feats, "feats": feats, "y": y}

    def _loss_fn(self, train: dict[str, Any]) -> Any:
        cfg = self.config
        if cfg.task == "generation":

            def gen_loss(module: torch.nn.Module, idx: np.ndarray) -> tuple[torch.Tensor, int]:
                batch = self._batch([train["feats"][i] for i in idx])
                if cfg.dp_epsilon is not None:  # DP: mean of per-example losses (see finetune.private)
                    labels = batch.pop("labels")
                    return per_example_generation_loss(module(**batch).logits, labels, IGNORE), len(idx)
                return module(**batch).loss.float(), len(idx)

            return gen_loss
        if "pos" in train:

            def pair_loss(module: torch.nn.Module, idx: np.ndarray) -> tuple[torch.Tensor, int]:
                batch = self._batch([train["pos"][i] for i in idx] + [train["neg"][i] for i in idx])
                s = module(**batch).logits.float()[:, 0]  # (2B,)
                diff = s[: len(idx)] - s[len(idx) :]
                if cfg.ranking_loss == "bpr":
                    return -torch.nn.functional.logsigmoid(diff).mean(), len(idx)
                return torch.relu(cfg.margin - diff).mean(), len(idx)

            return pair_loss
        y_all = torch.as_tensor(train["y"])
        if cfg.task == "ranking":
            pos_weight = None
            if cfg.class_weights == "balanced":
                n_pos = float(y_all.sum())
                pos_weight = torch.tensor([(len(y_all) - n_pos) / max(n_pos, 1.0)], device=self.device_)
            crit: torch.nn.Module = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        else:
            weight = None
            if cfg.class_weights == "balanced":
                counts = np.bincount(train["y"], minlength=len(self.labels_)).astype(np.float64)
                weight = torch.tensor(
                    len(train["y"]) / (len(counts) * np.maximum(counts, 1)),
                    dtype=torch.float32,
                    device=self.device_,
                )
            crit = torch.nn.CrossEntropyLoss(weight=weight)

        def cls_loss(module: torch.nn.Module, idx: np.ndarray) -> tuple[torch.Tensor, int]:
            batch = self._batch([train["feats"][i] for i in idx])
            logits = module(**batch).logits.float()  # (B, C)
            target = y_all[idx].to(self.device_)
            if cfg.task == "ranking":
                return crit(logits[:, 0], target), len(idx)
            return crit(logits, target), len(idx)

        return cls_loss

    def _make_trainer(
        self,
        train: dict[str, Any],
        total_steps: int,
        valid_texts: Sequence[Any] | None,
        valid_labels: Sequence[Any] | None,
    ) -> tuple[Trainer, EarlyStopping | None]:
        """The run's :class:`~liveshelf.core.trainer.Trainer` (AdamW, linear warmup schedule, accumulation,
        autocast, NaN guard, early stopping on validation) and its early-stopping callback."""
        from transformers import get_linear_schedule_with_warmup

        cfg = self.config
        decay, no_decay = [], []
        for _, p in self.model_.named_parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 else no_decay).append(p)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.learning_rate,
        )
        scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup * total_steps), total_steps)
        self._use_bf16 = bool(cfg.bf16 and bf16_supported(self.device_))
        if cfg.bf16 and not self._use_bf16:
            self._say(f"bf16 autocast is not supported on {self.device_}; training in fp32")
        device_type, use_bf16 = self.device_.type, self._use_bf16

        def autocast() -> torch.autocast:
            return torch.autocast(device_type, dtype=torch.bfloat16, enabled=use_bf16)

        n = len(train["n"])

        def batches(epoch: int) -> list[np.ndarray]:
            return batch_indices(n, cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=epoch)

        # order matters: the schedule steps before AdaLoRA's rank allocation sees the step
        callbacks: list[Any] = [NaNGuard(NAN_HINT), LRSchedule(scheduler)]
        if cfg.method == "adalora":
            callbacks.append(OnStep(lambda step: self.model_.base_model.update_and_allocate(step)))
        evaluate, keeper = None, None
        if valid_texts is not None:

            def evaluate(_module: torch.nn.Module) -> dict[str, float]:
                report = self.evaluate(valid_texts, valid_labels)
                return {
                    k: (float("nan") if v is None else float(v))
                    for k, v in report.items()
                    if k != "per_class"
                }

            metric, mode = cfg.monitor_metric
            keeper = EarlyStopping(
                metric,
                cfg.patience,
                mode=mode,
                trainable_only=True,  # PEFT runs copy megabytes, not the base model
                hint="set FinetuneConfig.monitor to one of them.",
            )
            callbacks.append(keeper)
        loss_fn = self._loss_fn(train)
        self._dp = None
        if cfg.dp_epsilon is not None:  # DP-SGD: Poisson batches, per-example clipping + noise (opacus)
            self._dp, optimizer, batches, loss_fn = make_private(self.model_, optimizer, loss_fn, n, cfg)
        trainer = Trainer(
            self.model_,
            optimizer,
            loss_fn,
            batches,
            evaluate=evaluate,
            epochs=cfg.epochs,
            grad_clip=cfg.grad_clip,
            callbacks=callbacks,
            strategy=AccumulateStrategy(cfg.grad_accum, autocast),
            metrics_prefix="valid_",
        )
        return trainer, keeper

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def _logits(self, texts: Sequence[Any], name: str = "texts") -> np.ndarray:
        self._require_fitted()
        feats = self._features(texts, name)
        order = np.argsort([len(f["input_ids"]) for f in feats], kind="stable")
        out = np.zeros((len(feats), self.model_.config.num_labels), dtype=np.float32)
        was_training = self.model_.training
        self.model_.eval()
        for idx in batch_indices(len(feats), self.config.eval_batch_size, shuffle=False):
            rows = order[idx]
            logits = self.model_(**self._batch([feats[i] for i in rows])).logits  # (B, C)
            out[rows] = logits.float().cpu().numpy()
        self.model_.train(was_training)
        return out

    def predict_proba(self, texts: Sequence[Any]) -> np.ndarray:
        """(N, C) class probabilities, columns in the order of ``labels_``."""
        self._need_task("classification", "predict_proba")
        logits = self._logits(texts)
        return torch.softmax(torch.from_numpy(logits), dim=1).numpy()

    def predict(self, texts: Sequence[Any]) -> list[Any]:
        """The most probable label of each text (the label values given to ``fit``)."""
        proba = self.predict_proba(texts)
        return [self.labels_[i] for i in proba.argmax(axis=1)]

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """(N,) relevance logits of (context, item) pairs (ranking task)."""
        self._need_task("ranking", "score")
        return self._logits(pairs, "pairs")[:, 0]

    def evaluate(self, texts: Sequence[Any], labels: Sequence[Any]) -> dict[str, Any]:
        """Classification / ranking: the report of ``report.py``; generation: token loss and perplexity."""
        self._require_fitted()
        if len(labels) != len(texts):
            raise ValidationError(
                f"The 'labels' argument must hold one label per text ({len(texts)}). "
                f"Got {len(labels)} instead.",
                field="labels",
            )
        if self.config.task == "generation":
            return self._generation_loss([str(t) for t in texts], [str(t) for t in labels])
        if self.config.task == "ranking":
            return ranking_report(np.asarray(labels, dtype=np.int64), self.score(texts))
        y = self._label_index(labels, "labels")
        return classification_report(y, self.predict_proba(texts), [str(v) for v in self.labels_])

    @torch.no_grad()
    def _generation_loss(self, prompts: list[str], targets: list[str]) -> dict[str, Any]:
        feats = encode_generation(self.tokenizer_, prompts, targets, self.config.max_length)
        total, tokens = 0.0, 0
        was_training = self.model_.training
        self.model_.eval()
        for idx in batch_indices(len(feats), self.config.eval_batch_size, shuffle=False):
            batch = self._batch([feats[i] for i in idx])
            n = int((batch["labels"][:, 1:] != IGNORE).sum())  # tokens scored after the causal shift
            total += float(self.model_(**batch).loss.float()) * n
            tokens += n
        self.model_.train(was_training)
        loss = total / max(tokens, 1)
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": tokens, "n": len(feats)}

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32, **kwargs: Any) -> list[str]:
        """Greedy continuations (at most ``max_new_tokens`` tokens each) of ``prompts`` (generation task)."""
        self._need_task("generation", "generate")
        self._require_fitted()
        if max_new_tokens < 1:
            raise ConfigError(
                f"The 'max_new_tokens' parameter of generate must be an int >= 1. Got {max_new_tokens}."
            )
        feats = encode_generation(self.tokenizer_, list(prompts), None, self.config.max_length)
        outputs = []
        self.model_.eval()
        for idx in batch_indices(len(feats), self.config.eval_batch_size, shuffle=False):
            batch = self._batch([feats[i] for i in idx], side="left")
            gen = self.model_.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer_.pad_token_id,
                eos_token_id=self.tokenizer_.eos_token_id,
                **kwargs,
            )
            new = gen[:, batch["input_ids"].shape[1] :]
            outputs += self.tokenizer_.batch_decode(new, skip_special_tokens=True)
        return outputs

    def _need_task(self, task: str, what: str) -> None:
        if self.config.task != task:
            raise ConfigError(
                f"'{what}' is for the {task!r} task; this Finetuner was configured with "
                f"task={self.config.task!r}."
            )

    # ------------------------------------------------------------------ persistence
    def _meta(self, weights: str, **extra: Any) -> dict[str, Any]:
        return {
            "weights": weights,
            "labels": self.labels_,
            "base_model": str(self.model_path_),
            "fit_stats": getattr(self, "fit_stats_", None),
            **extra,
        }

    def save(self, folder: str | Path) -> Path:
        """Write the run: adapters (+ head) only for PEFT methods, the full model for ``full``."""
        self._require_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer_.save_pretrained(folder)
        method = self.config.method
        if method == "adapter":
            from safetensors.torch import save_file

            save_file(
                {k: v.cpu().contiguous() for k, v in trainable_state(self.model_).items()},
                folder / ADAPTER_FILE,
            )
            weights = "bottleneck"
        else:
            self.model_.save_pretrained(folder)
            weights = "full" if method == "full" else "peft"
        self.config.save(folder, **self._meta(weights))
        return folder

    def merge_and_save(self, folder: str | Path) -> Path:
        """Fold LoRA / AdaLoRA / IA3 into the base weights and write a plain Hugging Face model folder."""
        self._require_fitted()
        method = self.config.method
        if method == "full":
            return self.save(folder)
        if method == "adapter":
            raise ConfigError(
                "The bottleneck adapter (method='adapter') has a nonlinearity and cannot be merged "
                "into the base weights. Use save() and serve the base model with the adapter file."
            )
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        merged = copy.deepcopy(self.model_).merge_and_unload()
        merged.save_pretrained(folder)
        self.tokenizer_.save_pretrained(folder)
        self.config.save(folder, **self._meta("full", merged_from=method))
        return folder

    @classmethod
    def load(
        cls,
        folder: str | Path,
        model: str | Path | None = None,
        device: str | None = None,
        verbose: bool = False,
    ) -> Finetuner:
        """A fitted Finetuner from ``save`` / ``merge_and_save``; ``model`` overrides the base model folder."""
        from transformers import AutoTokenizer

        folder = Path(folder)
        file = folder / CONFIG_FILE
        if not file.is_file():
            raise NotFoundError(
                f"{str(folder)!r} holds no {CONFIG_FILE}: it was not written by Finetuner.save. "
                "To fine-tune a plain Hugging Face folder, pass it as FinetuneConfig(model=DIR)."
            )
        payload = json.loads(file.read_text())
        if payload.get("model_type") != "liveshelf-finetune":
            raise DataFormatError(
                f"{str(file)!r} has model_type {payload.get('model_type')!r}, expected 'liveshelf-finetune'."
            )
        config = FinetuneConfig.from_dict(payload["config"])
        if device is not None:
            config.device = device
        self = cls(config, verbose=verbose)
        self.device_ = self._device()
        self.labels_ = payload["labels"]
        self.fit_stats_ = payload.get("fit_stats")
        weights = payload["weights"]
        if weights == "full":
            self.model_path_ = folder
            self.tokenizer_, base = self._load_base(folder, self.labels_)
            self.model_ = base
        else:
            self.model_path_ = resolve_model_path(model if model is not None else config.model, config.task)
            _, base = self._load_base(self.model_path_, self.labels_)
            if weights == "peft":
                from peft import PeftModel

                self.model_ = PeftModel.from_pretrained(base, folder)
            else:
                from safetensors.torch import load_file

                add_bottleneck_adapters(base, config.adapter_size)
                state = load_file(folder / ADAPTER_FILE)
                result = base.load_state_dict(state, strict=False)
                if result.unexpected_keys:
                    raise DataFormatError(
                        f"{str(folder / ADAPTER_FILE)!r} does not fit the base model "
                        f"{str(self.model_path_)!r}: unexpected keys {result.unexpected_keys[:5]}."
                    )
                self.model_ = base
            self.tokenizer_ = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            if self.tokenizer_.pad_token is None:
                self.tokenizer_.pad_token = self.tokenizer_.eos_token
        self.model_.to(self.device_).eval()
        return self
