"""Grounding check: numbers, prices, percentages, brands, colours, shipping terms and claims need support."""

from __future__ import annotations

import pytest

from liveshelf.text.facts import item_facts, price_band
from liveshelf.text.grounding import check, extract_claims, facts_mentioned

ITEM = item_facts(
    {
        "id": "i1",
        "title": "兰蔻 小黑瓶精华 30ml",
        "description": "小黑瓶精华，黑色，包邮",
        "category": "美妆 > 护肤 > 精华",
        "brand": "兰蔻",
        "price": 419.9,
        "rating": 4.7,
        "attributes": '{"colour": "黑色", "shipping": "包邮", "size": "30ml"}',
        "language": "zh",
    }
)
EN = item_facts(
    {
        "id": "i2",
        "title": "Nike Racing Shoes 42",
        "description": "Racing Shoes, mesh, free shipping",
        "category": "Sports > Running > Shoes",
        "brand": "Nike",
        "price": 599.0,
        "rating": 4.5,
        "attributes": '{"material": "mesh", "shipping": "free shipping", "size": "42"}',
        "language": "en",
    }
)


def test_facts_of_an_item() -> None:
    assert [f.key for f in ITEM.facts] == [
        "brand",
        "category",
        "price",
        "rating",
        "attr:colour",
        "attr:shipping",
        "attr:size",
        "noun",
    ]
    assert ITEM.get("price").zh == "到手价419.9元"
    assert ITEM.noun == "小黑瓶精华" and ITEM.leaf == "精华"
    assert price_band(419.9) == 2 and price_band(None) is None


@pytest.mark.parametrize(
    "text",
    [
        "兰蔻小黑瓶精华到手价419.9元，包邮",
        "小黑瓶精华评分4.7，规格30ml，黑色",
        "Lancome 小黑瓶精华 ¥419.9",
    ],
)
def test_supported_texts_pass(text: str) -> None:
    res = check(text, ITEM)
    assert res.ok, res.reasons()


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("小黑瓶精华只要399元", "price"),
        ("小黑瓶精华今天打五折", "percent"),
        ("小黑瓶精华立减20%", "percent"),
        ("雅诗兰黛小黑瓶精华", "brand"),
        ("小黑瓶精华全网最低价", "claim"),
        ("小黑瓶精华买一送一", "claim"),
        ("小黑瓶精华，白色款", "colour"),
        ("小黑瓶精华次日达", "shipping"),
        ("第3瓶半价的小黑瓶精华", "number"),
    ],
)
def test_unsupported_claims_reject_the_text(text: str, kind: str) -> None:
    res = check(text, ITEM)
    assert not res.ok
    assert kind in {c.kind for c in res.unsupported}, res.reasons()


def test_english_claims() -> None:
    assert check("Nike Racing Shoes, 599 yuan, mesh, free shipping.", EN).ok
    text = "Adidas Racing Shoes with a 2-year warranty, now 30% off at $499!"
    assert "brand" not in {c.kind for c in check(text, EN).unsupported}  # not a brand it knows
    bad = check(text, EN, known_brands=["Nike", "Adidas"])  # the catalogue's brands
    assert {c.kind for c in bad.unsupported} >= {"brand", "claim", "percent", "price", "number"}
    assert not check("Racing Shoes in red", EN).ok  # a colour the item does not have


def test_context_supports_host_name_numbers() -> None:
    text = "小美3号直播间正在讲解小黑瓶精华"
    assert not check(text, ITEM).ok
    assert check(text, ITEM, context=["小美3号直播间"]).ok


def test_claim_extraction_and_fact_mentions() -> None:
    claims = extract_claims("全网最低价只要¥99，立减10%")
    assert sorted(c.text for c in claims if c.kind == "claim") == ["全网最低", "立减"]
    assert {c.kind for c in claims} == {"claim", "price", "percent"}
    assert facts_mentioned("兰蔻小黑瓶精华到手价419.9元，包邮", ITEM) == [
        "brand",
        "category",
        "price",
        "attr:shipping",
        "noun",
    ]
    assert "brand" in facts_mentioned("By Lancome", ITEM)  # glossary twin of 兰蔻
