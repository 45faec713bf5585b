"""`liveshelf demo` runs the whole first job: simulate -> ingest -> store summary -> live evaluation."""

import json

from typer.testing import CliRunner

from liveshelf.cli import app


def test_demo_runs_end_to_end_on_a_small_world(tmp_path):
    home = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--home", str(home), "--users", "300", "--hosts", "12",
                                      "--days", "1", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "event store" in result.output and "live protocol" in result.output
    assert (home / "events.duckdb").exists()
    results = json.loads((home / "evaluation" / "results.json").read_text())
    assert results["protocol"] == "live"
    assert set(results["models"]) == {"pop", "repeat", "itemknn"}
    for res in results["models"].values():
        assert 0.0 <= res["metrics"]["ndcg@10"] <= 1.0
    # the store holds exactly what the simulator wrote: nothing rejected
    import pandas as pd

    events = pd.read_parquet(home / "world" / "events.parquet")
    assert f"{len(events):,}" in result.output
