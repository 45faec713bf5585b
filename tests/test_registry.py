"""Model registry: versions, metadata, promotion and rollback, hot swap under load, the CLI."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from typer.testing import CliRunner

import liveshelf.cli.models_cmds  # noqa: F401  (registers `liveshelf models`)
from liveshelf import __version__
from liveshelf.cli import app
from liveshelf.errors import ConfigError, NotFoundError
from liveshelf.models import Context, TrainData, create_model
from liveshelf.registry import ModelHolder, ModelRegistry

ITEMS = np.array(["a", "b", "c", "d"], dtype=object)
CANDIDATES = np.arange(4)


def pop_model(favourite: int):
    """A fitted popularity model whose most popular item is ``favourite``."""
    seqs = [np.array([favourite] * (3 + k) + [k % 4], dtype=np.int64) for k in range(3)]
    data = TrainData(item_ids=ITEMS, user_ids=np.array(["u0", "u1", "u2"], dtype=object), sequences=seqs)
    return create_model("pop", use_event_weights=False).fit(data)


def scores(model) -> np.ndarray:
    return model.score(Context(items=np.array([0])), CANDIDATES)


@pytest.fixture
def registry(tmp_path):
    return ModelRegistry(tmp_path / "models")


def test_register_writes_versions_with_metrics_and_lineage(registry):
    v1 = registry.register(
        pop_model(0),
        name="feed",
        metrics={"ndcg@10": np.float32(0.25)},
        lineage={"train_until": "2026-01-01T00:00:00Z"},
    )
    v2 = registry.register(pop_model(1), name="feed", metrics={"ndcg@10": 0.3})
    assert (v1, v2) == ("v0001", "v0002")
    assert registry.versions("feed") == ["v0001", "v0002"]
    meta = json.loads((registry.root / "feed" / "v0001" / "meta.json").read_text())
    assert meta["metrics"] == {"ndcg@10": 0.25}
    assert meta["model_type"] == "pop"
    assert meta["lineage"]["train_until"] == "2026-01-01T00:00:00Z"
    assert meta["lineage"]["code_version"] == __version__
    assert meta["lineage"]["parent"] is None
    git = meta["lineage"]["git_commit"]
    assert git is None or (len(git) == 40 and int(git, 16) >= 0)
    for f in ("config.json", "vocab.json", "weights.safetensors"):
        assert (registry.root / "feed" / "v0001" / f).is_file()
    assert not [p for p in (registry.root / "feed").iterdir() if p.name.startswith(".tmp")]
    infos = registry.list()
    assert [(i.name, i.version, i.production) for i in infos] == [
        ("feed", "v0001", False),
        ("feed", "v0002", False),
    ]
    assert registry.production("feed") is None
    registry.promote("feed", v1)
    v3 = registry.register(pop_model(2), name="feed")
    assert registry.info("feed", v3).lineage["parent"] == "v0001"  # production when it was trained


def test_promote_load_and_rollback_follow_the_production_stack(registry):
    versions = [registry.register(pop_model(i), name="feed") for i in range(3)]
    with pytest.raises(
        NotFoundError, match="has no production version yet. Promote one of v0001, v0002, v0003"
    ):
        registry.load("feed")
    for v in versions:
        registry.promote("feed", v)
    assert registry.production("feed").version == "v0003"
    assert (registry.root / "feed" / "PRODUCTION").read_text().strip() == "v0003"
    assert int(np.argmax(scores(registry.load("feed")))) == 2
    assert registry.rollback("feed").version == "v0002"
    assert int(np.argmax(scores(registry.load("feed")))) == 1
    assert registry.rollback("feed").version == "v0001"
    with pytest.raises(
        NotFoundError,
        match=r"no earlier production version to roll back to \(production "
        r"history: v0001\)",
    ):
        registry.rollback("feed")
    registry.promote("feed", "v0003")
    registry.promote("feed", "v0003")  # promoting the current version changes nothing
    history = registry.history("feed")
    assert history["stack"] == ["v0001", "v0003"]
    assert [e["action"] for e in history["events"]] == ["promote"] * 3 + ["rollback"] * 2 + ["promote"]
    assert [i.version for i in registry.list("feed") if i.production] == ["v0003"]
    np.testing.assert_allclose(scores(registry.load("feed", "v0002")), scores(pop_model(1)))


def test_errors_name_the_version_and_list_the_known_ones(registry):
    registry.register(pop_model(0), name="feed")
    with pytest.raises(NotFoundError, match="Model 'feed' has no version 'v0009'. Known versions: v0001."):
        registry.promote("feed", "v0009")
    with pytest.raises(NotFoundError, match="No model named 'other' in the registry. Known models: feed."):
        registry.list("other")
    with pytest.raises(ConfigError, match="'name' parameter of the model registry must be"):
        registry.register(pop_model(0), name="../evil")
    with pytest.raises(ConfigError, match="'metrics' of a registered model must be JSON-serialisable"):
        registry.register(pop_model(0), name="feed", metrics={"m": object()})
    assert registry.versions("feed") == ["v0001"]


def test_holder_swaps_on_promotion_and_polls_cheaply(registry):
    v1 = registry.register(pop_model(0), name="feed")
    v2 = registry.register(pop_model(3), name="feed")
    holder = ModelHolder(registry, "feed", poll_s=3600)
    with pytest.raises(NotFoundError, match="no production version yet"):
        holder.get()
    registry.promote("feed", v1)
    assert holder.current()[0] == v1
    registry.promote("feed", v2)
    assert holder.current()[0] == v1  # not polled again within poll_s
    assert holder.refresh() is True
    version, model = holder.current()
    assert version == v2 and int(np.argmax(scores(model))) == 3
    assert holder.refresh() is False  # pointer unchanged
    assert holder.swaps == 2


def test_holder_keeps_serving_when_a_promoted_version_cannot_load(registry):
    good = registry.register(pop_model(1), name="feed")
    bad = registry.register(pop_model(2), name="feed")
    (registry.root / "feed" / bad / "weights.safetensors").write_bytes(b"not a tensor file")
    registry.promote("feed", good)
    holder = ModelHolder(registry, "feed", poll_s=0)
    assert holder.current()[0] == good
    registry.promote("feed", bad)
    version, model = holder.current()
    assert version == good and int(np.argmax(scores(model))) == 1
    assert holder.last_error is not None


def test_hot_swap_under_load_never_fails_a_request(registry):
    versions = [registry.register(pop_model(i), name="feed") for i in range(4)]
    expected = {v: scores(registry.load("feed", v)) for v in versions}
    registry.promote("feed", versions[0])
    holder = ModelHolder(registry, "feed", poll_s=0.0)
    errors: list[BaseException] = []
    seen: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                version, model = holder.current()
                s = model.score(Context(items=np.array([1, 2])), CANDIDATES)
                np.testing.assert_allclose(s, expected[version])  # the model is that version, whole
                seen.append(version)
            except BaseException as exc:  # noqa: BLE001 - every failure counts
                errors.append(exc)
                return

    workers = [threading.Thread(target=serve) for _ in range(3)]
    for w in workers:
        w.start()
    rng = np.random.default_rng(0)
    deadline = time.monotonic() + 8.0
    n_changes = 0
    while n_changes < 25 and time.monotonic() < deadline:
        if rng.random() < 0.4 and len(registry.history("feed")["stack"]) > 1:
            registry.rollback("feed")
        else:
            registry.promote("feed", versions[int(rng.integers(0, 4))])
        n_changes += 1
        time.sleep(0.005)
    stop.set()
    for w in workers:
        w.join()
    assert errors == []
    assert n_changes >= 10
    assert set(seen) <= set(versions)
    assert len(set(seen)) >= 2
    assert holder.swaps >= 2
    assert len(seen) > 100


# ------------------------------------------------------------------------------------ CLI
def test_cli_list_promote_rollback(tmp_path):
    reg = ModelRegistry(tmp_path / "models")
    reg.register(pop_model(0), name="feed", metrics={"ndcg@10": 0.123456})
    reg.register(pop_model(1), name="feed")
    runner = CliRunner()
    home = ["--home", str(tmp_path)]
    out = runner.invoke(app, ["models", "promote", "v0001", *home])
    assert out.exit_code == 0, out.output
    assert "feed: production is now v0001" in out.output
    out = runner.invoke(app, ["models", "promote", "v0002", *home, "--name", "feed"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["models", "list", *home])
    assert out.exit_code == 0, out.output
    assert "v0001" in out.output and "v0002" in out.output and "ndcg@10=0.1235" in out.output
    assert reg.production("feed").version == "v0002"
    out = runner.invoke(app, ["models", "rollback", *home])
    assert out.exit_code == 0, out.output
    assert "rolled back from v0002 to v0001" in out.output
    out = runner.invoke(app, ["models", "rollback", *home])
    assert out.exit_code == 2
    assert "no earlier production version" in out.output
    out = runner.invoke(app, ["models", "promote", "v0042", *home])
    assert out.exit_code == 2 and "Known versions: v0001, v0002" in out.output
    reg.register(pop_model(2), name="other")
    out = runner.invoke(app, ["models", "rollback", *home])
    assert out.exit_code == 2 and "several models (feed, other); choose one with --name" in out.output
    empty = runner.invoke(app, ["models", "list", "--home", str(tmp_path / "nothing")])
    assert empty.exit_code == 0 and "No models registered" in empty.output
