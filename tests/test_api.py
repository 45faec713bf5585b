"""End-to-end tests of the HTTP API on a small simulated world, over both state backends.

The world is simulated, ingested into an event store up to ``T0``, a model is fitted and
promoted, and the app is started in process. Expectations (which rooms are live, which
items are on a shelf) are computed from the simulated frames, independently of the app.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from liveshelf.data.ingest import Ingestor
from liveshelf.data.simulate import simulate
from liveshelf.data.split import dataset_to_train_data
from liveshelf.data.store import EventStore
from liveshelf.models import create_model
from liveshelf.registry import ModelRegistry
from liveshelf.serving.app import create_app
from liveshelf.serving.settings import ServeSettings

T0 = pd.Timestamp("2026-11-01T12:30:00Z")
REDIS_URL = "redis://127.0.0.1:6379/14"
KEY = "test-key-123"
AUTH = {"X-API-Key": KEY}
REASONS = {
    "repeat",
    "sequence",
    "cf",
    "trending-in-room",
    "similar-to",
    "profile-match",
    "on-shelf",
    "live-now",
}
ACTIVE_USER = "u0000043"  # the user with the most events before T0 in this world (checked in build_home)


def iso(t: float | pd.Timestamp) -> str:
    ts = t if isinstance(t, pd.Timestamp) else pd.Timestamp(t, unit="s", tz="UTC")
    return ts.isoformat()


def epoch(t: pd.Timestamp) -> float:
    return t.timestamp()


# ------------------------------------------------------------------------------------ the world
def build_home(folder: Path) -> dict:
    """Simulate, ingest up to T0, fit itemknn (v0001, production) and pop (v0002) under the name 'default'."""
    world = simulate(n_users=80, n_hosts=8, days=1, seed=1, use_review_corpus=False)
    ds = world.dataset
    with EventStore(folder) as store:
        ing = Ingestor(store)
        for kind in ("items", "users", "hosts", "rooms", "shelf"):
            ing.ingest(kind, getattr(ds, kind))
        ing.ingest("events", ds.events[ds.events["ts"] < T0])
        data = dataset_to_train_data(store.to_dataset())
    reg = ModelRegistry(folder / "models")
    v1 = reg.register(create_model("itemknn").fit(data), name="default")
    reg.register(create_model("pop").fit(data), name="default")
    reg.promote("default", v1)
    before = ds.events[(ds.events["ts"] < T0) & (ds.events["type"] != "impression")]
    assert before["user"].value_counts().index[0] == ACTIVE_USER
    return {"rooms": ds.rooms, "shelf": ds.shelf, "items": ds.items}


@pytest.fixture(scope="session")
def world_template(tmp_path_factory):
    folder = tmp_path_factory.mktemp("world")
    frames = build_home(folder)
    return folder, frames


def live_rooms(frames: dict, t: float) -> set[str]:
    r = frames["rooms"]
    start, end = r["start"].map(epoch), r["end"].map(epoch)
    return set(r["id"][(start <= t) & (t < end)])


def shelf_items(frames: dict, room: str, t: float) -> set[str]:
    s = frames["shelf"][frames["shelf"]["room"] == room]
    start, end = s["start"].map(epoch), s["end"].map(epoch)
    return set(s["item"][(start <= t) & (t < end)])


def redis_or_skip():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"Redis on 127.0.0.1:6379 is not answering ({exc}); the redis backend is not tested")
    return client


def clean_prefix(client, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


def make_settings(home: Path, backend: str, prefix: str, **kw) -> ServeSettings:
    base = {
        "home": home,
        "state": "memory" if backend == "memory" else REDIS_URL,
        "state_prefix": prefix,
        "api_keys": KEY,
        "rate_per_s": 10_000.0,
        "rate_burst": 10_000,
        "host_cap": 10,
    }
    return ServeSettings(**{**base, **kw})


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request):
    prefix = f"lstest-{uuid.uuid4().hex[:10]}:"
    client = redis_or_skip() if request.param == "redis" else None
    yield request.param, prefix
    if client is not None:
        clean_prefix(client, prefix)
        client.close()


@pytest.fixture
def served(world_template, backend, tmp_path):
    """(TestClient, frames, home) on a private copy of the world."""
    template, frames = world_template
    home = tmp_path / "home"
    shutil.copytree(template, home)
    name, prefix = backend
    app = create_app(make_settings(home, name, prefix))
    with TestClient(app) as client:
        yield client, frames, home


def feed(client, user: str, t: float, k: int = 500) -> dict:
    r = client.get(f"/v1/users/{user}/feed", params={"at": iso(t), "k": k})
    assert r.status_code == 200, r.text
    return r.json()


def shelf(client, room: str, t: float, user: str | None = None, k: int = 500) -> dict:
    params = {"at": iso(t), "k": k, **({"user": user} if user else {})}
    r = client.get(f"/v1/rooms/{room}/shelf", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def check_recs(recs: list[dict]) -> None:
    for rec in recs:
        assert isinstance(rec["score"], float) and np.isfinite(rec["score"])
        assert rec["reasons"], rec
        for reason in rec["reasons"]:
            assert reason["source"] in REASONS
            assert reason["score"] >= 0


# ------------------------------------------------------------------------------------ live only
def test_only_live_rooms_and_on_shelf_items_across_room_ends_and_removals(served):
    client, frames, _ = served
    t1 = epoch(T0) + 60
    live1 = live_rooms(frames, t1)
    assert len(live1) >= 3
    f = feed(client, ACTIVE_USER, t1)
    rooms = [r["room"] for r in f["rooms"]]
    assert set(rooms) == live1  # k=500 and a high host cap: every live room, nothing else
    check_recs(f["rooms"])
    for room in rooms:
        s = shelf(client, room, t1, ACTIVE_USER)
        assert s["live"] is True
        got = [i["item"] for i in s["items"]]
        assert set(got) == shelf_items(frames, room, t1)
        check_recs(s["items"])

    # end the first room, take one item off a second room (action) and one off a third (slot end)
    ended, other, third = rooms[0], rooms[1], rooms[2]
    removed = shelf(client, other, t1)["items"][0]["item"]
    sl = frames["shelf"]
    slot = sl[(sl["room"] == third) & (sl["start"].map(epoch) <= t1) & (sl["end"].map(epoch) > t1)].iloc[0]
    body = {
        "actions": [
            {"op": "end_room", "room": ended, "at": t1 + 1},
            {"op": "remove_item", "room": other, "item": removed, "at": t1 + 1},
        ],
        "shelf": [
            {
                "room": third,
                "item": slot["item"],
                "start": iso(slot["start"]),
                "end": t1 + 1,
                "pinned": bool(slot["pinned"]),
            }
        ],
    }
    r = client.put("/v1/rooms", json=body, headers=AUTH, params={"at": iso(t1 + 1)})
    assert r.status_code == 200, r.text
    assert r.json()["actions"] == 2

    for t in (t1 + 1, t1 + 2, t1 + 30):
        now_rooms = {x["room"] for x in feed(client, ACTIVE_USER, t)["rooms"]}
        assert ended not in now_rooms
        assert now_rooms <= live_rooms(frames, t)
        gone = shelf(client, ended, t)
        assert gone["live"] is False and gone["items"] == []
        other_items = {i["item"] for i in shelf(client, other, t, ACTIVE_USER)["items"]}
        assert removed not in other_items and other_items <= shelf_items(frames, other, t)
        nxt = client.get(f"/v1/rooms/{other}/next-item", params={"at": iso(t)}).json()
        assert removed not in {i["item"] for i in nxt["items"]}
        assert slot["item"] not in {i["item"] for i in shelf(client, third, t)["items"]}
    assert client.get(f"/v1/rooms/{ended}/next-item", params={"at": iso(t1 + 2)}).json()["items"] == []


def test_a_room_that_ended_a_second_ago_never_appears(served):
    client, frames, _ = served
    r = frames["rooms"]
    ends = r[(r["start"].map(epoch) < epoch(T0)) & (r["end"].map(epoch) > epoch(T0))]
    row = ends.sort_values("end").iloc[0]
    end = epoch(row["end"])
    assert row["id"] in {x["room"] for x in feed(client, ACTIVE_USER, end - 1)["rooms"]}
    for t in (end, end + 1):
        assert row["id"] not in {x["room"] for x in feed(client, ACTIVE_USER, t)["rooms"]}
        assert shelf(client, row["id"], t)["items"] == []


def test_new_room_and_shelf_take_effect_at_once(served):
    client, frames, _ = served
    t = epoch(T0) + 120
    items = list(frames["items"]["id"][:3])
    body = {
        "rooms": [{"id": "r-new", "host": "h-new", "title": "fresh", "start": t - 10}],
        "shelf": [
            {"room": "r-new", "item": it, "start": t - 10, "pinned": j == 0} for j, it in enumerate(items)
        ],
    }
    assert client.put("/v1/rooms", json=body, headers=AUTH).status_code == 200
    assert "r-new" in {x["room"] for x in feed(client, "someone-new", t)["rooms"]}
    assert {i["item"] for i in shelf(client, "r-new", t)["items"]} == set(items)
    assert "r-new" not in {x["room"] for x in feed(client, "someone-new", t - 11)["rooms"]}


# ------------------------------------------------------------------------------------ read your writes
def test_a_posted_click_changes_the_next_feed_and_shelf(served):
    client, frames, _ = served
    t = epoch(T0) + 300
    user = "brand-new-viewer"
    before = feed(client, user, t)
    assert before["fallback"] is True
    assert all(r["reasons"][0]["source"] in ("trending-in-room", "live-now") for r in before["rooms"])
    target = before["rooms"][-1]  # the least trending live room
    room, host = target["room"], target["host"]
    item = shelf(client, room, t)["items"][-1]["item"]
    shelf_before = {i["item"]: i for i in shelf(client, room, t, user)["items"]}
    events = [
        {
            "event_id": f"click-{uuid.uuid4().hex}",
            "ts": iso(t - 5),
            "user": user,
            "type": "enter",
            "room": room,
        },
        {
            "event_id": f"click-{uuid.uuid4().hex}",
            "ts": iso(t - 4),
            "user": user,
            "type": "click",
            "room": room,
            "item": item,
        },
        {
            "event_id": f"click-{uuid.uuid4().hex}",
            "ts": t - 3,
            "user": user,
            "type": "cart",
            "room": room,
            "item": item,
        },
    ]
    r = client.post("/v1/events", json={"events": events}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "received": 3,
        "accepted": 3,
        "duplicate": 0,
        "rejected": 0,
        "applied": 3,
        "errors": [],
    }

    after = feed(client, user, t)
    assert after["fallback"] is False
    assert after != before
    rec = {x["room"]: x for x in after["rooms"]}[room]
    assert rec["score"] > target["score"]
    assert {"source": "repeat", "host": host} in [
        {k: v for k, v in x.items() if k in ("source", "host")} for x in rec["reasons"]
    ]
    shelf_after = {i["item"]: i for i in shelf(client, room, t, user)["items"]}
    assert shelf_after[item]["score"] > shelf_before[item]["score"]
    assert any(x["source"] == "repeat" and x["item"] == item for x in shelf_after[item]["reasons"])
    # the audience now holds the viewer, so next-item aggregates them
    nxt = client.get(f"/v1/rooms/{room}/next-item", params={"at": iso(t)}).json()
    assert nxt["audience"] >= 1 and nxt["item"] is not None

    # re-posting is idempotent: nothing applied twice, answers unchanged
    again = client.post("/v1/events", json={"events": events}, headers=AUTH).json()
    assert (again["accepted"], again["duplicate"], again["applied"]) == (0, 3, 0)
    assert feed(client, user, t) == after


def test_bad_rows_come_back_as_per_row_errors(served):
    client, _, _ = served
    events = [
        {"event_id": "ok-1", "ts": iso(T0), "user": "u1", "type": "view", "item": "i0000001"},
        {"event_id": "bad-1", "ts": "yesterday-ish", "user": "u1", "type": "view", "item": "i0000001"},
        {"event_id": "bad-2", "ts": iso(T0), "user": "u1", "type": "teleport", "item": "i0000001"},
        {"event_id": "bad-3", "ts": iso(T0), "user": "u1", "type": "purchase"},
    ]
    body = client.post("/v1/events", json={"events": events}, headers=AUTH).json()
    assert (body["received"], body["accepted"], body["rejected"]) == (4, 1, 3)
    assert {(e["row"], e["field"]) for e in body["errors"]} == {(2, "ts"), (3, "type"), (4, "item")}


# ------------------------------------------------------------------------------------ deletion
def test_delete_removes_a_user_everywhere(served):
    client, _, _ = served
    t = epoch(T0) + 10
    prof = client.get(f"/v1/users/{ACTIVE_USER}/profile", params={"at": iso(t)}).json()
    assert prof["events"] > 10 and prof["top_categories"] and prof["top_hosts"]
    assert feed(client, ACTIVE_USER, t)["fallback"] is False
    assert client.delete(f"/v1/users/{ACTIVE_USER}").status_code == 401  # needs a key
    r = client.delete(f"/v1/users/{ACTIVE_USER}", headers=AUTH)
    assert r.status_code == 200 and r.json()["events"] > 10 and r.json()["users"] == 1
    services = client.app.state.services
    with services.store.open() as store:
        assert len(store.sequence(ACTIVE_USER).items) == 0
        assert ACTIVE_USER not in set(store.frame("users")["id"])
    assert services.state.user_sequence(ACTIVE_USER) == []
    assert client.get(f"/v1/users/{ACTIVE_USER}/profile", params={"at": iso(t)}).json()["events"] == 0
    assert feed(client, ACTIVE_USER, t)["fallback"] is True
    # the production model was trained on the user: marked stale, so the loop retrains without them
    from liveshelf.serving.deletion import LEDGER_FILE, privacy_dir, stale_versions

    home = served[2]
    production = services.model_version()
    assert production is not None and production in stale_versions(home, services.settings.model)
    ledger = (privacy_dir(home) / LEDGER_FILE).read_text()
    assert '"events"' in ledger and ACTIVE_USER not in ledger


# ------------------------------------------------------------------------------------ reasons, catalogue
def test_reasons_name_their_cause(served):
    client, _, _ = served
    t = epoch(T0) + 10
    history = set(
        client.get(f"/v1/users/{ACTIVE_USER}/profile", params={"at": iso(t)}).json()["recent_items"]
    )
    f = feed(client, ACTIVE_USER, t)
    sources = {x["source"] for r in f["rooms"] for x in r["reasons"]}
    assert {"sequence", "trending-in-room"} <= sources
    for r in f["rooms"]:
        for x in r["reasons"]:
            if x["source"] == "similar-to":
                assert x["item"] in history and x["shelf_item"]
            if x["source"] == "trending-in-room":
                assert x["room"] == r["room"]
            if x["source"] == "profile-match":
                assert x["interest"].startswith(("category:", "brand:"))


def test_out_of_stock_items_leave_recommendations(served):
    client, _, _ = served
    t = epoch(T0) + 10
    room = feed(client, ACTIVE_USER, t)["rooms"][0]["room"]
    first = shelf(client, room, t, ACTIVE_USER)["items"][0]["item"]
    item = client.get(f"/v1/items/{first}").json()
    item["attributes"] = {**item["attributes"], "stock": 0}
    r = client.put("/v1/items", json={"items": [item]}, headers=AUTH)
    assert r.status_code == 200 and r.json()["updated"] == 1
    assert client.get(f"/v1/items/{first}").json()["attributes"]["stock"] == 0
    assert first not in {i["item"] for i in shelf(client, room, t, ACTIVE_USER)["items"]}
    item["attributes"]["stock"] = 5
    client.put("/v1/items", json={"items": [item]}, headers=AUTH)
    assert first in {i["item"] for i in shelf(client, room, t, ACTIVE_USER)["items"]}


def test_restart_serves_the_same_answers(world_template, tmp_path):
    template, _ = world_template
    home = tmp_path / "home"
    shutil.copytree(template, home)
    t = epoch(T0) + 60
    settings = make_settings(home, "memory", "x:")
    with TestClient(create_app(settings)) as client:
        room = feed(client, ACTIVE_USER, t)["rooms"][0]["room"]
        client.put(
            "/v1/rooms", json={"actions": [{"op": "end_room", "room": room, "at": t - 1}]}, headers=AUTH
        )
        client.post(
            "/v1/events",
            json={
                "events": [
                    {"event_id": "rs-1", "ts": t - 2, "user": "rs-user", "type": "like", "item": "i0000007"}
                ]
            },
            headers=AUTH,
        )
        answers = [feed(client, u, t) for u in (ACTIVE_USER, "rs-user")]
        assert room not in {x["room"] for x in answers[0]["rooms"]}
    with TestClient(create_app(settings)) as client:
        assert [feed(client, u, t) for u in (ACTIVE_USER, "rs-user")] == answers


# ------------------------------------------------------------------------------------ security
def test_keys_limits_and_validation(world_template, tmp_path, caplog):
    template, _ = world_template
    home = tmp_path / "home"
    shutil.copytree(template, home)
    settings = make_settings(
        home,
        "memory",
        "x:",
        rate_per_s=0.5,
        rate_burst=4,
        max_body_bytes=20_000,
        max_events=3,
        cors_origins="https://shop.example",
    )
    secret_user = "alice-real-name-0042"
    with TestClient(create_app(settings)) as client, caplog.at_level("DEBUG", logger="liveshelf"):
        ev = {"event_id": "s1", "ts": iso(T0), "user": secret_user, "type": "like", "item": "i0000001"}
        assert client.post("/v1/events", json={"events": [ev]}).status_code == 401
        assert (
            client.post("/v1/events", json={"events": [ev]}, headers={"X-API-Key": "nope"}).status_code == 401
        )
        assert client.post("/v1/events", json={"events": [ev]}, headers=AUTH).status_code == 200
        assert client.post("/v1/events", json={"events": [ev] * 4}, headers=AUTH).status_code == 413
        big = {"events": [{**ev, "text": "x" * 9000}] * 3}
        assert client.post("/v1/events", json=big, headers=AUTH).status_code == 413

        def chunks():  # no Content-Length: the limit is enforced while streaming
            yield b'{"events": [' + b" " * 15_000
            yield b" " * 15_000 + b"]}"

        r = client.post("/v1/events", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 413 and "at most 20000 bytes" in r.json()["detail"]
        r = client.get(f"/v1/users/{secret_user}/feed", params={"k": 0}, headers=AUTH)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "k"]
        # anonymous client: burst 4 then 429 with Retry-After
        codes = [client.get("/v1/users/x/feed").status_code for _ in range(6)]
        assert codes[:3] == [200, 200, 200] and codes[-1] == 429
        r = client.get("/v1/users/x/feed")
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert secret_user not in caplog.text and KEY not in caplog.text
    assert "/v1/users/{user}/feed" in caplog.text

    settings = make_settings(
        home, "memory", "x:", read_key_required=True, cors_origins="https://shop.example"
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/users/x/feed").status_code == 401
        assert client.get("/v1/users/x/feed", headers=AUTH).status_code == 200
        r = client.get("/v1/users/x/feed", params={"at": "not a time"}, headers=AUTH)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "at"]
        r = client.get("/v1/rooms/no-such-room/shelf", headers=AUTH)
        assert r.status_code == 404 and "Unknown room 'no-such-room'" in r.json()["detail"]
        assert client.get("/v1/items/no-such-item", headers=AUTH).status_code == 404
        r = client.put("/v1/items", json={"items": [{"id": "i1", "title": "t", "price": -1}]}, headers=AUTH)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "price"
        r = client.put(
            "/v1/rooms", json={"rooms": [{"id": "r1", "host": "h", "colour": "red"}]}, headers=AUTH
        )
        assert r.status_code == 422 and "colour" in r.json()["detail"][0]["loc"]
        r = client.options(
            "/v1/users/x/feed",
            headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "GET"},
        )
        assert r.headers["access-control-allow-origin"] == "https://shop.example"


def test_health_metrics_and_docs(served):
    client, _, _ = served
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["model_version"] == "v0001" and ready["items"] == 160
    feed(client, ACTIVE_USER, epoch(T0))
    client.post(
        "/v1/events",
        json={"events": [{"event_id": "m1", "ts": iso(T0), "user": "m", "type": "view", "item": "i0000001"}]},
        headers=AUTH,
    )
    text = client.get("/metrics").text
    assert (
        'liveshelf_request_seconds_count{method="GET",route="/v1/users/{user}/feed",status="200"} 1.0' in text
    )
    assert 'liveshelf_events_ingested_total{outcome="accepted"} 1.0' in text
    assert 'liveshelf_model_info{name="default",role="sequence",version="v0001"} 1.0' in text
    assert 'liveshelf_cache_total{cache="model_vocab",result="hit"}' in text
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/v1/events",
        "/v1/users/{user}/feed",
        "/v1/rooms/{room}/shelf",
        "/v1/rooms/{room}/next-item",
        "/v1/users/{user}/profile",
        "/v1/items/{item}",
        "/v1/items",
        "/v1/rooms",
        "/v1/users/{user}",
    } <= set(paths)


# ------------------------------------------------------------------------------------ hot swap
def test_hot_swap_under_load_fails_no_request(served):
    client, _, _ = served
    t = epoch(T0) + 10
    failures: list[int] = []
    versions: set[str] = set()
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            r = client.get(f"/v1/users/{ACTIVE_USER}/feed", params={"at": iso(t), "k": 5})
            if r.status_code != 200:
                failures.append(r.status_code)
            else:
                versions.add(r.json()["model_version"])

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for th in threads:
        th.start()
    try:
        for _ in range(3):
            time.sleep(0.1)
            r = client.post("/v1/admin/models/default/promote", json={"version": "v0002"}, headers=AUTH)
            assert r.status_code == 200 and r.json()["production"] is True
            assert client.get("/readyz").json()["model_version"] == "v0002"
            versions.discard("v0002")
            deadline = time.monotonic() + 10
            while "v0002" not in versions and time.monotonic() < deadline:  # a client request saw it
                time.sleep(0.01)
            r = client.post("/v1/admin/models/default/rollback", headers=AUTH)
            assert r.status_code == 200 and r.json()["version"] == "v0001"
    finally:
        stop.set()
        for th in threads:
            th.join()
    assert failures == []
    assert versions == {"v0001", "v0002"}
    assert client.post("/v1/admin/models/default/rollback").status_code == 401
    listed = client.get("/v1/admin/models", headers=AUTH).json()
    assert [(v["version"], v["production"]) for v in listed] == [("v0001", True), ("v0002", False)]


def test_pseudonymised_ids_stay_out_of_the_store(world_template, tmp_path):
    template, _ = world_template
    home = tmp_path / "home"
    shutil.copytree(template, home)
    # the template store was written without pseudonyms; a keyed server needs its own store
    for f in home.glob("events.duckdb*"):
        f.unlink()
    settings = make_settings(home, "memory", "x:", pseudonym_key="a-secret-hmac-key")
    t = epoch(T0)
    with TestClient(create_app(settings)) as client:
        client.put(
            "/v1/rooms",
            json={
                "rooms": [{"id": "rp", "host": "hp", "start": t - 60}],
                "shelf": [{"room": "rp", "item": "i0000001", "start": t - 60}],
            },
            headers=AUTH,
        )
        ev = [
            {"event_id": "p1", "ts": t - 5, "user": "alice", "type": "enter", "room": "rp"},
            {
                "event_id": "p2",
                "ts": t - 4,
                "user": "alice",
                "type": "cart",
                "room": "rp",
                "item": "i0000001",
            },
        ]
        assert client.post("/v1/events", json={"events": ev}, headers=AUTH).json()["applied"] == 2
        f = feed(client, "alice", t)
        assert f["user"] == "alice" and f["fallback"] is False and f["rooms"][0]["room"] == "rp"
        services = client.app.state.services
        stored = services.user_key("alice")
        assert stored != "alice" and len(stored) == 32
        with services.store.open() as store:
            users = set(store.training_frame()["user"])
        assert users == {stored}
        assert services.state.user_sequence("alice") == [] and len(services.state.user_sequence(stored)) == 2
        assert client.delete("/v1/users/alice", headers=AUTH).json()["events"] == 2
        assert feed(client, "alice", t)["fallback"] is True
