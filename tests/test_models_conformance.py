"""Every registered recommender runs these checks, on synthetic data with a known answer.

The data: two user groups, each consuming its own half of the catalogue as a run of
consecutive items (cyclic, random start), so a collaborative or sequential model must
rank the group's unseen items above the other group's items. A new model family is
tested here for free once it registers itself.
"""

from __future__ import annotations

import inspect
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from liveshelf.errors import NotFittedError
from liveshelf.models import Context, TrainData, available_models, create_model, load_model
from liveshelf.models.registry import get_model_class

N_GROUP_ITEMS = 12  # items 0..11 belong to group 0, 12..23 to group 1
N_GROUP_USERS = 50
SEQ_LEN = 8

#: Small, fast parameters per model; a model not listed gets GENERIC_FAST (filtered by
#: its constructor's signature).
FAST_PARAMS: dict[str, dict] = {
    "itemknn": {"k_neighbors": 10},
    "als": {"factors": 3, "iterations": 10},
    "bpr": {"factors": 8, "iterations": 200, "learning_rate": 0.05},
    "textseq": {
        "epochs": 30,
        "hidden": 16,
        "n_layers": 1,
        "max_len": 10,
        "batch_size": 128,
        "lr": 0.01,
        "dropout": 0.0,
    },
}
#: The two-stage families over cheap sources (a small SASRec among them).
_FAST_SOURCES = {
    "sources": "pop,itemknn,sasrec",
    "source_params": {
        "itemknn": {"k_neighbors": 10},
        "sasrec": {
            "epochs": 8,
            "hidden": 16,
            "n_layers": 1,
            "max_len": 10,
            "batch_size": 128,
            "lr": 0.01,
            "dropout": 0.0,
        },
    },
}
FAST_PARAMS["ranker"] = {**_FAST_SOURCES, "n_estimators": 50, "min_child_samples": 5}
FAST_PARAMS["blend"] = dict(_FAST_SOURCES)
GENERIC_FAST = {
    "epochs": 8,
    "hidden": 16,
    "hidden_size": 16,
    "n_layers": 1,
    "max_len": 10,
    "batch_size": 128,
    "lr": 0.01,
    "dropout": 0.0,
}

#: What each model is expected to know. "collaborative" (the default) must separate the
#: groups; "sequential" must predict the next item of the cycle.
KNOWN_ANSWER = {
    "pop": "popularity",
    "trending": "context_free",
    "repeat": "history",
    "sasrec": "sequential",
    "livesasrec": "sequential",
    "textseq": "sequential",
}
#: Models whose empty context falls back to plain popularity.
POPULARITY_FALLBACK = {"pop", "repeat", "itemknn", "als", "bpr"}

MODELS = available_models()


@cache
def _tiny_encoder() -> str:
    """A tiny randomly initialised BERT over the words of the test item texts (llmrank's cross-encoder)."""
    import tempfile

    from tiny_models import tiny_bert_dir

    words = ["group", "item", "no", "history", "|"] + [str(i) for i in range(2 * N_GROUP_ITEMS)]
    return tiny_bert_dir(Path(tempfile.mkdtemp(prefix="liveshelf-tiny-bert-")), words)


def _params(name: str, **extra) -> dict:
    sig = inspect.signature(get_model_class(name).__init__).parameters
    if name == "llmrank":  # the re-ranker over itemknn, with a tiny cross-encoder: cheap and deterministic
        return {
            "base": "itemknn",
            "base_params": {"k_neighbors": 10},
            "encoder": _tiny_encoder(),
            "top_n": 6,
            "method": "full",
            "epochs": 1,
            "train_users": 60,
            "max_length": 48,
            "seed": 0,
            **extra,
        }
    base = FAST_PARAMS.get(name, {k: v for k, v in GENERIC_FAST.items() if k in sig})
    seeds = {k: 0 for k in ("random_state", "seed") if k in sig}
    return {**base, **seeds, **extra}


@cache
def _data() -> TrainData:
    rng = np.random.default_rng(7)
    seqs, ts, users = [], [], []
    for g in range(2):
        for j in range(N_GROUP_USERS):
            start = rng.integers(N_GROUP_ITEMS)
            seqs.append(g * N_GROUP_ITEMS + (start + np.arange(SEQ_LEN)) % N_GROUP_ITEMS)
            t0 = 1_700_000_000 + rng.integers(0, 86_400)
            ts.append(t0 + 600.0 * np.arange(SEQ_LEN))
            users.append(f"u{g}_{j}")
    return TrainData(
        item_ids=np.array([f"i{i}" for i in range(2 * N_GROUP_ITEMS)]),
        user_ids=np.array(users),
        sequences=seqs,
        timestamps=ts,
        item_text=[f"group {i // N_GROUP_ITEMS} item {i}" for i in range(2 * N_GROUP_ITEMS)],
    )


@cache
def _fitted(name: str):
    return create_model(name, **_params(name)).fit(_data())


def _contexts() -> list[Context]:
    data = _data()
    ctxs = [data.context(u) for u in (0, 1, N_GROUP_USERS, N_GROUP_USERS + 3)]
    ctxs.append(Context(items=np.array([0, 1, 2]), ts=np.array([1.7e9, 1.7e9 + 60, 1.7e9 + 120])))
    ctxs.append(Context(items=np.array([13, 14]), user="new", time=1.8e9))
    ctxs.append(data.context(2, upto=3))
    ctxs.append(Context(items=np.zeros(0, dtype=np.int64)))
    return ctxs


@pytest.mark.parametrize("name", MODELS)
def test_registered_name_matches_class(name):
    assert get_model_class(name).name == name


@pytest.mark.parametrize("name", MODELS)
def test_unfitted_model_raises(name):
    model = create_model(name, **_params(name))
    with pytest.raises(NotFittedError, match="not fitted yet"):
        model.score_batch([Context(items=np.array([0]))])


@pytest.mark.parametrize("name", MODELS)
def test_scores_shape_and_finite_for_every_context(name):
    scores = _fitted(name).score_batch(_contexts())
    assert scores.shape == (len(_contexts()), 2 * N_GROUP_ITEMS)
    assert np.isfinite(scores).all()


@pytest.mark.parametrize("name", MODELS)
def test_empty_context_is_finite(name):
    model = _fitted(name)
    scores = model.score_batch([Context(items=np.zeros(0, dtype=np.int64))])[0]
    assert np.isfinite(scores).all()
    if name in POPULARITY_FALLBACK:
        counts = np.bincount(np.concatenate(_data().sequences), minlength=2 * N_GROUP_ITEMS)
        assert counts[int(np.argmax(scores))] == counts.max()


@pytest.mark.parametrize("name", MODELS)
def test_batch_equals_single(name):
    model = _fitted(name)
    ctxs = _contexts()
    batch = model.score_batch(ctxs)
    cand = np.arange(2 * N_GROUP_ITEMS)
    # A cross-encoder pads each batch to its longest text: float sums move in the 5th digit, never the order.
    rtol = 1e-3 if name == "llmrank" else 1e-5
    for b, ctx in enumerate(ctxs):
        np.testing.assert_allclose(model.score(ctx, cand), batch[b], rtol=rtol, atol=1e-6)
    sub = np.array([3, 17, 0])
    np.testing.assert_allclose(model.score_batch(ctxs, sub), batch[:, sub], rtol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_save_load_round_trip(name, tmp_path):
    model = _fitted(name)
    model.save(tmp_path / name)
    for loaded in (load_model(tmp_path / name), type(model).load(tmp_path / name)):
        assert type(loaded) is type(model)
        assert loaded.get_params() == model.get_params()
        assert list(loaded.item_ids_) == list(model.item_ids_)
        np.testing.assert_allclose(
            loaded.score_batch(_contexts()), model.score_batch(_contexts()), rtol=1e-6, atol=1e-7
        )


@pytest.mark.parametrize("name", MODELS)
def test_fit_is_deterministic(name):
    sig = inspect.signature(get_model_class(name).__init__).parameters
    quick = {"epochs": 1} if "epochs" in sig else {}  # determinism needs no convergence
    first, second = (create_model(name, **_params(name, **quick)).fit(_data()) for _ in range(2))
    np.testing.assert_allclose(
        first.score_batch(_contexts()), second.score_batch(_contexts()), rtol=1e-5, atol=1e-6
    )


def _pair_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Share of (pos, neg) pairs ordered correctly, ties counting half."""
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


@pytest.mark.parametrize("name", MODELS)
def test_known_answer(name):
    model, data = _fitted(name), _data()
    kind = KNOWN_ANSWER.get(name, "collaborative")
    users = np.arange(data.n_users)
    scores = model.score_batch([data.context(int(u)) for u in users])
    counts = np.bincount(np.concatenate(data.sequences), minlength=data.n_items)
    if kind == "popularity":
        for row in scores:  # a more popular item never scores lower
            assert np.all(np.diff(row[np.argsort(counts, kind="stable")]) >= 0)
    elif kind == "context_free":
        assert np.allclose(scores, scores[0])
    elif kind == "history":
        for u, row in zip(users, scores, strict=True):
            seen = np.zeros(data.n_items, bool)
            seen[data.sequences[u]] = True
            assert row[seen].min() > row[~seen].max()
    elif kind == "sequential":
        last = np.array([s[-1] for s in data.sequences])
        successor = (last // N_GROUP_ITEMS) * N_GROUP_ITEMS + (last % N_GROUP_ITEMS + 1) % N_GROUP_ITEMS
        rank = (scores > scores[users, successor][:, None]).sum(axis=1)
        assert np.mean(rank < 3) >= 0.9, f"{name}: next item in the top 3 for {np.mean(rank < 3):.2f}"
        new = model.score_batch([Context(items=np.array([12, 13, 14]), user="new")])[0]
        assert (new > new[15]).sum() < 3
    else:
        aucs = []
        for u, row in zip(users, scores, strict=True):
            g = u // N_GROUP_USERS
            own = np.arange(g * N_GROUP_ITEMS, (g + 1) * N_GROUP_ITEMS)
            unseen = np.setdiff1d(own, data.sequences[u])
            other = np.setdiff1d(np.arange(data.n_items), own)
            aucs.append(_pair_auc(row[unseen], row[other]))
        assert np.mean(aucs) >= 0.95, f"{name}: mean AUC own-unseen vs other group {np.mean(aucs):.3f}"
        # a user the model never saw, known only by three group-1 items, is folded in
        new = model.score_batch([Context(items=np.array([12, 13, 14]), user="new")])[0]
        assert _pair_auc(new[15:24], new[:12]) >= 0.9
