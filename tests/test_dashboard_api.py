"""The live-room console's JSON routes and page files, on the small simulated world of ``test_api``.

Expectations come from the simulated frames and from events the tests post themselves
(GMV = the purchase values posted, comment sentiment = the sentiment model's own verdict),
not from the console's code.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient

import test_api as api
from liveshelf.serving.app import create_app
from liveshelf.serving.console import report_path, viewer_burst
from liveshelf.serving.pipeline import ItemInfo
from test_api import AUTH, T0, iso, live_rooms, shelf_items

world_template = api.world_template

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

T = T0.timestamp()


@pytest.fixture(scope="module")
def phrase_sentiment(tmp_path_factory):
    """A sentiment model fitted on the simulator's built-in comment phrases (zh + en, both labels)."""
    from liveshelf.data.sim.behaviour import comment_pools
    from liveshelf.monitor.sentiment import SentimentClassifier

    pools, _ = comment_pools(False)
    texts, labels = [], []
    for (name, label), arr in pools.items():
        if name.startswith("builtin-"):
            texts += [str(x) for x in arr]
            labels += [label] * len(arr)
    model = SentimentClassifier(seed=0).fit(texts, np.asarray(labels))
    out = tmp_path_factory.mktemp("phrase-sentiment")
    model.save(out)
    return out, model, pools


def _client(world_template, tmp_path, **settings) -> tuple[TestClient, dict]:
    template, frames = world_template
    home = tmp_path / "home"
    shutil.copytree(template, home)
    address = settings.pop("_client", ("testclient", 50000))
    app = create_app(api.make_settings(home, "memory", "dash:", **settings))
    return TestClient(app, client=address), frames


@pytest.fixture
def console(world_template, tmp_path, phrase_sentiment):
    client, frames = _client(world_template, tmp_path, sentiment_model=phrase_sentiment[0])
    with client:
        yield client, frames, tmp_path / "home"


def _room_with_shelf(frames: dict, t: float) -> str:
    return next(r for r in sorted(live_rooms(frames, t)) if len(shelf_items(frames, r, t)) >= 3)


# ------------------------------------------------------------------------------------ page files
def test_page_and_assets_are_served_with_a_strict_policy_and_nothing_else(console):
    client, _, _ = console
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "/dashboard/app.js" in r.text and "Simulate 100 viewers" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "http://" not in r.text.replace("http://www.w3.org", "") and "https://" not in r.text  # no CDN
    js = client.get("/dashboard/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in js.text  # server text is only set with textContent
    assert client.get("/dashboard/style.css").headers["content-type"].startswith("text/css")
    for bad in ("/dashboard/index.html", "/dashboard/..%2F__init__.py", "/dashboard/server.py"):
        assert client.get(bad).status_code == 404, bad
    cfg = client.get("/v1/dashboard/config").json()
    assert cfg["keys"] is True and cfg["comments"] is True and cfg["poll_ms"] <= 2000


# ------------------------------------------------------------------------------------ rooms
def test_rooms_are_the_live_ones_with_audience_gmv_and_a_sentiment_sparkline(console, phrase_sentiment):
    client, frames, _ = console
    _, model, pools = phrase_sentiment
    t = T + 60
    body = client.get("/v1/dashboard/rooms", params={"at": iso(t)}).json()
    cards = {c["room"]: c for c in body["rooms"]}
    assert set(cards) == live_rooms(frames, t)
    assert [c["audience"] for c in body["rooms"]] == sorted(
        (c["audience"] for c in body["rooms"]), reverse=True
    )
    room = _room_with_shelf(frames, t)
    audience = client.get(f"/v1/rooms/{room}/next-item", params={"at": iso(t)}).json()["audience"]
    assert cards[room]["audience"] == audience
    assert cards[room]["shelf_size"] == len(shelf_items(frames, room, t))

    # purchases posted now add their values to the GMV (no value: the catalogue price); comments fill the spark
    item = sorted(shelf_items(frames, room, t))[0]
    price = float(frames["items"].set_index("id").loc[item, "price"])
    texts = [str(x) for x in pools[("builtin-zh", 0)][:4]] + [str(x) for x in pools[("builtin-zh", 1)][:2]]
    events = [
        {
            "event_id": "gmv-1",
            "ts": t - 5,
            "user": "buyer1",
            "type": "purchase",
            "room": room,
            "item": item,
            "value": 10.5,
        },
        {
            "event_id": "gmv-2",
            "ts": t - 4,
            "user": "buyer2",
            "type": "purchase",
            "room": room,
            "item": item,
            "value": 20.0,
        },
        {"event_id": "gmv-3", "ts": t - 3, "user": "buyer3", "type": "purchase", "room": room, "item": item},
    ]
    events += [
        {"event_id": f"cm-{j}", "ts": t - 2, "user": f"c{j}", "type": "comment", "room": room, "text": x}
        for j, x in enumerate(texts)
    ]
    r = client.post("/v1/events", json={"events": events}, headers=AUTH)
    assert r.status_code == 200 and r.json()["accepted"] == len(events), r.text
    after = {c["room"]: c for c in client.get("/v1/dashboard/rooms", params={"at": iso(t)}).json()["rooms"]}[
        room
    ]
    assert after["gmv"] == pytest.approx(cards[room]["gmv"] + 30.5 + price, abs=0.011)
    assert after["orders"] == cards[room]["orders"] + 3
    assert after["comments"] == cards[room]["comments"] + len(texts)
    expected_neg = int((model.predict_proba(texts)[:, 0] >= 0.5).sum())  # the model's own verdicts
    assert expected_neg >= 1

    def total(spark, key):
        return sum(b[key] or 0 for b in spark)

    assert total(after["spark"], "n") - total(cards[room]["spark"], "n") == len(texts)
    assert total(after["spark"], "negative") - total(cards[room]["spark"], "negative") == expected_neg
    assert len(after["spark"]) == 10 and after["spark"][-1]["start"] <= t < after["spark"][-1]["start"] + 30


def test_room_view_ranks_the_shelf_for_the_audience_with_a_pitch_and_coloured_comments(
    console, phrase_sentiment
):
    client, frames, _ = console
    _, model, pools = phrase_sentiment
    t = T + 60
    room = _room_with_shelf(frames, t)
    p_neg = {
        str(x): model.predict_proba([str(x)])[0, 0] for lab in (0, 1) for x in pools[("builtin-zh", lab)]
    }
    neg = next(str(x) for x in pools[("builtin-zh", 0)] if p_neg[str(x)] >= 0.5)
    pos = next(str(x) for x in pools[("builtin-zh", 1)] if p_neg[str(x)] < 0.5)
    events = [
        {"event_id": "rv-1", "ts": t - 3, "user": "a1", "type": "comment", "room": room, "text": neg},
        {"event_id": "rv-2", "ts": t - 2, "user": "a2", "type": "comment", "room": room, "text": pos},
    ]
    assert client.post("/v1/events", json={"events": events}, headers=AUTH).json()["accepted"] == 2
    view = client.get(f"/v1/dashboard/rooms/{room}", params={"at": iso(t)}).json()
    nxt = client.get(f"/v1/rooms/{room}/next-item", params={"at": iso(t), "k": 50}).json()
    assert view["live"] is True
    assert {i["item"] for i in view["items"]} == shelf_items(frames, room, t)
    assert [i["item"] for i in view["items"]] == [i["item"] for i in nxt["items"]]  # the API's own ranking
    assert view["next_item"]["item"] == view["items"][0]["item"] == view["pitch"]["item"]
    assert len(view["pitch"]["talking_points"]) == 3 and view["pitch"]["reason"]
    assert view["audience"]["viewers"] == nxt["audience"]
    for part in ("categories", "leaf_categories", "brands"):
        shares = [s["share"] for s in view["audience"][part]]
        assert all(0 < s <= 1 for s in shares) and sum(shares) <= 1 + 1e-3
        assert shares == sorted(shares, reverse=True)
    newest = view["comments"][:2]
    assert [c["text"] for c in newest] == [pos, neg]  # newest first
    assert [c["negative"] for c in newest] == [False, True]
    assert [c["p_negative"] for c in newest] == [
        pytest.approx(p_neg[pos], abs=1e-4),
        pytest.approx(p_neg[neg], abs=1e-4),
    ]
    assert view["sentiment"]["volume"] >= 2 and isinstance(view["alerts"], list)
    assert client.get("/v1/dashboard/rooms/no-such-room").status_code == 404


# ------------------------------------------------------------------------------------ simulate
def test_simulate_posts_viewers_through_the_event_path_and_reports_the_change(console):
    client, frames, _ = console
    t = T + 60
    room = _room_with_shelf(frames, t)
    items = frames["items"].set_index("id")
    cats = sorted({str(items.loc[i, "category"]).split(">")[0].strip() for i in shelf_items(frames, room, t)})
    focus = cats[0]
    url = f"/v1/dashboard/rooms/{room}/simulate"
    body = {"viewers": 100, "seed": 11, "focus": focus, "focus_share": 1.0}
    assert (
        client.post(url, json=body, params={"at": iso(t)}).status_code == 401
    )  # keys configured: one needed
    r = client.post(url, json=body, params={"at": iso(t)}, headers=AUTH)
    assert r.status_code == 200, r.text
    out = r.json()
    burst, posted, ch = out["burst"], out["posted"], out["changes"]
    assert posted["accepted"] == burst["events"] > 100 and posted["rejected"] == 0
    assert out["after"]["audience"]["viewers"] == out["before"]["audience"]["viewers"] + 100
    assert ch["audience"] == {
        "before": out["before"]["audience"]["viewers"],
        "after": out["after"]["audience"]["viewers"],
    }
    # the new viewers' only history is this room, mostly the focus category: it leads the audience now
    assert out["after"]["audience"]["categories"][0]["key"] == focus
    assert out["after"]["gmv"] == pytest.approx(out["before"]["gmv"] + burst["gmv"], abs=0.011)
    assert ch["next_item"]["after"] == out["after"]["next_item"]["item"]
    moved = {m["item"] for m in ch["moves"]}
    before_rank = [i["item"] for i in out["before"]["items"]]
    after_rank = [i["item"] for i in out["after"]["items"]]
    assert moved == {i for i in after_rank if before_rank.index(i) != after_rank.index(i)}
    assert ch["shelf_order_changed"] == (before_rank != after_rank)
    # the state saw the events: the public next-item route agrees with the console's "after"
    nxt = client.get(f"/v1/rooms/{room}/next-item", params={"at": iso(t), "k": 50}).json()
    assert [i["item"] for i in nxt["items"]] == after_rank
    # the same seed again: every event is a duplicate, nothing changes
    again = client.post(url, json=body, params={"at": iso(t)}, headers=AUTH).json()
    assert again["posted"]["duplicate"] == burst["events"] and again["posted"]["accepted"] == 0
    assert again["changes"]["moves"] == [] and not again["changes"]["shelf_order_changed"]


def test_simulate_refuses_bad_input_with_messages(console):
    client, frames, _ = console
    t = T + 60
    room = _room_with_shelf(frames, t)
    url = f"/v1/dashboard/rooms/{room}/simulate"
    r = client.post(url, json={"focus": "no-such-category"}, params={"at": iso(t)}, headers=AUTH)
    assert r.status_code == 422 and "'focus'" in r.text and "no-such-category" in r.text
    assert client.post(url, json={"viewers": 0}, headers=AUTH).status_code == 422
    assert client.post(url, json={"colour": "red"}, headers=AUTH).status_code == 422
    ended = sorted(set(frames["rooms"]["id"]) - live_rooms(frames, t))[0]
    r = client.post(f"/v1/dashboard/rooms/{ended}/simulate", json={}, params={"at": iso(t)}, headers=AUTH)
    assert r.status_code == 422 and "no items on its shelf" in r.text
    assert client.post("/v1/dashboard/rooms/nope/simulate", json={}, headers=AUTH).status_code == 404


def test_without_keys_simulate_is_refused_from_every_machine(world_template, tmp_path):
    # issue 12 (3): writes through the console need a key like every write; none configured = read-only
    t = T + 60
    for address in (("127.0.0.1", 40000), ("10.1.2.3", 40000)):
        client, frames = _client(world_template, tmp_path / address[0], api_keys="", _client=address)
        with client:
            assert client.get("/v1/dashboard/config").json()["keys"] is False
            room = _room_with_shelf(frames, t)
            r = client.post(
                f"/v1/dashboard/rooms/{room}/simulate", json={"viewers": 5, "seed": 1}, params={"at": iso(t)}
            )
            assert r.status_code == 401 and "none configured" in r.json()["detail"], r.text
            assert client.get("/v1/dashboard/rooms", params={"at": iso(t)}).status_code == 200


def test_viewer_burst_is_seeded_in_time_and_favours_the_focus():
    shelf = [
        ItemInfo(id=f"i{j}", title=f"item {j}", category=c, price=10.0 + j, language="zh")
        for j, c in enumerate(["美妆 > 护肤", "美妆 > 彩妆", "食品 > 零食", "服饰 > 女装"])
    ]
    a, sa = viewer_burst("r1", shelf, T, n=200, seed=3, focus="美妆", focus_share=1.0)
    b, _ = viewer_burst("r1", shelf, T, n=200, seed=3, focus="美妆", focus_share=1.0)
    assert a == b and sa["viewers"] == 200 and sa["events"] == len(a)
    assert all(T - 60 <= e["ts"] < T and e["room"] == "r1" for e in a)
    assert len({e["event_id"] for e in a}) == len(a)
    first_view: dict[str, str] = {}
    for e in a:
        if e["type"] == "view":
            first_view.setdefault(e["user"], e["item"])
    beauty = sum(v in ("i0", "i1") for v in first_view.values()) / len(first_view)
    assert len(first_view) == 200 and 0.78 < beauty < 0.93  # 6:1 weights over 2 of 4 items: 12/14 expected
    assert sa["gmv"] == pytest.approx(sum(e["value"] for e in a if e["type"] == "purchase"))
    assert sum(e["type"] == "enter" for e in a) == 200
    with pytest.raises(ValueError, match="'n' parameter of viewer_burst"):
        viewer_burst("r1", shelf, T, n=0)
    with pytest.raises(ValueError, match="'shelf' parameter"):
        viewer_burst("r1", [], T)


# ------------------------------------------------------------------------------------ models / experiments
def test_models_list_registry_versions_with_the_served_one(console):
    client, _, _ = console
    models = client.get("/v1/dashboard/models").json()["models"]
    assert [(m["role"], m["name"]) for m in models] == [("sequence", "default"), ("ranker", "ranker")]
    assert models[1]["versions"] == [] and models[1]["serving"] is None  # no ranker yet: the hand blend ranks
    m = models[0]
    assert m["serving"] == "v0001"
    assert {v["version"]: (v["model_type"], v["production"]) for v in m["versions"]} == {
        "v0001": ("itemknn", True),
        "v0002": ("pop", False),
    }
    assert [e["action"] for e in m["history"]] == ["promote"]


def test_experiment_reports_are_listed_and_served_without_path_traversal(console, tmp_path):
    from liveshelf.experiment.abtest import Arm, Experiment, ExperimentStore

    client, _, home = console
    assert client.get("/v1/dashboard/experiments").json() == {"available": True, "experiments": []}
    store = ExperimentStore(home)
    store.create(
        Experiment(
            name="ranker-v2", arms=[Arm("control"), Arm("treatment", model="default", version="v0002")]
        )
    )
    from PIL import Image

    png = store.folder("ranker-v2") / "report.png"
    Image.new("RGB", (40, 20), (200, 30, 30)).save(png)
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"\x89PNG not yours")
    (store.folder("ranker-v2") / "evil.png").symlink_to(outside)
    body = client.get("/v1/dashboard/experiments").json()
    (exp,) = body["experiments"]
    assert exp["name"] == "ranker-v2" and "report.png" in exp["reports"]
    assert exp["summary"]["arms"] == ["control", "treatment"] and "folder" not in exp["summary"]
    r = client.get("/v1/dashboard/experiments/ranker-v2/reports/report.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content == png.read_bytes()
    for bad in (
        "/v1/dashboard/experiments/ranker-v2/reports/evil.png",  # a link out of the folder
        "/v1/dashboard/experiments/ranker-v2/reports/experiment.json",
        "/v1/dashboard/experiments/..%2F..%2Fmodels/reports/report.png",
        "/v1/dashboard/experiments/ranker-v2/reports/..%2F..%2Fevents.duckdb",
        "/v1/dashboard/experiments/nope/reports/report.png",
    ):
        assert client.get(bad).status_code in (404, 422), bad
    assert report_path(home, "..", "report.png") is None
    assert report_path(home, "ranker-v2", "../experiment.json") is None
    assert report_path(home, "ranker-v2", "report.png") == png.resolve()


def test_with_read_keys_required_the_config_says_so_and_reads_need_a_key(world_template, tmp_path):
    client, _ = _client(world_template, tmp_path, read_key_required=True)
    with client:
        cfg = client.get("/v1/dashboard/config")
        assert cfg.status_code == 200 and cfg.json()["read_key_required"] is True  # the page asks for a key
        assert client.get("/").status_code == 200
        for path in ("/v1/dashboard/rooms", "/v1/dashboard/models", "/v1/dashboard/experiments"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers={"X-API-Key": "wrong"}).status_code == 401, path  # unknown key
            assert client.get(path, headers=AUTH).status_code == 200, path
