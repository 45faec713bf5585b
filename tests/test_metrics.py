"""Metrics: hand-computed cases and a slow pure-Python reference on random data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from liveshelf.errors import ConfigError
from liveshelf.evaluation import metrics as M
from liveshelf.evaluation.significance import compare, paired_bootstrap, paired_ttest


# ---------------------------------------------------------------------------- hand cases
def test_ranks_and_single_target_metrics_by_hand():
    scores = np.array([[0.1, 0.9, 0.5, 0.3], [1.0, 2.0, 3.0, 4.0]])
    ranks = M.target_ranks(scores, np.array([2, 0]))
    assert ranks.tolist() == [1, 3]
    assert M.recall_at_k(ranks, 2).tolist() == [1.0, 0.0]
    assert M.ndcg_at_k(ranks, 2).tolist() == pytest.approx([1 / math.log2(3), 0.0])
    assert M.mrr_at_k(ranks, 4).tolist() == pytest.approx([0.5, 0.25])
    assert M.precision_at_k(ranks, 2).tolist() == [0.5, 0.0]


def test_constant_scores_never_get_perfect_metrics():
    scores = np.zeros((5, 100))
    targets = np.arange(5)
    ranks = M.target_ranks(scores, targets)
    assert (ranks == 99).all()
    assert M.ndcg_at_k(ranks, 10).sum() == 0.0
    # index rule: ties broken by item index, same as the top-k lists
    assert M.target_ranks(scores, targets, ties="index").tolist() == [0, 1, 2, 3, 4]
    assert M.target_ranks(scores, targets, ties="optimistic").tolist() == [0] * 5


def test_ties_pessimistic_counts_only_other_tied_items():
    scores = np.array([[3.0, 1.0, 1.0, 1.0, 0.0]])
    assert M.target_ranks(scores, np.array([2])).tolist() == [3]  # 1 above + 2 tied
    assert M.target_ranks(scores, np.array([2]), ties="index").tolist() == [2]
    with pytest.raises(ConfigError, match="'ties' parameter of target_ranks"):
        M.target_ranks(scores, np.array([2]), ties="random")


def test_ranks_with_valid_mask_and_nan():
    scores = np.array([[5.0, np.nan, 1.0, 4.0, 2.0]])
    valid = np.array([[False, True, True, False, True]])
    assert M.target_ranks(scores, np.array([2]), valid).tolist() == [1]  # only item 4 beats it
    assert M.target_ranks(scores, np.array([0]), valid).tolist() == [3]  # target not valid: a miss
    assert M.target_ranks(scores, np.array([1])).tolist() == [4]  # NaN is -inf


def test_topk_orders_by_score_then_index_and_pads():
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    assert M.topk_indices(scores, 3).tolist() == [[1, 2, 4], [0, 1, 2]]
    valid = np.array([[True, False, False, True, False], [True] * 5])
    assert M.topk_indices(scores, 3, valid).tolist() == [[3, 0, -1], [0, 1, 2]]
    assert M.topk_indices(scores, 7)[0].tolist() == [1, 2, 4, 3, 0, -1, -1]


def test_multi_target_by_hand():
    topk = np.array([[4, 2, 7], [1, 0, 3]])
    out = M.multi_target_metrics(topk, [np.array([2, 9]), np.array([5])], n_items=10)
    assert out["hr"].tolist() == [1.0, 0.0]
    assert out["recall"].tolist() == [0.5, 0.0]
    assert out["precision"].tolist() == pytest.approx([1 / 3, 0.0])
    assert out["mrr"].tolist() == [0.5, 0.0]
    idcg = 1 + 1 / math.log2(3)
    assert out["ndcg"].tolist() == pytest.approx([(1 / math.log2(3)) / idcg, 0.0])


def test_auc_and_gauc_by_hand():
    assert M.auc([1, 0, 1, 0], [0.9, 0.1, 0.4, 0.5]) == pytest.approx(0.75)
    assert M.auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert math.isnan(M.auc([1, 1], [0.2, 0.3]))
    labels = [1, 0, 0, 1, 0, 1, 1]
    scores = [0.9, 0.2, 0.1, 0.3, 0.8, 0.5, 0.6]
    groups = ["a", "a", "a", "b", "b", "c", "c"]  # c has positives only: skipped
    assert M.gauc(labels, scores, groups) == pytest.approx((3 * 1.0 + 2 * 0.0) / 5)
    assert M.gauc(labels, scores, groups, weight="positives") == pytest.approx(0.5)


def test_beyond_accuracy_by_hand():
    topk = np.array([[0, 1, 2], [0, 1, -1]])
    assert M.coverage_at_k(topk, 6) == pytest.approx(0.5)
    cats = np.array([0, 0, 1, 1, 2, -1])
    div = M.intra_list_diversity(topk, categories=cats)
    assert div.tolist() == pytest.approx([2 / 3, 0.0])
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1, 1], [1, 1], [1, 1]])
    assert M.intra_list_diversity(topk, embeddings=emb).tolist() == pytest.approx([2 / 3, 1.0])
    import scipy.sparse as sp

    assert M.intra_list_diversity(topk, embeddings=sp.csr_matrix(emb)).tolist() == pytest.approx([2 / 3, 1.0])
    prob = M.item_probabilities(np.array([0, 0, 0, 1]), 4)  # counts 3,1,0,0 -> (c+1)/8
    assert prob.tolist() == pytest.approx([0.5, 0.25, 0.125, 0.125])
    assert M.novelty(np.array([[0, 1], [2, -1]]), prob).tolist() == pytest.approx([1.5, 3.0])
    assert M.gini([1, 1, 1, 1]) == 0.0
    assert M.gini([0, 0, 0, 4]) == pytest.approx(0.75)
    assert M.exposure_gini(np.array([[0, 0], [0, -1]]), 2) == pytest.approx(0.5)
    tail = M.long_tail_mask(np.array([5, 1, 9, 0, 1]), head_share=0.2)  # head = item 2
    assert tail.tolist() == [True, True, False, True, True]
    assert M.tail_share(np.array([[2, 0], [2, -1]]), tail) == pytest.approx(1 / 3)


# ---------------------------------------------------------------------------- reference
def _ref_rank(row, t, valid, ties):
    ts = row[t]
    r = 0
    for j, s in enumerate(row):
        if j == t or not valid[j]:
            continue
        if s > ts or (s == ts and (ties == "pessimistic" or (ties == "index" and j < t))):
            r += 1
    return r if valid[t] else sum(valid)


def _ref_topk(row, k, valid):
    items = sorted((j for j in range(len(row)) if valid[j]), key=lambda j: (-row[j], j))[:k]
    return items + [-1] * (k - len(items))


def _ref_ndcg_multi(top, targets, k):
    dcg = sum(1 / math.log2(i + 2) for i, x in enumerate(top[:k]) if x in targets)
    idcg = sum(1 / math.log2(i + 2) for i in range(min(len(targets), k)))
    return dcg / idcg


def _ref_auc(y, s):
    pos = [b for a, b in zip(y, s, strict=True) if a]
    neg = [b for a, b in zip(y, s, strict=True) if not a]
    return sum((p > q) + 0.5 * (p == q) for p in pos for q in neg) / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", [0, 1])
def test_against_pure_python_reference(seed):
    rng = np.random.default_rng(seed)
    b, n, k = 40, 30, 7
    scores = rng.integers(0, 6, size=(b, n)).astype(float)  # many ties on purpose
    valid = rng.random((b, n)) < 0.7
    targets = rng.integers(0, n, size=b)
    for ties in M.TIES:
        got = M.target_ranks(scores, targets, valid, ties=ties)
        want = [_ref_rank(scores[i], targets[i], valid[i], ties) for i in range(b)]
        assert got.tolist() == want
    ranks = M.target_ranks(scores, targets)
    for i, r in enumerate(ranks):
        assert M.ndcg_at_k(ranks, k)[i] == pytest.approx((1 / math.log2(r + 2)) if r < k else 0.0, abs=1e-9)
    top = M.topk_indices(scores, k, valid)
    assert top.tolist() == [_ref_topk(scores[i], k, valid[i]) for i in range(b)]
    # with the index rule ranks agree with the top-k lists
    ranks_idx = M.target_ranks(scores, targets, valid, ties="index")
    for i in range(b):
        in_top = targets[i] in top[i].tolist()
        assert in_top == (ranks_idx[i] < k and valid[i, targets[i]])
    # the block fast path (n >= 8k) on ties-heavy and tie-free float32 rows, and an all-equal row
    big = np.concatenate([rng.integers(0, 40, size=(6, 700)), rng.random((6, 700)), np.zeros((1, 700))])
    big = big.astype(np.float32)
    big_valid = rng.random(big.shape) < 0.8
    assert M.topk_indices(big, 12, big_valid).tolist() == [
        _ref_topk(big[i], 12, big_valid[i]) for i in range(len(big))
    ]
    sets = [rng.choice(n, size=rng.integers(1, 5), replace=False) for _ in range(b)]
    multi = M.multi_target_metrics(top, sets, n)
    for i in range(b):
        assert multi["ndcg"][i] == pytest.approx(
            _ref_ndcg_multi(top[i].tolist(), set(sets[i].tolist()), k), abs=1e-9
        )
        assert multi["recall"][i] == pytest.approx(
            len(set(top[i].tolist()) & set(sets[i].tolist())) / len(sets[i]), abs=1e-9
        )
    y = rng.random(200) < 0.3
    s = rng.integers(0, 10, size=200).astype(float)
    assert M.auc(y, s) == pytest.approx(_ref_auc(y.tolist(), s.tolist()), abs=1e-9)
    cats = rng.integers(-1, 4, size=n)
    div = M.intra_list_diversity(top, categories=cats)
    for i in range(b):
        items = [x for x in top[i] if x >= 0 and cats[x] >= 0]
        pairs = [(a, c) for ai, a in enumerate(items) for c in items[ai + 1 :]]
        want = sum(cats[a] != cats[c] for a, c in pairs) / len(pairs) if pairs else float("nan")
        assert (math.isnan(want) and math.isnan(div[i])) or div[i] == pytest.approx(want, abs=1e-9)
    counts = np.bincount(top[top >= 0], minlength=n)
    xs = sorted(counts.tolist())
    ref_gini = sum((2 * (i + 1) - n - 1) * x for i, x in enumerate(xs)) / (n * sum(xs))
    assert M.exposure_gini(top, n) == pytest.approx(ref_gini, abs=1e-9)


# ---------------------------------------------------------------------------- significance
def test_paired_tests():
    rng = np.random.default_rng(0)
    a = rng.random(300)
    b = a + 0.05 + rng.normal(0, 0.05, 300)
    t = compare(a, b, n_boot=500, seed=1)
    assert t.n == 300
    assert t.mean_diff == pytest.approx(float((b - a).mean()))
    assert t.ci_low < t.mean_diff < t.ci_high
    assert t.ci_low > 0 and t.p_ttest < 1e-6 and t.p_bootstrap == 0.0
    assert paired_bootstrap(a, b, n_boot=500, seed=1) == paired_bootstrap(a, b, n_boot=500, seed=1)
    same = compare(a, a.copy(), n_boot=100)
    assert same.mean_diff == 0.0 and same.p_ttest == 1.0
    noise = compare(a, a + rng.normal(0, 0.1, 300), n_boot=500)
    assert noise.ci_low < 0 < noise.ci_high and noise.p_ttest > 0.01
    assert paired_ttest([0.0, 1.0], [1.0, 2.0]) == 0.0  # constant non-zero difference
    with pytest.raises(ValueError, match="same length"):
        compare(a, b[:10])
