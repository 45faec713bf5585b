"""``ranker`` (learned two-stage hybrid), ``blend`` and the ``LambdaRanker`` wrapper."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from liveshelf.errors import ConfigError, NotFittedError
from liveshelf.models import Context, TrainData, create_model, load_model
from liveshelf.models.ranker.lgbm import LambdaRanker

N_ITEMS = 30
CHEAP = {
    "sources": "pop,itemknn",
    "source_params": {"itemknn": {"k_neighbors": 10}},
    "n_estimators": 40,
    "min_child_samples": 5,
    "seed": 0,
}


def _data(seed: int = 0, text: bool = False) -> TrainData:
    """Users walk a cycle of items with some noise; the validation target is the next step."""
    rng = np.random.default_rng(seed)
    seqs, valid = [], []
    for _ in range(120):
        start, n = int(rng.integers(N_ITEMS)), int(rng.integers(4, 9))
        walk = (start + np.arange(n + 1)) % N_ITEMS
        noise = rng.random(n + 1) < 0.15
        walk[noise] = rng.integers(N_ITEMS, size=int(noise.sum()))
        seqs.append(walk[:-1].astype(np.int64))
        valid.append(int(walk[-1]))
    ts = [1_700_000_000 + 3600.0 * np.arange(len(s)) for s in seqs]
    return TrainData(
        item_ids=np.array([f"i{i}" for i in range(N_ITEMS)]),
        user_ids=np.array([f"u{u}" for u in range(len(seqs))]),
        sequences=seqs,
        timestamps=ts,
        valid_targets=np.array(valid),
        item_category=np.arange(N_ITEMS) % 3,
        item_text=[f"item {i}" for i in range(N_ITEMS)] if text else None,
    )


def _contexts() -> list[Context]:
    d = _data()
    return [d.context(u) for u in range(6)] + [Context(items=np.array([3, 4])), Context(items=np.zeros(0))]


@pytest.fixture(scope="module")
def fitted():
    return create_model("ranker", **CHEAP).fit(_data())


def test_fit_learns_and_scores(fitted):
    info = fitted.fit_info_
    assert info["sources"] == ["pop", "itemknn"] and info["skipped_sources"] == []
    assert info["targets"] == "validation targets" and info["queries"] > 0
    scores = fitted.score_batch(_contexts())
    assert scores.shape == (len(_contexts()), N_ITEMS) and np.isfinite(scores).all()
    # the cycle: the next item of a clean walk is ranked first for most users
    d = _data()
    ctxs = [d.context(u) for u in range(d.n_users)]
    top = fitted.score_batch(ctxs).argmax(axis=1)
    assert np.mean(top == d.valid_targets) > 0.5


def test_candidates_rank_above_the_rest(fitted):
    ctx = _data().context(0)
    rows, items, X, _ = fitted._features([ctx], fitted.models_)
    scores = fitted.score_batch([ctx])[0]
    others = np.setdiff1d(np.arange(N_ITEMS), items)
    if len(others):
        assert scores[items].min() > scores[others].max()
    assert X.shape == (len(items), len(fitted.feature_names_))


def test_save_load_round_trip_identical_scores(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    assert (tmp_path / "m" / "ranker" / "ranker.txt").read_text().startswith("tree")
    assert not list((tmp_path / "m").rglob("*.pkl")) and not list((tmp_path / "m").rglob("*.pickle"))
    assert (tmp_path / "m" / "sources" / "itemknn" / "config.json").exists()
    for loaded in (load_model(tmp_path / "m"), type(fitted).load(tmp_path / "m")):
        assert loaded.get_params() == fitted.get_params()
        np.testing.assert_array_equal(loaded.score_batch(_contexts()), fitted.score_batch(_contexts()))
        assert loaded.fit_info_["sources"] == ["pop", "itemknn"]


def test_skipped_source_is_named():
    model = create_model("ranker", **{**CHEAP, "sources": "pop,itemknn,textseq"}).fit(_data())
    assert model.skipped_sources_ == [
        {"source": "textseq", "reason": "no item text (TrainData.item_text is None)"}
    ]
    assert model.fit_info_["skipped_sources"][0]["source"] == "textseq"
    blend = create_model("blend", sources="pop,textseq").fit(_data())
    assert blend.fit_info_["skipped_sources"][0]["source"] == "textseq"


def test_fit_info_reaches_results_json(shared_data, tmp_path):
    """The runner stores a model's ``fit_info_`` under its entry in results.json."""
    from liveshelf.evaluation.runner import run

    folder = shared_data / "amazon-scientific-small"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    params = {"ranker": {**CHEAP, "top_n": 30, "n_estimators": 30}}
    run(f"unisrec:{folder}", ["pop", "ranker"], out=tmp_path, params=params, progress=False)
    entry = json.loads((tmp_path / "results.json").read_text())["models"]["ranker"]
    assert entry["fit_info"]["sources"] == ["pop", "itemknn"] and entry["fit_info"]["skipped_sources"] == []
    assert "pop" not in json.loads((tmp_path / "results.json").read_text())["models"]["pop"].get(
        "fit_info", {}
    )


def test_no_holdout_targets_falls_back_to_last_item():
    d = replace(_data(), valid_targets=None)
    model = create_model("ranker", **CHEAP).fit(d)
    assert model.fit_info_["targets"] == "last training item (held out)"
    assert np.isfinite(model.score_batch(_contexts())).all()


def test_fit_is_deterministic():
    a = create_model("ranker", **CHEAP).fit(_data())
    b = create_model("ranker", **CHEAP).fit(_data())
    assert a.ranker_.model_text() == b.ranker_.model_text()
    np.testing.assert_array_equal(a.score_batch(_contexts()), b.score_batch(_contexts()))


def test_test_targets_cannot_influence_fit(shared_data):
    """The runner fits on ``split.train``: permuting the test targets leaves the ranker unchanged."""
    from liveshelf.data.formats import load_dataset
    from liveshelf.evaluation.protocols import loo

    folder = shared_data / "amazon-scientific-small"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    split = loo(load_dataset(f"unisrec:{folder}"))
    rng = np.random.default_rng(0)
    targets = np.array([c.target for c in split.cases])
    shuffled = rng.permutation(targets)
    assert (shuffled != targets).any()
    params = {**CHEAP, "top_n": 30, "n_estimators": 30}
    first = create_model("ranker", **params).fit(split.train)
    for case, t in zip(split.cases, shuffled, strict=True):
        case.target = int(t)
    second = create_model("ranker", **params).fit(split.train)
    assert first.ranker_.model_text() == second.ranker_.model_text()
    ctxs = [c.context for c in split.cases[:50]]
    np.testing.assert_array_equal(first.score_batch(ctxs), second.score_batch(ctxs))


def test_blend_is_equal_weight_minmax():
    d = _data()
    blend = create_model("blend", sources="pop,itemknn").fit(d)
    ctxs = _contexts()[:3]
    want = np.zeros((3, N_ITEMS))
    for m in blend.models_.values():
        s = m.score_batch(ctxs).astype(np.float64)
        lo, hi = s.min(1, keepdims=True), s.max(1, keepdims=True)
        want += (s - lo) / np.where(hi > lo, hi - lo, 1)
    np.testing.assert_allclose(blend.score_batch(ctxs), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"top_n": 0}, "'top_n' parameter of HybridRanker must be an int >= 1"),
        ({"sources": "pop,nosuch"}, "'nosuch' is not one"),
        ({"sources": "pop,ranker"}, "'sources' parameter of HybridRanker"),
        ({"source_params": {"sasrec": {}}}, "names 'sasrec', which is not a source"),
        ({"learning_rate": 0.0}, "'learning_rate' parameter of LambdaRanker must be a float in \\(0, 1\\]"),
        ({"valid_share": 0.7}, "'valid_share' parameter of HybridRanker must be a float in \\[0, 0.5\\)"),
    ],
)
def test_bad_params_raise_clear_errors(params, match):
    with pytest.raises(ConfigError, match=match):
        create_model("ranker", **{**CHEAP, **params}).fit(_data())


def test_unfitted_raises():
    with pytest.raises(NotFittedError, match="not fitted yet"):
        create_model("ranker", **CHEAP).score_batch(_contexts())


# ---------------------------------------------------------------------------------- LambdaRanker
def _table(seed: int = 0):
    rng = np.random.default_rng(seed)
    group = np.full(40, 10)
    X = rng.normal(size=(400, 3))
    y = (X[:, 0] + 0.3 * rng.normal(size=400) > 1.0).astype(int)
    return X, y, group


def test_lambda_ranker_round_trip_text_no_pickle(tmp_path):
    X, y, group = _table()
    r = LambdaRanker(n_estimators=30, min_child_samples=5).fit(
        X, y, group, feature_names=["a", "b", "c"], eval_set=_table(1)
    )
    imp = r.feature_importance()
    assert max(imp, key=imp.get) == "a"
    r.save(tmp_path / "r")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["ranker.json", "ranker.txt"]
    assert (tmp_path / "r" / "ranker.txt").read_text().startswith("tree")
    back = LambdaRanker.load(tmp_path / "r")
    np.testing.assert_array_equal(back.predict(X), r.predict(X))
    contrib = back.contributions(X[:5])
    assert contrib.shape == (5, 4)
    np.testing.assert_allclose(contrib.sum(axis=1), r.predict(X[:5]), rtol=1e-6, atol=1e-9)
    assert back.feature_names_ == ["a", "b", "c"]


def test_lambda_ranker_errors():
    X, y, group = _table()
    with pytest.raises(ConfigError, match="'num_leaves' parameter of LambdaRanker must be an int >= 2"):
        LambdaRanker(num_leaves=1).fit(X, y, group, feature_names=["a", "b", "c"])
    with pytest.raises(ConfigError, match="no empty query"):
        LambdaRanker().fit(X, y, np.array([0, 400]), feature_names=["a", "b", "c"])
    with pytest.raises(ConfigError, match="group sizes sum to 390"):
        LambdaRanker().fit(X, y, np.full(39, 10), feature_names=["a", "b", "c"])
    with pytest.raises(ConfigError, match="feature_names must name each of the 3 columns"):
        LambdaRanker().fit(X, y, group, feature_names=["a", "b"])
    r = LambdaRanker(n_estimators=5, min_child_samples=5).fit(X, y, group, feature_names=["a", "b", "c"])
    with pytest.raises(ConfigError, match=r"X must have shape \(rows, 3\)"):
        r.predict(X[:, :2])
    with pytest.raises(NotFittedError, match="not fitted yet"):
        LambdaRanker().predict(X)


def test_lambda_ranker_min_rounds_delays_early_stopping():
    X, y, group = _table()
    kw = {"n_estimators": 60, "min_child_samples": 5, "early_stopping_rounds": 3}
    plain = LambdaRanker(**kw).fit(X, y, group, feature_names=["a", "b", "c"], eval_set=_table(1))
    delayed = LambdaRanker(**kw, min_rounds=25).fit(
        X, y, group, feature_names=["a", "b", "c"], eval_set=_table(1)
    )
    assert delayed.best_iteration_ >= 25 and delayed.get_params()["min_rounds"] == 25
    assert "min_rounds" not in plain.get_params()  # unset: the serving ranker's saved config is unchanged
    with pytest.raises(ConfigError, match="'min_trees' parameter of HybridRanker"):
        create_model("ranker", **{**CHEAP, "min_trees": 0}).fit(_data())
