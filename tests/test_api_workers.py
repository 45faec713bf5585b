"""Two uvicorn workers sharing a Redis state: ``liveshelf serve --workers 2`` as a subprocess.

Writes through one worker must be visible to the next read through either worker
(read-your-writes across processes), and both must give equal answers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from test_api import (  # noqa: F401  (world_template is a fixture)
    ACTIVE_USER,
    KEY,
    REDIS_URL,
    T0,
    clean_prefix,
    epoch,
    iso,
    redis_or_skip,
    world_template,
)

# slow: two workers import the stack and the world is built first (about 30 s on 2 busy cores)
pytestmark = [pytest.mark.redis, pytest.mark.slow]

SERVE = "from liveshelf.cli import main, serve_cmds; main()"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(world_template, tmp_path):  # noqa: F811
    client = redis_or_skip()
    template, frames = world_template
    home = tmp_path / "home"
    shutil.copytree(template, home)
    prefix = f"lstest-workers-{uuid.uuid4().hex[:8]}:"
    port = free_port()
    env = {
        **os.environ,
        "LIVESHELF_API_KEYS": KEY,
        "LIVESHELF_STATE_PREFIX": prefix,
        "LIVESHELF_RATE_PER_S": "1e6",
        "LIVESHELF_RATE_BURST": "1000000",
        "LIVESHELF_HOST_CAP": "10",
        "HF_HUB_OFFLINE": "1",
    }
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVE,
            "serve",
            "--home",
            str(home),
            "--workers",
            "2",
            "--state",
            REDIS_URL,
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"server did not start: {(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield base, frames
    finally:
        with contextlib.suppress(ProcessLookupError):  # the whole group: the parent and its workers
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        clean_prefix(client, prefix)
        client.close()


def call(method: str, url: str, **kw) -> httpx.Response:
    """One request on a fresh connection, so the kernel may hand it to either worker."""
    with httpx.Client(headers={"Connection": "close"}, timeout=30) as c:
        return c.request(method, url, **kw)


def from_both_workers(fn, batch: int = 8, max_calls: int = 240) -> list[tuple[str, object]]:
    """Call ``fn`` (-> (worker, answer)) in parallel batches until both workers have answered."""
    out: list[tuple[str, object]] = []
    with ThreadPoolExecutor(4) as pool:
        while len(out) < max_calls:
            out += list(pool.map(fn, range(batch)))
            if len({w for w, _ in out}) == 2:
                return out
    raise AssertionError(f"{max_calls} requests all went to one worker: {sorted({w for w, _ in out})}")


def test_two_workers_share_one_state(server):
    base, _ = server
    t = epoch(T0) + 300
    params = {"at": iso(t), "k": 50}

    # the same question gets the same answer from both workers
    def ask(_: int) -> tuple[str, dict]:
        r = call("GET", f"{base}/v1/users/{ACTIVE_USER}/feed", params=params)
        assert r.status_code == 200, r.text
        return r.headers["X-Worker"], r.json()

    answers = from_both_workers(ask)
    assert all(a == answers[0][1] for _, a in answers)

    # read-your-writes across workers: post through one, read through the next connection
    rooms = answers[0][1]["rooms"]
    served_by: set[tuple[str, str]] = set()
    i = 0
    while i < 8 or len({w for pair in served_by for w in pair}) < 2:
        assert i < 60, f"read-your-writes checked on one worker only: {served_by}"
        user, room = f"w-viewer-{i}", rooms[i % len(rooms)]
        events = [
            {"event_id": f"{user}-1", "ts": iso(t - 3), "user": user, "type": "enter", "room": room["room"]},
            {"event_id": f"{user}-2", "ts": iso(t - 2), "user": user, "type": "like", "room": room["room"]},
        ]
        w = call("POST", f"{base}/v1/events", json={"events": events}, headers={"X-API-Key": KEY})
        assert w.status_code == 200 and w.json()["applied"] == 2, w.text
        r = call("GET", f"{base}/v1/users/{user}/feed", params=params)
        body = r.json()
        assert body["fallback"] is False
        mine = {x["room"]: x for x in body["rooms"]}[room["room"]]
        assert any(x["source"] == "repeat" and x["host"] == room["host"] for x in mine["reasons"])
        served_by.add((w.headers["X-Worker"], r.headers["X-Worker"]))
        i += 1
    # /metrics on either worker sums over both
    for _ in range(4):
        text = call("GET", f"{base}/metrics").text
        assert f'liveshelf_events_ingested_total{{outcome="accepted"}} {2.0 * i}' in text
        assert (
            f'liveshelf_request_seconds_count{{method="POST",route="/v1/events",status="200"}} {float(i)}'
            in text
        )

    # a room ended through one worker disappears on both
    ended = rooms[0]["room"]
    r = call(
        "PUT",
        f"{base}/v1/rooms",
        json={"actions": [{"op": "end_room", "room": ended, "at": t - 1}]},
        headers={"X-API-Key": KEY},
    )
    assert r.status_code == 200, r.text
    after = from_both_workers(ask)
    assert all(ended not in {x["room"] for x in a["rooms"]} for _, a in after)

    # a catalogue change through one worker is seen by both (out of stock leaves the shelf)
    room = rooms[1]["room"]
    first = call("GET", f"{base}/v1/rooms/{room}/shelf", params=params).json()["items"][0]["item"]
    item = call("GET", f"{base}/v1/items/{first}").json()
    item["attributes"]["stock"] = 0
    assert (
        call("PUT", f"{base}/v1/items", json={"items": [item]}, headers={"X-API-Key": KEY}).status_code == 200
    )

    def shelf(_: int) -> tuple[str, list[str]]:
        r = call("GET", f"{base}/v1/rooms/{room}/shelf", params=params)
        return r.headers["X-Worker"], [i["item"] for i in r.json()["items"]]

    shelves = from_both_workers(shelf)
    assert all(first not in s and s for _, s in shelves)
