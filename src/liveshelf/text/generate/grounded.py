"""The ``grounded`` backend (default, no model): the item's facts that match the viewer, put in templates.

Fact ranking, for each fact ``f`` of the item (the product noun is the subject, never ranked)::

    score(f) = prior[kind(f)] + affinity(profile, f) + embed_weight * cos(V, e_f)

* ``affinity``: the viewer's decayed share of the fact's value in the matching profile family --
  the item's category in ``profile.categories``, its brand in ``brands``, its price band in
  ``price_bands``, its colour / shipping / material in ``attributes`` (0 for other kinds);
* ``V``: the profile's interest vector attended against this item
  (``ProfileBuilder.interest_vector(user, item)``), ``e_f`` the fact phrase embedded by
  ``encode`` in the same space (skipped when either is missing);
* the reason speaks of the viewer's habits ("你常看兰蔻...") only when the lead fact's affinity is
  at least ``MATCH_AFFINITY``; otherwise it uses neutral templates;
* ``prior``: a small per-kind order (price, shipping, brand, category, rating ...) used when the
  viewer tells nothing; a rating adds ``0.1 * (rating - 4)`` when above 4.

The top fact leads the reason (its template family), the second completes it, the top three
become the host's talking points, the lead fact goes into the push line. Every text is then
checked by :func:`liveshelf.text.grounding.check` (``Pitch.facts_used`` lists what it used);
the templates add no claims of their own, so the check passes by construction, and the
benchmark counts it anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from liveshelf.text.facts import Fact, glossary
from liveshelf.text.generate.base import GenerationRequest, Generator, Pitch
from liveshelf.text.generate.templates import (
    HOST_FALLBACK,
    NEUTRAL_EN,
    NEUTRAL_ZH,
    POINT_EN,
    POINT_WHY_EN,
    POINT_WHY_ZH,
    POINT_ZH,
    PUSH_EN,
    PUSH_ZH,
    REASON_EN,
    REASON_ZH,
    too_long,
    variant,
)
from liveshelf.text.grounding import check

#: Lead-fact affinity from which a reason speaks of the viewer's habits ("you often watch ...").
MATCH_AFFINITY = 0.15

PRIORS: dict[str, float] = {
    "price": 0.05,
    "shipping": 0.04,
    "brand": 0.03,
    "category": 0.02,
    "rating": 0.02,
    "material": 0.015,
    "colour": 0.01,
    "size": 0.005,
}


class GroundedGenerator(Generator):
    """Template generation from the facts that best match the viewer."""

    name = "grounded"

    def __init__(
        self,
        encode: Callable[[list[str]], np.ndarray] | None = None,
        *,
        embed_weight: float = 0.3,
        known_brands: Sequence[str] = (),
    ) -> None:
        self.encode = encode
        self.embed_weight = float(embed_weight)
        self.known_brands = tuple(known_brands)
        self._vec_cache: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------------------ ranking
    def _fact_vectors(self, phrases: list[str]) -> np.ndarray:
        missing = [p for p in dict.fromkeys(phrases) if p not in self._vec_cache]
        if missing and self.encode is not None:
            vecs = np.asarray(self.encode(missing), dtype=np.float32)
            vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
            self._vec_cache.update(zip(missing, vecs, strict=True))
        return np.stack([self._vec_cache[p] for p in phrases])

    def affinity(self, req: GenerationRequest, fact: Fact) -> float:
        p = req.profile
        if p is None:
            return 0.0
        if fact.kind == "brand":
            g = glossary()
            return max(
                p.brands.get(fact.value, 0.0),
                p.brands.get(g.translate(fact.value, "zh"), 0.0),
                p.brands.get(g.translate(fact.value, "en"), 0.0),
            )
        if fact.kind == "category":
            g = glossary()
            paths = {fact.value, g.category_path(fact.value, "zh"), g.category_path(fact.value, "en")}
            return max(p.categories.get(c, 0.0) for c in paths)
        if fact.kind == "price":
            from liveshelf.text.facts import PRICE_BANDS, price_band

            band = price_band(req.item.price)
            return 0.0 if band is None else p.price_bands.get(PRICE_BANDS[band][2], 0.0)
        if fact.kind in ("colour", "shipping", "material"):
            return p.attributes.get(fact.kind, {}).get(fact.value, 0.0)
        return 0.0

    def rank(self, req: GenerationRequest) -> list[tuple[Fact, float]]:
        """The item's facts (noun excluded), best match for this viewer first."""
        facts = [f for f in req.item.facts if f.kind != "noun"]
        if not facts:
            return []
        scores = np.array([PRIORS.get(f.kind, 0.0) + self.affinity(req, f) for f in facts])
        rating = req.item.rating
        for k, f in enumerate(facts):
            if f.kind == "rating" and rating is not None and rating > 4.0:
                scores[k] += 0.1 * (rating - 4.0)
        if self.encode is not None and req.interest is not None and np.linalg.norm(req.interest) > 0:
            v = np.asarray(req.interest, np.float32)
            v = v / np.linalg.norm(v)
            e = self._fact_vectors([f.phrase(req.language) for f in facts])
            scores += self.embed_weight * (e @ v)
        order = sorted(range(len(facts)), key=lambda k: (-scores[k], k))
        return [(facts[k], float(scores[k])) for k in order]

    # ------------------------------------------------------------------------------ composing
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Pitch]:
        return [self.compose(r, self.rank(r)) for r in requests]

    def compose(self, req: GenerationRequest, ranked: list[tuple[Fact, float]]) -> Pitch:
        lang = req.language
        item = req.item
        g = glossary()
        noun = item.noun or item.title or item.item
        facts = [f for f, _ in ranked]
        key = (req.user or "", item.item)
        if not facts:
            reason = noun
            points = [noun] * 3
            push = noun
        else:
            lead = facts[0]
            second = facts[1] if len(facts) > 1 else None
            leaf = g.translate(item.leaf or noun, lang)
            fields = {
                "noun": noun,
                "brand": item.brand or "",
                "leaf": leaf,
                "lead": lead.phrase(lang),
                "value": lead.value,
                "second": second.phrase(lang) if second else "",
            }
            personal = self.affinity(req, lead) >= MATCH_AFFINITY
            reason = self._reason(
                lang, lead.kind if personal else "neutral", fields, key, has_second=second is not None
            )
            points = self._points(req, facts, lang)
            host = req.host or HOST_FALLBACK[lang]
            push = variant(PUSH_ZH if lang == "zh" else PUSH_EN, *key, "push").format(
                host=host, noun=noun, lead=lead.phrase(lang)
            )
        used: list[str] = []
        for text in [reason, *points, push]:
            res = check(text, item, context=req.context(), known_brands=self.known_brands)
            used += [k for k in res.facts_used if k not in used]
        ordered = [f.key for f in facts if f.key in used] + [
            k for k in used if k not in {f.key for f in facts}
        ]
        return Pitch(
            user=req.user,
            item=item.item,
            lang=lang,
            reason=reason,
            talking_points=points,
            push=push,
            backend=self.name,
            facts_used=ordered,
            lead_fact=facts[0].key if facts else None,
        )

    @staticmethod
    def _reason(lang: str, kind: str, fields: dict[str, str], key: tuple[str, str], has_second: bool) -> str:
        table = REASON_ZH if lang == "zh" else REASON_EN
        neutral = NEUTRAL_ZH if lang == "zh" else NEUTRAL_EN
        options = neutral if kind == "neutral" else table.get(kind, neutral)
        first = variant(options, *key, "reason")
        tries = [first] + [o for o in options if o != first]
        sep = "，{second}" if lang == "zh" else ", {second}"
        if not has_second:
            tries = [t.replace(sep, "") for t in tries]
        tries += [t.replace(sep, "") for t in tries]
        for t in tries:
            text = _cap(t.format(**fields), lang)
            if not too_long(text, lang):
                return text
        short = (
            f"{fields['noun']}，{fields['lead']}" if lang == "zh" else f"{fields['noun']}, {fields['lead']}."
        )
        if lang == "zh":
            return short[:40]
        return " ".join(short.split()[:20])

    @staticmethod
    def _points(req: GenerationRequest, facts: list[Fact], lang: str) -> list[str]:
        table = POINT_ZH if lang == "zh" else POINT_EN
        pts = []
        for f in facts[:3]:
            value = glossary().translate(req.item.leaf or f.value, lang) if f.kind == "category" else f.value
            pts.append(table.get(f.kind, table["other"]).format(lead=f.phrase(lang), value=value))
        while len(pts) < 3:
            noun = req.item.noun or req.item.title
            pts.append(("介绍商品：" if lang == "zh" else "Introduce the item: ") + noun)
        tags = (req.profile.tags_zh if lang == "zh" else req.profile.tags_en)[:2] if req.profile else []
        if tags:
            why = (POINT_WHY_ZH if lang == "zh" else POINT_WHY_EN).format(
                why="、".join(tags) if lang == "zh" else ", ".join(tags)
            )
            pts[0] += why
        return pts


def _cap(text: str, lang: str) -> str:
    return text[:1].upper() + text[1:] if lang == "en" and text else text
