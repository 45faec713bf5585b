"""Exposure fairness metrics, fair re-rankers and the ``evaluate --rerank`` trade-off."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from liveshelf.errors import ConfigError
from liveshelf.evaluation import fairness as F
from liveshelf.evaluation import metrics as M
from liveshelf.rerank import (
    Calibrated,
    ExposureCap,
    ExposurePenalty,
    history_target,
    parse_rerank,
    position_weights,
)

runner = CliRunner()
LOG = 1.0 / np.log2(np.arange(10) + 2.0)


# ---------------------------------------------------------------------------------------
# metrics on hand-made lists
# ---------------------------------------------------------------------------------------
def test_exposure_by_hand():
    top = np.array([[0, 1, 2], [0, 2, -1], [3, 0, 1]])
    e = F.item_exposure(top, 5)
    assert e == pytest.approx([LOG[0] + LOG[0] + LOG[1], LOG[1] + LOG[2], LOG[2] + LOG[1], LOG[0], 0.0])
    assert F.item_exposure(top, 5, discount="rbp", p=0.5) == pytest.approx([2.5, 0.75, 0.75, 1.0, 0.0])
    counts = F.item_exposure(top, 5, discount="none")
    assert counts.tolist() == M.exposure_counts(top, 5).tolist() == [3, 2, 2, 1, 0]
    # with plain counts the weighted metrics are exactly the ones of metrics.py
    assert F.weighted_exposure_gini(top, 5, "none") == M.exposure_gini(top, 5)
    tail = np.array([False, False, True, True, True])
    assert F.exposure_tail_share(top, tail, "none") == M.tail_share(top, tail) == pytest.approx(3 / 8)
    assert F.exposure_tail_share(top, tail) == pytest.approx((LOG[2] + LOG[1] + LOG[0]) / e.sum())
    # groups: host 0 = items 0, 1; host 1 = items 2, 3; item 4 unknown
    g = F.group_exposure(top, np.array([0, 0, 1, 1, -1]), discount="none")
    assert g.tolist() == [5.0, 3.0]
    # one item takes everything vs everyone equal
    assert F.weighted_exposure_gini(np.zeros((4, 1), dtype=int), 4) == pytest.approx(0.75)
    assert F.weighted_exposure_gini(np.arange(4)[:, None], 4) == 0.0


def test_disparity_by_hand():
    d = F.exposure_disparity(np.array([6.0, 2.0, 0.0]), np.array([1.0, 1.0, 2.0]))
    assert d.exposure_share.tolist() == [0.75, 0.25, 0.0]
    assert d.relevance_share.tolist() == [0.25, 0.25, 0.5]
    assert d.ratio.tolist() == [3.0, 1.0, 0.0]
    assert d.gap == pytest.approx(0.5)  # ½ (0.5 + 0 + 0.5)
    fair = F.exposure_disparity(np.array([2.0, 6.0]), np.array([1.0, 3.0]))
    assert fair.gap == 0.0 and fair.ratio.tolist() == [1.0, 1.0]
    out = F.exposure_disparity(np.array([1.0, 1.0]), np.array([0.0, 2.0])).to_dict(["head", "tail"])
    assert out["groups"]["head"]["ratio"] is None and out["gap"] == 0.5
    with pytest.raises(ConfigError, match="same length"):
        F.exposure_disparity(np.ones(2), np.ones(3))


def test_fairness_and_accuracy_rows_by_hand():
    top = np.array([[0, 1], [0, 2], [0, 3]])
    tail = np.array([False, True, True, True])
    m = F.fairness_metrics(top, 4, tail=tail, relevance=np.array([0.0, 1.0, 1.0, 1.0]))
    assert m["coverage@2"] == 1.0 and m["tail_share@2"] == 0.5
    head = 3 * LOG[0] / (3 * LOG[0] + 3 * LOG[1])
    assert m["disparity@2"] == pytest.approx(head)  # head gets `head` of exposure and none of relevance
    assert F.list_ranks(top, np.array([1, 0, 9])).tolist() == [1, 0, 2]
    acc = F.accuracy_metrics(top, np.array([1, 0, 9]), k=2)
    assert acc["ndcg@2"] == pytest.approx((LOG[1] + 1.0) / 3) and acc["recall@2"] == pytest.approx(2 / 3)


# ---------------------------------------------------------------------------------------
# re-rankers on synthetic candidates
# ---------------------------------------------------------------------------------------
def _candidates(n_users: int = 300, n_items: int = 400, n: int = 60, seed: int = 0):
    """Zipf-popular items plus per-user taste: every user's top-n, best first."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    scores = np.log(pop)[None, :] + rng.gumbel(size=(n_users, n_items)) * 0.7
    items = M.topk_indices(scores, n)
    return items, np.take_along_axis(scores, items, 1), n_items


def _valid_lists(lists: np.ndarray, items: np.ndarray) -> None:
    for row, cand in zip(lists, items, strict=True):
        got = row[row >= 0]
        assert len(set(got.tolist())) == len(got)
        assert set(got.tolist()) <= set(cand.tolist())


def test_lambda_zero_is_the_model_order_exactly():
    items, scores, _ = _candidates()
    scores[:, 1] = scores[:, 0]  # ties keep the model's order
    items[5, 40:] = -1
    scores[5, 40:] = -np.inf
    for r in (
        ExposurePenalty(lam=0.0),
        ExposureCap(cap=1.0),
        Calibrated(lam=0.0, groups=np.arange(400) % 3, target=np.ones(3) / 3),
    ):
        assert np.array_equal(r.rerank(items, scores, 10), items[:, :10]), r


def test_penalty_lowers_gini_as_lambda_grows():
    items, scores, n_items = _candidates()
    ginis, ndcgs = [], []
    targets = items[:, 0]  # the model's favourite is the "truth": any change costs accuracy
    for lam in (0.0, 0.1, 0.3, 1.0, 3.0):
        lists = ExposurePenalty(lam=lam).rerank(items, scores, 10)
        _valid_lists(lists, items)
        assert (lists >= 0).all()
        ginis.append(F.weighted_exposure_gini(lists, n_items))
        ndcgs.append(F.accuracy_metrics(lists, targets)["ndcg@10"])
    assert all(b <= a + 0.01 for a, b in zip(ginis, ginis[1:], strict=False)), ginis
    assert ginis[-1] < ginis[0] - 0.15, ginis
    assert ndcgs[0] == 1.0 and ndcgs[-1] < ndcgs[0]
    # exposure counted per group (host) spreads hosts, not items
    hosts = np.arange(n_items) % 7
    lists = ExposurePenalty(lam=3.0, groups=hosts).rerank(items, scores, 10)
    base = F.group_exposure(items[:, :10], hosts)
    fair = F.group_exposure(lists, hosts)
    assert M.gini(fair) < M.gini(base)


def test_cap_holds_and_counts_overflow():
    items, scores, n_items = _candidates()
    w = position_weights(10)
    before = F.item_exposure(items[:, :10], n_items).max() / (len(items) * w.sum())
    for cap, block in ((0.02, 64), (0.01, 1), (0.01, 300)):
        r = ExposureCap(cap=cap, block=block)
        lists = r.rerank(items, scores, 10)
        _valid_lists(lists, items)
        share = F.item_exposure(lists, n_items) / (len(items) * w.sum())
        assert r.overflow_ == 0 and (lists >= 0).all()
        assert share.max() <= cap + 1e-12 < before
    # a cap no list can meet with 12 candidates: lists stay full, overflow is counted
    r = ExposureCap(cap=0.001)
    lists = r.rerank(items[:, :12], scores[:, :12], 10)
    assert (lists >= 0).all() and r.overflow_ > 0


def test_calibrated_moves_the_mix_towards_the_target():
    items, scores, n_items = _candidates()
    tail = (np.arange(n_items) >= 80).astype(np.int64)  # items are popularity-ordered: 80 head items
    target = np.array([0.5, 0.5])

    def tail_mix(lists):
        return tail[lists].mean()

    mixes = [
        tail_mix(Calibrated(lam=lam, groups=tail, target=target).rerank(items, scores, 10))
        for lam in (0.0, 0.5, 0.99)
    ]
    assert mixes[0] < mixes[1] <= mixes[2] and abs(mixes[2] - 0.5) < abs(mixes[0] - 0.5)
    hist = history_target([np.array([0, 1, 100]), np.array([], dtype=int)], tail, 2)
    assert hist.tolist() == [[2 / 3, 1 / 3], [0.5, 0.5]]


def test_specs_and_errors():
    got = parse_rerank(["fair:lambda=0,0.1", "cap:0.01", "calib:0.5", "fair:0.1"])
    assert [s.label for s in got] == ["fair:lambda=0", "fair:lambda=0.1", "cap:0.01", "calib:lambda=0.5"]
    assert parse_rerank(None) == []
    with pytest.raises(ConfigError, match="METHOD:VALUES with METHOD one of"):
        parse_rerank("diverse:0.5")
    assert [s.label for s in parse_rerank("mmr:1,0.5")] == ["mmr:lambda=1", "mmr:lambda=0.5"]
    with pytest.raises(ConfigError, match=r"'lambda' values of '--rerank mmr' must be numbers in \[0, 1\]"):
        parse_rerank("mmr:2")
    with pytest.raises(
        ConfigError, match=r"'cap' values of '--rerank cap' must be shares in \(0, 1\]\. Got 2"
    ):
        parse_rerank("cap:2")
    with pytest.raises(ConfigError, match="names the parameter 'lam'; fair takes 'lambda'"):
        parse_rerank("fair:lam=1")
    with pytest.raises(ConfigError, match="'x' is not a number"):
        parse_rerank("fair:0.1,x")
    with pytest.raises(ConfigError, match="The 'lam' parameter of ExposurePenalty must be a number >= 0"):
        ExposurePenalty(lam=-1).rerank(np.zeros((1, 3), int), np.zeros((1, 3)), 2)
    with pytest.raises(ConfigError, match="same shape"):
        ExposureCap().rerank(np.zeros((2, 3), int), np.zeros((2, 4)), 2)
    with pytest.raises(ConfigError, match="needs 'groups'"):
        Calibrated(lam=0.5).rerank(np.zeros((1, 3), int), np.zeros((1, 3)), 2)
    from liveshelf.evaluation.runner import ModelEvaluation, rerank_tradeoff

    with pytest.raises(ConfigError, match=r"evaluate_model\(\.\.\., keep_candidates=N\)"):
        rerank_tradeoff(ModelEvaluation(metrics={}), None, parse_rerank("fair:1"))


# ---------------------------------------------------------------------------------------
# on real data: a slice of amazon-scientific
# ---------------------------------------------------------------------------------------
def _slice_unisrec(src, dst, n_users: int):
    """Copy a UniSRec folder keeping the users with index < n_users (catalogue files unchanged)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        lines = f.read_text().splitlines(keepends=True)
        if f.name.endswith(".inter"):
            lines = lines[:1] + [ln for ln in lines[1:] if int(ln.split("\t", 1)[0]) < n_users]
        (dst / f.name).write_text("".join(lines))
    return dst


@pytest.fixture(scope="module")
def sci_slice(shared_data, tmp_path_factory):
    return _slice_unisrec(shared_data / "amazon-scientific", tmp_path_factory.mktemp("sci") / "sci", 2000)


def test_lambda_zero_matches_evaluate_model(sci_slice):
    from liveshelf.data.formats import load_dataset
    from liveshelf.evaluation.protocols import loo
    from liveshelf.evaluation.runner import evaluate_model, rerank_tradeoff
    from liveshelf.models.classic.itemknn import ItemKNN

    split = loo(load_dataset(f"unisrec:{sci_slice}"))
    assert len(split.cases) == 2000
    model = ItemKNN().fit(split.train)
    ev = evaluate_model(model, split, ties="index", keep_candidates=50)
    items, scores = ev.candidates
    assert items.shape == (2000, 50) and (np.diff(scores, axis=1) <= 0).all()
    rows = rerank_tradeoff(ev, split, parse_rerank("fair:lambda=0,1"))
    none, zero, one = rows
    # λ = 0 is no re-ranking; both equal evaluate_model's numbers when ties break by index
    assert zero["ndcg@10"] == none["ndcg@10"] == ev.metrics["ndcg@10"]
    assert none["recall@10"] == ev.metrics["recall@10"] and none["gini@10"] == ev.metrics["gini@10"]
    assert none["coverage@10"] == ev.metrics["coverage@10"]
    assert one["exposure_gini@10"] < none["exposure_gini@10"] and one["ndcg_cost"] > 0


def test_evaluate_rerank_cli_on_a_slice(sci_slice, tmp_path):
    from liveshelf.cli import app

    out = tmp_path / "res"
    r = runner.invoke(
        app,
        [
            "evaluate",
            "--data",
            f"unisrec:{sci_slice}",
            "--model",
            "pop,itemknn",
            "--out",
            str(out),
            "--rerank",
            "fair:lambda=0,0.3,1,3",
            "--rerank",
            "cap:0.001",
            "--rerank-candidates",
            "50",
        ],
    )
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert set(res["models"]["pop"]) == {"metrics", "fit_seconds", "params"}  # main results unchanged
    rr = res["rerank"]
    assert rr["candidates"] == 50 and rr["settings"] == [
        "fair:lambda=0",
        "fair:lambda=0.3",
        "fair:lambda=1",
        "fair:lambda=3",
        "cap:0.001",
    ]
    for name in ("pop", "itemknn"):
        rows = {row["label"]: row for row in rr["models"][name]}
        assert list(rows) == ["none", *rr["settings"]]
        none = rows["none"]
        assert rows["fair:lambda=0"]["ndcg@10"] == none["ndcg@10"]
        assert rows["fair:lambda=0"]["exposure_gini@10"] == none["exposure_gini@10"]
        # the fair re-ranker lowers exposure Gini (pop: only within its 50 candidates); NDCG cost reported
        assert rows["fair:lambda=3"]["exposure_gini@10"] < none["exposure_gini@10"]
        if name == "pop":  # everyone got the same ten items; now the 50 candidates are shared out
            assert rows["fair:lambda=3"]["coverage@10"] > 2 * none["coverage@10"]
        assert rows["cap:0.001"]["exposure_gini@10"] < none["exposure_gini@10"]
        # pop's 50 candidates cannot spread exposure under a 0.1 % cap: the slots over the cap are counted
        assert (rows["cap:0.001"]["overflow"] > 0) == (name == "pop")
        for row in rows.values():
            assert row["ndcg_cost"] == pytest.approx((none["ndcg@10"] - row["ndcg@10"]) / none["ndcg@10"])
            assert 0 <= row["disparity@10"] <= 1 and 0 <= row["exposure_gini@10"] <= 1
    knn = {row["label"]: row for row in rr["models"]["itemknn"]}
    assert knn["fair:lambda=3"]["exposure_gini@10"] < 0.6 * knn["none"]["exposure_gini@10"]
    assert 0 < knn["fair:lambda=3"]["ndcg_cost"] < 0.6
    report = (out / "report.md").read_text()
    assert "## Fair re-ranking trade-off" in report and "| itemknn | fair:lambda=3 |" in report
    assert "tradeoff.png" in re.findall(r"\]\(([^)]+\.png)\)", report)
    assert (out / "tradeoff.png").stat().st_size > 5000
    assert "fair re-ranking over the top 50" in r.output

    bad = runner.invoke(
        app, ["evaluate", "--data", f"unisrec:{sci_slice}", "--model", "pop", "--rerank", "fair:lambda=-1"]
    )
    assert bad.exit_code == 2 and "must be numbers >= 0" in bad.output


def test_mmr_offline_is_the_serving_step():
    """``mmr:lambda=1`` keeps the model's lists; lower lambda diversifies the categories exactly as serving's mmr."""
    from liveshelf.rerank import MMRDiversity
    from liveshelf.rerank.diversity import mmr

    rng = np.random.default_rng(3)
    cats = rng.integers(0, 4, size=60)
    items = np.stack([rng.permutation(60)[:20] for _ in range(30)])
    scores = np.sort(rng.random((30, 20)), axis=1)[:, ::-1]  # best first
    same = MMRDiversity(lam=1.0, groups=cats).rerank(items, scores, 10)
    np.testing.assert_array_equal(same, items[:, :10])
    div = MMRDiversity(lam=0.3, groups=cats).rerank(items, scores, 10)
    n_cats = lambda lists: np.mean([len(set(cats[row])) for row in lists])  # noqa: E731
    assert n_cats(div[:, :4]) > n_cats(same[:, :4])
    onehot = np.eye(4)[cats[items[0]]]
    assert div[0].tolist() == items[0][mmr(scores[0], onehot, 10, 0.3)].tolist()
