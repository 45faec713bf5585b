"""The shared loop of the model backends (``hf``, ``openai``): :class:`ModelGenerator`.

Draft the three texts, run the grounding check (:mod:`liveshelf.text.grounding`) on each, regenerate a
failed request once with the unsupported claims named in the prompt, and hand what still fails (or what the
model could not produce at all) to the ``grounded`` backend, recording why.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from liveshelf.text.generate.base import KINDS, GenerationRequest, Generator, Pitch, first_line, parse_points
from liveshelf.text.generate.grounded import GroundedGenerator
from liveshelf.text.generate.templates import prompt_messages, too_long
from liveshelf.text.grounding import check


class ModelGenerator(Generator):
    """Model drafts behind the grounding check, with one retry and a ``grounded`` fallback."""

    def __init__(
        self, *, fallback: Generator | None = None, known_brands: Sequence[str] = (), n_facts: int = 6
    ) -> None:
        self.fallback = fallback if fallback is not None else GroundedGenerator(known_brands=known_brands)
        self.known_brands = tuple(known_brands)
        self.n_facts = n_facts

    @abc.abstractmethod
    def complete(self, prompts: list[list[dict[str, str]]], attempt: int) -> list[str | None]:
        """Model answers for chat ``prompts`` (None where the call failed)."""

    def _ranked_facts(self, req: GenerationRequest) -> list[tuple[str, str]]:
        fb = self.fallback
        facts = [f for f, _s in fb.rank(req)] if isinstance(fb, GroundedGenerator) else list(req.item.facts)
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


__all__ = ["ModelGenerator"]
