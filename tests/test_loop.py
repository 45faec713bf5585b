"""Continuous training: incremental updates equal refits, the gate, and the loop over arriving windows.

A small simulated world is ingested catalogue first; its events then arrive in windows
(by event time). After each window one loop cycle trains a candidate, evaluates it and
production on the newest window, gates it and promotes or refuses it. Expectations
(window bounds, event counts, parents) are computed from the simulated frames.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from liveshelf.cli import app
from liveshelf.data.dataset import Dataset
from liveshelf.data.ingest import Ingestor
from liveshelf.data.simulate import simulate
from liveshelf.data.split import dataset_to_train_data
from liveshelf.data.store import EventStore
from liveshelf.errors import ConfigError
from liveshelf.experiment.gate import GateConfig, ModelReport, decide
from liveshelf.experiment.loop import ContinuousLoop, LoopConfig, StoreSource, warm_start, window_split
from liveshelf.models import Context, TrainData, create_model
from liveshelf.schema import POSITIVE_TYPES

QUANTILES = (0.5, 0.65, 0.8)  # window bounds in event time: [min, q.5) [q.5, q.65) [q.65, q.8) [q.8, max]


@pytest.fixture(scope="module")
def world():
    return simulate(n_users=200, n_hosts=8, days=1, seed=3, use_review_corpus=False)


@pytest.fixture(scope="module")
def template(world, tmp_path_factory):
    """A store holding the catalogue (items, users, hosts, rooms, shelf) and no events."""
    folder = tmp_path_factory.mktemp("loop-template")
    with EventStore(folder) as store:
        ing = Ingestor(store)
        for kind in ("items", "users", "hosts", "rooms", "shelf"):
            ing.ingest(kind, getattr(world.dataset, kind))
    return folder


@pytest.fixture
def home(template, tmp_path):
    shutil.copy(template / "events.duckdb", tmp_path / "events.duckdb")
    return tmp_path


def windows(world) -> list[pd.DataFrame]:
    ev = world.dataset.events
    bounds = [
        ev["ts"].min(),
        *ev["ts"].quantile(list(QUANTILES)).tolist(),
        ev["ts"].max() + pd.Timedelta("1s"),
    ]
    return [ev[(ev["ts"] >= a) & (ev["ts"] < b)] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def arrive(home, frame: pd.DataFrame) -> None:
    with EventStore(home) as store:
        Ingestor(store).ingest("events", frame)


def positive_before(frame: pd.DataFrame, t: float) -> int:
    ts = frame["ts"].map(pd.Timestamp.timestamp)
    return int(((ts < t) & frame["type"].isin(POSITIVE_TYPES) & frame["item"].notna()).sum())


# ---------------------------------------------------------------------------- incremental updates
def _split_data(world, q: float = 0.7) -> tuple[TrainData, TrainData, TrainData]:
    ds = world.dataset
    ev = ds.events
    cut = ev["ts"].quantile(q)

    def sub(mask) -> TrainData:
        return dataset_to_train_data(
            Dataset(name="w", events=ev[mask].reset_index(drop=True), items=ds.items)
        )

    return sub(ev["ts"] < cut), sub(ev["ts"] >= cut), dataset_to_train_data(ds)


def _by_id(model, full: TrainData, contexts: list[Context]) -> np.ndarray:
    """The model's scores for ``full``'s contexts, in ``full``'s item order (vocabularies matched by id)."""
    pos = {str(x): i for i, x in enumerate(model.item_ids_)}
    perm = np.array([pos[str(x)] for x in full.item_ids])
    users = {str(x): i for i, x in enumerate(model.user_ids_)}
    mapped = [
        Context(items=perm[c.items], ts=c.ts, types=c.types, user=c.user, user_index=users[c.user])
        for c in contexts
    ]
    return model.score_batch(mapped)[:, perm]


@pytest.mark.parametrize("name", ["pop", "repeat", "trending", "itemknn"])
def test_update_equals_refit_on_all_events(world, name):
    old, new, full = _split_data(world)
    assert new.n_users > 0 and old.n_users < full.n_users  # the update brings new users
    updated = create_model(name).fit(old).update(new)
    refit = create_model(name).fit(full)
    contexts = [full.context(u) for u in range(0, full.n_users, 3)]
    np.testing.assert_array_equal(_by_id(updated, full, contexts), refit.score_batch(contexts))
    if name == "itemknn":  # the co-occurrence state itself is exact
        assert abs(updated.similarity_ - refit.similarity_).max() == 0


def test_update_appends_new_ids_and_keeps_old_indices():
    old = TrainData(
        item_ids=np.array(["a", "b"], dtype=object),
        user_ids=np.array(["u"], dtype=object),
        sequences=[np.array([0, 1, 1])],
    )
    new = TrainData(
        item_ids=np.array(["c", "b"], dtype=object),
        user_ids=np.array(["v", "u"], dtype=object),
        sequences=[np.array([0, 0]), np.array([1])],
    )
    model = create_model("pop", use_event_weights=False).fit(old).update(new)
    assert list(model.item_ids_) == ["a", "b", "c"] and list(model.user_ids_) == ["u", "v"]
    np.testing.assert_array_equal(model.counts_, [1, 3, 2])
    knn = create_model("itemknn", use_event_weights=False).fit(old).update(new)
    assert knn.train_.shape == (2, 3) and knn.cooc_.shape == (3, 3)
    bpr = create_model("bpr", factors=4, iterations=5, use_event_weights=False).fit(old)
    learned = bpr.item_factors_.copy()
    bpr.update(new)
    assert bpr.user_factors_.shape == (2, 5) and bpr.item_factors_.shape == (3, 5)  # F + the bias column
    np.testing.assert_array_equal(bpr.item_factors_[:2], learned)  # bpr keeps learned item vectors
    np.testing.assert_array_equal(bpr.item_factors_[2], 0.0)  # a new item starts neutral
    assert np.isfinite(bpr.score_batch([Context(items=np.array([2]), user="v", user_index=1)])).all()
    with pytest.raises(ConfigError, match=r"'delta' parameter of pop.update must be a TrainData"):
        model.update([1, 2])


def test_itemknn_update_survives_save_load(world, tmp_path):
    old, new, full = _split_data(world)
    create_model("itemknn").fit(old).save(tmp_path / "m")
    from liveshelf.models import load_model

    updated = load_model(tmp_path / "m").update(new)
    contexts = [full.context(u) for u in range(0, full.n_users, 5)]
    np.testing.assert_array_equal(
        _by_id(updated, full, contexts), create_model("itemknn").fit(full).score_batch(contexts)
    )
    plain = create_model("itemknn", incremental=False).fit(old)
    with pytest.raises(Exception, match="incremental=True"):
        plain.update(new)


def test_als_fold_in_recovers_the_learned_user_factor(world):
    full = _split_data(world)[2]
    model = create_model("als", factors=16, iterations=15).fit(full)
    longest = np.argsort([len(s) for s in full.sequences])[::-1][:3]
    for u in longest:  # the same events under a new user id: the update folds them in
        clone = TrainData(
            item_ids=full.item_ids,
            user_ids=np.array([f"clone-{u}"], dtype=object),
            sequences=[full.sequences[u]],
            timestamps=[full.timestamps[u]],
            types=[full.types[u]],
        )
        updated = create_model("als", factors=16, iterations=15).fit(full).update(clone)
        got, want = updated.user_factors_[-1], model.user_factors_[u]
        assert np.dot(got, want) / (np.linalg.norm(got) * np.linalg.norm(want)) > 0.999
        assert np.linalg.norm(got - want) / np.linalg.norm(want) < 0.05
        assert updated.user_factors_.shape[0] == full.n_users + 1


# ---------------------------------------------------------------------------- the gate
def test_gate_margin_guardrails_and_waiver():
    prod = ModelReport(metrics={"ndcg@10": 0.30, "coverage@10": 0.40}, p95_ms=2.0)
    ok = ModelReport(metrics={"ndcg@10": 0.295, "coverage@10": 0.35}, p95_ms=4.0)
    assert decide(ok, prod, GateConfig(margin=0.01)).promote
    no = decide(ok, prod, GateConfig(margin=0.001))
    assert not no.promote and no.reasons[0].startswith("ndcg@10 0.2950 is worse than production's 0.3000")
    assert decide(ok, prod, GateConfig(margin=0.02, relative=True)).promote  # 0.295 >= 0.30 * 0.98
    assert not decide(ok, prod, GateConfig(margin=0.01, relative=True)).promote
    narrow = ModelReport(metrics={"ndcg@10": 0.5, "coverage@10": 0.1}, p95_ms=1.0)
    assert (
        "coverage@10 0.1000 is below 0.5 x production's 0.4000" in decide(narrow, prod, GateConfig()).reasons
    )
    slow = ModelReport(metrics={"ndcg@10": 0.5, "coverage@10": 0.5}, p95_ms=9.0)
    assert "p95 scoring latency 9.00 ms" in decide(slow, prod, GateConfig(latency_factor=3.0)).reasons[0]
    assert decide(
        slow, prod, GateConfig(latency_factor=3.0, latency_floor_ms=10.0)
    ).promote  # under the floor
    waived = decide(ok, prod, GateConfig(margin=0.0), waive_metric="production is stale")
    assert waived.promote and waived.checks["ndcg@10"]["waived"] == "production is stale"
    broken = decide(ModelReport(error="OSError: truncated file"), prod, GateConfig())
    assert not broken.promote and "could not be saved or loaded" in broken.reasons[0]
    assert decide(ok, None, GateConfig()).checks["ndcg@10"]["note"] == "no production version to compare with"
    with pytest.raises(ConfigError, match=r"'margin' parameter of GateConfig must be a number >= 0"):
        GateConfig(margin=-1).validate()


# ---------------------------------------------------------------------------- the loop
def test_three_windows_promote_with_lineage_then_refuse_broken_and_roll_back(world, home):
    parts = windows(world)
    arrive(home, parts[0])
    loop = ContinuousLoop(home, LoopConfig(name="default", model="itemknn", eval_fraction=0.2))
    reg = loop.registry
    ev = world.dataset.events
    results = []
    for k in range(3):
        if k:
            arrive(home, parts[k])
        head = StoreSource(home).head()
        r = loop.run_once(trigger=f"window {k + 1}", force=False)
        results.append(r)
        assert r.decision == "promoted", r.reasons
        assert reg.versions("default") == [f"v{i:04d}" for i in range(1, k + 2)]
        assert reg.production("default").version == r.version == f"v{k + 1:04d}"
        lineage = reg.info("default", r.version).lineage
        arrived = pd.concat(parts[: k + 1])
        # the window: trained before t_cut, evaluated from t_cut to the newest event
        if k == 0:
            ts = arrived["ts"].map(pd.Timestamp.timestamp)
            assert lineage["data_end_ts"] == pytest.approx(float(np.quantile(ts, 0.8)))
            assert lineage["parent"] is None and r.mode == "refit"
        else:  # the cut is where the previous cycle's data ended
            assert lineage["data_end_ts"] == pytest.approx(results[k - 1].window["watermark"]["ts"])
            assert lineage["parent"] == f"v{k:04d}" and r.mode == "update"
        assert lineage["events"] == positive_before(arrived, lineage["data_end_ts"])
        assert lineage["eval_window"]["eval_end"] == pd.Timestamp(arrived["ts"].max()).isoformat()
        assert lineage["watermark"] == head.as_dict() and head.events == len(arrived)
        assert lineage["trigger"] == f"window {k + 1}" and lineage["gate"]["decision"] == "promoted"
        assert lineage["git_commit"] is None or len(lineage["git_commit"]) == 40
        assert r.metrics["ndcg@10"] > 0.05 and r.window["cases"] >= 20
    # the incremental candidate of window 3 equals a refit on the same training window
    split, _, _ = window_split(
        StoreSource(home).dataset(StoreSource(home).head()), results[2].window["t_cut"]
    )
    refit = create_model("itemknn").fit(split.train)
    prod = reg.load("default")
    assert abs(prod.similarity_ - refit.similarity_).max() < 1e-6
    # nothing new: no cycle
    assert loop.run_once(force=False) is None

    # a broken candidate (constant scores) is refused with reasons, production unchanged
    constant = create_model("pop").fit(split.train)
    constant.counts_ = np.ones_like(constant.counts_)
    r = loop.run_once(trigger="manual", candidate=constant)
    assert r.decision == "refused" and r.version == "v0004" and reg.production("default").version == "v0003"
    assert any(x.startswith("ndcg@10") for x in r.reasons) and any(
        x.startswith("coverage@10") for x in r.reasons
    )
    assert reg.info("default", "v0004").lineage["gate"]["decision"] == "refused"
    # a corrupted one (NaN scores) too
    nan = create_model("pop").fit(split.train)
    nan.counts_ = np.full_like(nan.counts_, np.nan)
    r = loop.run_once(trigger="manual", candidate=nan)
    assert r.decision == "refused" and "non-finite scores" in r.reasons[0]
    # one that cannot even be saved (never fitted) is refused and not registered
    r = loop.run_once(trigger="manual", candidate=create_model("itemknn"))
    assert r.decision == "refused" and r.version is None and reg.versions("default")[-1] == "v0005"
    assert r.reasons[0].startswith("the candidate could not be saved or loaded: NotFittedError")
    log = [json.loads(x) for x in (home / "loop" / "default" / "decisions.jsonl").read_text().splitlines()]
    assert [x["decision"] for x in log] == ["promoted"] * 3 + ["refused"] * 3
    assert log[3]["reasons"] == loop.decisions()[3]["reasons"] and log[3]["production"] == "v0003"

    # rollback (the CLI) restores v0002; the next cycle builds on it
    out = CliRunner().invoke(app, ["models", "rollback", "--home", str(home), "--name", "default"])
    assert out.exit_code == 0, out.output
    assert reg.production("default").version == "v0002"
    arrive(home, parts[3])
    r = loop.run_once(trigger="window 4", force=False)
    assert r.production == "v0002" and r.mode == "update"
    lineage = reg.info("default", r.version).lineage
    assert lineage["parent"] == "v0002" and r.decision == "promoted"
    assert reg.history("default")["stack"] == ["v0001", "v0002", r.version]
    assert len(ev) == StoreSource(home).head().events


def test_cli_run_once_and_status(world, home):
    arrive(home, windows(world)[0])
    runner = CliRunner()
    out = runner.invoke(app, ["loop", "run", "--home", str(home), "--model", "pop", "--once"])
    assert out.exit_code == 0, out.output
    assert "promoted" in out.output and "v0001" in out.output
    out = runner.invoke(app, ["loop", "status", "--home", str(home)])
    assert out.exit_code == 0, out.output
    assert "production: v0001" in out.output and "pending: 0" in out.output
    out = runner.invoke(app, ["loop", "run", "--home", str(home), "--model", "nope", "--once"])
    assert out.exit_code == 2 and "Unknown model 'nope'" in out.output


def test_run_polls_until_enough_events(world, home):
    parts = windows(world)
    arrive(home, parts[0])
    loop = ContinuousLoop(home, LoopConfig(model="pop", every_events=len(parts[1])))
    sleeps = []

    def sleep(s: float) -> None:  # new events arrive while the loop waits
        sleeps.append(s)
        if len(sleeps) == 1:
            arrive(home, parts[1])

    results = loop.run(max_cycles=2, poll_s=0.0, sleep=sleep)
    assert [r.trigger for r in results] == [f"events>={len(parts[1])}"] * 2
    assert len(sleeps) == 1 and results[1].mode == "update"


def test_sasrec_warm_start_copies_weights_by_item_id():
    torch = pytest.importorskip("torch")
    seqs = [np.array([0, 1, 2, 1, 0]), np.array([2, 1, 0, 2])]
    data = TrainData(
        item_ids=np.array(["a", "b", "c"], dtype=object),
        user_ids=np.array(["u", "v"], dtype=object),
        sequences=seqs,
    )
    parent = create_model("sasrec", hidden=8, n_layers=1, n_heads=1, max_len=5, epochs=1).fit(data)
    child = create_model("sasrec", hidden=8, n_layers=1, n_heads=1, max_len=5, epochs=1)
    child.item_ids_ = np.array(["c", "d", "a", "b"], dtype=object)  # reordered, one new item
    assert warm_start(child, parent)
    net = child._warm_started(child._make_net(4, child._config()))  # what the next fit starts from
    old, new = parent.net_.item_emb.weight, net.item_emb.weight
    for j, i in ((0, 2), (2, 0), (3, 1)):  # child row j+1 holds parent item i's row i+1
        torch.testing.assert_close(new[j + 1], old[i + 1])
    torch.testing.assert_close(net.pos_emb.weight, parent.net_.pos_emb.weight)
    assert not warm_start(create_model("pop"), parent)


def test_sasrec_loop_fine_tunes_from_production(world, home):
    parts = windows(world)
    arrive(home, parts[0])
    params = {"hidden": 16, "n_layers": 1, "n_heads": 1, "max_len": 20, "epochs": 3, "n_threads": 1}
    loop = ContinuousLoop(
        home, LoopConfig(model="sasrec", params=params, finetune_epochs=1, gate=GateConfig(margin=1.0))
    )
    first = loop.run_once(trigger="window 1")
    assert first.mode == "refit" and first.decision == "promoted"
    assert loop.registry.info("default", "v0001").lineage["params"]["epochs"] == 3
    arrive(home, parts[1])
    second = loop.run_once(trigger="window 2")
    lineage = loop.registry.info("default", second.version).lineage
    assert second.mode == "finetune" and lineage["parent"] == "v0001" and lineage["params"]["epochs"] == 1
    assert second.decision == "promoted" and second.metrics["ndcg@10"] > 0
