"""The learned ranking stage of serving: one feature function, exposure log, training, serving, reasons."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from liveshelf.experiment.online_sim import live_times, prepare_home
from liveshelf.experiment.ranker_train import Replay, tables_from_exposures, train_ranker
from liveshelf.models.ranker.live import LiveRanker, RankTable
from liveshelf.serving.app import create_app
from liveshelf.serving.exposures import join_outcomes, label_exposures, read_exposures
from liveshelf.serving.features import FEATURE_SOURCE, ITEM_FEATURES, ROOM_FEATURES
from liveshelf.serving.settings import ServeSettings

KEY = "test-key"


@pytest.fixture(scope="module")
def world_home(tmp_path_factory):
    """A 2-day world; events before t0 (on day 2, rooms live) ingested, itemknn in production."""
    from liveshelf.data.simulate import simulate

    world = simulate(n_users=400, n_hosts=12, days=2, seed=3, use_review_corpus=False)
    start = float(pd.Timestamp(world.dataset.rooms["start"].min()).timestamp())
    t0 = live_times(world, start + 86400 - start % 86400, start + 2 * 86400, 3)[1]
    home = tmp_path_factory.mktemp("rankerworld")
    prepare_home(home, world, t0, oracle=False)
    return world, home, t0


def _copy(home: Path, tmp_path: Path) -> Path:
    out = tmp_path / "home"
    shutil.copytree(home, out)
    return out


def _settings(home: Path, **kw) -> ServeSettings:
    return ServeSettings(home=home, api_keys=KEY, rate_per_s=1e5, rate_burst=100_000, text=False, **kw)


def _returning(world, t: float) -> list[str]:
    ev = world.dataset.events
    before = ev[(ev["ts"] < pd.Timestamp(t, unit="s", tz="UTC")) & (ev["type"] != "impression")]
    return sorted(set(before["user"].astype(str)))


def _live_rooms(client, t: float) -> list[str]:
    return [r["room"] for r in client.get("/v1/users/nobody/feed", params={"at": t, "k": 50}).json()["rooms"]]


def _frames(home: Path):
    from liveshelf.data.store import EventStore

    with EventStore(home, read_only=True) as store:
        return store.frame("items"), store.frame("rooms"), store.frame("shelf"), store.training_frame()


def test_hand_blend_is_the_named_fallback_and_every_answer_is_logged(world_home, tmp_path):
    world, template, t0 = world_home
    home = _copy(template, tmp_path)
    user = _returning(world, t0)[0]
    with TestClient(create_app(_settings(home))) as client:
        rooms = _live_rooms(client, t0)
        assert rooms
        shelf = client.get(f"/v1/rooms/{rooms[0]}/shelf", params={"user": user, "at": t0, "k": 50}).json()
        feed = client.get(f"/v1/users/{user}/feed", params={"at": t0, "k": 5}).json()
        nxt = client.get(f"/v1/rooms/{rooms[0]}/next-item", params={"at": t0, "k": 3}).json()
        assert shelf["ranked_by"] == feed["ranked_by"] == nxt["ranked_by"] == "hand-blend"
        client.app.state.services.exposures.flush()
    ex = read_exposures(home)
    assert set(ex["surface"]) == {"shelf", "feed", "next-item"}
    s = ex[ex["surface"] == "shelf"]
    assert s["candidate"].tolist() == [x["item"] for x in shelf["items"]]
    assert s["position"].tolist() == list(range(len(shelf["items"])))
    assert s["request_id"].nunique() == 1 and (s["ranked_by"] == "hand-blend").all()
    assert (s["feature_set"] == "item").all() and all(len(f) == len(ITEM_FEATURES) for f in s["features"])
    f = ex[(ex["surface"] == "feed") & (ex["user"] == user)]
    assert (f["feature_set"] == "room").all() and all(len(x) == len(ROOM_FEATURES) for x in f["features"])
    assert f["candidate"].tolist() == [r["room"] for r in feed["rooms"]]


def test_row_served_equals_row_rebuilt_for_training(world_home, tmp_path):
    """Feature parity: the features a live request logged equal the ones the replay builds for the same
    viewer, room and time, from the store alone."""
    world, template, t0 = world_home
    home = _copy(template, tmp_path)
    users = _returning(world, t0)[:5]
    with TestClient(create_app(_settings(home))) as client:
        rooms = _live_rooms(client, t0)[:2]
        for u in users:
            for room in rooms:
                client.get(f"/v1/rooms/{room}/shelf", params={"user": u, "at": t0, "k": 50})
        client.app.state.services.exposures.flush()
    ex = read_exposures(home, surface="shelf")
    assert ex["request_id"].nunique() == len(users) * len(rooms)
    replay = Replay(*_frames(home), home=home)
    checked = 0
    for (u, room), part in ex.groupby(["user", "room"], sort=True):
        rows = replay.rows(u, room, t0)
        col = {k: j for j, k in enumerate(rows.keys)}
        for cand, feats in zip(part["candidate"], part["features"], strict=True):
            np.testing.assert_allclose(
                np.asarray(feats),
                rows.X[col[cand]],
                rtol=1e-9,
                atol=1e-12,
                equal_nan=True,
                err_msg=f"{u} {room} {cand}",
            )
            checked += 1
    assert checked >= 20


def test_rows_are_point_in_time_correct(world_home):
    """Adding events after t never changes a row for time t."""
    world, home, t0 = world_home
    items, rooms, shelf, events = _frames(home)
    later = world.dataset.events[world.dataset.events["ts"] >= pd.Timestamp(t0, unit="s", tz="UTC")]
    assert len(later) > 100
    more = pd.concat([events, later[events.columns]], ignore_index=True)
    user = _returning(world, t0)[1]
    a, b = Replay(items, rooms, shelf, events, home=home), Replay(items, rooms, shelf, more, home=home)
    live = [r for r in rooms["id"].astype(str) if a.state.shelf(r, t0)]
    assert live
    for room in live[:3]:
        ra, rb = a.rows(user, room, t0), b.rows(user, room, t0)
        assert ra.keys == rb.keys
        np.testing.assert_array_equal(ra.X, rb.X)
    # and the later events do change a row built after them
    rc = b.rows(user, live[0], t0 + 6 * 3600)
    assert rc is None or rc.X.shape[1] == len(ITEM_FEATURES)


def test_labels_join_outcomes_within_the_window():
    ex = pd.DataFrame(
        {
            "user": ["u", "u", "u", "v", "u", "w"],
            "surface": ["shelf", "shelf", "shelf", "shelf", "feed", "feed"],
            "candidate": ["a", "b", "c", "a", "r1", "r2"],
            "ts": [100.0, 100.0, 100.0, 100.0, 50.0, 0.0],
        }
    )
    ev = pd.DataFrame(
        {
            "user": ["u", "u", "u", "u", "v", "u", "w"],
            "type": ["click", "purchase", "click", "cart", "click", "enter", "enter"],
            "room": ["r1"] * 6 + ["r2"],
            "item": ["a", "a", "b", "c", "a", None, None],
            "ts": [110.0, 130.0, 99.0, 5000.0, 100.0, 60.0, 10.0],
            "value": [None] * 7,
        }
    )
    # a: click + purchase -> 3; b: click before the exposure -> 0; c: cart outside 1800 s -> 0;
    # v's click at the exposure time itself (not after) -> 0; room r1: entered, then a purchase in it -> 3;
    # room r2: entered only -> 1
    np.testing.assert_array_equal(label_exposures(ex, ev, window_s=1800), [3, 0, 0, 0, 3, 1])
    ev2 = pd.concat(
        [
            ev,
            pd.DataFrame(
                {
                    "user": ["w"],
                    "type": ["leave"],
                    "room": ["r2"],
                    "item": [None],
                    "ts": [300.0],
                    "value": [290.0],
                }
            ),
        ],
        ignore_index=True,
    )
    out = join_outcomes(ex, ev2, window_s=1800)
    assert out["clicks"].tolist() == [1, 0, 0, 0, 2, 0] and out["purchases"].tolist() == [1, 0, 0, 0, 1, 0]
    assert out["watch_s"].tolist() == [0, 0, 0, 0, 0, 290.0]


def _table(rng, queries=120, n=8):
    X = rng.normal(size=(queries * n, len(ITEM_FEATURES)))
    util = X[:, 0] - 0.5 * X[:, 3]
    y = np.zeros(len(X), dtype=np.int64)
    for q in range(queries):
        s = slice(q * n, (q + 1) * n)
        y[s][np.argmax(util[s] + rng.normal(0, 0.3, n))] = 1
    return RankTable(
        X,
        y,
        np.full(queries, n),
        ITEM_FEATURES,
        position=np.tile(np.arange(n), queries),
        ts=np.arange(queries, dtype=float),
    )


@pytest.mark.parametrize("position", ["unbiased", "feature", "none"])
def test_live_ranker_learns_saves_as_text_and_loads(tmp_path, position):
    rng = np.random.default_rng(0)
    table = _table(rng)
    model = LiveRanker(n_estimators=60, min_child_samples=5, position=position).fit({"item": table})
    X = table.X[:40]
    s = model.predict("item", X)
    util = X[:, 0] - 0.5 * X[:, 3]
    assert np.corrcoef(s, util)[0, 1] > 0.6
    c = model.contributions("item", X)
    assert c.shape == (40, len(ITEM_FEATURES) + 1)
    np.testing.assert_allclose(c.sum(axis=1), s, rtol=1e-6, atol=1e-6)  # SHAP additivity
    model.save(tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m").rglob("*") if p.is_file())
    assert files == ["config.json", "ranker.json", "ranker.txt"]
    assert (tmp_path / "m" / "item" / "ranker.txt").read_text().startswith("tree")
    from liveshelf.models import load_model

    again = load_model(tmp_path / "m")
    np.testing.assert_array_equal(again.predict("item", X), s)
    assert not again.ranks("room")


def test_live_ranker_refuses_bad_input():
    from liveshelf.errors import ConfigError

    rng = np.random.default_rng(1)
    with pytest.raises(ConfigError, match="position"):
        LiveRanker(position="sideways").fit({"item": _table(rng)})
    with pytest.raises(ConfigError, match="surfaces"):
        LiveRanker().fit({"basket": _table(rng)})
    model = LiveRanker(n_estimators=5, min_child_samples=5).fit({"item": _table(rng)})
    with pytest.raises(ConfigError, match="features"):
        model.predict("item", np.zeros((3, 5)))
    with pytest.raises(ConfigError, match="RankTable"):
        RankTable(np.zeros((4, len(ITEM_FEATURES))), np.zeros(3), np.array([4]), ITEM_FEATURES)


def test_trained_ranker_serves_with_reasons_from_its_contributions(world_home, tmp_path):
    """Train from replayed events, promote, serve: the answer names the ranker, the order follows its scores and
    the reasons are the per-source sums of its contributions (largest first)."""
    from liveshelf.registry import ModelRegistry

    world, template, t0 = world_home
    home = _copy(template, tmp_path)
    report = train_ranker(
        home, source="events", margin=-1.0, params={"n_estimators": 40, "min_child_samples": 5}
    )
    assert report.source == "events" and report.promoted and report.version == "v0001"
    assert report.surfaces["item"]["train_queries"] >= 20
    reg = ModelRegistry(home / "models")
    assert reg.info("ranker", "v0001").lineage["trained_from"] == "events"
    user = _returning(world, t0)[2]
    with TestClient(create_app(_settings(home))) as client:
        rooms = _live_rooms(client, t0)
        body = client.get(f"/v1/rooms/{rooms[0]}/shelf", params={"user": user, "at": t0, "k": 50}).json()
        assert body["ranked_by"] == "ranker@v0001"
        pipe = client.app.state.services.pipeline
        ranked = pipe.rank_shelf(user, rooms[0], t0, 50)
        ranker = pipe.ranker("item")
        from liveshelf.serving.explain import contributions, learned_scores

        scores = learned_scores(ranker, [ranked.rows])[0]
        parts = contributions(ranker, [ranked.rows], np.arange(len(ranked.rows.keys)))
        bias = ranker.contributions("item", ranked.rows.X)[:, -1]
        np.testing.assert_allclose(sum(parts.values()) + bias, scores, rtol=1e-6, atol=1e-6)
        col = {k: j for j, k in enumerate(ranked.rows.keys)}
        for rec in body["items"][:5]:
            j = col[rec["item"]]
            assert rec["score"] == pytest.approx(scores[j], abs=1e-5)
            positive = sorted(((p[j], s) for s, p in parts.items() if p[j] >= 1e-3), reverse=True)
            if positive:
                from liveshelf.serving.pipeline import REASON_NAMES

                assert rec["reasons"][0]["source"] == REASON_NAMES[positive[0][1]]
                assert rec["reasons"][0]["score"] == pytest.approx(positive[0][0], abs=1e-5)
        nxt = client.get(f"/v1/rooms/{rooms[0]}/next-item", params={"at": t0, "k": 3}).json()
        assert nxt["ranked_by"] == "ranker@v0001" and nxt["items"] and all(r["reasons"] for r in nxt["items"])
        # the hand blend still serves when asked (an A/B control arm), and says so
    with TestClient(create_app(_settings(home, use_ranker=False))) as client:
        body = client.get(f"/v1/rooms/{rooms[0]}/shelf", params={"user": user, "at": t0, "k": 5}).json()
        assert body["ranked_by"] == "hand-blend"


def test_train_from_exposures_groups_requests(world_home, tmp_path):
    from liveshelf.experiment.online_sim import OnlineSimulator

    world, template, t0 = world_home
    home = _copy(template, tmp_path)
    with TestClient(create_app(_settings(home))) as client:
        sim = OnlineSimulator(world, client, api_key=KEY, feed_k=4, shelf_k=8, seed=1)
        stats = sim.run(_returning(world, t0)[:150], t0, gap_s=2.0)
        client.app.state.services.exposures.flush()
    tables = tables_from_exposures(home)
    ex = read_exposures(home)
    shelf = ex[ex["surface"] == "shelf"]
    item = tables["item"]
    assert item.queries == shelf["request_id"].nunique() == stats.entered
    assert int(item.group.sum()) == len(shelf)
    assert int((item.y > 0).sum()) >= min(stats.clicks, 1)
    assert "room" in tables and tables["room"].queries == ex[ex["surface"] == "feed"]["request_id"].nunique()
    report = train_ranker(
        home,
        source="exposures",
        margin=-1.0,
        promote=False,
        params={"n_estimators": 30, "min_child_samples": 5},
    )
    assert report.source == "exposures" and not report.promoted and report.version == "v0001"
    assert set(report.surfaces) <= {"item", "room"} and "item" in report.surfaces


def test_cli_ranker_train_without_data_is_a_clear_error(tmp_path):
    from typer.testing import CliRunner

    from liveshelf.cli import app
    from liveshelf.data.store import EventStore

    with EventStore(tmp_path / "home"):
        pass
    result = CliRunner().invoke(
        app, ["ranker", "train", "--home", str(tmp_path / "home"), "--from", "events"]
    )
    assert result.exit_code == 2
    assert "No training rows" in result.output
    result = CliRunner().invoke(
        app, ["ranker", "train", "--home", str(tmp_path / "home"), "--from", "nowhere"]
    )
    assert result.exit_code == 2 and "source" in result.output


def test_every_feature_belongs_to_a_reason_source():
    from liveshelf.serving.pipeline import REASON_NAMES

    for name in (*ITEM_FEATURES, *ROOM_FEATURES):
        assert FEATURE_SOURCE[name] in REASON_NAMES or FEATURE_SOURCE[name] == "blend", name


def test_loop_retrains_and_gates_the_ranker(world_home, tmp_path):
    from liveshelf.experiment.loop import ContinuousLoop, LoopConfig, read_decisions
    from liveshelf.registry import ModelRegistry

    _, template, _ = world_home
    home = _copy(template, tmp_path)
    loop = ContinuousLoop(home, LoopConfig(name="default", model="pop", ranker=True, ranker_margin=-1.0))
    result = loop.run_once()
    assert result.ranker is not None and result.ranker["promoted"] and result.ranker["source"] == "events"
    assert ModelRegistry(home / "models").production("ranker").version == result.ranker["version"]
    log = read_decisions(home)
    assert set(log["model"]) == {"pop", "liveranker"}
    # an impossible margin: the next cycle's ranker is refused and production stays
    strict = ContinuousLoop(home, LoopConfig(name="default", model="pop", ranker=True, ranker_margin=5.0))
    again = strict.run_once()
    assert not again.ranker["promoted"] and again.ranker["version"] is None
    assert "hand blend" in again.ranker["reason"]
    assert ModelRegistry(home / "models").production("ranker").version == result.ranker["version"]
