"""The recommendation pipeline without HTTP: sources, live filter, blending, reranking, reasons."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from liveshelf.rerank.diversity import mmr
from liveshelf.rerank.rules import allowed, stock_of
from liveshelf.serving.pipeline import Catalogue, ContentIndex, Pipeline, _normalise, hashed_tfidf
from liveshelf.serving.settings import DEFAULT_WEIGHTS, ServeSettings
from liveshelf.serving.state import MemoryState

T = 1_790_000_000.0  # a fixed epoch second; the tiny world below lives around it


# ------------------------------------------------------------------------------------ rerank
def test_mmr_prefers_a_diverse_second_pick():
    rel = np.array([1.0, 0.9, 0.1])
    vec = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    assert mmr(rel, vec, 3, lam=1.0) == [0, 1, 2]
    assert mmr(rel, vec, 3, lam=0.5) == [0, 2, 1]
    assert mmr(rel, vec, 2, lam=0.5) == [0, 2]
    assert mmr(rel, None, 3, lam=1.0, groups=["a", "a", "b"], cap=1) == [0, 2]
    assert mmr(rel, None, 3, lam=1.0, groups=["a", "a", "b"], cap=1, demote=True) == [0, 2, 1]
    assert mmr(np.array([]), None, 3, lam=0.5) == []


def test_business_rules():
    items = ["a", "b", "c", "d", "e"]
    attrs = [{"stock": 0}, {"stock": "0"}, {"stock": 3}, None, {"stock": True}]
    assert allowed(items, attrs, blocked={"d"}).tolist() == [False, False, True, False, True]
    assert stock_of({"stock": "n/a"}) is None and stock_of({}) is None and stock_of({"stock": 2.5}) == 2.5


def test_normalise_counters_and_model_scores():
    assert _normalise(np.array([0.0, 2.0, 4.0]), signed=False).tolist() == [0.0, 0.5, 1.0]
    assert _normalise(np.array([-3.0, -1.0, np.nan]), signed=True).tolist() == [0.0, 1.0, 0.0]
    assert _normalise(np.array([np.nan, np.nan]), signed=True).tolist() == [0.0, 0.0]
    assert _normalise(np.array([5.0, 5.0]), signed=True).tolist() == [0.0, 0.0]
    assert _normalise(np.array([5.0, np.nan]), signed=True).tolist() == [1.0, 0.0]


def test_content_neighbours_from_hashed_tfidf():
    ids = ["dress-red-m", "dress-red-l", "jerky", "milk"]
    texts = ["红色 连衣裙 修身 M码", "红色 连衣裙 修身 L码", "Beef jerky spicy 200g", "Whole milk 1L"]
    index = ContentIndex(ids, hashed_tfidf(texts, 256), "hashed-tfidf")
    near = index.neighbours(["dress-red-m"], k=3)
    assert max(near, key=lambda it: near[it][0]) == "dress-red-l"
    assert near["dress-red-l"][0] > 0.7 and near["dress-red-l"][1] == "dress-red-m"
    assert near.get("jerky", (0.0, None))[0] < 0.2
    assert index.neighbours(["unknown"], k=3) == {}
    assert np.allclose(np.linalg.norm(index.matrix(ids), axis=1), 1.0, atol=1e-5)


# ------------------------------------------------------------------------------------ a tiny world
def items_frame(stock_a1: int | None = None) -> pd.DataFrame:
    attrs = {"a1": {} if stock_a1 is None else {"stock": stock_a1}}
    rows = [
        ("a1", "红色 连衣裙", "服饰 > 女装 > 连衣裙", "太平鸟"),
        ("a2", "蓝色 连衣裙", "服饰 > 女装 > 连衣裙", "太平鸟"),
        ("a3", "Beef jerky", "Food > Snacks", "Three Squirrels"),
        ("b1", "Whole milk", "Food > Dairy", "Mengniu"),
        ("b2", "Yoghurt", "Food > Dairy", "Mengniu"),
        ("c1", "Lipstick", "美妆 > 彩妆", "完美日记"),
    ]
    return pd.DataFrame(
        [
            {"id": i, "title": t, "category": c, "brand": b, "attributes": json.dumps(attrs.get(i, {}))}
            for i, t, c, b in rows
        ]
    )


def make_state() -> MemoryState:
    state = MemoryState()
    ts = pd.to_datetime
    state.upsert_items(items_frame()[["id", "category"]])
    state.upsert_rooms(
        pd.DataFrame(
            {
                "id": ["rA", "rB", "rC"],
                "host": ["hA", "hB", "hC"],
                "title": ["A", "B", "C"],
                "start": ts([T, T, T], unit="s", utc=True),
                "end": ts([None, None, T + 500], unit="s", utc=True),
            }
        )
    )
    state.upsert_shelf(
        pd.DataFrame(
            {
                "room": ["rA", "rA", "rA", "rB", "rB", "rC"],
                "item": ["a1", "a2", "a3", "b1", "b2", "c1"],
                "start": ts([T] * 6, unit="s", utc=True),
                "end": ts([None] * 6, unit="s", utc=True),
                "pinned": [True, False, False, False, False, False],
            }
        )
    )
    ev = [
        ("u", "enter", "rA", None, 100),
        ("u", "click", "rA", "a2", 110),
        ("u", "purchase", "rA", "a2", 120),
    ]
    ev += [(f"v{i}", "purchase", "rB", "b1", 130 + i) for i in range(8)]
    ev += [(f"v{i}", "leave", "rB", None, 180 + i) for i in range(8)]
    ev += [
        ("w", "enter", "rA", None, 140),
        ("w", "purchase", "rA", "a1", 150),
        ("x", "enter", "rA", None, 160),
        ("x", "click", "rA", "a1", 170),
    ]
    state.apply_events(
        pd.DataFrame(
            {
                "event_id": [f"e{i}" for i in range(len(ev))],
                "user": [e[0] for e in ev],
                "type": [e[1] for e in ev],
                "room": [e[2] for e in ev],
                "item": [e[3] for e in ev],
                "ts": pd.to_datetime([T + e[4] for e in ev], unit="s", utc=True),
            }
        )
    )
    return state


def make_pipeline(state=None, models=None, stock_a1=None, **kw) -> Pipeline:
    cat = Catalogue()
    cat.replace(items_frame(stock_a1))
    return Pipeline(state or make_state(), cat, ServeSettings(home="/nonexistent", **kw), models or {})


class FakeModel:
    """Fixed scores per item; records the contexts it was asked about."""

    name = "fake"

    def __init__(self, scores: dict[str, float]) -> None:
        self.item_ids_ = np.asarray(list(scores), dtype=object)
        self.user_ids_ = np.asarray(["u"], dtype=object)
        self._s = np.asarray(list(scores.values()), dtype=np.float32)
        self.contexts: list = []

    def score_batch(self, contexts, candidates=None):
        self.contexts += contexts
        full = np.tile(self._s, (len(contexts), 1))
        return full if candidates is None else full[:, np.asarray(candidates)]


def test_feed_scores_rooms_through_host_affinity_and_trending():
    p = make_pipeline()
    recs, known = p.feed("u", T + 600, 10)
    assert known and [r.key for r in recs] == ["rA", "rB"]  # rC ended at T + 500
    top = recs[0].reasons[0]
    assert top["source"] == "repeat" and top["host"] == "hA"
    assert recs[0].extra == {"host": "hA", "title": "A", "shelf_size": 3}
    anon, known = p.feed("nobody", T + 600, 10)
    assert not known and [r.key for r in anon] == ["rB", "rA"]  # trending: 8 purchases in rB
    assert anon[0].reasons[0] == {"source": "trending-in-room", "score": 0.6, "room": "rB"}
    trending_only = make_pipeline(weights={"trending": 1.0})
    assert [r.key for r in trending_only.feed("u", T + 600, 10)[0]] == ["rB", "rA"]


def test_live_filter_follows_the_state_at_request_time():
    state = make_state()
    p = make_pipeline(state)
    assert [s.key for s in p.shelf("u", "rA", T + 600, 10)][0] == "a2"
    state.end_slot("rA", "a2", T + 601)
    assert "a2" not in [s.key for s in p.shelf("u", "rA", T + 602, 10)]
    assert "a2" in [s.key for s in p.shelf("u", "rA", T + 600.5, 10)]
    state.end_room("rB", T + 603)
    assert [r.key for r in p.feed("u", T + 604, 10)[0]] == ["rA"]
    assert p.shelf("u", "rB", T + 604, 10) == []
    assert p.shelf("u", "rC", T + 10, 10) != [] and p.shelf("u", "rC", T + 500, 10) == []


def test_shelf_reasons_and_business_rules():
    p = make_pipeline()
    recs = p.shelf("u", "rA", T + 600, 10)
    assert [r.key for r in recs][0] == "a2"
    assert {"source": "repeat", "score": 1.0, "item": "a2"} in recs[0].reasons
    sim = [r for r in recs if r.key == "a1"][0].reasons
    assert any(x["source"] == "similar-to" and x["item"] == "a2" for x in sim)  # red dress ~ blue dress
    assert any(
        x["source"] == "profile-match" and x["interest"].startswith(("category:服饰", "brand:太平鸟"))
        for x in sim
    )
    assert "a1" not in [r.key for r in make_pipeline(stock_a1=0).shelf("u", "rA", T + 600, 10)]
    assert "a1" in [r.key for r in make_pipeline(stock_a1=2).shelf("u", "rA", T + 600, 10)]
    assert [r.key for r in make_pipeline(blocked_items="a2,a3").shelf("u", "rA", T + 600, 10)] == ["a1"]
    cold = make_pipeline().shelf(None, "rA", T + 600, 10)
    assert [r.key for r in cold][0] == "a1"  # a purchase and a click: the room's trending item


def test_next_item_aggregates_the_audience():
    p = make_pipeline()
    recs, audience = p.next_item("rA", T + 300, 3)
    assert audience == 3  # u, w and x entered rA
    assert recs[0].key == "a1"  # w and x engaged with a1, only u with a2
    assert recs[0].reasons[0]["source"] == "repeat" and recs[0].reasons[0]["item"] == "a1"
    empty, n = p.next_item("rB", T + 300, 3)
    assert n == 0 and [r.key for r in empty][0] == "b1"  # nobody inside: the room's trending item


def test_model_sources_use_the_vocabulary_and_the_state_sequence():
    seq_model = FakeModel({"a3": 5.0, "a1": 1.0, "a2": 0.0, "zz": 9.0})
    cf_model = FakeModel({"a2": 1.0, "a3": 0.5})
    p = make_pipeline(
        models={"sequence": lambda: seq_model, "cf": lambda: cf_model}, weights={"sequence": 1.0, "cf": 0.5}
    )
    recs = p.shelf("u", "rA", T + 600, 10)
    # sequence min-max over the shelf: a3 1, a1 0.2, a2 0; cf (0.5 weight): a2 1, a3 0, a1 unknown
    assert [r.key for r in recs] == ["a3", "a2", "a1"]
    assert recs[0].reasons == [{"source": "sequence", "score": 1.0, "item": "a2"}]  # cause: the last item
    assert recs[1].reasons == [{"source": "cf", "score": 0.5, "item": "a2"}]
    assert recs[2].reasons == [{"source": "sequence", "score": 0.2, "item": "a2"}]
    ctx = seq_model.contexts[-1]
    assert ctx.items.tolist() == [2, 2] and ctx.user == "u" and ctx.user_index == 0 and ctx.room == "rA"
    assert list(ctx.types) == ["click", "purchase"]
    feed, _ = p.feed("u", T + 600, 10)
    assert feed[0].key == "rA" and feed[0].reasons[0] == {
        "source": "sequence",
        "score": 1.0,
        "item": "a2",
        "shelf_item": "a3",
    }
    # no model yet (registry empty): the other sources still answer
    none = make_pipeline(models={"sequence": lambda: None}).shelf("u", "rA", T + 600, 10)
    assert [r.key for r in none][0] == "a2"


def test_model_item_embeddings_replace_the_content_embedding():
    from liveshelf.models.capabilities import EmbedsItems

    class WithEmbeddings(FakeModel, EmbedsItems):  # the ability is declared, not found by probing
        def item_embeddings(self):
            return np.eye(len(self.item_ids_), dtype=np.float32)

    model = WithEmbeddings({"a1": 0.0, "a2": 0.0, "a3": 0.0})
    p = make_pipeline(models={"sequence": lambda: model})
    assert p.content().origin == "model"
    assert p.content().ids == ["a1", "a2", "a3"]
    assert make_pipeline().content().origin == "hashed-tfidf"
    assert (
        make_pipeline(models={"sequence": lambda: model}, content_embedding="hashed").content().origin
        == "hashed-tfidf"
    )


def test_text_encoder_content_embedding(monkeypatch):
    import liveshelf.text.encoder as encoder

    class FakeEncoder:
        def encode(self, texts):
            return np.asarray([[1.0, 0.0] if "连衣裙" in t else [0.0, 1.0] for t in texts], dtype=np.float32)

    monkeypatch.setattr(encoder, "TextEncoder", FakeEncoder)
    index = make_pipeline(content_embedding="encoder").content()
    assert index.origin == "text-encoder"
    near = index.neighbours(["a1"], k=5)
    assert set(near) == {"a2"} and near["a2"] == (pytest.approx(1.0), "a1")


def test_profile_summary():
    prof = make_pipeline().profile("u", T + 600)
    assert prof["events"] == 3 and prof["event_types"] == {"click": 1, "enter": 1, "purchase": 1}
    assert prof["recent_items"] == ["a2"]
    assert prof["top_categories"][0]["key"] == "服饰" and prof["top_brands"][0]["key"] == "太平鸟"
    assert prof["top_hosts"][0]["key"] == "hA"
    assert prof["top_categories"][0]["weight"] == pytest.approx(
        6.0, rel=1e-3
    )  # click 1 + purchase 5, barely decayed
    assert make_pipeline().profile("nobody", T)["events"] == 0


def test_settings_validation():
    with pytest.raises(ValueError, match="unknown source"):
        ServeSettings(home="/x", weights={"magic": 1.0})
    with pytest.raises(ValueError, match="needs a shared state"):
        ServeSettings(home="/x", workers=2)
    s = ServeSettings(home="/x", api_keys='["a", "b"]', weights={"repeat": 2.0})
    assert s.key_values() == {"a", "b"} and s.weights["repeat"] == 2.0 and s.weights["trending"] == 0.0
    assert set(DEFAULT_WEIGHTS) == set(ServeSettings(home="/x").weights)
