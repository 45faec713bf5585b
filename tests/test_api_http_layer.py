"""The lean HTTP layer of the hot routes (issue 13): plain-dict answers equal to the response models'
serialisation, the pure ASGI middleware (metrics, X-Worker, access log, 500 on error), the body
limit's fast path, and the serve command's loop / parser choice.
"""

from __future__ import annotations

import logging
import os
import shutil

import pytest
from fastapi.testclient import TestClient

import test_api as api
from liveshelf.errors import ConfigError
from liveshelf.serving.app import create_app
from liveshelf.serving.experiments import FeedOutAB, ShelfOutAB
from liveshelf.serving.metrics import Metrics
from liveshelf.serving.schemas import FastJSON, ItemRecord, NextItemOut, Reason, reason_dicts
from test_api import ACTIVE_USER, AUTH, T0, iso, live_rooms

world_template = api.world_template


@pytest.fixture
def client(world_template, tmp_path):
    template, frames = world_template
    home = tmp_path / "home"
    shutil.copytree(template, home)
    app = create_app(api.make_settings(home, "memory", "http:", max_body_bytes=20_000))

    @app.get("/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c, frames


def _model_json(model, body: dict) -> dict:
    """What FastAPI answered before: the response model's JSON with ``exclude_none``."""
    return model.model_validate(body).model_dump(mode="json", exclude_none=True)


def test_hot_answers_equal_the_response_models_serialisation(client):
    c, frames = client
    t = T0.timestamp() + 60
    f = c.get(f"/v1/users/{ACTIVE_USER}/feed", params={"at": iso(t), "k": 5})
    assert f.status_code == 200 and f.headers["content-type"] == "application/json"
    body = f.json()
    assert body["rooms"] and body == _model_json(FeedOutAB, body)
    assert list(body) == ["user", "at", "model_version", "fallback", "ranked_by", "rooms"]
    assert "experiment" not in body
    for rec in body["rooms"]:
        assert list(rec) == ["room", "host", "title", "shelf_size", "score", "reasons"]
        assert all(None not in r.values() for r in rec["reasons"])

    room = sorted(live_rooms(frames, t))[0]
    for params in ({"user": ACTIVE_USER}, {}):
        s = c.get(f"/v1/rooms/{room}/shelf", params={"at": iso(t), **params}).json()
        assert s["items"] and s == _model_json(ShelfOutAB, s)
        assert "user" in s  # required nullable: sent as null without a viewer
    n = c.get(f"/v1/rooms/{room}/next-item", params={"at": iso(t)}).json()
    assert n == _model_json(NextItemOut, n) and n["item"] == n["items"][0]


def test_item_record_and_reasons_follow_the_models():
    reasons = reason_dicts([{"source": "cf", "score": 1, "item": None, "room": "r1", "extra": "x"}])
    assert reasons == [{"source": "cf", "score": 1.0, "room": "r1"}]
    rec = ItemRecord("i1", None, 0.5, reasons)
    rec.reasons.append(Reason(source="comments-negative", score=-0.2, room="r1"))  # as the text services do
    assert rec.body() == {
        "item": "i1",
        "score": 0.5,
        "reasons": [reasons[0], {"source": "comments-negative", "score": -0.2, "room": "r1"}],
    }
    rec.title, rec.pitch = "T", {"reason": "r", "points": None}
    assert rec.body()["title"] == "T" and rec.body()["pitch"] == {"reason": "r", "points": None}
    import numpy as np

    assert (
        FastJSON({"a": np.float32(0.5), "b": np.int64(3), "c": float("nan")}).body
        == b'{"a":0.5,"b":3,"c":null}'
    )


def test_middleware_metrics_worker_header_log_and_errors(client, caplog):
    c, _ = client
    with caplog.at_level(logging.INFO, logger="liveshelf.serving"):
        ok = c.get("/v1/users/someone/feed")
        missing = c.get("/v1/rooms/no-such-room/shelf")
        bad = c.get("/v1/users/someone/feed", params={"k": 0})
        err = c.get("/boom")
    assert [r.status_code for r in (ok, missing, bad, err)] == [200, 404, 422, 500]
    for r in (ok, missing, bad):
        assert r.headers["X-Worker"] == str(os.getpid())
    assert err.json() == {"detail": "Internal error; it has been logged."}
    assert "GET /v1/users/{user}/feed 200" in caplog.text and "client=anon:" in caplog.text
    assert "GET /boom 500" in caplog.text and "someone" not in caplog.text
    text = c.get("/metrics").text
    for route, status in (
        ("/v1/users/{user}/feed", 200),
        ("/v1/rooms/{room}/shelf", 404),
        ("/v1/users/{user}/feed", 422),
        ("/boom", 500),
    ):
        assert (
            f'liveshelf_request_seconds_count{{method="GET",route="{route}",status="{status}"}} 1.0' in text
        )


def test_body_limit_passes_declared_bodies_and_refuses_large_ones(client):
    c, _ = client
    ev = {"event_id": "h1", "ts": iso(T0), "user": "u1", "type": "enter", "room": "r0000000"}
    assert c.post("/v1/events", json={"events": [ev]}, headers=AUTH).status_code == 200
    r = c.post(
        "/v1/events",
        content=b"{" + b" " * 30_000 + b"}",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert r.status_code == 413 and "30002 bytes" in r.json()["detail"]


def test_metrics_memo_counts_like_labels():
    m = Metrics()
    for _ in range(3):
        m.observe("GET", "/x", 200, 0.01)
        m.cache_lookup("catalogue", True)
    assert m.latency.labels("GET", "/x", "200")._sum.get() == pytest.approx(0.03)
    assert m.cache.labels("catalogue", "hit")._value.get() == 3


def test_serve_picks_uvloop_and_httptools_when_installed():
    from liveshelf.cli.serve_cmds import _pick

    pytest.importorskip("uvloop")
    pytest.importorskip("httptools")
    assert _pick("--loop", "auto", "uvloop", "asyncio") == "uvloop"
    assert _pick("--http", "auto", "httptools", "h11") == "httptools"
    assert _pick("--http", "h11", "httptools", "h11") == "h11"
    with pytest.raises(ConfigError, match="--loop must be"):
        _pick("--loop", "trio", "uvloop", "asyncio")


def test_load_shedding_refuses_past_the_in_flight_limit_and_keeps_health_open():
    import asyncio

    import httpx

    from liveshelf.serving.security import LoadShedMiddleware

    gate = asyncio.Event()
    refused = []

    async def app(scope, receive, send):
        if scope["path"] == "/slow":
            await gate.wait()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    shed = LoadShedMiddleware(app, limit=1, on_refuse=lambda: refused.append(1))

    async def run():
        transport = httpx.ASGITransport(app=shed)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            slow = asyncio.create_task(client.get("/slow"))
            while shed.in_flight < 1:
                await asyncio.sleep(0.001)
            over = await client.get("/v1/users/u/feed")
            health = await client.get("/healthz")
            gate.set()
            first = await slow
            after = await client.get("/v1/users/u/feed")
        return first, over, health, after

    first, over, health, after = asyncio.run(run())
    assert first.status_code == 200 and health.status_code == 200 and after.status_code == 200
    assert (
        over.status_code == 503 and over.headers["retry-after"] == "1" and "capacity" in over.json()["detail"]
    )
    assert refused == [1] and shed.in_flight == 0
