"""Simulator: schema, determinism, consistency with the availability timeline, ground truth, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from liveshelf.cli import app
from liveshelf.data.simulate import SimConfig, World, simulate
from liveshelf.data.timeline import Timeline
from liveshelf.errors import ConfigError, DataFormatError, NotFoundError
from liveshelf.schema import (
    EVENT_COLUMNS,
    HOST_COLUMNS,
    ITEM_COLUMNS,
    ROOM_COLUMNS,
    SHELF_COLUMNS,
    USER_COLUMNS,
)

CFG = SimConfig(n_users=500, n_hosts=20, days=1, seed=7)


@pytest.fixture(scope="module")
def world() -> World:
    return simulate(CFG)


def test_frames_follow_the_schema(world):
    ds = world.dataset
    for frame, cols in (
        (ds.events, EVENT_COLUMNS),
        (ds.items, ITEM_COLUMNS),
        (ds.users, USER_COLUMNS),
        (ds.rooms, ROOM_COLUMNS),
        (ds.shelf, SHELF_COLUMNS),
        (ds.hosts, HOST_COLUMNS),
    ):
        assert tuple(frame.columns) == cols
    for col in ("ts",):
        assert str(ds.events[col].dtype) == "datetime64[us, UTC]"
    for frame in (ds.rooms, ds.shelf):
        assert str(frame["start"].dtype) == "datetime64[us, UTC]"
        assert str(frame["end"].dtype) == "datetime64[us, UTC]"
    assert ds.events["event_id"].is_unique
    assert len(ds.items) == 20 * 20  # default: 20 items per host per day
    assert set(ds.items["language"]) == {"zh", "en"}
    zh = ds.items[ds.items["language"] == "zh"].iloc[0]
    en = ds.items[ds.items["language"] == "en"].iloc[0]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in zh["title"])
    assert zh["title"].isascii() is False and en["title"].isascii()
    assert " > " in zh["category"] and len(zh["category"].split(" > ")) == 3
    attrs = json.loads(en["attributes"])
    assert {"size", "colour", "shipping"} <= set(attrs)
    assert (ds.items["price"] > 0).all() and ds.items["rating"].between(1, 5).all()
    assert ds.shelf["pinned"].any() and (~ds.shelf["pinned"]).any()
    assert set(ds.users["spending_tier"]) <= {"low", "mid", "high", "vip"}
    assert isinstance(json.loads(ds.hosts["categories"].iloc[0]), list)
    # events sorted by (user, ts)
    ev = ds.events
    assert (ev["user"].to_numpy()[1:] >= ev["user"].to_numpy()[:-1]).all()


def test_same_seed_same_frames_other_seed_differs(world):
    again = simulate(CFG)
    for name in ("events", "items", "users", "rooms", "shelf", "hosts"):
        pd.testing.assert_frame_equal(getattr(world.dataset, name), getattr(again.dataset, name))
    np.testing.assert_array_equal(world.truth.interests, again.truth.interests)
    other = simulate(CFG, seed=8)
    assert not other.dataset.events["ts"].equals(world.dataset.events["ts"])


def test_events_respect_availability(world):
    ds = world.dataset
    tl = Timeline(ds.rooms, ds.shelf)
    ev = ds.events
    in_room = ev[
        ev["type"].isin(
            [
                "impression",
                "enter",
                "view",
                "click",
                "cart",
                "purchase",
                "like",
                "comment",
                "share",
                "follow",
                "gift",
            ]
        )
    ]
    assert len(in_room) > 1000
    assert tl.is_live_batch(in_room["room"].to_numpy(), in_room["ts"]).all()
    on_item = ev[ev["type"].isin(["view", "click", "cart", "purchase"])]
    assert on_item["item"].notna().all()
    assert tl.on_shelf_batch(on_item["room"].to_numpy(), on_item["item"].to_numpy(), on_item["ts"]).all()
    # the check can fail: shifting purchases past their room's end breaks it
    late = on_item["ts"] + pd.Timedelta(hours=4)
    assert not tl.on_shelf_batch(on_item["room"].to_numpy(), on_item["item"].to_numpy(), late).any()


def test_funnel_decreases_and_values_are_set(world):
    counts = world.dataset.events["type"].value_counts()
    assert counts["impression"] > counts["click"] > counts["cart"] > counts["purchase"] > 0
    assert counts["impression"] > counts["enter"] and counts["view"] > counts["click"]
    for t in ("like", "comment", "gift", "follow", "leave"):
        assert counts.get(t, 0) > 0, t
    ev = world.dataset.events
    buys = ev[ev["type"] == "purchase"].merge(
        world.dataset.items[["id", "price"]], left_on="item", right_on="id"
    )
    assert (buys["value"] >= buys["price"] - 1e-6).all()
    com = ev[ev["type"] == "comment"]
    assert com["text"].notna().all() and set(com["value"].unique()) <= {0.0, 1.0}


def test_purchases_concentrate_on_true_top_interests(world):
    ev, truth = world.dataset.events, world.truth
    buys = ev[ev["type"].isin(["purchase", "cart"])]
    u = truth.user_index(buys["user"].to_numpy())
    i = truth.item_index(buys["item"].to_numpy())
    top2 = truth.top_categories(2)
    share = float((top2[u] == truth.item_cat[i][:, None]).any(1).mean())
    # random baseline: the same buyers picking items of the catalogue at random
    in_top2 = (top2[u][:, :, None] == truth.item_cat[None, None, :]).any(1)  # (buys, items)
    baseline = float(in_top2.mean())
    assert share > 0.5 and share > 3 * baseline, (share, baseline)
    # and preference (the function that drove clicks) is higher for clicked than for viewed-only items
    views = ev[ev["type"] == "view"]
    clicks = ev[ev["type"] == "click"]
    p_view = truth.preference(views["user"].to_numpy(), views["item"].to_numpy()).mean()
    p_click = truth.preference(clicks["user"].to_numpy(), clicks["item"].to_numpy()).mean()
    assert p_click > 1.5 * p_view


def test_truth_functions_shapes_and_monotonicity(world):
    truth = world.truth
    users, items = truth.user_ids[:5], truth.item_ids[:7]
    mat = truth.preference(users[:, None], items[None, :])
    assert mat.shape == (5, 7) and ((mat > 0) & (mat < 1)).all()
    np.testing.assert_allclose(truth.preference(users[:1], items[:1]), mat[0, :1])
    pp = truth.purchase_prob(users[0], items[0], np.arange(5))
    assert (np.diff(pp) < 0).all() and (pp <= mat[0, 0]).all()
    weights = truth.user_interests[users[0]]
    assert abs(sum(weights.values()) - 1) < 1e-9 and len(weights) == len(truth.categories)
    with pytest.raises(NotFoundError, match="Unknown user id 'nobody'"):
        truth.preference(["nobody"], items[:1])


def test_save_load_round_trip(world, tmp_path):
    world.save(tmp_path)
    for name in ("events", "items", "users", "rooms", "shelf", "hosts"):
        assert (tmp_path / f"{name}.parquet").is_file()
    back = World.load(tmp_path)
    pd.testing.assert_frame_equal(back.dataset.events, world.dataset.events, check_dtype=False)
    assert str(back.dataset.events["ts"].dtype) == "datetime64[us, UTC]"
    u, i = world.truth.user_ids[:50], world.truth.item_ids[:50]
    np.testing.assert_allclose(back.truth.preference(u, i), world.truth.preference(u, i))
    assert back.config == world.config
    np.testing.assert_array_equal(back.truth.fav_hosts, world.truth.fav_hosts)
    assert set(back.truth.fav_hosts.ravel()) - {""} <= set(world.dataset.hosts["id"])
    with pytest.raises(DataFormatError, match="liveshelf simulate --out"):
        World.load(tmp_path / "nothing-here")


def test_viewers_return_to_their_hosts_over_days():
    w = simulate(SimConfig(n_users=400, n_hosts=25, days=3, seed=11))
    ds = w.dataset
    days = ds.rooms["start"].dt.floor("D").nunique()
    assert days == 3
    enters = ds.events[ds.events["type"] == "enter"].merge(
        ds.rooms[["id", "host"]], left_on="room", right_on="id"
    )

    def repeat_share(frame: pd.DataFrame) -> float:
        g = frame.groupby("user")["host"]
        n, distinct = g.size(), g.nunique()
        many = n >= 2
        return float(1 - distinct[many].sum() / n[many].sum())

    shuffled = enters.assign(host=np.random.default_rng(0).permutation(enters["host"].to_numpy()))
    assert repeat_share(enters) > 1.5 * repeat_share(shuffled)


def test_a_world_without_live_rooms_is_empty_but_valid(tmp_path):
    w = simulate(SimConfig(n_users=30, n_hosts=1, seed=0))  # the only host does not stream that day
    assert len(w.dataset.rooms) == 0 and len(w.dataset.events) == 0
    back = World.load(w.save(tmp_path))
    assert len(back.dataset.events) == 0 and len(back.dataset.items) == 20


def test_bad_config_names_the_parameter():
    with pytest.raises(ConfigError, match=r"The 'n_users' parameter of SimConfig must be an int >= 1. Got 0"):
        simulate(SimConfig(n_users=0))
    with pytest.raises(ConfigError, match="'start' parameter"):
        simulate(SimConfig(start="November"))


def test_builtin_phrases_when_the_corpus_is_off():
    w = simulate(SimConfig(n_users=200, n_hosts=10, seed=1, use_review_corpus=False))
    assert w.dataset.meta["comment_source"] == "builtin"
    from liveshelf.data.sim.behaviour import comment_pools

    pools, _ = comment_pools(False)
    allowed = set().union(*[set(v) for v in pools.values()])
    com = w.dataset.events.loc[w.dataset.events["type"] == "comment", "text"]
    assert len(com) and set(com) <= allowed


def test_real_review_sentences_are_used_when_present(shared_data, world):
    if not (shared_data / "online-shopping-10-cats" / "online_shopping_10_cats.csv").is_file():
        pytest.skip("online-shopping-10-cats is absent from the data folder")
    assert world.dataset.meta["comment_source"] == "online-shopping-10-cats"
    reviews = set(
        pd.read_csv(shared_data / "online-shopping-10-cats" / "online_shopping_10_cats.csv")["review"]
        .astype(str)
        .str.replace("\ufeff", "")
        .str.strip()
    )
    com = world.dataset.events.loc[world.dataset.events["type"] == "comment", "text"]
    assert com.isin(reviews).mean() > 0.5


def test_cli_simulate_writes_a_world(tmp_path):
    out = tmp_path / "w"
    res = CliRunner().invoke(
        app,
        [
            "simulate",
            "--users",
            "150",
            "--hosts",
            "8",
            "--days",
            "1",
            "--seed",
            "3",
            "--items",
            "120",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "event: impression" in res.output and str(out.name) in res.output
    back = World.load(out)
    assert len(back.dataset.items) == 120 and back.config.seed == 3
