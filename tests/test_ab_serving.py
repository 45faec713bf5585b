"""A/B experiments in the server: ``liveshelf ab`` commands, hot pick-up and stop, arm-pinned model versions,
the read-only ``/v1/experiments`` routes and outcome logging from posted events."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from liveshelf.cli import app as cli
from liveshelf.experiment.abtest import ExperimentStore

KEY = "serve-key"
AUTH = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def small_home(tmp_path_factory):
    """A small simulated world: itemknn v0001 (production) and pop v0002 under 'default'."""
    from liveshelf.data.ingest import Ingestor
    from liveshelf.data.simulate import simulate
    from liveshelf.data.split import dataset_to_train_data
    from liveshelf.data.store import EventStore
    from liveshelf.models import create_model
    from liveshelf.registry import ModelRegistry

    home = tmp_path_factory.mktemp("abserve")
    world = simulate(n_users=80, n_hosts=8, days=1, seed=1, use_review_corpus=False)
    ds = world.dataset
    t0 = pd.Timestamp("2026-11-01T12:30:00Z")
    with EventStore(home) as store:
        ing = Ingestor(store)
        for kind in ("items", "users", "hosts", "rooms", "shelf"):
            ing.ingest(kind, getattr(ds, kind))
        ing.ingest("events", ds.events[ds.events["ts"] < t0])
        data = dataset_to_train_data(store.to_dataset())
    reg = ModelRegistry(home / "models")
    reg.promote("default", reg.register(create_model("itemknn").fit(data), name="default"))
    reg.register(create_model("pop").fit(data), name="default")
    users = ds.events[(ds.events["ts"] < t0) & (ds.events["type"] != "impression")]["user"].value_counts()
    return home, t0.timestamp(), list(users.index[:30])


def _client(home):
    from liveshelf.serving.app import create_app
    from liveshelf.serving.settings import ServeSettings

    return TestClient(
        create_app(ServeSettings(home=home, api_keys=KEY, rate_per_s=1e5, rate_burst=100_000, text=False))
    )


def _invoke(*args: str):
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.output


def test_cli_create_serve_report_stop(small_home, tmp_path):
    import shutil

    home = tmp_path / "home"
    shutil.copytree(small_home[0], home)
    t0, users = small_home[1], small_home[2]
    with _client(home) as client:
        services = client.app.state.services
        r = client.get(f"/v1/users/{users[0]}/feed", params={"at": t0})
        assert r.status_code == 200 and "experiment" not in r.json()
        code, out = _invoke(
            "ab",
            "create",
            "pinned",
            "--home",
            str(home),
            "--arm",
            "itemknn=default@v0001",
            "--arm",
            "pop=default@v0002",
            "--shares",
            "0.5,0.5",
            "--salt",
            "fixed",
        )
        assert code == 0, out
        assert "pinned running" in out and "default@v0002" in out
        services.experiments.refresh(force=True)  # a server checks within poll_s; the test does not wait
        exp = ExperimentStore(home).get("pinned")
        arms, versions = {}, {}
        for u in users:
            body = client.get(f"/v1/users/{u}/feed", params={"at": t0, "k": 5}).json()
            arm = body["experiment"]["arm"]
            assert body["experiment"]["name"] == "pinned" and arm == exp.assign(u).name
            arms[u], versions[arm] = arm, body["model_version"]
        assert versions == {"itemknn": "v0001", "pop": "v0002"}  # each arm served by its pinned version
        # outcomes: events posted while the experiment runs are logged for attribution
        events = [
            {"event_id": f"ab-{i}", "ts": t0 + 10 + i, "user": u, "type": "enter", "room": "r0000001"}
            for i, u in enumerate(users[:5])
        ]
        events.append(
            {"event_id": "ab-like", "ts": t0 + 30, "user": users[0], "type": "like", "room": "r0000001"}
        )
        assert client.post("/v1/events", json={"events": events}, headers=AUTH).json()["accepted"] == 6
        services.experiments.flush()
        oc = ExperimentStore(home).outcomes("pinned")
        assert [o["type"] for o in oc] == ["enter"] * 5  # likes are not outcomes
        # read-only routes
        listed = client.get("/v1/experiments").json()
        assert listed["serving"] == ["pinned"] and listed["experiments"][0]["status"] == "running"
        detail = client.get("/v1/experiments/pinned").json()
        assert [a["name"] for a in detail["arms"]] == ["itemknn", "pop"] and "salt" not in detail
        a = client.get("/v1/experiments/pinned/assignment", params={"user": users[3]}).json()
        assert a["arm"] == arms[users[3]]
        assert client.get("/v1/experiments/nope").status_code == 404
        # status and report while running
        code, out = _invoke("ab", "status", "--home", str(home))
        assert code == 0 and "pinned" in out and "running" in out
        code, out = _invoke("ab", "report", "pinned", "--home", str(home), "--looks", "5")
        assert code == 0, out
        assert f"{len(users)} users exposed" in out
        folder = ExperimentStore(home).folder("pinned")
        assert (folder / "report.png").read_bytes()[:4] == b"\x89PNG"
        assert "| itemknn |" in (folder / "report.md").read_text()
        # stop: back to production for everyone
        code, out = _invoke("ab", "stop", "pinned", "--home", str(home))
        assert code == 0 and "stopped" in out
        services.experiments.refresh(force=True)
        body = client.get(f"/v1/users/{users[0]}/feed", params={"at": t0}).json()
        assert "experiment" not in body and body["model_version"] == "v0001"
        assert services.experiments.active == []
    row = ExperimentStore(home).list()[0]
    assert row["status"] == "stopped" and "png" in row["reports"]


def test_cli_errors_name_the_fix(small_home, tmp_path):
    home = tmp_path / "home"
    code, out = _invoke("ab", "create", "x", "--home", str(home), "--arm", "a=production")
    assert code == 2 and "at least two arms" in out
    code, out = _invoke(
        "ab",
        "create",
        "x",
        "--home",
        str(home),
        "--arm",
        "a=production",
        "--arm",
        "b=production",
        "--shares",
        "0.5",
    )
    assert code == 2 and "one share per arm" in out
    code, out = _invoke(
        "ab",
        "create",
        "x",
        "--home",
        str(home),
        "--arm",
        "a=production",
        "--arm",
        "b=production",
        "--settings",
        'b={"mmr": 1}',
    )
    assert code == 2 and "keys among" in out
    code, out = _invoke(
        "ab", "create", "x", "--home", str(small_home[0]), "--arm", "a=production", "--arm", "b=default@v0009"
    )
    assert code == 2 and "has no version 'v0009'" in out
    assert not ExperimentStore(small_home[0]).names()
    code, out = _invoke("ab", "report", "nope", "--home", str(home))
    assert code == 2 and "No experiment 'nope'" in out


def test_exposure_logging_does_not_block_requests(tmp_path):
    """append() only buffers; the background thread writes batches, close() flushes the rest."""
    from liveshelf.experiment.abtest import EventLog, read_jsonl

    log = EventLog(tmp_path / "x" / "exposures.jsonl", flush_s=0.05)
    took = []
    for i in range(20_000):
        t = time.perf_counter()
        log.append({"i": i, "recs": ["a", "b"]})
        took.append(time.perf_counter() - t)
    assert sorted(took)[len(took) // 2] < 20e-6, sorted(took)[len(took) // 2]  # microseconds: no disk here
    log.close()
    rows = read_jsonl(tmp_path / "x" / "exposures.jsonl")
    assert [r["i"] for r in rows] == list(range(20_000))
    with open(tmp_path / "x" / "exposures.jsonl", "a") as fh:
        fh.write('{"torn": ')  # a writer killed mid-line
    assert len(read_jsonl(tmp_path / "x" / "exposures.jsonl")) == 20_000
