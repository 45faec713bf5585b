"""Hand-checkable cases for the classic models, and a sanity check on real Amazon Beauty data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

from liveshelf.errors import ConfigError, NotFittedError
from liveshelf.models import Context, TrainData, create_model
from liveshelf.models.classic.itemknn import cosine_similarity, top_k_per_row


def _data(seqs, n_items=None, ts=None, types=None) -> TrainData:
    seqs = [np.asarray(s, dtype=np.int64) for s in seqs]
    n = n_items or int(max(s.max() for s in seqs if len(s)) + 1)
    return TrainData(
        item_ids=np.array([f"i{i}" for i in range(n)]),
        user_ids=np.array([f"u{u}" for u in range(len(seqs))]),
        sequences=seqs,
        timestamps=None if ts is None else [np.asarray(t, float) for t in ts],
        types=None if types is None else [np.asarray(t) for t in types],
    )


EMPTY = Context(items=np.zeros(0, dtype=np.int64))


# ---- pop --------------------------------------------------------------------------
def test_pop_counts_interactions():
    model = create_model("pop").fit(_data([[0, 1, 1], [1, 2], [1]], n_items=4))
    np.testing.assert_array_equal(model.score(EMPTY, np.arange(4)), [1, 4, 1, 0])


def test_pop_weights_event_types():
    data = _data([[0, 1, 2], [0]], types=[["purchase", "view", "impression"], ["view"]])
    np.testing.assert_array_equal(create_model("pop").fit(data).score(EMPTY, np.arange(3)), [6, 1, 0])
    plain = create_model("pop", use_event_weights=False).fit(data)
    np.testing.assert_array_equal(plain.score(EMPTY, np.arange(3)), [2, 1, 1])


def test_pop_rejects_bad_param_with_house_message():
    with pytest.raises(ConfigError, match=r"The 'use_event_weights' parameter of pop must be a bool"):
        create_model("pop", use_event_weights="yes").fit(_data([[0]]))


# ---- trending ---------------------------------------------------------------------
def test_trending_halves_after_half_life():
    model = create_model("trending", half_life=100.0).fit(_data([[0, 1]], ts=[[0.0, 100.0]]))
    np.testing.assert_allclose(model.values_, [0.5, 1.0])
    assert model.ref_time_ == 100.0
    later = Context(items=np.zeros(0, dtype=np.int64), time=300.0)  # two half-lives later
    np.testing.assert_allclose(model.score(later, np.arange(2)), [0.125, 0.25], rtol=1e-6)


def test_trending_uses_positions_without_timestamps():
    model = create_model("trending", half_life=1.0).fit(_data([[0, 1, 2], [2]]))
    # positions 0,1,2 and 0; reference = position 2
    np.testing.assert_allclose(model.values_, [0.25, 0.5, 1.0 + 0.25])


def test_trending_partial_fit_equals_full_fit():
    items, ts = np.array([0, 1, 2, 1, 0, 1]), np.array([0.0, 10.0, 20.0, 40.0, 45.0, 90.0])
    full = create_model("trending", half_life=30.0).fit(_data([items], n_items=3, ts=[ts]))
    inc = create_model("trending", half_life=30.0).fit(_data([items[:3]], n_items=3, ts=[ts[:3]]))
    inc.partial_fit(items[3:5], ts[3:5]).partial_fit(items[5:], ts[5:])
    np.testing.assert_allclose(inc.values_, full.values_, rtol=1e-12)
    assert inc.ref_time_ == full.ref_time_ == 90.0
    # an old event arriving late decays from its own time
    inc.partial_fit(np.array([2]), np.array([60.0]))
    np.testing.assert_allclose(inc.values_[2] - full.values_[2], 2 ** (-1.0), rtol=1e-12)


def test_trending_partial_fit_checks_inputs():
    model = create_model("trending").fit(_data([[0, 1]], ts=[[0.0, 1.0]]))
    with pytest.raises(ConfigError, match="one timestamp per item"):
        model.partial_fit(np.array([0, 1]), np.array([2.0]))
    with pytest.raises(ConfigError, match=r"'item_indices' parameter of trending.partial_fit"):
        model.partial_fit(np.array([5]), np.array([2.0]))
    with pytest.raises(NotFittedError, match="not fitted yet"):
        create_model("trending").partial_fit(np.array([0]), np.array([0.0]))
    with pytest.raises(ConfigError, match=r"The 'half_life' parameter of trending must be a number in \(0"):
        create_model("trending", half_life=0).fit(_data([[0]]))


# ---- repeat -----------------------------------------------------------------------
def test_repeat_orders_by_recency_and_frequency():
    data = _data([[3, 3, 3, 4]], n_items=5)
    model = create_model("repeat", decay=0.5, prior_weight=0.01).fit(data)
    scores = model.score(Context(items=np.array([0, 1, 0, 2])), np.arange(5))
    prior = 0.01 * np.array([0, 0, 0, 1.0, 1 / 3])
    np.testing.assert_allclose(scores, np.array([0.125 + 0.5, 0.25, 1.0, 0, 0]) + prior, rtol=1e-6)
    assert list(np.argsort(-scores)) == [2, 0, 1, 3, 4]  # recent, frequent, old; then the prior


def test_repeat_time_half_life_and_empty_context():
    model = create_model("repeat", half_life=60.0, prior_weight=0.0).fit(_data([[0, 1, 2]]))
    ctx = Context(items=np.array([0, 1]), ts=np.array([0.0, 60.0]), time=120.0)
    np.testing.assert_allclose(model.score(ctx, np.arange(3)), [0.25, 0.5, 0.0])
    with_prior = create_model("repeat").fit(_data([[0, 1, 1, 2, 1]]))
    assert int(np.argmax(with_prior.score(EMPTY, np.arange(3)))) == 1
    with pytest.raises(ConfigError, match=r"The 'decay' parameter of repeat must be a number in \(0, 1\]"):
        create_model("repeat", decay=1.5).fit(_data([[0]]))


# ---- itemknn ----------------------------------------------------------------------
def test_itemknn_cosine_matches_dense_numpy():
    rng = np.random.default_rng(0)
    dense = (rng.random((30, 8)) < 0.35) * rng.integers(1, 4, size=(30, 8))
    sim = cosine_similarity(sp.csr_matrix(dense.astype(np.float32))).toarray()
    norms = np.linalg.norm(dense, axis=0)
    expect = dense.T @ dense / np.outer(norms, norms)
    np.fill_diagonal(expect, 0.0)
    np.testing.assert_allclose(sim, expect, rtol=1e-6)
    shrunk = cosine_similarity(sp.csr_matrix(dense.astype(np.float32)), shrink=10.0).toarray()
    expect_shrunk = dense.T @ dense / (np.outer(norms, norms) + 10.0)
    np.fill_diagonal(expect_shrunk, 0.0)
    np.testing.assert_allclose(shrunk, expect_shrunk, rtol=1e-6)


def test_itemknn_top_k_keeps_largest_per_row():
    m = sp.csr_matrix(np.array([[0, 0.3, 0.9, 0.1], [0.5, 0, 0.2, 0.7], [0.4, 0.4, 0, 0]]))
    top = top_k_per_row(m, 2).toarray()
    np.testing.assert_allclose(top, [[0, 0.3, 0.9, 0], [0.5, 0, 0, 0.7], [0.4, 0.4, 0, 0]], rtol=1e-6)


def test_itemknn_scores_recent_items_neighbours():
    # users: {0,1}, {0,1}, {1,2}, {3}: sim(0,1) = 2/sqrt(2*3), sim(1,2) = 1/sqrt(3), item 3 alone
    data = _data([[0, 1], [0, 1], [1, 2], [3]])
    model = create_model("itemknn", recency_decay=0.5, pop_prior=0.0).fit(data)
    s01, s12 = 2 / np.sqrt(6), 1 / np.sqrt(3)
    np.testing.assert_allclose(
        model.similarity_.toarray(),
        [[0, s01, 0, 0], [s01, 0, s12, 0], [0, s12, 0, 0], [0, 0, 0, 0]],
        rtol=1e-6,
    )
    scores = model.score(Context(items=np.array([2, 0])), np.arange(4))  # 0 is the newest
    np.testing.assert_allclose(scores, [0, 1.0 * s01 + 0.5 * s12, 0, 0], rtol=1e-6)
    k1 = create_model("itemknn", k_neighbors=1).fit(data)
    assert k1.similarity_.getnnz(axis=1).max() == 1
    with pytest.raises(
        ConfigError,
        match=r"The 'k_neighbors' parameter of itemknn must be an int in \[1, inf\)\. Got 0 instead\.",
    ):
        create_model("itemknn", k_neighbors=0).fit(data)


# ---- als / bpr --------------------------------------------------------------------
def _blocks() -> TrainData:
    rng = np.random.default_rng(1)
    return _data([rng.choice(np.arange(10) + 10 * (u % 2), size=5, replace=False) for u in range(40)])


def test_als_known_user_uses_factors_and_fold_in_matches_implicit():
    data = _blocks()
    model = create_model("als", factors=4, iterations=5, regularization=0.1, alpha=3.0).fit(data)
    known = model.score_batch([data.context(3)])[0]
    np.testing.assert_allclose(known, model.item_factors_ @ model.user_factors_[3], rtol=1e-5)
    ctx = Context(items=np.array([0, 1, 1, 4]), user_index=3)  # not user 3's training row: fold in
    ref = AlternatingLeastSquares(factors=4, regularization=0.1, alpha=3.0)
    ref.item_factors = model.item_factors_.copy()
    row = sp.csr_matrix(
        (np.array([1.0, 2.0, 1.0], np.float32), np.array([0, 1, 4]), np.array([0, 3])),
        shape=(1, data.n_items),
    )
    expect = ref.recalculate_user(0, row) @ model.item_factors_.T
    np.testing.assert_allclose(model.score(ctx, np.arange(data.n_items)), expect, rtol=1e-3, atol=1e-4)
    with pytest.raises(ConfigError, match=r"The 'factors' parameter of als must be an int in \[1, 4096\]"):
        create_model("als", factors=0).fit(data)


def test_bpr_fold_in_is_mean_of_item_factors():
    data = _blocks()
    model = create_model("bpr", factors=4, iterations=20).fit(data)
    assert model.item_factors_.shape == (data.n_items, 5)  # implicit's bias column
    vec = model.item_factors_[[2, 5, 5]].mean(axis=0)
    vec[-1] = 1.0
    ctx = Context(items=np.array([2, 5, 5]))
    np.testing.assert_allclose(
        model.score(ctx, np.arange(data.n_items)), model.item_factors_ @ vec, rtol=1e-5, atol=1e-6
    )


def test_unknown_items_in_context_are_ignored():
    data = _blocks()
    for name in ("repeat", "itemknn", "als"):
        model = create_model(name, **({"factors": 4, "iterations": 3} if name == "als" else {})).fit(data)
        a = model.score(Context(items=np.array([1, 2])), np.arange(data.n_items))
        b = model.score(Context(items=np.array([1, -1, 2, 999])), np.arange(data.n_items))
        np.testing.assert_allclose(a, b, err_msg=name)


# ---- real data: Amazon Beauty, leave-one-out, scored on a slice of users ----------
# Item-item and factor models need the whole co-occurrence graph: trained on only the
# first 3000 users (9k items, mostly seen once) pop wins. So every model trains on all
# users' sequences minus their last item, and the first 3000 users are scored.
def _beauty(root) -> tuple[TrainData, np.ndarray]:
    path = root / "amazon-beauty" / "user_sequence.txt"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    users, seqs, vocab = [], [], {}
    with path.open() as fh:
        for line in fh:
            user, *items = line.split()
            users.append(user)
            seqs.append(np.array([vocab.setdefault(i, len(vocab)) for i in items], dtype=np.int64))
    data = TrainData(
        item_ids=np.array(list(vocab)), user_ids=np.array(users), sequences=[s[:-1] for s in seqs]
    )
    return data, np.array([s[-1] for s in seqs])


def _recall_at_10(model, data: TrainData, target: np.ndarray, n_eval: int) -> float:
    scores = model.score_batch([data.context(u) for u in range(n_eval)])  # (n_eval, n_items)
    hit = scores[np.arange(n_eval), target[:n_eval]]
    # rank of the target; ties count half (no credit for a constant score)
    rank = (scores > hit[:, None]).sum(axis=1) + 0.5 * ((scores == hit[:, None]).sum(axis=1) - 1)
    return float(np.mean(rank < 10))


def test_itemknn_and_als_beat_pop_on_amazon_beauty(shared_data):
    data, target = _beauty(shared_data)
    assert (data.n_users, data.n_items) == (22363, 12101)
    recall = {
        name: _recall_at_10(create_model(name).fit(data), data, target, n_eval=3000)
        for name in ("pop", "itemknn", "als")
    }
    assert 0.005 < recall["pop"] < 0.05, recall
    assert recall["itemknn"] > 2 * recall["pop"], recall
    assert recall["als"] > 2 * recall["pop"], recall
