"""Loading a local Hugging Face model for fine-tuning and putting the fine-tuning method on it.

Models are local directories only (``local_files_only=True``): any Hugging Face model folder;
``None`` is the bundled all-MiniLM-L6-v2 for classification and ranking.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from liveshelf.errors import ConfigError, NotFoundError
from liveshelf.text.finetune.adapters import add_bottleneck_adapters, peft_config
from liveshelf.text.finetune.config import FinetuneConfig

#: The file of the bottleneck adapters' (and head's) weights in a saved run.
ADAPTER_FILE = "bottleneck_adapter.safetensors"
PEFT_METHODS = ("lora", "adalora", "ia3")


def resolve_model_path(model: str | Path | None, task: str) -> Path:
    """The local model directory (``None``: the bundled all-MiniLM-L6-v2)."""
    if model is None:
        if task == "generation":
            raise ConfigError(
                "The 'model' parameter of FinetuneConfig must be a local causal-LM directory for "
                "task 'generation'. Got None instead. Pass e.g. model='/models/Qwen2.5-0.5B'."
            )
        from liveshelf.text.encoder import default_model_path

        return default_model_path()
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise NotFoundError(
            f"The 'model' parameter must be a local Hugging Face model directory holding config.json. Got "
            f"{str(model)!r} ({'no config.json there' if path.is_dir() else 'no such directory'}). Nothing is "
            "downloaded: fetch the model once (huggingface-cli download NAME --local-dir DIR) and pass DIR."
        )
    return path


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.ones(2, 2) @ torch.ones(2, 2)
    except RuntimeError:
        return False
    return True


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' 'newly initialised weights' notes while loading (the head is new on purpose)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def load_base(path: Path, task: str, labels: list[Any] | None) -> tuple[Any, Any]:
    """``(tokenizer, model)`` of the folder ``path``: a causal LM for generation, else a sequence
    classifier with one logit (ranking) or one per label (classification)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(
                f"The tokenizer of {str(path)!r} has neither a pad nor an eos token; add a pad token "
                "to its tokenizer_config.json."
            )
        tokenizer.pad_token = tokenizer.eos_token
    with quiet_transformers():
        if task == "generation":
            model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        else:
            n = 1 if task == "ranking" else len(labels or [])
            kwargs: dict[str, Any] = {"num_labels": n}
            if task == "classification":
                kwargs["id2label"] = {i: str(v) for i, v in enumerate(labels or [])}
                kwargs["label2id"] = {str(v): i for i, v in enumerate(labels or [])}
            model = AutoModelForSequenceClassification.from_pretrained(
                path, local_files_only=True, dtype=torch.float32, **kwargs
            )
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def apply_method(model: Any, cfg: FinetuneConfig, total_steps: int) -> Any:
    """``model`` ready for ``cfg.method``: all weights trainable, bottleneck adapters, or a peft model."""
    if cfg.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if cfg.method == "adapter":
        add_bottleneck_adapters(model, cfg.adapter_size)
        return model
    from peft import get_peft_model

    pcfg = peft_config(
        cfg.method,
        cfg.task,
        model,
        r=cfg.r,
        alpha=cfg.alpha,
        dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        total_step=total_steps,
    )
    return get_peft_model(model, pcfg)


__all__ = [
    "ADAPTER_FILE",
    "PEFT_METHODS",
    "apply_method",
    "bf16_supported",
    "load_base",
    "quiet_transformers",
    "resolve_model_path",
]
