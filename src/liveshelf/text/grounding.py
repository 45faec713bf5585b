"""Grounding check: every price, number, percentage, brand and claim in a text must come from the item.

:func:`extract_claims` finds the checkable parts of a generated text:

* ``price`` -- an amount with a currency sign or unit (``¥199``, ``199元``, ``199 yuan``, ``$19.9``);
* ``number`` / ``percent`` -- any other number, and ``30%`` / ``百分之30`` / ``五折`` / ``7折``;
* ``brand`` -- a brand name of the catalogue (``known_brands``) or of the built-in glossary;
* ``colour`` / ``shipping`` -- colour words and delivery terms of the glossary;
* ``claim`` -- promotional or factual promises from a fixed lexicon (lowest price, free gift,
  warranty, limited time, authentic, sold out ...; zh and en).

:func:`check` compares them with an item's facts (:class:`liveshelf.text.facts.ItemFacts`):
a price must equal the item's price, a number must occur in the item's fields or attributes
(title, size, rating, price ...), a brand must be the item's own (in either language), a colour
or shipping term must be the item's, a lexicon claim must literally appear in the item's text or
FAQ answers. ``context`` texts (the host's name, the viewer's tags) are accepted sources too.
Anything else is *unsupported* and the text is rejected (``GroundingResult.ok`` is False);
the generators then regenerate once and fall back to the ``grounded`` backend.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from liveshelf.text.facts import ItemFacts, format_price, glossary, is_zh

_FULLWIDTH = str.maketrans("０１２３４５６７８９．％￥", "0123456789.%¥")
_CN_DIGITS = "零一二两三四五六七八九十"

_PRICE = re.compile(
    r"(?:[¥￥$]|RMB|CNY|rmb)\s*(\d+(?:\.\d+)?)|(\d+(?:\.\d+)?)\s*(?:元|块|yuan|RMB|CNY|dollars?)",
    re.IGNORECASE,
)
_PERCENT = re.compile(
    r"(\d+(?:\.\d+)?)\s*%|百分之\s*(\d+(?:\.\d+)?)|([" + _CN_DIGITS + r"\d]+(?:\.\d+)?)\s*折"
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")

#: Promises and superlatives that need literal support in the item's text.
CLAIMS_ZH: tuple[str, ...] = (
    "最低价",
    "全网最低",
    "史上最低",
    "最便宜",
    "买一送一",
    "赠品",
    "赠送",
    "送礼",
    "限时",
    "秒杀",
    "折扣",
    "打折",
    "特价",
    "优惠券",
    "满减",
    "立减",
    "正品保证",
    "正品",
    "七天无理由",
    "7天无理由",
    "无理由退",
    "退货",
    "退换",
    "保修",
    "质保",
    "明星同款",
    "销量第一",
    "第一名",
    "爆款",
    "断货",
    "仅剩",
    "库存",
    "官方授权",
    "官方",
    "纯天然",
    "无添加",
    "医用",
    "治疗",
    "抗癌",
    "减肥",
    "永久",
    "最好",
    "第一",
    "冠军",
    "独家",
    "假一赔",
)
CLAIMS_EN: tuple[str, ...] = (
    "lowest price",
    "cheapest",
    "best price",
    "discount",
    "% off",
    "coupon",
    "free gift",
    "bonus",
    "buy one get one",
    "bogo",
    "limited time",
    "flash sale",
    "on sale",
    "guaranteed",
    "guarantee",
    "warranty",
    "refund",
    "returns",
    "authentic",
    "genuine",
    "official",
    "best-selling",
    "bestseller",
    "best seller",
    "number one",
    "no. 1",
    "no.1",
    "#1",
    "sold out",
    "only a few left",
    "in stock",
    "clinically",
    "cure",
    "organic",
    "all-natural",
    "100%",
    "exclusive",
    "award-winning",
    "forever",
)


@dataclass(frozen=True)
class Claim:
    """One checkable span of a text."""

    kind: str  # price | number | percent | brand | colour | shipping | claim
    text: str
    value: str


@dataclass
class GroundingResult:
    ok: bool
    claims: list[Claim]
    unsupported: list[Claim]
    facts_used: list[str] = field(default_factory=list)

    def reasons(self) -> list[str]:
        return [f"{c.kind}: {c.text}" for c in self.unsupported]


def normalise(text: str) -> str:
    """Full-width digits and signs to ASCII, thousands separators removed."""
    out = text.translate(_FULLWIDTH)
    return re.sub(r"(?<=\d),(?=\d{3}\b)", "", out)


def _same_number(a: str, b: str) -> bool:
    try:
        return abs(float(a) - float(b)) < 1e-6
    except ValueError:
        return False


def _mentions(text: str, word: str) -> bool:
    """``word`` in ``text``: substring for Chinese, whole words (case-insensitive) otherwise."""
    if not word:
        return False
    if is_zh(word):
        return word in text
    return re.search(r"(?<![A-Za-z])" + re.escape(word) + r"(?![A-Za-z])", text, re.IGNORECASE) is not None


def extract_claims(text: str, known_brands: Iterable[str] = ()) -> list[Claim]:
    """Every price, percentage, number, brand, colour, shipping term and lexicon claim in ``text``."""
    t = normalise(text)
    claims: list[Claim] = []
    taken: list[tuple[int, int]] = []

    def free(a: int, b: int) -> bool:
        return all(b <= x or a >= y for x, y in taken)

    for m in _PRICE.finditer(t):
        claims.append(Claim("price", m.group(0), m.group(1) or m.group(2)))
        taken.append(m.span())
    for m in _PERCENT.finditer(t):
        if free(*m.span()):
            claims.append(Claim("percent", m.group(0), next(g for g in m.groups() if g)))
            taken.append(m.span())
    for m in _NUMBER.finditer(t):
        if free(*m.span()):
            claims.append(Claim("number", m.group(0), m.group(0)))
    g = glossary()
    brands = sorted(set(known_brands) | set(g.brands), key=len, reverse=True)
    seen_spans: list[tuple[int, int]] = []
    for b in brands:
        for m in re.finditer(re.escape(b), t, 0 if is_zh(b) else re.IGNORECASE):
            a, z = m.span()
            if not is_zh(b) and ((a and t[a - 1].isalpha()) or (z < len(t) and t[z].isalpha())):
                continue
            if all(z <= x or a >= y for x, y in seen_spans):
                claims.append(Claim("brand", m.group(0), b))
                seen_spans.append((a, z))
    for c in g.colours:
        if _mentions(t, c):
            claims.append(Claim("colour", c, c))
    for s in g.shipping:
        if _mentions(t, s):
            claims.append(Claim("shipping", s, s))
    low = t.lower()
    spans: list[tuple[int, int]] = []
    for w in sorted(CLAIMS_ZH + CLAIMS_EN, key=len, reverse=True):  # longest first, no overlaps
        for m in re.finditer(re.escape(w), low):
            a, z = m.span()
            if all(z <= x or a >= y for x, y in spans):
                spans.append((a, z))
                claims.append(Claim("claim", t[a:z], w))
    return claims


def _twins(value: str | None) -> set[str]:
    if not value:
        return set()
    g = glossary()
    return {value.lower(), g.pairs.get(value, value).lower()}


def supported_numbers(facts: ItemFacts, context: Sequence[str] = ()) -> set[str]:
    """Every number that occurs in the item's fields, attributes, FAQ answers and ``context``."""
    nums = set(_NUMBER.findall(normalise(facts.source_text())))
    for c in context:
        nums |= set(_NUMBER.findall(normalise(c)))
    if facts.price is not None:
        nums.add(format_price(facts.price))
    return nums


def check(
    text: str, facts: ItemFacts, *, context: Sequence[str] = (), known_brands: Iterable[str] = ()
) -> GroundingResult:
    """Which claims of ``text`` the item's facts (or ``context``) do not support."""
    claims = extract_claims(text, known_brands)
    nums = supported_numbers(facts, context)
    source = normalise(" ".join([facts.source_text(), *context]))
    source_low = source.lower()
    brand_ok = _twins(facts.brand)
    colour_ok = set().union(*(_twins(v) for k, v in facts.attributes.items() if k in ("colour", "color")))
    ship_ok = _twins(facts.attributes.get("shipping"))
    bad: list[Claim] = []
    for c in claims:
        if c.kind == "price":
            ok = facts.price is not None and _same_number(c.value, format_price(facts.price))
        elif c.kind == "number":
            ok = any(_same_number(c.value, n) for n in nums)
        elif c.kind == "percent":
            ok = c.text.replace(" ", "") in source.replace(" ", "")
        elif c.kind == "brand":
            ok = (
                c.value.lower() in brand_ok
                or c.text.lower() in brand_ok
                or _mentions(" ".join(context), c.value)
            )
        elif c.kind == "colour":
            ok = c.value.lower() in colour_ok or c.value.lower() in source_low
        elif c.kind == "shipping":
            ok = c.value.lower() in ship_ok or c.value.lower() in source_low
        else:
            ok = c.value.lower() in source_low
        if not ok:
            bad.append(c)
    return GroundingResult(
        ok=not bad, claims=claims, unsupported=bad, facts_used=facts_mentioned(text, facts)
    )


def facts_mentioned(text: str, facts: ItemFacts) -> list[str]:
    """Keys of the item's facts whose value (or its glossary twin) the text mentions."""
    t = normalise(text)
    out = []
    for f in facts.facts:
        values = {f.value, glossary().pairs.get(f.value, f.value)}
        if f.kind == "category":
            leaf = f.value.split(">")[-1].strip()
            values = {leaf, glossary().pairs.get(leaf, leaf)}
        if f.kind in ("price", "rating"):
            if any(_same_number(n, f.value) for n in _NUMBER.findall(t)):
                out.append(f.key)
        elif any(_mentions(t, v) for v in values if v):
            out.append(f.key)
    return out
