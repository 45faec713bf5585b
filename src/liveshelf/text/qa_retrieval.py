"""The semantic layer of shopper Q&A: e5 vectors of questions, items, intents and quotable facts.

:class:`ShelfQA <liveshelf.text.qa.ShelfQA>` answers with words first (keyword intents, names of
items, FAQ bigram overlap). :class:`SemanticIndex` covers what words miss, with cosine similarities
of multilingual-e5-small vectors (questions ``kind="query"``, item texts and facts ``"passage"``):

* **item** (:meth:`SemanticIndex.resolve`) -- a question that names no shelf item and does not
  point at the screen ("这个") but describes an item ("能折起来的那台卖多少") is compared with each
  item's product noun (:func:`item_text`), on the shelf and among the distinct products of the
  whole catalogue (up to ``background``). A product of a leaf category that no shelf item has,
  ``off_item`` similar and ``off_margin`` above every shelf item, means "not on this shelf"; else
  the best shelf item is taken when it is ``item`` similar and ``item_margin`` above the other shelf
  items; else, when the question clearly describes some product (``describes``) that the pinned
  item is not (``pinned_gap`` below), the item is unknown ("don't know"); else the pinned item;
* **intent** (:meth:`SemanticIndex.intent`) -- a question without a keyword ("这个是谁家出的")
  is compared with example questions of each field intent (:data:`INTENT_EXAMPLES`); the best
  needs ``intent`` similarity and ``intent_margin`` over the next;
* **fact** (:meth:`SemanticIndex.best_fact`) -- the question, without the words of the item's name
  (:func:`strip_item`), is compared with the item's quotable facts (:func:`fact_units`): sentences
  of its description that say more than its field values, and the FAQ entries that apply to it
  (their question as a query, their answer as a passage). The best needs ``fact`` similarity and,
  when the question also looks like a field question whose field the item has, must beat that
  intent by more over its threshold. The fact is quoted verbatim.

Below the thresholds the answer is "don't know". The defaults of :class:`Thresholds` were chosen on
the seed-0 question set of :func:`liveshelf.text.qa_questions.make_chinese_question_set` and are
measured on other seeds by ``benchmarks/bench_qa_chinese.py``.

Vectors are cached: item texts, facts and intent examples by text (an item's facts once per item,
until :meth:`SemanticIndex.forget` drops them), the last 4,096 questions. The encoder is any object
with ``encode(texts, *, kind=...)`` returning L2-normalised rows, built on first use when not
given: :class:`~liveshelf.text.e5.E5Encoder` (the model of ``TextEncoder("e5")``, without torch).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from liveshelf.text.facts import ItemFacts, is_zh


class QAEncoder(Protocol):
    def encode(
        self, texts: Sequence[str], progress: bool = False, *, kind: Any = "passage"
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class Thresholds:
    """Cosine similarities (e5 query vs passage, or query vs example question) a semantic match needs."""

    item: float = 0.86
    item_margin: float = 0.01
    off_item: float = 0.88
    off_margin: float = 0.02
    describes: float = 0.87
    pinned_gap: float = 0.02
    intent: float = 0.88
    intent_margin: float = 0.005
    fact: float = 0.88
    background: int = 256  # distinct catalogue products that compete with the shelf items


#: Example questions of each field intent (zh and en): what a keyword-less question is compared with.
INTENT_EXAMPLES: dict[str, tuple[str, ...]] = {
    "price": ("这个商品多少钱", "价格是多少", "售价多少", "这个贵吗", "how much does it cost"),
    "size": ("尺寸是多少", "有哪些尺码", "规格是什么", "容量多大", "是哪个型号", "what size is it"),
    "material": ("是什么材质的", "面料成分是什么", "用什么材料做的", "what is it made of"),
    "colour": ("是什么颜色的", "有哪些颜色", "什么色号", "what colour is it"),
    "shipping": ("什么时候发货", "包邮吗", "快递几天能到", "when will it ship"),
    "brand": ("是什么品牌的", "哪个牌子", "哪家公司生产的", "which brand is it"),
    "rating": ("评分多少", "口碑怎么样", "评价好不好", "how are the reviews"),
    "stock": ("还有货吗", "库存还有多少", "is it in stock"),
    "warranty": ("保修多久", "有质保吗", "does it have a warranty"),
    "returns": ("可以退货吗", "支持七天无理由吗", "can I return it"),
}

#: Words that point at the item on screen: with no item named, a question with one is about the pinned item.
DEICTIC = re.compile(r"这|它|\b(?:this|it|these)\b", re.IGNORECASE)
#: Words that say nothing about which item is meant (pointers, question words, particles).
_FILLER = re.compile(
    "这个|这款|这件|这双|这台|这本|这套|这瓶|这条|这一款|那个|那款|那件|它|这|那|什么|怎么|多少|哪个|哪些|"
    "吗|呢|吧|啊|呀|嘛|的|了|是|有没有|没有|有|可以|能不能|能|会|请问|主播|一下|还|想|问|我|你|要|"
    r"\b(?:this|that|it|is|the|a|an|what|how|does|do|can|i|me|of|for|about)\b"
)
_QUERY_CACHE = 4096
_PUNCT = re.compile(r"[\s\W_]+")
_SENTENCE = re.compile(r"(?<=[。！？!?；;\n])")


@dataclass(frozen=True)
class Unit:
    """One quotable fact of an item: the texts matched against a question, and the answer quoted."""

    answer: str
    source: str  # "description" | "faq"
    queries: tuple[str, ...] = ()  # matched as questions (an FAQ entry's question)
    passages: tuple[str, ...] = ()  # matched as passages (the answer text itself)
    intent: str | None = None


def item_text(f: ItemFacts) -> str:
    """The short text an item is recognised by: its product noun, else its title."""
    return f.noun or f.title


def strip_item(question: str, f: ItemFacts) -> str:
    """``question`` without the words it shares with the item's name (brand, noun, leaf category,
    title): what is asked about the item, for matching its facts ("能降噪的耳塞，能带上飞机吗" ->
    "能的耳塞，能带上飞机吗" for 降噪耳机). Chinese: shared character bigrams; other text: shared words."""
    name = " ".join(x for x in (f.brand, f.noun, f.leaf, f.title) if x)
    if is_zh(question):
        keep = [True] * len(question)
        for i in range(len(question) - 1):
            pair = question[i : i + 2]
            if is_zh(pair) and pair in name:
                keep[i] = keep[i + 1] = False
        out = "".join(ch for ch, k in zip(question, keep, strict=True) if k)
    else:
        words = {w.lower() for w in re.findall(r"[A-Za-z0-9]+", name)}
        out = " ".join(w for w in question.split() if re.sub(r"\W", "", w.lower()) not in words)
    return out if out.strip() else question


def content(question: str, keywords: Sequence[str]) -> str:
    """``question`` without intent keywords, pointers, question words and punctuation."""
    text = question
    for w in sorted(keywords, key=len, reverse=True):
        text = text.replace(w, " ")
    text = _FILLER.sub(" ", text.lower())
    return _PUNCT.sub("", text)


def fact_units(f: ItemFacts, faqs: Sequence[dict[str, Any]]) -> list[Unit]:
    """The item's quotable facts: description sentences that say more than its field values, and the
    FAQ entries about it (``item`` == its id) or about every item (``item`` empty)."""
    fields = {v for v in (f.noun, f.brand, f.leaf, *f.attributes.values()) if v}
    units: list[Unit] = []
    for sentence in _SENTENCE.split(f.description):
        s = sentence.strip()
        clauses = [c.strip() for c in re.split(r"[，,、。！？!?；;]", s) if c.strip()]
        if clauses and not all(c in fields for c in clauses):
            units.append(Unit(s, "description", passages=(s,)))
    for faq in faqs:
        if faq.get("item") in (None, "", f.item):
            answer = str(faq["answer"])
            intent = str(faq["intent"]) if faq.get("intent") else None
            units.append(Unit(answer, "faq", (str(faq["question"]),), (answer,), intent))
    return units


class SemanticIndex:
    """e5 similarities for :class:`~liveshelf.text.qa.ShelfQA`: item resolution, intents, facts."""

    def __init__(self, encoder: QAEncoder | None = None, thresholds: Thresholds | None = None) -> None:
        self._encoder = encoder
        self.thresholds = thresholds or Thresholds()
        self._vectors: dict[tuple[str, str], np.ndarray] = {}  # (kind, text) -> (D,): item texts, facts
        self._queries: dict[str, np.ndarray] = {}  # recent questions, oldest first
        self._units: dict[str, _ItemUnits] = {}
        self._examples: tuple[list[str], np.ndarray] | None = None
        self._background: tuple[list[str], list[str], np.ndarray] | None = None

    @property
    def encoder(self) -> QAEncoder:
        if self._encoder is None:
            from liveshelf.text.e5 import E5Encoder

            self._encoder = E5Encoder()
        return self._encoder

    # ------------------------------------------------------------------ vectors
    def vectors(self, texts: Sequence[str], kind: str) -> np.ndarray:
        """(N, D) vectors of ``texts`` (``kind`` "query" or "passage"), each text encoded once."""
        todo = list(dict.fromkeys(t for t in texts if (kind, t) not in self._vectors))
        if todo:
            fresh = np.asarray(self.encoder.encode(todo, kind=kind), dtype=np.float32)
            self._vectors.update({(kind, t): v for t, v in zip(todo, fresh, strict=True)})
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._vectors[(kind, t)] for t in texts])

    def query(self, question: str) -> np.ndarray:
        """The vector of a viewer's question (the last ``_QUERY_CACHE`` questions are kept)."""
        v = self._queries.pop(question, None)
        if v is None:
            v = np.asarray(self.encoder.encode([question], kind="query"), dtype=np.float32)[0]
            if len(self._queries) >= _QUERY_CACHE:
                self._queries.pop(next(iter(self._queries)))
        self._queries[question] = v
        return v

    def forget(self, items: Sequence[str]) -> None:
        """Drop the cached units of ``items`` (their facts changed) and the catalogue background."""
        for it in items:
            self._units.pop(str(it), None)
        self._background = None

    # ------------------------------------------------------------------ item
    def background(self, facts: dict[str, ItemFacts]) -> tuple[list[str], list[str], np.ndarray]:
        """Distinct item texts of the catalogue (at most ``thresholds.background``, chosen by hash),
        their leaf categories and vectors."""
        if self._background is None:
            leaf = {item_text(f): f.leaf or "" for f in facts.values()}
            texts = sorted(leaf)
            cap = self.thresholds.background
            if len(texts) > cap:
                texts = sorted(texts, key=lambda t: hashlib.sha1(t.encode()).hexdigest())[:cap]
            self._background = (texts, [leaf[t] for t in texts], self.vectors(texts, "passage"))
        return self._background

    def resolve(
        self, q: np.ndarray, shelf: Sequence[str], pinned: str | None, facts: dict[str, ItemFacts]
    ) -> tuple[str | None, bool] | None:
        """``(item, True)`` for the shelf item the question describes, ``(None, True)`` for a catalogue
        product not on the shelf (of a leaf category no shelf item has), ``(None, False)`` when the
        question describes a product (similarity >= ``describes``) that is neither clearly one of these
        nor the pinned item (``pinned_gap`` below the best), None when the pinned item may be meant."""
        if not shelf:
            return None
        t = self.thresholds
        texts = [item_text(facts[s]) for s in shelf]
        sims = self.vectors(texts, "passage") @ q  # (S,)
        b = int(np.argmax(sims))
        best_other = max((s for k, s in enumerate(sims) if texts[k] != texts[b]), default=-1.0)
        bg_texts, bg_leaves, bg = self.background(facts)
        shelf_leaves = {facts[s].leaf or "" for s in shelf}
        best_off = max(
            (float(s) for s, lf in zip(bg @ q, bg_leaves, strict=True) if lf not in shelf_leaves),
            default=-1.0,
        )
        if best_off >= t.off_item and best_off - sims[b] >= t.off_margin:
            return None, True
        if sims[b] >= t.item and sims[b] - best_other >= t.item_margin:
            if pinned in shelf and texts[shelf.index(pinned)] == texts[b]:
                return pinned, True
            return shelf[b], True
        best = max(float(sims[b]), best_off)
        at_pin = float(sims[shelf.index(pinned)]) if pinned in shelf else -1.0
        if best >= t.describes and best - at_pin >= t.pinned_gap:
            return None, False
        return None

    # ------------------------------------------------------------------ intent
    def intent(self, q: np.ndarray) -> tuple[str | None, float]:
        """The field intent whose example questions are closest to ``q``, and its similarity."""
        if self._examples is None:
            names = [name for name, ex in INTENT_EXAMPLES.items() for _ in ex]
            texts = [e for ex in INTENT_EXAMPLES.values() for e in ex]
            self._examples = (names, self.vectors(texts, "query"))
        names, vecs = self._examples
        sims = vecs @ q
        best: dict[str, float] = {}
        for name, s in zip(names, sims.tolist(), strict=True):
            best[name] = max(best.get(name, -1.0), s)
        ranked = sorted(best.items(), key=lambda kv: -kv[1])
        (top, s1), s2 = ranked[0], ranked[1][1]
        t = self.thresholds
        return (top if s1 >= t.intent and s1 - s2 >= t.intent_margin else None), s1

    # ------------------------------------------------------------------ facts
    def units(self, f: ItemFacts, faqs: Sequence[dict[str, Any]]) -> _ItemUnits:
        """The item's quotable facts and the vectors of their texts, computed once per item."""
        if f.item not in self._units:
            units = fact_units(f, faqs)
            queries = [(k, t) for k, u in enumerate(units) for t in u.queries]
            passages = [(k, t) for k, u in enumerate(units) for t in u.passages]
            parts = [
                self.vectors([t for _, t in rows], kind)
                for rows, kind in ((queries, "query"), (passages, "passage"))
                if rows
            ]
            owner = [k for k, _ in queries] + [k for k, _ in passages]
            self._units[f.item] = _ItemUnits(units, owner, np.concatenate(parts) if parts else None)
        return self._units[f.item]

    def best_fact(
        self, q: np.ndarray, f: ItemFacts, faqs: Sequence[dict[str, Any]], intent: str | None
    ) -> tuple[Unit, float] | None:
        """The item's fact closest to the question (none declared for another intent), if close enough."""
        iu = self.units(f, faqs)
        if iu.vectors is None:
            return None
        best: tuple[Unit, float] | None = None
        for k, s in zip(iu.owner, (iu.vectors @ q).tolist(), strict=True):
            u = iu.units[k]
            if intent is not None and u.intent not in (None, intent):
                continue
            if best is None or s > best[1]:
                best = (u, s)
        if best is None or best[1] < self.thresholds.fact:
            return None
        return best


@dataclass
class _ItemUnits:
    units: list[Unit]
    owner: list[int]  # row -> unit
    vectors: np.ndarray | None  # (rows, D): the FAQ questions, then the passages; None = no facts


def quote(unit: Unit, f: ItemFacts, lang: str) -> str:
    """The answer text of a fact unit: the fact verbatim (a description sentence with the item's name)."""
    if unit.source != "description":
        return unit.answer
    name = f.noun or f.title
    text = unit.answer if unit.answer[-1:] in "。.!！?？" else unit.answer + ("。" if lang == "zh" else ".")
    return f"{name}：{text}" if lang == "zh" or is_zh(text) else f"{name}: {text}"


@lru_cache(maxsize=1)
def catalogue_words() -> tuple[str, ...]:
    """Product nouns and leaf categories of the built-in catalogue vocabulary (zh and en)."""
    from liveshelf.data.sim.catalog import vocabulary

    words: list[str] = []
    for top in vocabulary().get("tops", []):
        for leaf in top.get("leaves", []):
            words += [leaf["zh"][-1], leaf["en"][-1]]
            for zh, en in leaf.get("nouns", []):
                words += [zh, en]
    return tuple(dict.fromkeys(words))
