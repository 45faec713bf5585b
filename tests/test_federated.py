"""Federated training with Flower: partitions, client-level DP accounting, FedProx, and real federations.

The federations run Flower's simulation engine on Ray with 3 clients x 2 rounds on Amazon
Scientific's small variant (2,928 users), a small SASRec; the partitions, privacy and weight
exchange are also tested on their own.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from liveshelf.cli import app
from liveshelf.errors import ConfigError
from liveshelf.federated.client import ProximalStrategy
from liveshelf.federated.clientdata import (
    catalogue_of,
    read_client,
    subset_users,
    write_catalogue,
    write_client,
)
from liveshelf.federated.partition import partition_users
from liveshelf.federated.privacy import epsilon_spent, noise_for_epsilon
from liveshelf.federated.run import FederatedConfig
from liveshelf.models.base import TrainData
from liveshelf.models.sasrec import SASRec

SMALL = {"hidden": 16, "n_layers": 1, "max_len": 20, "n_threads": 1}


def _toy(n_users: int = 60, n_items: int = 40, seed: int = 0, cats: bool = True) -> TrainData:
    rng = np.random.default_rng(seed)
    category = np.arange(n_items) % 4  # 4 categories
    seqs = []
    for u in range(n_users):
        c = u % 4  # user u mostly buys category u % 4
        pool = np.flatnonzero(category == c)
        seqs.append(rng.choice(pool, size=int(rng.integers(3, 9))))
    return TrainData(
        item_ids=np.array([f"i{i}" for i in range(n_items)], dtype=object),
        user_ids=np.array([f"u{u}" for u in range(n_users)], dtype=object),
        sequences=seqs,
        valid_targets=np.array([int(s[-1]) for s in seqs]),
        item_text=[
            f"{('filament spool', 'lab glove', 'drill bit', 'duct tape')[c]} model {i}"
            for i, c in enumerate(category)
        ],
        item_category=category if cats else None,
    )


# ------------------------------------------------------------------------------- partitions
def test_iid_partition_deals_every_active_user_once_in_equal_shares():
    data = _toy()
    data.sequences[5] = np.array([], dtype=np.int64)  # no next-item target to train on: nobody's
    data.sequences[6] = data.sequences[6][:1]
    part = partition_users(data, "iid", 4, seed=1)
    users = np.concatenate(part.clients)
    assert sorted(users.tolist()) == [u for u in range(60) if u not in (5, 6)]
    assert max(part.sizes()) - min(part.sizes()) <= 1
    assert partition_users(data, "iid", 4, seed=1).sizes() == part.sizes()  # seeded


def test_category_partition_keeps_each_category_on_one_client():
    data = _toy()
    part = partition_users(data, "category", 2, seed=0)
    assert part.info["category_source"] == "item catalogue"
    for users in part.clients:  # every user of a client shares categories with no other client
        cats = {int(u) % 4 for u in users}
        others = {int(u) % 4 for c in part.clients if c is not users for u in c}
        assert not cats & others
    assert sum(part.sizes()) == 60


def test_category_partition_derives_categories_from_item_text_when_the_data_has_none():
    data = _toy(cats=False)
    part = partition_users(data, "category", 2, seed=0)
    assert part.info["category_source"].startswith("item text clusters")
    assert sum(part.sizes()) == 60 and min(part.sizes()) > 0


def test_user_region_partition_groups_users_by_their_profile_region():
    data = _toy()
    regions = {f"u{u}": ("north" if u < 20 else "south" if u < 45 else "west") for u in range(60)}
    part = partition_users(data, "user-region", 3, user_region=regions)
    by_client = [{regions[f"u{u}"] for u in users} for users in part.clients]
    assert all(len(r) == 1 for r in by_client) and sorted(part.sizes()) == [15, 20, 25]


@pytest.mark.parametrize(
    ("kind", "clients", "kwargs", "message"),
    [
        ("zipcode", 3, {}, "Unknown partition 'zipcode'; expected one of: iid, category, user-region"),
        ("iid", 61, {}, "--clients 61 is more than the 60 users with 2 or more training events"),
        ("category", 5, {}, "found 4 categories among the users, fewer than --clients 5"),
        ("user-region", 3, {}, "needs user profiles with a 'region'"),
        ("iid", 1, {}, "'clients' parameter must be an int >= 2"),
    ],
)
def test_partition_errors_name_the_problem(kind, clients, kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        partition_users(_toy(), kind, clients, **kwargs)


def test_client_folders_round_trip_only_their_own_users(tmp_path):
    data = _toy()
    write_catalogue(tmp_path, data)
    write_client(tmp_path / "clients" / "0", subset_users(data, np.array([3, 7, 11])))
    back = read_client(tmp_path / "clients" / "0", tmp_path / "catalogue.npz")
    assert back.user_ids.tolist() == ["u3", "u7", "u11"]
    assert [s.tolist() for s in back.sequences] == [data.sequences[u].tolist() for u in (3, 7, 11)]
    assert back.valid_targets.tolist() == data.valid_targets[[3, 7, 11]].tolist()
    assert back.item_ids.tolist() == data.item_ids.tolist() and back.item_text == data.item_text
    assert catalogue_of(data).n_users == 0 and catalogue_of(data).sequences == []


# ------------------------------------------------------------------------------- privacy
def test_noise_for_a_target_epsilon_spends_that_epsilon():
    z = noise_for_epsilon(8.0, 1e-5, rounds=20)
    assert 2.0 < z < 4.0
    assert epsilon_spent(z, 1e-5, 20) == pytest.approx(8.0, rel=0.01)
    assert epsilon_spent(z, 1e-5, 40) > 8.5  # more rounds, same noise: more spent
    assert noise_for_epsilon(1.0, 1e-5, rounds=20) > z  # a smaller budget needs more noise


@pytest.mark.parametrize("eps", [0.0, -1.0, math.nan, math.inf])
def test_a_non_positive_or_non_finite_epsilon_is_refused(eps):
    with pytest.raises(ConfigError, match="--dp-epsilon must be a finite number > 0"):
        FederatedConfig(dp_epsilon=eps).validate()


# ------------------------------------------------------------------------------- weights
def test_weights_travel_by_name_and_are_checked():
    data = _toy()
    a = SASRec(**SMALL, seed=1).init_weights(catalogue_of(data))
    b = SASRec(**SMALL, seed=2).init_weights(catalogue_of(data))
    w = a.get_weights()
    assert not np.allclose(w["item_emb.weight"], b.get_weights()["item_emb.weight"])
    b.set_weights(w)
    ctx = [data.context(u) for u in range(5)]
    np.testing.assert_allclose(a.score_batch(ctx), b.score_batch(ctx), rtol=1e-6)
    bad = dict(w, **{"item_emb.weight": w["item_emb.weight"][:-1]})
    with pytest.raises(ConfigError, match="'item_emb.weight' has shape"):
        b.set_weights(bad)
    with pytest.raises(ConfigError, match="do not match the network's state"):
        b.set_weights({k: v for k, v in w.items() if k != "item_emb.weight"})


def test_fedprox_term_keeps_local_weights_near_the_global_ones():
    data = _toy()
    glob = SASRec(**SMALL, seed=0).init_weights(catalogue_of(data))
    start = glob.get_weights()["item_emb.weight"]

    def drift(mu: float) -> float:
        local = SASRec(**SMALL, seed=0, epochs=5, patience=10, lr=0.01)
        local.warm_start_from(glob)
        local.fit(data, strategy=ProximalStrategy(mu) if mu else None)
        return float(np.linalg.norm(local.get_weights()["item_emb.weight"] - start))

    free, held = drift(0.0), drift(10.0)
    assert held < 0.5 * free


def test_textseq_counts_an_item_seen_by_the_global_model_as_seen():
    from liveshelf.models.textseq import TextSeq

    data = _toy()
    vecs = np.random.default_rng(0).normal(size=(data.n_items, 8)).astype(np.float32)
    left = subset_users(data, np.arange(0, 30))
    glob = TextSeq(hidden=16, n_layers=1, max_len=20, epochs=1, n_threads=1).init_weights(
        catalogue_of(data), item_vectors=vecs
    )
    assert float(glob.net_.seen.sum()) == 0  # the catalogue alone: nothing seen
    w = glob.get_weights()
    w["seen"] = np.where(np.arange(data.n_items) % 2 == 0, 0.25, 0.0)  # an average over clients
    glob.set_weights(w)
    assert set(np.unique(glob.net_.seen.numpy())) == {0.0, 1.0}
    from liveshelf.federated.models import exchanged_keys

    sent = exchanged_keys(glob, private=False)
    assert "seen" in sent and "text_emb" not in sent  # frozen catalogue vectors are never sent
    assert "seen" not in exchanged_keys(glob, private=True)  # under DP the flags would leak, un-noised
    local = TextSeq(hidden=16, n_layers=1, max_len=20, epochs=1, n_threads=1)
    local.warm_start_from(glob)
    local.fit(left, item_vectors=vecs)
    own = np.zeros(data.n_items, dtype=bool)
    own[np.concatenate(left.sequences)] = True
    expect = own | (np.arange(data.n_items) % 2 == 0)
    assert np.array_equal(local.net_.seen.numpy() > 0, expect)


# ------------------------------------------------------------------------------- federations
@pytest.fixture(scope="module")
def small_spec(shared_data):
    return f"unisrec:{shared_data / 'amazon-scientific-small'}"


def _params() -> list[str]:
    return [f"--param={k}={v}" for k, v in {**SMALL, "epochs": 3}.items()]


@pytest.mark.timeout(900)
def test_federated_train_cli_three_clients_two_rounds_writes_results_model_registry_and_mlflow(
    small_spec, tmp_path
):
    from mlflow.tracking import MlflowClient

    from liveshelf.registry import ModelRegistry

    out, home, db = tmp_path / "out", tmp_path / "home", tmp_path / "mlflow.db"
    res = CliRunner().invoke(
        app,
        [
            "federated", "train", "--data", small_spec, "--model", "sasrec", "--clients", "3", "--rounds", "2",
            "--partition", "iid", "--local-epochs", "2", "--out", str(out), "--register", "fedsas",
            "--home", str(home), "--tracking-uri", f"sqlite:///{db}", *_params(),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    fed, cen = results["federated"], results["centralised"]
    # the same metric names as `liveshelf evaluate`, on the same split
    assert set(fed["metrics"]) == set(cen["metrics"]) and {"ndcg@10", "recall@10"} <= set(fed["metrics"])
    n_items = 1585
    assert fed["metrics"]["recall@10"] > 2 * 10 / n_items  # clearly better than random after 2 rounds
    assert [r["round"] for r in fed["rounds"]] == [1, 2] and all(r["clients"] == 3 for r in fed["rounds"])
    assert fed["rounds"][1]["valid_ndcg@10"] > fed["rounds"][0]["valid_ndcg@10"]
    assert fed["bytes_per_round"] == 2 * 3 * fed["model_bytes"]  # full model down and up, every client
    assert (
        sum(fed["partition"]["users_per_client"]) == 2928
        and fed["wall_seconds"] > 0
        and fed["cpu_seconds"] > 0
    )
    assert results["ratio_ndcg@10"] == pytest.approx(fed["metrics"]["ndcg@10"] / cen["metrics"]["ndcg@10"])
    assert (out / "rounds.png").stat().st_size > 5000 and not (out / "federation").exists()
    # the federated model is an ordinary model: loaded back, it scores the split as evaluated
    from liveshelf.evaluation.protocols import make_split
    from liveshelf.evaluation.runner import evaluate_model, load_data

    loaded = SASRec.load(out / "model")
    again = evaluate_model(loaded, make_split(load_data(small_spec), "loo")).metrics
    assert again["ndcg@10"] == pytest.approx(fed["metrics"]["ndcg@10"], rel=1e-6)
    reg = ModelRegistry(home / "models")
    info = reg.info("fedsas", "v0001")
    assert info.lineage["trainer"] == "flower" and info.lineage["clients"] == 3
    assert info.lineage["mlflow_run_id"] == results["mlflow_run_id"]
    run = MlflowClient(f"sqlite:///{db}").get_run(results["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["partition"] == "iid"
    assert run.data.metrics["federated.ndcg_at_10"] == pytest.approx(fed["metrics"]["ndcg@10"])
    steps = MlflowClient(f"sqlite:///{db}").get_metric_history(run.info.run_id, "valid_ndcg_at_10")
    assert [m.step for m in steps] == [1, 2]


@pytest.mark.timeout(900)
def test_secure_aggregation_with_client_level_dp_records_the_epsilon_spent(small_spec, tmp_path):
    from liveshelf.evaluation.protocols import make_split
    from liveshelf.evaluation.runner import load_data
    from liveshelf.federated.run import run_federated

    split = make_split(load_data(small_spec), "loo")
    cfg = FederatedConfig(
        clients=3, rounds=2, dp_epsilon=8.0, clip_norm=0.5, secagg=True, params=dict(SMALL), seed=0
    )
    fed = run_federated(split, cfg, tmp_path)
    p = fed.results["privacy"]
    assert p["unit"] == "client" and p["rounds"] == 2 and p["clipping_norm"] == 0.5
    assert p["dp_epsilon"] == pytest.approx(8.0, rel=0.01) and p["noise_multiplier"] > 0.5
    assert fed.model.privacy_ == p and fed.results["secagg"] is True
    assert len(fed.results["rounds"]) == 2
    # the noisy global model still differs from its initialisation (the rounds were applied)
    init = SASRec(**SMALL, seed=0).init_weights(catalogue_of(split.train)).get_weights()
    moved = fed.model.get_weights()["item_emb.weight"] - init["item_emb.weight"]
    assert np.isfinite(moved).all() and np.abs(moved).max() > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--partition", "zipcode"], "Unknown partition 'zipcode'"),
        (["--clients", "5000"], "--clients 5000 is more than the 2928 users"),
        (["--secagg", "--clients", "2"], "--secagg needs at least 3 clients"),
        (["--dp-epsilon", "0"], "--dp-epsilon must be a finite number > 0"),
        (["--dp-epsilon", "-2"], "--dp-epsilon must be a finite number > 0"),
        (["--model", "itemknn"], "Unknown federated model 'itemknn'"),
        (["--model", "ranker"], "--model ranker does not train federated yet"),
        (["--strategy", "fedsgd"], "Unknown strategy 'fedsgd'"),
    ],
)
def test_federated_cli_bad_input_is_a_clear_error_before_any_training(small_spec, tmp_path, args, message):
    res = CliRunner().invoke(app, ["federated", "train", "--data", small_spec, "--out", str(tmp_path), *args])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())
    assert not (tmp_path / "results.json").exists()
