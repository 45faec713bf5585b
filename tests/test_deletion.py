"""Forgetting a user end to end: store, online state, stale models, and a retrain with no trace of them.

The store is ingested with a pseudonym key. After the first loop cycle the production
model knows the user; ``forget_user`` deletes their events, marks that version stale,
and the next cycle refits from the store. The retrained model must equal a model trained
on a world where the user never existed (same cut, same parameters): no vocabulary
entry, no user factors, identical item similarities and scores.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from liveshelf.cli import app
from liveshelf.data.dataset import Dataset
from liveshelf.data.ingest import Ingestor
from liveshelf.data.simulate import simulate
from liveshelf.data.store import EventStore
from liveshelf.errors import ConfigError
from liveshelf.experiment.loop import ContinuousLoop, LoopConfig, window_split
from liveshelf.models import Context, create_model
from liveshelf.privacy.pseudonym import Pseudonymiser
from liveshelf.schema import POSITIVE_TYPES
from liveshelf.serving.deletion import forget_user, stale_versions
from liveshelf.serving.state import MemoryState

KEY = "deletion-test-key"


@pytest.fixture(scope="module")
def world():
    return simulate(n_users=150, n_hosts=6, days=1, seed=5, use_review_corpus=False)


@pytest.fixture(scope="module")
def template(world, tmp_path_factory):
    folder = tmp_path_factory.mktemp("deletion-template")
    with EventStore(folder) as store:
        ing = Ingestor(store, pseudonymiser=Pseudonymiser(KEY))
        for kind in ("items", "users", "hosts", "rooms", "shelf", "events"):
            ing.ingest(kind, getattr(world.dataset, kind))
    return folder


@pytest.fixture
def home(template, tmp_path):
    shutil.copy(template / "events.duckdb", tmp_path / "events.duckdb")
    return tmp_path


def heaviest_user(world) -> str:
    """The raw id of the user with the most interest events (certainly in every model's vocabulary)."""
    ev = world.dataset.events
    return str(ev[ev["type"].isin(POSITIVE_TYPES)]["user"].value_counts().index[0])


@pytest.mark.parametrize("model", ["itemknn", "als"])
def test_forget_user_then_retrain_leaves_no_trace(world, home, model):
    params = {"factors": 8, "iterations": 5} if model == "als" else {}
    loop = ContinuousLoop(home, LoopConfig(model=model, params=params))
    first = loop.run_once(trigger="initial")
    assert first.decision == "promoted", first.reasons
    user = heaviest_user(world)
    pseudonym = Pseudonymiser(KEY)(user)
    prod = loop.registry.load("default")
    assert pseudonym in set(prod.user_ids_) and user not in set(prod.user_ids_)

    state = MemoryState()
    state.apply_events(
        world.dataset.events.assign(user=Pseudonymiser(KEY).map_series(world.dataset.events["user"]))
    )
    assert state.user_sequence(pseudonym)
    report = forget_user(home, user, key=KEY, state=state)
    n_events = int((world.dataset.events["user"] == user).sum())
    assert report.events == n_events and report.users == 1 and report.state
    assert report.stale == {"default": ["v0001"]}
    assert state.user_sequence(pseudonym) == []
    with EventStore(home, read_only=True) as store:
        assert len(store.sequence(pseudonym).ts) == 0
    ledger = (home / "privacy" / "deletions.jsonl").read_text()
    assert user not in ledger and pseudonym not in ledger and json.loads(ledger)["events"] == n_events
    assert "v0001" in stale_versions(home, "default") and loop.production_stale()

    # the next cycle retrains from scratch (no new events needed) and must replace production
    (second,) = loop.run(max_cycles=1, poll_s=0.0, sleep=lambda s: pytest.fail("no cycle ran"))
    assert second.trigger == "stale"
    assert second.mode == "refit" and second.production == "v0001"
    assert second.decision == "promoted", second.reasons
    assert second.window["t_cut"] == first.window["t_cut"]  # the same training window, minus the user
    retrained = loop.registry.load("default", second.version)
    assert pseudonym not in set(retrained.user_ids_)
    if model == "als":
        assert retrained.user_factors_.shape[0] == len(retrained.user_ids_) == retrained.train_.shape[0]
    assert not loop.production_stale()

    # ... and equals a model trained on a world where the user never existed (same ids, same order)
    ev = world.dataset.events.assign(user=Pseudonymiser(KEY).map_series(world.dataset.events["user"]))
    ev = ev[ev["user"] != pseudonym].sort_values(["user", "ts"], kind="stable").reset_index(drop=True)
    split, _, _ = window_split(
        Dataset(name="without", events=ev, items=world.dataset.items), second.window["t_cut"]
    )
    reference = create_model(model, **params).fit(split.train)
    assert list(reference.user_ids_) == list(retrained.user_ids_)
    assert list(reference.item_ids_) == list(retrained.item_ids_)
    if model == "itemknn":
        assert abs(reference.similarity_ - retrained.similarity_).max() == 0
    else:
        np.testing.assert_allclose(reference.item_factors_, retrained.item_factors_, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(reference.user_factors_, retrained.user_factors_, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(reference.prior_, retrained.prior_)
    # their own history, scored now, gets exactly what a model that never saw them gives
    raw = world.dataset.events
    mine = raw[(raw["user"] == user) & raw["type"].isin(POSITIVE_TYPES) & raw["item"].notna()]
    pos = {str(x): i for i, x in enumerate(reference.item_ids_)}
    history = Context(items=np.array([pos[str(i)] for i in mine["item"]]), user=pseudonym)
    assert len(history.items) >= 5
    np.testing.assert_allclose(
        retrained.score_batch([history]), reference.score_batch([history]), rtol=1e-5, atol=1e-6
    )


def test_deletion_resolves_ids_and_refuses_wrong_keys(world, home):
    user = heaviest_user(world)
    with pytest.raises(ConfigError, match=r"'key' parameter of forget_user is required"):
        forget_user(home, user, use_settings_key=False)
    with pytest.raises(ConfigError, match=r"ingested with key id"):
        forget_user(home, user, key="another-key")
    with pytest.raises(ConfigError, match=r"exactly one of 'user'"):
        forget_user(home, user, pseudonym="abc")
    report = forget_user(home, pseudonym=Pseudonymiser(KEY)(user))  # the stored id works as is
    assert report.events == int((world.dataset.events["user"] == user).sum())
    assert report.stale == {}  # no model registered yet
    assert forget_user(home, pseudonym=Pseudonymiser(KEY)(user)).events == 0  # idempotent


def test_cli_forget_uses_the_configured_key(world, home, monkeypatch):
    monkeypatch.setenv("LIVESHELF_PSEUDONYM_KEY", KEY)
    user = heaviest_user(world)
    out = CliRunner().invoke(app, ["loop", "forget", user, "--home", str(home)])
    assert out.exit_code == 0, out.output
    n = int((world.dataset.events["user"] == user).sum())
    assert f"deleted {n} events and 1 profile rows" in out.output
