"""``liveshelf evaluate`` end to end: results.json schema, report, plots, errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from liveshelf.cli import app

runner = CliRunner()

LOO_METRICS = {f"{m}@{k}" for m in ("recall", "ndcg", "mrr") for k in (10, 50)}
BEYOND = {"coverage@10", "novelty@10", "diversity@10", "gini@10", "tail_share@10"}


def _split_names(names: set[str]) -> set[str]:
    return {f"{n}/{s}" for n in names for s in ("new", "repeat")}


def _check_schema(res: dict, models: list[str], accuracy: set[str]) -> None:
    assert {"dataset", "protocol", "models"} <= set(res)
    assert list(res["models"]) == models
    for name in models:
        entry = res["models"][name]
        assert set(entry) == {"metrics", "fit_seconds", "params"}
        assert isinstance(entry["fit_seconds"], float) and entry["fit_seconds"] >= 0
        assert isinstance(entry["params"], dict)
        m = entry["metrics"]
        assert set(m) == accuracy | _split_names(accuracy) | BEYOND
        for key in accuracy | {"coverage@10", "novelty@10", "gini@10", "tail_share@10"}:
            assert isinstance(m[key], float) and np.isfinite(m[key]), key
        for key in accuracy:
            assert 0.0 <= m[key] <= 1.0
            if key.startswith(("ndcg", "mrr")):
                assert m[key] <= m[key.replace(key.split("@")[0], "recall")] + 1e-12


def _pop_recall10(shared_data) -> float:
    """Independent recall@10 of popularity under LOO (pessimistic ties), from the raw files."""
    import pandas as pd

    test = pd.read_csv(shared_data / "amazon-scientific-small" / "Scientific.test.inter", sep="\t", dtype=str)
    seqs = [p.split(" ") + [t] for p, t in zip(test.iloc[:, 1], test.iloc[:, 2], strict=True)]
    counts: dict[str, int] = {}
    for s in seqs:
        for it in s[:-2]:
            counts[it] = counts.get(it, 0) + 1
    n_items = len(
        (shared_data / "amazon-scientific-small" / "Scientific.item2index").read_text().splitlines()
    )
    values = np.array(sorted(counts.values(), reverse=True) + [0] * (n_items - len(counts)))
    hits = 0
    for s in seqs:
        c = counts.get(s[-1], 0)
        rank = int((values > c).sum() + (values == c).sum() - 1)
        hits += rank < 10
    return hits / len(seqs)


def test_evaluate_loo_end_to_end(shared_data, tmp_path):
    out = tmp_path / "res"
    spec = f"unisrec:{shared_data / 'amazon-scientific-small'}"
    r = runner.invoke(
        app,
        [
            "evaluate",
            "--data",
            spec,
            "--model",
            "pop,repeat",
            "--out",
            str(out),
            "--seed",
            "3",
            "--param",
            "repeat.decay=0.8",
        ],
    )
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    _check_schema(res, ["pop", "repeat"], LOO_METRICS)
    assert res["protocol"] == "loo" and "amazon-scientific-small" in res["dataset"]
    assert res["mask_history"] is False and res["seed"] == 3
    assert res["split"]["cases"]["all"] == 2928
    assert res["models"]["repeat"]["params"]["decay"] == 0.8
    pop = res["models"]["pop"]["metrics"]
    assert pop["recall@10"] == pytest.approx(_pop_recall10(shared_data), abs=1e-12)
    assert pop["coverage@10"] == pytest.approx(10 / 1585)  # the same ten items for everyone
    # repeat recommends what the user already saw: perfect on repeat targets at @50
    assert res["models"]["repeat"]["metrics"]["recall@50/repeat"] == 1.0
    sig = res["significance"]["models"]["repeat"]["ndcg@10"]
    assert sig["ci_low"] <= sig["mean_diff"] <= sig["ci_high"]
    report = (out / "report.md").read_text()
    for png in re.findall(r"\]\(([^)]+\.png)\)", report):
        assert (out / png).stat().st_size > 1000
    assert {"metrics.png", "ndcg_by_history.png"} <= {p.name for p in out.glob("*.png")}
    assert "| pop |" in report and "Paired tests against `pop`" in report
    assert "ndcg@10" in r.output

    masked = tmp_path / "masked"
    r = runner.invoke(
        app, ["evaluate", "--data", spec, "--model", "repeat", "--out", str(masked), "--mask-history"]
    )
    assert r.exit_code == 0, r.output
    res_m = json.loads((masked / "results.json").read_text())
    assert res_m["mask_history"] is True
    assert res_m["models"]["repeat"]["metrics"]["recall@50/repeat"] == 0.0  # repeats can no longer be hit


def test_evaluate_live_from_a_store(tmp_path):
    from liveshelf.data.formats.twitch import read_twitch, write_synthetic_twitch_log
    from liveshelf.data.store import EventStore

    ds = read_twitch(
        write_synthetic_twitch_log(tmp_path / "log.csv", n_users=150, n_streamers=25, n_steps=432, seed=1)
    )
    home = tmp_path / "home"
    with EventStore(home) as store:
        store.upsert("rooms", ds.rooms)
        store.upsert("hosts", ds.hosts)
        store.insert_events(ds.events)
    out = tmp_path / "live"
    r = runner.invoke(
        app, ["evaluate", "--data", f"store:{home}", "--model", "pop,repeat", "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert res["protocol"] == "live"
    live_metrics = {f"{m}@{k}" for m in ("recall", "ndcg", "mrr") for k in (1, 5, 10, 50)}
    _check_schema(res, ["pop", "repeat"], live_metrics)
    cases = res["split"]["cases"]
    assert cases["all"] == cases["new"] + cases["repeat"] and cases["repeat"] > 0
    assert res["split"]["targets_not_available"] == 0
    # candidates are the few live hosts: recall@10 is near 1, @1 is not
    m = res["models"]["repeat"]["metrics"]
    assert m["recall@1"] < m["recall@5"] <= m["recall@10"]
    assert m["recall@1/repeat"] > m["recall@1/new"]
    assert (out / "report.md").exists()


def test_evaluate_errors(tmp_path):
    r = runner.invoke(app, ["evaluate", "--data", "nocolon", "--model", "pop"])
    assert r.exit_code == 2
    assert "must be FORMAT:PATH" in r.output
    r = runner.invoke(app, ["evaluate", "--data", "unisrec:/nowhere", "--model", "nosuchmodel"])
    assert r.exit_code == 2
    assert "Unknown model 'nosuchmodel'" in r.output
    r = runner.invoke(app, ["evaluate", "--data", "unisrec:/x", "--model", "pop", "--param", "als.factors=3"])
    assert r.exit_code == 2
    assert "not in --model" in r.output
    r = runner.invoke(app, ["evaluate", "--data", f"store:{tmp_path / 'absent'}", "--model", "pop"])
    assert r.exit_code == 2
    assert "does not exist" in r.output


def test_live_shelf_items_on_a_simulated_world(tmp_path):
    from liveshelf.data.simulate import simulate
    from liveshelf.evaluation.runner import run

    ds = simulate(n_users=200, n_hosts=12, days=1, seed=2).dataset
    res = run(ds, ["pop", "repeat"], out=tmp_path, target="item", progress=False)
    assert res["protocol"] == "live" and res["split"]["target"] == "item"
    assert res["split"]["targets_not_available"] == 0
    # candidates are one room's shelf: far fewer than the catalogue
    assert res["split"]["mean_candidates"] < res["split"]["n_items"] / 5
    m = res["models"]["pop"]["metrics"]
    assert m["recall@1"] <= m["recall@5"] <= m["recall@10"] < 1.0
    assert m["recall@50"] == 1.0  # every target is on its room's shelf, and shelves are short
    assert json.loads((tmp_path / "results.json").read_text())["split"]["target"] == "item"
    r = runner.invoke(app, ["evaluate", "--data", "unisrec:/nowhere", "--model", "pop", "--target", "room"])
    assert r.exit_code == 2
