"""The one generation interface: requests in, grounded :class:`Pitch` objects out.

A :class:`GenerationRequest` is one (viewer, item) pair: the item's facts, the viewer's profile
and the interest vector attended against the item (``ProfileBuilder.interest_vector(user, item)``).
Every backend returns, per request, a :class:`Pitch`: a one-line recommendation reason for the
viewer, three talking points for the host and a push-notification line, with the backend that
produced it and the fact keys it used.

:class:`~liveshelf.text.generate.model.ModelGenerator` is the shared loop of the model backends (``hf``, ``openai``): draft the
three texts, run the grounding check (:mod:`liveshelf.text.grounding`) on each, regenerate a
failed request once with the unsupported claims named in the prompt, and hand what still fails
(or what the model could not produce at all) to the ``grounded`` backend, recording why.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from liveshelf.text.facts import ItemFacts
from liveshelf.text.user_profile import UserProfile

KINDS: tuple[str, ...] = ("reason", "points", "push")


@dataclass
class GenerationRequest:
    """One (viewer, item) pair to write about."""

    item: ItemFacts
    user: str | None = None
    profile: UserProfile | None = None
    interest: np.ndarray | None = None  # (D,) V of the profile attention against this item
    lang: str | None = None  # default: the item's language
    host: str | None = None  # host / room name for the push line

    @property
    def language(self) -> str:
        lang = self.lang or self.item.language or "zh"
        return "zh" if lang.startswith("zh") else "en"

    def context(self) -> list[str]:
        """Texts besides the item's facts that generated text may quote (host name, viewer tags)."""
        out = [self.host] if self.host else []
        if self.profile is not None:
            out += self.profile.tags_zh + self.profile.tags_en
        return out


@dataclass
class Pitch:
    """Generated texts for one request, with their provenance."""

    user: str | None
    item: str
    lang: str
    reason: str
    talking_points: list[str]
    push: str
    backend: str
    facts_used: list[str]
    lead_fact: str | None
    attempts: int = 1
    fallback_reason: str | None = None  # why the asked backend's text was not used
    rejected: list[str] = field(default_factory=list)  # unsupported claims of rejected drafts

    def texts(self) -> list[str]:
        return [self.reason, *self.talking_points, self.push]

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "item": self.item,
            "lang": self.lang,
            "reason": self.reason,
            "talking_points": list(self.talking_points),
            "push": self.push,
            "backend": self.backend,
            "facts_used": list(self.facts_used),
            "lead_fact": self.lead_fact,
            "attempts": self.attempts,
            "fallback_reason": self.fallback_reason,
            "rejected": list(self.rejected),
        }


class Generator(abc.ABC):
    """A text backend. ``generate`` keeps the order of ``requests``."""

    name: str = "base"

    @abc.abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Pitch]:
        """One :class:`Pitch` per request."""

    def generate_one(self, request: GenerationRequest) -> Pitch:
        return self.generate([request])[0]


_BULLET = re.compile(r"^\s*(?:[-*•·]|\d+[.、)]|[（(]?\d+[)）])\s*")


def parse_points(text: str) -> list[str]:
    """Talking points from a model answer: one per non-empty line, bullets and numbers removed."""
    return [p for p in (_BULLET.sub("", line).strip() for line in text.splitlines()) if p]


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""
