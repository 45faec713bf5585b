"""Tokenising inputs once and padding them per batch.

Inputs are texts (``str``) or text pairs (``(context, item)`` tuples, encoded as
``tokenizer(context, item)``: ``[CLS] context [SEP] item [SEP]`` for BERT). Generation examples
are (prompt, target): the model reads ``prompt + target + eos`` and the loss covers only the
target and eos; prompt and padding positions get label -100.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from liveshelf.errors import ConfigError, ValidationError

Feature = dict[str, list[int]]
IGNORE = -100


def split_inputs(texts: Sequence[Any], name: str = "texts") -> tuple[list[str], list[str] | None]:
    """(first texts, second texts or None) of a list of strings or of 2-tuples."""
    if len(texts) == 0:
        raise ValidationError(
            f"The '{name}' argument must hold at least one text. Got an empty list.", field=name
        )
    if all(isinstance(t, str) for t in texts):
        return list(texts), None
    if all(
        isinstance(t, (tuple, list)) and len(t) == 2 and all(isinstance(s, str) for s in t) for t in texts
    ):
        return [t[0] for t in texts], [t[1] for t in texts]
    bad = next(t for t in texts if not isinstance(t, str))
    raise ValidationError(
        f"The '{name}' argument must hold only strings or only (context, item) string pairs; "
        f"found {bad!r} ({type(bad).__name__}). Convert every entry to one of the two forms.",
        field=name,
    )


def encode(tokenizer: Any, texts: Sequence[Any], max_length: int, name: str = "texts") -> list[Feature]:
    """Token ids (and attention mask / token types) of each text or pair, truncated to ``max_length``."""
    first, second = split_inputs(texts, name)
    enc = tokenizer(first, second, truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    return [{k: list(enc[k][i]) for k in keys} for i in range(len(first))]


def eos_id(tokenizer: Any) -> int:
    for attr in ("eos_token_id", "sep_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    raise ConfigError(
        "The tokenizer of the generation model has neither an eos nor a sep token; "
        "set tokenizer.eos_token before fine-tuning."
    )


def encode_generation(
    tokenizer: Any, prompts: Sequence[str], targets: Sequence[str] | None, max_length: int
) -> list[Feature]:
    """``prompt + target + eos`` ids with labels -100 on the prompt (targets None: prompts only, no labels).

    A prompt longer than the budget keeps its last tokens, so that the target is always seen.
    """
    bos = getattr(tokenizer, "bos_token_id", None)
    add_bos = bos is not None and bool(getattr(tokenizer, "add_bos_token", False))
    out = []
    for i, prompt in enumerate(prompts):
        p = ([bos] if add_bos else []) + tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if targets is None:
            ids = p[-max_length:]
            out.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
            continue
        t = tokenizer(targets[i], add_special_tokens=False)["input_ids"] + [eos_id(tokenizer)]
        t = t[: max_length - 1]
        p = p[-(max_length - len(t)) :] if len(p) + len(t) > max_length else p
        out.append(
            {"input_ids": p + t, "attention_mask": [1] * (len(p) + len(t)), "labels": [IGNORE] * len(p) + t}
        )
    return out


def pad_batch(features: Sequence[Feature], pad_id: int, side: str = "right") -> dict[str, torch.Tensor]:
    """Pad to the longest feature: ids with ``pad_id``, masks / token types with 0, labels with -100."""
    width = max(len(f["input_ids"]) for f in features)
    fill = {"input_ids": pad_id, "attention_mask": 0, "token_type_ids": 0, "labels": IGNORE}
    out: dict[str, torch.Tensor] = {}
    for key in features[0]:
        rows = []
        for f in features:
            pad = [fill[key]] * (width - len(f[key]))
            rows.append(pad + f[key] if side == "left" else f[key] + pad)
        out[key] = torch.tensor(rows, dtype=torch.long)  # (B, T)
    return out


def batch_indices(n: int, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0) -> list[np.ndarray]:
    """Index arrays of the batches of one epoch; a seeded permutation per epoch when ``shuffle``."""
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]
