"""The one generation interface: requests in, grounded :class:`Pitch` objects out.

A :class:`GenerationRequest` is one (viewer, item) pair: the item's facts, the viewer's profile
and the interest vector attended against the item (``ProfileBuilder.interest_vector(user, item)``).
Every backend returns, per request, a :class:`Pitch`: a one-line recommendation reason for the
viewer, three talking points for the host and a push-notification line, with the backend that
produced it and the fact keys it used.

:class:`ModelGenerator` is the shared loop of the model backends (``hf``, ``openai``): draft the
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

from liveshelf.profile import UserProfile
from liveshelf.text.facts import ItemFacts
from liveshelf.text.generate.templates import prompt_messages, too_long
from liveshelf.text.grounding import check

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


class ModelGenerator(Generator):
    """Model drafts behind the grounding check, with one retry and a ``grounded`` fallback."""

    def __init__(
        self, *, fallback: Generator | None = None, known_brands: Sequence[str] = (), n_facts: int = 6
    ) -> None:
        from liveshelf.text.generate.grounded import GroundedGenerator

        self.fallback = fallback if fallback is not None else GroundedGenerator(known_brands=known_brands)
        self.known_brands = tuple(known_brands)
        self.n_facts = n_facts

    @abc.abstractmethod
    def complete(self, prompts: list[list[dict[str, str]]], attempt: int) -> list[str | None]:
        """Model answers for chat ``prompts`` (None where the call failed)."""

    def _ranked_facts(self, req: GenerationRequest) -> list[tuple[str, str]]:
        rank = getattr(self.fallback, "rank", None)
        facts = [f for f, _s in rank(req)] if rank is not None else list(req.item.facts)
        noun = req.item.by_kind("noun")
        facts = ([noun] if noun is not None else []) + [f for f in facts if f.kind != "noun"]
        return [(f.key, f.value) for f in facts[: self.n_facts]]

    def _review(self, req: GenerationRequest, answers: list[str | None]) -> tuple[Pitch | None, list[str]]:
        """A pitch from the three answers of one request, or the reasons it is rejected."""
        if any(a is None for a in answers):
            return None, ["model call failed"]
        reason = first_line(answers[0] or "")
        points = parse_points(answers[1] or "")[:3]
        push = first_line(answers[2] or "")
        problems: list[str] = []
        if not reason or not push:
            problems.append("empty text")
        if len(points) < 3:
            problems.append(f"{len(points)} talking points instead of 3")
        if reason and too_long(reason, req.language):
            problems.append("reason longer than the limit")
        used: list[str] = []
        for text in [reason, *points, push]:
            res = check(text, req.item, context=req.context(), known_brands=self.known_brands)
            problems += res.reasons()
            used += [k for k in res.facts_used if k not in used]
        if problems:
            return None, problems
        return Pitch(
            user=req.user,
            item=req.item.item,
            lang=req.language,
            reason=reason,
            talking_points=points,
            push=push,
            backend=self.name,
            facts_used=used,
            lead_fact=used[0] if used else None,
        ), []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Pitch]:
        out: list[Pitch | None] = [None] * len(requests)
        facts = [self._ranked_facts(r) for r in requests]
        tags = [r.profile.tag_line(r.language) if r.profile is not None else "" for r in requests]
        pending = list(range(len(requests)))
        rejected: dict[int, list[str]] = {i: [] for i in pending}
        attempts = 2  # the draft, then one regeneration
        for attempt in range(attempts):
            if not pending:
                break
            prompts = [
                prompt_messages(
                    kind,
                    requests[i].language,
                    facts[i],
                    tags[i],
                    strict="; ".join(rejected[i][:5]) if attempt and rejected[i] else None,
                )
                for i in pending
                for kind in KINDS
            ]
            answers = self.complete(prompts, attempt)
            still: list[int] = []
            for n, i in enumerate(pending):
                pitch, problems = self._review(requests[i], answers[3 * n : 3 * n + 3])
                if pitch is None:
                    rejected[i] += problems
                    still.append(i)
                else:
                    pitch.attempts = attempt + 1
                    pitch.rejected = rejected[i]
                    out[i] = pitch
            pending = still
        if pending:
            backups = self.fallback.generate([requests[i] for i in pending])
            for i, pitch in zip(pending, backups, strict=True):
                pitch.attempts = attempts
                pitch.fallback_reason = f"{self.name} output rejected twice: " + "; ".join(rejected[i][:5])
                pitch.rejected = rejected[i]
                out[i] = pitch
        return [p for p in out if p is not None]
