"""Experiment tracking in a real MLflow sqlite store, read back through the MLflow client."""

from __future__ import annotations

import json
import sys

import mlflow.tracking as mlflow_tracking  # a dev dependency: the tests fail, not skip, without it
import pytest
from typer.testing import CliRunner

from liveshelf.cli import app
from liveshelf.core.tracking import ENV, metric_key, resolve_uri, track_run
from liveshelf.errors import ConfigError


def test_evaluate_logs_params_metrics_per_epoch_and_artifacts(shared_data, tmp_path):
    db = tmp_path / "mlflow.db"
    out = tmp_path / "eval"
    res = CliRunner().invoke(
        app,
        [
            "evaluate", "--data", f"unisrec:{shared_data / 'amazon-scientific-small'}", "--model", "pop,sasrec",
            "--param", "sasrec.hidden=16", "--param", "sasrec.n_layers=1", "--param", "sasrec.epochs=2",
            "--param", "sasrec.max_len=20", "--out", str(out), "--tracking-uri", f"sqlite:///{db}",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    client = mlflow_tracking.MlflowClient(f"sqlite:///{db}")
    run = client.get_run(results["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "liveshelf-evaluate"
    p = run.data.params
    assert p["models"] == "pop,sasrec" and p["protocol"] == "loo" and p["sasrec.hidden"] == "16"
    for model in ("pop", "sasrec"):
        for metric in ("ndcg@10", "recall@10"):
            logged = run.data.metrics[f"{model}.{metric_key(metric)}"]
            assert logged == pytest.approx(results["models"][model]["metrics"][metric])
    losses = client.get_metric_history(run.info.run_id, "sasrec.epoch/loss")
    assert [m.step for m in losses] == [1, 2]  # one point per epoch
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"results.json", "report.md"} <= names
    assert any(n.endswith(".png") for n in names)
    # a local store keeps its artifacts beside the sqlite file, not in the working directory
    assert (
        tmp_path / "mlartifacts" / "liveshelf-evaluate" / run.info.run_id / "artifacts" / "results.json"
    ).is_file()


def test_a_loop_cycle_is_one_run_and_the_registered_version_points_to_it(tmp_path):
    from liveshelf.data.ingest import Ingestor
    from liveshelf.data.simulate import simulate
    from liveshelf.data.store import EventStore
    from liveshelf.experiment.loop import ContinuousLoop, LoopConfig

    world = simulate(n_users=120, n_hosts=6, days=1, seed=3, use_review_corpus=False)
    home = tmp_path / "home"
    with EventStore(home) as store:
        ing = Ingestor(store)
        for kind in ("items", "users", "hosts", "rooms", "shelf", "events"):
            ing.ingest(kind, getattr(world.dataset, kind))
    db = tmp_path / "mlflow.db"
    loop = ContinuousLoop(home, LoopConfig(model="pop"), tracking_uri=f"sqlite:///{db}")
    result = loop.run_once()
    assert result is not None and result.version == "v0001" and result.mlflow_run_id
    info = loop.registry.info("default", "v0001")
    assert info.lineage["mlflow_run_id"] == result.mlflow_run_id
    client = mlflow_tracking.MlflowClient(f"sqlite:///{db}")
    run = client.get_run(result.mlflow_run_id)
    assert run.data.tags["decision"] == result.decision and run.data.params["model"] == "pop"
    assert run.data.tags["data.train_events"] == str(result.window["train_events"])  # data lineage
    assert run.data.metrics["candidate.ndcg_at_10"] == pytest.approx(result.metrics["ndcg@10"])
    assert "cycle.json" in {a.path for a in client.list_artifacts(run.info.run_id)}
    # nothing new and not forced: no cycle, and no empty run left behind
    assert loop.run_once(force=False) is None
    exp = client.get_experiment_by_name("liveshelf-loop")
    assert len(client.search_runs([exp.experiment_id])) == 1


def test_tracking_is_off_unless_asked_and_default_means_the_home_store(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert resolve_uri(None) is None
    with track_run("evaluate", params={"a": 1}) as tracker:
        tracker.log_metrics({"x": 1.0})  # a no-op, not an error
        assert not tracker.active and tracker.lineage() == {}
    assert resolve_uri("default", home=tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv(ENV, "default")
    assert resolve_uri(None, home=tmp_path).endswith("mlflow.db")
    monkeypatch.setenv(ENV, "off")
    assert resolve_uri(None) is None


def test_a_failing_command_marks_its_run_failed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(RuntimeError), track_run("evaluate", tracking_uri=uri) as tracker:
        run_id = tracker.run_id
        raise RuntimeError("boom")
    assert mlflow_tracking.MlflowClient(uri).get_run(run_id).info.status == "FAILED"


def test_tracking_without_mlflow_installed_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with (
        pytest.raises(ConfigError, match=r"pip install 'liveshelf\[tracking\]'"),
        track_run("evaluate", tracking_uri=f"sqlite:///{tmp_path / 'x.db'}"),
    ):
        pass


def test_metric_names_become_mlflow_safe():
    assert metric_key("ndcg@10") == "ndcg_at_10"
    assert metric_key("room/ndcg@5.hand-blend") == "room/ndcg_at_5.hand-blend"


def test_an_unusable_store_never_fails_the_command(capsys):
    with track_run(
        "evaluate", tracking_uri="sqlite:////proc/no-such-dir/mlflow.db", params={"a": 1}
    ) as tracker:
        tracker.log_metrics({"ndcg@10": 0.1})
        assert not tracker.active and tracker.lineage() == {}
    assert "experiment tracking stopped for this run" in capsys.readouterr().err
