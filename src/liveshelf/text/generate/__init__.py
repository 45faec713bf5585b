"""Generated text for live commerce: recommendation reasons, host talking points, push lines.

One interface (:class:`Generator`: ``generate(requests) -> list[Pitch]``), three backends:

* ``grounded`` (default, no model): :class:`GroundedGenerator`, the facts that match the viewer in
  zh / en templates;
* ``hf``: :class:`HFGenerator`, a local causal-LM directory, batched, with a token budget, and a
  LoRA fine-tuning path (:func:`finetune_lora`);
* ``openai``: :class:`OpenAIGenerator`, any OpenAI-compatible endpoint, with timeouts, retries
  and fallback.

Model output passes the grounding check (:mod:`liveshelf.text.grounding`) or is regenerated
once, then replaced by the ``grounded`` text. Every :class:`Pitch` names its ``backend`` and the
``facts_used``.

    from liveshelf.text.facts import facts_table
    from liveshelf.text.generate import GenerationRequest, make_generator
    gen = make_generator("grounded", encode=builder.encode_texts)
    req = GenerationRequest(item=facts[item], user=u, profile=builder.profile(u),
                            interest=builder.interest_vector(u, item))
    gen.generate_one(req).to_dict()
"""

from __future__ import annotations

from typing import Any

from liveshelf.errors import ConfigError
from liveshelf.text.generate.base import GenerationRequest, Generator, Pitch
from liveshelf.text.generate.grounded import GroundedGenerator
from liveshelf.text.generate.model import ModelGenerator

BACKENDS = ("grounded", "hf", "openai")


def make_generator(backend: str = "grounded", **kwargs: Any) -> Generator:
    """A generator by backend name; ``kwargs`` go to its constructor."""
    if backend == "grounded":
        return GroundedGenerator(**kwargs)
    if backend == "hf":
        from liveshelf.text.generate.hf import HFGenerator

        return HFGenerator(**kwargs)
    if backend == "openai":
        from liveshelf.text.generate.openai import OpenAIGenerator

        return OpenAIGenerator(**kwargs)
    raise ConfigError(
        f"The 'backend' parameter of make_generator must be one of {list(BACKENDS)}. Got {backend!r} instead."
    )


__all__ = [
    "BACKENDS",
    "GenerationRequest",
    "Generator",
    "GroundedGenerator",
    "ModelGenerator",
    "Pitch",
    "make_generator",
]
