"""A/B testing: statistics with known answers, A/A false-positive rate under peeking, SRM, bucketing,
and an experiment run end to end through the HTTP API by simulated viewers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from liveshelf.errors import ConfigError, NotFoundError
from liveshelf.experiment.ab_report import analyse, moments, user_table, write_report
from liveshelf.experiment.abtest import Arm, Experiment, ExperimentStore
from liveshelf.experiment.stats import (
    bootstrap_ci,
    bootstrap_diff_ci,
    msprt_lr,
    msprt_path,
    simulate_peeking,
    srm_check,
    two_proportion_ztest,
)

KEY = "ab-key"


# ------------------------------------------------------------------------------------ statistics
def test_ztest_matches_hand_computation():
    z = two_proportion_ztest(120, 1000, 150, 1000)
    pool = 270 / 2000
    se = np.sqrt(pool * (1 - pool) * 2 / 1000)
    assert z.z == pytest.approx(0.03 / se)
    from scipy.stats import norm

    assert z.p_value == pytest.approx(2 * norm.sf(0.03 / se))
    assert two_proportion_ztest(5, 0, 5, 10).p_value == 1.0


def test_bootstrap_ci_covers_the_truth_and_is_seeded():
    rng = np.random.default_rng(0)
    x = rng.binomial(1, 0.3, 2000).astype(float)
    ci = bootstrap_ci(x, n_boot=500, seed=1)
    assert ci.low < 0.3 < ci.high
    assert ci.high - ci.low == pytest.approx(2 * 1.96 * np.sqrt(0.3 * 0.7 / 2000), rel=0.2)
    assert bootstrap_ci(x, n_boot=500, seed=1) == ci
    # a ratio of sums: clicks per exposure
    clicks, shown = rng.poisson(1.0, 500).astype(float), rng.integers(5, 15, 500).astype(float)
    r = bootstrap_ci(clicks, shown, n_boot=300, seed=2)
    assert r.estimate == pytest.approx(clicks.sum() / shown.sum())
    d = bootstrap_diff_ci(x[:1000], x[1000:] + 0.1, n_boot=300, seed=3)
    assert d.low < 0.1 + x[1000:].mean() - x[:1000].mean() < d.high
    with pytest.raises(ConfigError, match="'n_boot' parameter of bootstrap_ci must be an int >= 10"):
        bootstrap_ci(x, n_boot=5)


def test_msprt_matches_johari_formula_for_equal_arms():
    n, sigma2, tau, d = 500, 0.09, 0.02, 0.015
    lr = float(msprt_lr(0.1, sigma2, n, 0.1 + d, sigma2, n, tau))
    v = 2 * sigma2
    expected = np.sqrt(v / (v + n * tau**2)) * np.exp(n**2 * tau**2 * d**2 / (2 * v * (v + n * tau**2)))
    assert lr == pytest.approx(expected)
    assert msprt_path(np.array([1.0, 5.0, 2.0, 40.0])).tolist() == [1.0, 0.2, 0.2, 0.025]


def test_aa_false_positive_rate_under_peeking():
    """A/A x 1000: peeking after every batch of 100 users (1000 looks) keeps the mSPRT near alpha,
    while the naive z-test at every look rejects far more often."""
    r = simulate_peeking(0.1, 0.1, reps=1000, looks=1000, users_per_look=100, tau=0.03, seed=7)
    assert 0.02 <= r.sequential_reject <= 0.08, r
    assert r.naive_reject > 0.3, r  # peeking with a fixed-horizon test: many times alpha
    assert 0.02 <= r.final_reject <= 0.08, r  # one look at the end is fine


def test_sequential_test_has_power():
    r = simulate_peeking(0.10, 0.12, reps=200, looks=100, users_per_look=200, tau=0.02, seed=1)
    assert r.sequential_reject > 0.8, r
    assert r.median_users_to_detect < 20_000


def test_srm_detected_on_a_skewed_split():
    rng = np.random.default_rng(3)
    fair = rng.multinomial(20_000, [0.5, 0.5])
    assert not srm_check(fair, [0.5, 0.5]).mismatch
    skewed = rng.multinomial(20_000, [0.52, 0.48])  # e.g. one arm's exposures lost by a logging bug
    res = srm_check(skewed, [0.5, 0.5])
    assert res.mismatch and res.p_value < 1e-6
    assert not srm_check([6000, 4000], [0.6, 0.4]).mismatch


# ------------------------------------------------------------------------------------ bucketing
def _exp(**kw) -> Experiment:
    arms = kw.pop("arms", [Arm("control", 0.5), Arm("treatment", 0.5)])
    return Experiment("bucket-test", arms=arms, salt="s4lt", **kw).validate()


def test_bucketing_respects_shares_and_is_stable():
    exp = _exp(arms=[Arm("a", 0.2), Arm("b", 0.3), Arm("c", 0.5)])
    users = [f"u{i:07d}" for i in range(30_000)]
    arms = [exp.assign(u).name for u in users]
    counts = pd.Series(arms).value_counts()
    for a, share in (("a", 0.2), ("b", 0.3), ("c", 0.5)):
        assert counts[a] / len(users) == pytest.approx(share, abs=0.012)
    assert not srm_check([counts["a"], counts["b"], counts["c"]], exp.shares).mismatch
    # a share below 1 leaves users outside
    part = _exp(arms=[Arm("a", 0.1), Arm("b", 0.1)])
    outside = sum(part.assign(u) is None for u in users[:5000]) / 5000
    assert outside == pytest.approx(0.8, abs=0.03)
    # another salt reshuffles
    other = Experiment("bucket-test", arms=exp.arms, salt="other").validate()
    assert np.mean([other.assign(u).name == a for u, a in zip(users[:3000], arms, strict=False)]) < 0.6


def test_bucketing_same_in_another_process(tmp_path):
    exp = _exp()
    store = ExperimentStore(tmp_path)
    store.create(exp)
    users = [f"user-{i}" for i in range(300)]
    here = [exp.assign(u).name for u in users]
    code = (
        "import json, sys\nfrom liveshelf.experiment.abtest import ExperimentStore\n"
        f"e = ExperimentStore({str(tmp_path)!r}).get('bucket-test')\n"
        f"print(json.dumps([e.assign(u).name for u in {users!r}]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"},
    )
    assert json.loads(out.stdout) == here


def test_experiment_validation_messages(tmp_path):
    with pytest.raises(ConfigError, match="'arms' parameter of Experiment must be at least two arms"):
        Experiment("x", arms=[Arm("only", 1.0)]).validate()
    with pytest.raises(
        ConfigError, match="'shares' parameter of Experiment must be shares that sum to at most 1"
    ):
        Experiment("x", arms=[Arm("a", 0.7), Arm("b", 0.7)]).validate()
    with pytest.raises(ConfigError, match="'settings' parameter of experiment 'x' arm 'b' must be a dict"):
        Experiment("x", arms=[Arm("a"), Arm("b", settings={"nope": 1})]).validate()
    with pytest.raises(ConfigError, match="'name' parameter of Experiment"):
        Experiment("../etc", arms=[Arm("a"), Arm("b")]).validate()
    store = ExperimentStore(tmp_path)
    with pytest.raises(NotFoundError, match="No experiment 'nope'"):
        store.get("nope")
    store.create(Experiment("x", arms=[Arm("a"), Arm("b")]))
    with pytest.raises(ConfigError, match="exists already"):
        store.create(Experiment("x", arms=[Arm("a"), Arm("b")]))
    store.start("x")
    store.stop("x")
    with pytest.raises(ConfigError, match="does not restart"):
        store.start("x")
    (row,) = store.list()
    assert row["name"] == "x" and row["status"] == "stopped" and row["shares"] == [0.5, 0.5]


def test_attribution_by_user_table():
    """Clicks count only for a prior exposure of the same target, and only after the first exposure."""
    ex = [
        {"ts": 100.0, "user": "u1", "arm": "a", "surface": "feed", "room": None, "recs": ["r1", "r2"]},
        {"ts": 110.0, "user": "u1", "arm": "a", "surface": "shelf", "room": "r1", "recs": ["i1", "i2", "i3"]},
        {"ts": 100.0, "user": "u2", "arm": "b", "surface": "shelf", "room": "r1", "recs": ["i1"]},
    ]
    oc = [
        {"ts": 105.0, "user": "u1", "type": "enter", "room": "r1", "item": None, "value": None},
        {"ts": 111.0, "user": "u1", "type": "click", "room": "r1", "item": "i2", "value": None},
        {"ts": 112.0, "user": "u1", "type": "click", "room": "r1", "item": "i9", "value": None},  # not shown
        {"ts": 113.0, "user": "u1", "type": "cart", "room": "r1", "item": "i2", "value": 9.0},
        {"ts": 114.0, "user": "u1", "type": "purchase", "room": "r1", "item": "i2", "value": 18.0},
        {"ts": 200.0, "user": "u1", "type": "leave", "room": "r1", "item": None, "value": 95.0},
        {"ts": 50.0, "user": "u2", "type": "purchase", "room": "r1", "item": "i1", "value": 5.0},  # before
        {"ts": 9000.0, "user": "u2", "type": "click", "room": "r1", "item": "i1", "value": None},  # too late
        {"ts": 120.0, "user": "u3", "type": "click", "room": "r1", "item": "i1", "value": None},
    ]  # not exposed
    u = user_table(ex, oc, attribution_s=3600).set_index("user")
    assert u.loc["u1", ["exposures", "clicks", "carts", "purchases", "gmv", "watch_s"]].tolist() == [
        5.0,
        2.0,
        1.0,
        1.0,
        18.0,
        95.0,
    ]
    assert u.loc["u2", ["exposures", "clicks", "purchases", "converted"]].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert set(u.index) == {"u1", "u2"}
    est, var, n = moments(u.reset_index(), "ctr")
    assert est == pytest.approx(2 / 6) and n == 2 and var > 0
    assert user_table(ex, oc, until=105.0).set_index("user").loc["u1", "clicks"] == 1.0


# ------------------------------------------------------------------------------------ end to end
def _build_world(home: Path, n_users: int = 800):
    """A 3-day world with 30 hosts; events before t0 ingested, itemknn in production, the oracle registered."""
    from liveshelf.data.simulate import simulate
    from liveshelf.experiment.online_sim import live_window, prepare_home

    world = simulate(n_users=n_users, n_hosts=30, days=3, seed=1, use_review_corpus=False)
    lo, hi = live_window(world, min_rooms=3)
    lo = max(lo, hi - 3 * 3600)
    t0 = lo + 0.3 * (hi - lo)
    prepare_home(home, world, t0)
    return world, t0


def _returning(world, t0: float) -> list[str]:
    """Viewers with behaviour before t0: the ones a ranker can personalise for (the others get trending)."""
    ev = world.dataset.events
    before = ev[(ev["ts"] < pd.Timestamp(t0, unit="s", tz="UTC")) & (ev["type"] != "impression")]
    return sorted(set(before["user"].astype(str)))


@pytest.fixture(scope="module")
def ab_world(tmp_path_factory):
    home = tmp_path_factory.mktemp("abworld")
    world, t0 = _build_world(home)
    return home, world, t0


def _app(home: Path):
    from liveshelf.serving.app import create_app
    from liveshelf.serving.settings import ServeSettings

    return create_app(
        ServeSettings(home=home, api_keys=KEY, rate_per_s=1e5, rate_burst=100_000, host_cap=10, text=False)
    )


def _run_oracle_vs_pop(
    home: Path, world, t0: float, max_users: int, batch: int
) -> tuple[dict, Experiment, object]:
    """Popularity-only ranking against the truth-ranked arm; simulated viewers through the HTTP API;
    the always-valid p-value read after every batch of users until it decides."""
    from liveshelf.experiment.ab_report import sequential_path
    from liveshelf.experiment.online_sim import OnlineSimulator

    exp = Experiment(
        "oracle-vs-pop",
        arms=[
            Arm("popular", 0.5, settings={"weights": {"trending": 1.0}}),
            Arm("oracle", 0.5, model="oracle", version="v0001", settings={"weights": {"sequence": 1.0}}),
        ],
        salt="e2e",
        primary="ctr",
        tau=0.1,
        surfaces=["shelf"],
    )
    store = ExperimentStore(home)
    store.create(exp, start=True)
    decided: dict[str, float] = {"p": 1.0}
    with TestClient(_app(home)) as client:
        services = client.app.state.services
        assert services.experiments.active == ["oracle-vs-pop"]
        sim = OnlineSimulator(world, client, api_key=KEY, feed_k=4, shelf_k=5, seed=0)

        def peek(n_users: int, stats) -> bool:
            services.experiments.flush()
            path = sequential_path(exp, store.exposures(exp.name), store.outcomes(exp.name), looks=1)
            decided["p"] = min(decided["p"], path[-1]["oracle"])
            decided["looked_at"] = n_users
            if decided["p"] <= exp.alpha:
                decided["users"] = n_users
                return True
            return False

        stats = sim.run(
            _returning(world, t0)[:max_users],
            t0,
            visits_per_user=2,
            gap_s=5.0,
            batch_users=batch,
            on_batch=peek,
        )
        services.experiments.flush()
    return decided, exp, stats


def test_ab_end_to_end_detects_the_better_arm(ab_world, tmp_path):
    """Simulated returning viewers through the HTTP API, 20 per batch: the truth-ranked arm is detected as
    better than popularity by the always-valid test within 185 viewers; exposures and outcomes are logged
    and attributed, the oracle arm serves items the viewers truly prefer, the report is written."""
    template, world, t0 = ab_world
    home = tmp_path / "home"
    shutil.copytree(template, home)
    decided, exp, stats = _run_oracle_vs_pop(home, world, t0, max_users=185, batch=20)
    assert "users" in decided, (
        f"not significant after {decided['looked_at']} viewers (p = {decided['p']:.3g})"
    )
    print(
        f"\noracle vs popularity detected after {decided['users']} viewers, always-valid p = {decided['p']:.4f}"
    )
    n = int(decided["users"])
    assert set(stats.arms) == {"-"} and stats.visits == 2 * n  # the feed is not in the test: no arm there
    assert stats.clicks > 20 and stats.purchases > 0
    store = ExperimentStore(home)
    ex, oc = store.exposures(exp.name), store.outcomes(exp.name)
    assert len(oc) >= stats.entered * 2 + stats.clicks  # enter + leave per entered room, every click
    # ranking quality from the ground truth: mean preference of the first shelf item served to each viewer
    first = {a: [] for a in ("popular", "oracle")}
    for r in ex:
        if r["surface"] == "shelf" and r["recs"]:
            first[r["arm"]].append(float(world.truth.preference([r["user"]], [r["recs"][0]])[0]))
    assert min(len(v) for v in first.values()) > 10
    assert np.mean(first["oracle"]) > 1.3 * np.mean(first["popular"]), {
        k: np.mean(v) for k, v in first.items()
    }
    result = analyse(exp, ex, oc, looks=8, n_boot=200)
    assert 0.3 * n < result["users"] <= n and not result["srm"]["mismatch"]  # viewers who entered a room
    assert result["comparisons"]["oracle"]["significant"]
    assert result["comparisons"]["oracle"]["metrics"]["ctr"]["low"] > 0  # bootstrap CI of the lift above 0
    arms = result["arms"]
    assert arms["oracle"]["clicks"] + arms["popular"]["clicks"] >= stats.clicks  # item clicks + room enters
    seq = [r["oracle"] for r in result["sequential"]]
    assert len(seq) == 8 and seq == sorted(seq, reverse=True) and seq[-1] <= exp.alpha  # running minimum
    paths = write_report(result, store.folder(exp.name))
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["markdown"].read_text()
    assert "| oracle |" in md and "Always-valid p-value" in md


def test_exposures_logged_for_every_served_recommendation(ab_world, tmp_path):
    template, world, t0 = ab_world
    home = tmp_path / "home"
    shutil.copytree(template, home)
    store = ExperimentStore(home)
    exp = Experiment("log-test", arms=[Arm("a", 0.5), Arm("b", 0.5, settings={"mmr_lambda": 1.0})], salt="x")
    store.create(exp, start=True)
    users = [str(u) for u in world.truth.user_ids[:40]]
    served: dict[str, list[str]] = {}
    with TestClient(_app(home)) as client:
        for u in users:
            r = client.get(f"/v1/users/{u}/feed", params={"at": t0, "k": 5})
            assert r.status_code == 200
            body = r.json()
            assert body["experiment"] == {"name": "log-test", "arm": exp.assign(u).name}
            served[u] = [x["room"] for x in body["rooms"]]
            if served[u]:
                room = served[u][0]
                s = client.get(f"/v1/rooms/{room}/shelf", params={"at": t0, "k": 6, "user": u}).json()
                assert s["experiment"]["arm"] == exp.assign(u).name
                served[u + "|" + room] = [x["item"] for x in s["items"]]
        anon = client.get(f"/v1/rooms/{served[users[0]][0]}/shelf", params={"at": t0}).json()
        assert "experiment" not in anon  # no viewer: not in the experiment, no exposure
        client.app.state.services.experiments.flush()
    rows = store.exposures("log-test")
    assert len(rows) == len(served)
    logged = {(r["user"] if r["surface"] == "feed" else f"{r['user']}|{r['room']}"): r["recs"] for r in rows}
    assert logged == served
    assert sum(len(v) for v in logged.values()) > 100
    assert {r["arm"] for r in rows} == {"a", "b"}
    assert all(r["arm"] == exp.assign(r["user"]).name for r in rows)


def test_guardrail_breach_and_report_on_synthetic_logs(tmp_path):
    """Treatment clicks more but converts less: the CTR lift is significant, the conversion guardrail breaks."""
    from liveshelf.experiment.abtest import Guardrail

    rng = np.random.default_rng(5)
    exp = Experiment(
        "guard",
        arms=[Arm("a", 0.5), Arm("b", 0.5)],
        salt="g",
        primary="ctr",
        tau=0.05,
        guardrails=[Guardrail("conversion", 0.05)],
    ).validate()
    ex, oc = [], []
    for i in range(4000):
        u = f"u{i}"
        arm = exp.assign(u).name
        t = float(i)
        ex.append({"ts": t, "user": u, "arm": arm, "surface": "shelf", "room": "r1", "recs": ["i1", "i2"]})
        if rng.random() < (0.30 if arm == "b" else 0.20):
            oc.append({"ts": t + 1, "user": u, "type": "click", "room": "r1", "item": "i1", "value": None})
        if rng.random() < (0.03 if arm == "b" else 0.06):
            oc.append({"ts": t + 2, "user": u, "type": "purchase", "room": "r1", "item": "i2", "value": 10.0})
    result = analyse(exp, ex, oc, looks=5, n_boot=200)
    comp = result["comparisons"]["b"]
    assert comp["significant"] and comp["metrics"]["ctr"]["low"] > 0
    assert comp["metrics"]["ctr"]["estimate"] == pytest.approx(0.05, abs=0.015)  # 0.10 vs 0.15 per exposure
    (g,) = comp["guardrails"]
    assert g["breached"] and g["relative"] == pytest.approx(-0.5, abs=0.15)
    assert comp["metrics"]["conversion"]["ztest"]["p_value"] < 1e-3
    md = write_report(result, tmp_path)["markdown"].read_text()
    assert "Guardrail conversion (max drop 5 %): **BREACHED**" in md
