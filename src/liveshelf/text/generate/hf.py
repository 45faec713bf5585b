"""The ``hf`` backend: any local causal-LM directory (e.g. a Qwen chat model), batched, token-budgeted.

The model and tokenizer load with ``AutoModelForCausalLM`` / ``AutoTokenizer`` and
``local_files_only=True`` (nothing is downloaded). Prompts go through the tokenizer's chat
template when it has one, else they are the plain concatenation of the messages. Generation is
batched (``batch_size`` prompts, left-padded so every row continues from its last token) with at
most ``max_new_tokens`` new tokens per text and prompts cut to their last ``max_prompt_tokens``
tokens; the first attempt decodes greedily, the regeneration samples (``temperature``, seeded).
``tokens_generated_`` counts the new tokens of the last ``generate`` call.

Fine-tuning: :func:`training_pairs` turns (profile, item facts) requests into (prompt, target)
pairs whose targets are the ``grounded`` backend's texts, and :func:`finetune_lora` trains a LoRA
adapter on them with the fine-tuning toolkit (``liveshelf.text.finetune``, task ``generation``,
method ``lora``) and writes a merged model directory that this backend loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from liveshelf.errors import ConfigError, check_param
from liveshelf.text.generate.base import KINDS, GenerationRequest, Generator
from liveshelf.text.generate.model import ModelGenerator
from liveshelf.text.generate.templates import plain_prompt, prompt_messages, target_text


class HFGenerator(ModelGenerator):
    """A local Hugging Face causal LM behind the grounding check."""

    name = "hf"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        max_new_tokens: int = 48,
        max_prompt_tokens: int = 384,
        batch_size: int = 8,
        temperature: float = 0.7,
        device: str = "cpu",
        seed: int = 0,
        fallback: Generator | None = None,
        known_brands: Sequence[str] = (),
    ) -> None:
        where = "HFGenerator"
        check_param(
            "max_new_tokens",
            max_new_tokens,
            isinstance(max_new_tokens, int) and max_new_tokens >= 1,
            "an int >= 1",
            where,
        )
        check_param(
            "max_prompt_tokens",
            max_prompt_tokens,
            isinstance(max_prompt_tokens, int) and max_prompt_tokens >= 8,
            "an int >= 8",
            where,
        )
        check_param(
            "batch_size", batch_size, isinstance(batch_size, int) and batch_size >= 1, "an int >= 1", where
        )
        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"The 'model_dir' parameter of HFGenerator must be a local causal-LM directory with a "
                f"config.json. Got {str(model_dir)!r}. Download the model once (e.g. huggingface-cli "
                "download Qwen/Qwen2.5-0.5B-Instruct --local-dir DIR) and pass DIR."
            )
        super().__init__(fallback=fallback, known_brands=known_brands)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_dir = path
        self.max_new_tokens = max_new_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.batch_size = batch_size
        self.temperature = temperature
        self.seed = seed
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).to(self.device).eval()
        self.tokens_generated_ = 0

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text: the chat template when the tokenizer has one, else plain text."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return plain_prompt(messages)

    def complete(self, prompts: list[list[dict[str, str]]], attempt: int) -> list[str | None]:
        import torch

        texts = [self.render(m) for m in prompts]
        out: list[str | None] = []
        if attempt == 0:
            self.tokens_generated_ = 0
        for lo in range(0, len(texts), self.batch_size):
            chunk = texts[lo : lo + self.batch_size]
            self.tokenizer.truncation_side = "left"
            enc = self.tokenizer(
                chunk,
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_prompt_tokens,
                add_special_tokens=False,
            ).to(self.device)
            kwargs: dict[str, Any] = {
                "max_new_tokens": self.max_new_tokens,
                "pad_token_id": self.tokenizer.pad_token_id,
            }
            if attempt == 0:
                kwargs["do_sample"] = False
            else:
                torch.manual_seed(self.seed + attempt)
                kwargs.update(do_sample=True, temperature=self.temperature, top_p=0.95)
            if self.tokenizer.eos_token_id is not None:
                kwargs["eos_token_id"] = self.tokenizer.eos_token_id
            with torch.no_grad():
                gen = self.model.generate(**enc, **kwargs)
            new = gen[:, enc["input_ids"].shape[1] :]
            for row in new:
                ids = row.tolist()
                if self.tokenizer.pad_token_id is not None:
                    while ids and ids[-1] == self.tokenizer.pad_token_id:
                        ids.pop()
                self.tokens_generated_ += len(ids)
                out.append(self.tokenizer.decode(ids, skip_special_tokens=True).strip())
        return out


def training_pairs(
    requests: Sequence[GenerationRequest], teacher: Generator | None = None
) -> tuple[list[str], list[str]]:
    """(prompt, target) texts for fine-tuning: three per request (reason, points, push), targets by ``teacher``.

    The teacher defaults to the ``grounded`` backend, whose texts pass the grounding check, so the
    model learns to say only what the facts support. Prompts are the plain-text prompts of
    :func:`liveshelf.text.generate.templates.prompt_messages` with the same fact order.
    """
    from liveshelf.text.generate.grounded import GroundedGenerator

    teacher = teacher or GroundedGenerator()
    helper = _PairHelper(fallback=teacher)
    pitches = teacher.generate(list(requests))
    prompts: list[str] = []
    targets: list[str] = []
    for req, pitch in zip(requests, pitches, strict=True):
        facts = helper._ranked_facts(req)
        tags = req.profile.tag_line(req.language) if req.profile is not None else ""
        for kind, value in zip(KINDS, (pitch.reason, pitch.talking_points, pitch.push), strict=True):
            prompts.append(plain_prompt(prompt_messages(kind, req.language, facts, tags)))
            targets.append(target_text(kind, value))
    return prompts, targets


class _PairHelper(ModelGenerator):
    """Only used for its fact ordering (same as the model backends' prompts)."""

    name = "pairs"

    def complete(self, prompts: list[list[dict[str, str]]], attempt: int) -> list[str | None]:
        return [None] * len(prompts)


def finetune_lora(
    model_dir: str | Path,
    requests: Sequence[GenerationRequest],
    out_dir: str | Path,
    *,
    epochs: int = 1,
    batch_size: int = 8,
    max_length: int = 256,
    r: int = 8,
    seed: int = 0,
    target_modules: list[str] | None = None,
    **config: Any,
) -> Path:
    """LoRA-tune ``model_dir`` on grounded (prompt, target) pairs; returns the merged model folder.

    Calls ``liveshelf.text.finetune.Finetuner`` (task ``generation``, method ``lora``), then
    ``merge_and_save(out_dir)``: the folder is a plain Hugging Face model that ``HFGenerator`` loads.
    """
    from liveshelf.text.finetune import FinetuneConfig, Finetuner

    prompts, targets = training_pairs(requests)
    cfg = FinetuneConfig(
        task="generation",
        method="lora",
        model=str(model_dir),
        epochs=epochs,
        batch_size=batch_size,
        max_length=max_length,
        r=r,
        seed=seed,
        patience=None,
        target_modules=target_modules,
        device="cpu",
        **config,
    )
    ft = Finetuner(cfg, verbose=False).fit(prompts, targets)
    return Path(ft.merge_and_save(out_dir))
