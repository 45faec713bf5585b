"""Item facts: the checkable statements generated text may make about an item.

An item row (schema ``ITEM_COLUMNS``) becomes an :class:`ItemFacts`: a list of :class:`Fact`
(price, brand, category, rating, size, colour, material, shipping, product noun, and any other
attribute in the ``attributes`` JSON), each with a stable ``key``, the raw ``value`` and a
short zh / en phrase. Generation picks among these facts, the grounding check
(:mod:`liveshelf.text.grounding`) accepts only numbers, brands and claims they support, and
shopper Q&A (:mod:`liveshelf.text.qa`) answers from them.

:func:`glossary` is a small bilingual word list (categories, brands, colours, shipping terms)
read from the simulator's built-in catalogue vocabulary; it translates category names for
profile tags and lets the grounding check recognise brand and colour words in both languages.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from liveshelf.core.catalog import parse_attributes as parse_json_attributes

_PHRASES = Path(__file__).resolve().parent.parent / "data" / "phrases" / "catalog.json"

#: Price bands (upper bounds, exclusive) with zh / en labels; the last band is open.
PRICE_BANDS: tuple[tuple[float, str, str], ...] = (
    (50.0, "低价位", "budget"),
    (200.0, "中价位", "mid-price"),
    (500.0, "中高价位", "upper-mid price"),
    (math.inf, "高价位", "premium"),
)

#: Fact kinds in the order a template mentions them when the viewer's interests do not decide.
FACT_KINDS: tuple[str, ...] = (
    "brand",
    "category",
    "price",
    "shipping",
    "rating",
    "material",
    "size",
    "colour",
    "noun",
)

_NUM = re.compile(r"\d+(?:\.\d+)?")


def price_band(price: float | None) -> int | None:
    """Index into :data:`PRICE_BANDS` of ``price`` (None when the price is unknown)."""
    if price is None or not math.isfinite(price):
        return None
    for k, (upper, _zh, _en) in enumerate(PRICE_BANDS):
        if price < upper:
            return k
    return len(PRICE_BANDS) - 1


def format_price(price: float) -> str:
    """``455.9`` -> ``"455.9"``, ``80.0`` -> ``"80"``."""
    return f"{price:.2f}".rstrip("0").rstrip(".")


def is_zh(text: str) -> bool:
    """True when ``text`` holds any CJK character."""
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def numbers_in(text: str) -> list[str]:
    return _NUM.findall(text)


@dataclass(frozen=True)
class Fact:
    """One statement about an item: ``key`` (e.g. ``"price"``, ``"attr:size"``), its value and phrases."""

    key: str
    kind: str
    value: str
    zh: str
    en: str

    def phrase(self, lang: str) -> str:
        return self.zh if lang == "zh" else self.en


@dataclass(frozen=True)
class ItemFacts:
    """Everything known about one item, as facts plus the raw fields."""

    item: str
    title: str
    language: str
    brand: str | None
    category: str | None
    price: float | None
    rating: float | None
    attributes: dict[str, str]
    description: str
    facts: tuple[Fact, ...]
    noun: str | None = None
    extra_text: tuple[str, ...] = field(default_factory=tuple)

    def get(self, key: str) -> Fact | None:
        for f in self.facts:
            if f.key == key:
                return f
        return None

    def by_kind(self, kind: str) -> Fact | None:
        for f in self.facts:
            if f.kind == kind:
                return f
        return None

    @property
    def leaf(self) -> str | None:
        """The most specific category name (``"美妆 > 护肤 > 精华"`` -> ``"精华"``)."""
        if not self.category:
            return None
        return self.category.split(">")[-1].strip()

    def source_text(self) -> str:
        """All text the facts come from (title, description, fields, attributes, FAQ answers)."""
        parts = [
            self.title,
            self.description,
            self.brand or "",
            self.category or "",
            *(f"{k} {v}" for k, v in self.attributes.items()),
            *self.extra_text,
        ]
        if self.price is not None:
            parts.append(format_price(self.price))
        if self.rating is not None:
            parts.append(f"{self.rating:g}")
        return " ".join(p for p in parts if p)


def _clean(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def parse_attributes(value: Any) -> dict[str, str]:
    """The ``attributes`` column (JSON object string, dict or missing) as a flat ``{str: str}``: the values of
    :func:`liveshelf.core.catalog.parse_attributes` as text, empty ones dropped."""
    return {str(k): str(v) for k, v in parse_json_attributes(value).items() if _clean(v) is not None}


_ATTR_NAMES = {
    "size": ("规格", "size"),
    "colour": ("颜色", "colour"),
    "color": ("颜色", "color"),
    "material": ("材质", "material"),
    "shipping": ("发货", "shipping"),
}


def item_facts(row: dict[str, Any] | pd.Series, faq_answers: tuple[str, ...] = ()) -> ItemFacts:
    """The facts of one item row (schema ``ITEM_COLUMNS``; missing fields give no fact)."""
    get = row.get
    item = str(get("id"))
    title = _clean(get("title")) or ""
    lang = _clean(get("language")) or ("zh" if is_zh(title) else "en")
    brand = _clean(get("brand"))
    category = _clean(get("category"))
    price = _num(get("price"))
    rating = _num(get("rating"))
    attrs = parse_attributes(get("attributes"))
    desc = _clean(get("description")) or ""
    facts: list[Fact] = []
    if brand:
        facts.append(Fact("brand", "brand", brand, f"{brand}出品", f"by {brand}"))
    if category:
        leaf = category.split(">")[-1].strip()
        facts.append(Fact("category", "category", category, f"{leaf}好物", f"a {leaf.lower()} pick"))
    if price is not None:
        p = format_price(price)
        facts.append(Fact("price", "price", p, f"到手价{p}元", f"priced at {p} yuan"))
    if rating is not None:
        facts.append(Fact("rating", "rating", f"{rating:g}", f"评分{rating:g}", f"rated {rating:g}"))
    for name, value in sorted(attrs.items()):
        kind = "colour" if name in ("colour", "color") else name
        zh_name, en_name = _ATTR_NAMES.get(name, (name, name))
        if kind == "shipping":
            facts.append(Fact(f"attr:{name}", kind, value, value, value))
        elif kind == "size":
            facts.append(Fact(f"attr:{name}", kind, value, f"规格{value}", f"size {value}"))
        else:
            facts.append(Fact(f"attr:{name}", kind, value, f"{zh_name}{value}", f"{value} {en_name}"))
    noun = _noun(title, brand, attrs.get("size"), desc)
    if noun:
        facts.append(Fact("noun", "noun", noun, noun, noun))
    return ItemFacts(
        item=item,
        title=title,
        language=lang,
        brand=brand,
        category=category,
        price=price,
        rating=rating,
        attributes=attrs,
        description=desc,
        facts=tuple(facts),
        noun=noun,
        extra_text=tuple(faq_answers),
    )


def _noun(title: str, brand: str | None, size: str | None, desc: str) -> str | None:
    """The product noun: the description's first clause, else the title without brand and size."""
    first = re.split(r"[，,]", desc, maxsplit=1)[0].strip() if desc else ""
    if first:
        return first
    core = title
    for part in (brand, size):
        if part:
            core = core.replace(part, "")
    core = core.strip()
    return core or None


def facts_table(items: pd.DataFrame) -> dict[str, ItemFacts]:
    """``{item id: ItemFacts}`` for every row of an items frame."""
    return {str(r["id"]): item_facts(r) for r in items.to_dict("records")}


# ------------------------------------------------------------------------------------ glossary
@dataclass(frozen=True)
class Glossary:
    """zh <-> en word pairs of the built-in catalogue vocabulary."""

    category: dict[str, str]  # both directions: "护肤" -> "Skincare", "Skincare" -> "护肤"
    brands: tuple[str, ...]  # every brand spelling, zh and en
    colours: tuple[str, ...]
    shipping: tuple[str, ...]
    pairs: dict[str, str]  # every known word -> its other-language twin

    def translate(self, word: str, lang: str) -> str:
        """``word`` in ``lang`` when the glossary knows it, else ``word`` unchanged."""
        if (lang == "zh") == is_zh(word):
            return word
        return self.pairs.get(word, word)

    def category_path(self, path: str, lang: str) -> str:
        return " > ".join(self.translate(p.strip(), lang) for p in path.split(">"))


@lru_cache(maxsize=1)
def glossary() -> Glossary:
    vocab = json.loads(_PHRASES.read_text(encoding="utf-8")) if _PHRASES.is_file() else {"tops": []}
    cat: dict[str, str] = {}
    pairs: dict[str, str] = {}
    brands: list[str] = []

    def pair(zh: str, en: str) -> None:
        pairs.setdefault(zh, en)
        pairs.setdefault(en, zh)

    for top in vocab.get("tops", []):
        pair(top["zh"], top["en"])
        cat[top["zh"]], cat[top["en"]] = top["en"], top["zh"]
        for zh, en in top.get("brands", []):
            brands += [zh, en]
            pair(zh, en)
        for leaf in top.get("leaves", []):
            for zh, en in zip(leaf["zh"], leaf["en"], strict=True):
                cat[zh], cat[en] = en, zh
                pair(zh, en)
            for zh, en in leaf.get("nouns", []):
                pair(zh, en)
            for m in leaf.get("materials", []):
                pair(m[0], m[1])
    colours = [w for c in vocab.get("colours", []) for w in c]
    for c in vocab.get("colours", []):
        pair(c[0], c[1])
    shipping = [w for s in vocab.get("shipping", []) for w in s]
    for s in vocab.get("shipping", []):
        pair(s[0], s[1])
    return Glossary(
        category=cat,
        brands=tuple(dict.fromkeys(brands)),
        colours=tuple(dict.fromkeys(colours)),
        shipping=tuple(dict.fromkeys(shipping)),
        pairs=pairs,
    )
