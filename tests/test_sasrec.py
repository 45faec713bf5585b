"""SASRec / LiveSASRec: learning, causality, early stopping, persistence, availability."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from liveshelf.config import data_dir
from liveshelf.errors import ConfigError, NotFittedError
from liveshelf.models import Context, TrainData, create_model, load_model
from liveshelf.models.sasrec import LiveSASRec, SASRec
from liveshelf.models.sasrec.livesasrec import repeat_buckets
from liveshelf.models.trainer import Callback, EarlyStopping, Trainer

FAST = {
    "hidden": 32,
    "n_layers": 1,
    "n_heads": 2,
    "max_len": 12,
    "dropout": 0.1,
    "lr": 5e-3,
    "batch_size": 64,
    "n_threads": 1,
}


def successor_data(n_items: int = 30, n_users: int = 240, seed: int = 0) -> TrainData:
    """Item i is always followed by item i + 1 (mod n_items)."""
    rng = np.random.default_rng(seed)
    seqs, valid = [], []
    for _ in range(n_users):
        start, n = int(rng.integers(n_items)), int(rng.integers(4, 12))
        full = (start + np.arange(n + 1)) % n_items
        seqs.append(full[:-1])
        valid.append(full[-1])
    return TrainData(
        item_ids=np.array([f"i{i}" for i in range(n_items)], dtype=object),
        user_ids=np.array([f"u{u}" for u in range(n_users)], dtype=object),
        sequences=seqs,
        valid_targets=np.array(valid),
    )


@pytest.fixture(scope="module")
def fitted() -> tuple[SASRec, TrainData]:
    data = successor_data()
    return SASRec(**FAST, epochs=15, patience=15, seed=0).fit(data), data


def test_learns_successor_pattern(fitted):
    model, data = fitted
    contexts = [Context(items=(np.arange(k, k + 5)) % 30) for k in range(30)]
    top1 = model.score_batch(contexts).argmax(1)
    hr1 = float(np.mean(top1 == (np.arange(30) + 5) % 30))
    assert hr1 > 0.9
    assert model.history_[-1]["ndcg@10"] > 0.9
    assert {"epoch", "seconds", "cpu_seconds", "loss", "ndcg@10", "recall@10"} <= set(model.history_[0])
    assert 1 <= model.best_epoch_ <= 15 and model.fit_seconds_ > 0


def test_save_load_round_trip(fitted, tmp_path):
    model, _ = fitted
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert isinstance(again, SASRec) and again.get_params() == model.get_params()
    ctxs = [Context(items=[1, 2, 3]), Context(items=[7]), Context(items=[])]
    np.testing.assert_allclose(again.score_batch(ctxs), model.score_batch(ctxs), rtol=1e-5, atol=1e-5)
    # batch == single
    np.testing.assert_allclose(model.score_batch(ctxs)[1], model.score(ctxs[1], np.arange(30)), atol=1e-5)


def test_causal_masking(fitted):
    model, _ = fitted
    net = model.net_
    a = torch.tensor([[0, 0, 3, 4, 5, 6]])
    b = a.clone()
    b[0, -1] = 20  # change the future
    with torch.no_grad():
        ha, hb = net(a), net(b)
    torch.testing.assert_close(ha[:, :-1], hb[:, :-1])
    assert not torch.allclose(ha[:, -1], hb[:, -1])
    # padding on the left does not change the outputs of real positions
    with torch.no_grad():
        hc = net(torch.tensor([[3, 4, 5, 6]]))
    torch.testing.assert_close(ha[:, 2:], hc)


def test_unfitted_and_bad_params():
    with pytest.raises(NotFittedError, match="not fitted yet"):
        SASRec().score_batch([Context(items=[1])])
    with pytest.raises(ConfigError, match=r"'hidden' parameter of SASRec must be a multiple of n_heads=3"):
        SASRec(hidden=64, n_heads=3).fit(successor_data())
    with pytest.raises(ConfigError, match=r"'dropout' parameter of LiveSASRec must be a float in \[0, 1\)"):
        LiveSASRec(dropout=1.5).fit(successor_data())
    with pytest.raises(ConfigError, match=r"'norm' parameter of SASRec must be 'pre'"):
        SASRec(norm="mid").fit(successor_data())
    with pytest.raises(
        ConfigError, match=r"'label_smoothing' parameter of SASRec must be a float in \[0, 1\)"
    ):
        SASRec(label_smoothing=1.0).fit(successor_data())


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_both_layer_norm_placements_learn_and_stay_causal(norm):
    data = successor_data(n_users=120)
    model = SASRec(**FAST, norm=norm, label_smoothing=0.1, epochs=12, patience=12, seed=0).fit(data)
    assert max(h["ndcg@10"] for h in model.history_) > 0.8
    a = torch.tensor([[0, 0, 3, 4, 5, 6]])
    b = a.clone()
    b[0, -1] = 20
    with torch.no_grad():
        ha, hb, hc = model.net_(a), model.net_(b), model.net_(a[:, 2:])
    torch.testing.assert_close(ha[:, :-1], hb[:, :-1])
    torch.testing.assert_close(ha[:, 2:], hc)


class _Scripted(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


def test_early_stopping_restores_best_epoch():
    scores = iter([0.1, 0.5, 0.3, 0.2, 0.9])
    seen: list[int] = []

    class Record(Callback):
        def on_epoch_end(self, trainer, logs):
            seen.append(logs["epoch"])

    module = _Scripted()
    stopper = EarlyStopping("ndcg@10", patience=2)
    trainer = Trainer(
        module,
        torch.optim.SGD(module.parameters(), lr=1.0),
        loss_fn=lambda m, b: -m.w.sum(),
        batches=lambda e: [None],
        evaluate=lambda m: {"ndcg@10": next(scores)},
        epochs=5,
        callbacks=[stopper, Record()],
    ).fit()
    assert seen == [1, 2, 3, 4]  # stopped after 2 evaluations without improvement
    assert stopper.best_epoch == 2
    assert float(module.w.detach()) == pytest.approx(2.0)  # weights after epoch 2, not 4
    assert [h["ndcg@10"] for h in trainer.history] == [0.1, 0.5, 0.3, 0.2]


def test_eval_first_lets_the_initial_weights_win():
    module = _Scripted()
    stopper = EarlyStopping("ndcg@10", patience=2)
    scores = iter([0.7, 0.5, 0.6, 0.4])
    trainer = Trainer(
        module,
        torch.optim.SGD(module.parameters(), lr=1.0),
        loss_fn=lambda m, b: -m.w.sum(),
        batches=lambda e: [None],
        evaluate=lambda m: {"ndcg@10": next(scores)},
        epochs=5,
        eval_first=True,
        callbacks=[stopper],
    ).fit()
    assert [h["epoch"] for h in trainer.history] == [0, 1, 2]
    assert stopper.best_epoch == 0
    assert float(module.w.detach()) == 0.0  # the untrained weights were restored


def test_sasrec_keeps_best_validation_weights():
    data = successor_data(n_users=120)
    model = SASRec(**{**FAST, "lr": 3e-2}, epochs=6, patience=2, seed=1).fit(data)
    best = max(h["ndcg@10"] for h in model.history_)
    assert model.history_[model.best_epoch_ - 1]["ndcg@10"] == best
    now = model._validator(data, model._config())(model.net_)
    assert now["ndcg@10"] == pytest.approx(best, abs=1e-6)


def test_deterministic_with_seed():
    data = successor_data(n_users=60)
    a = SASRec(**FAST, epochs=2, seed=3).fit(data)
    b = SASRec(**FAST, epochs=2, seed=3).fit(data)
    ctx = [Context(items=[1, 2])]
    np.testing.assert_array_equal(a.score_batch(ctx), b.score_batch(ctx))


# ---- LiveSASRec --------------------------------------------------------------------------
def live_data(n_users: int = 300, n_items: int = 40, seed: int = 0):
    """Streamers live on a rotating schedule; viewers mostly return to favourites on air.

    Item i is available at step t when ``(t + i) % 4 != 0`` for even i and ``(t + i) % 3 == 0``
    for odd i; items 36..39 are never available (never watched).
    """
    rng = np.random.default_rng(seed)

    def available(t: float) -> np.ndarray:
        s = int(t)
        items = np.arange(36)
        on = np.where(items % 2 == 0, (s + items) % 4 != 0, (s + items) % 3 == 0)
        return items[on]

    seqs, times, valid, valid_t = [], [], [], []
    for _ in range(n_users):
        fav = rng.choice(36, size=3, replace=False)
        steps = np.sort(rng.choice(400, size=int(rng.integers(8, 16)) + 1, replace=False)).astype(np.float64)
        items = []
        for t in steps:
            on = available(t)
            f = np.intersect1d(fav, on)
            items.append(int(rng.choice(f)) if len(f) and rng.random() < 0.8 else int(rng.choice(on)))
        seqs.append(np.array(items[:-1]))
        times.append(steps[:-1])
        valid.append(items[-1])
        valid_t.append(steps[-1])
    data = TrainData(
        item_ids=np.array([f"s{i}" for i in range(n_items)], dtype=object),
        user_ids=np.array([f"u{u}" for u in range(n_users)], dtype=object),
        sequences=seqs,
        timestamps=times,
        valid_targets=np.array(valid),
        available=available,
        meta={"valid_times": np.array(valid_t)},
    )
    return data, available


def test_repeat_buckets_mark_last_occurrence():
    tokens = torch.tensor([[0, 5, 7, 5, 9]])
    times = torch.tensor([[0.0, 1.0, 2.0, 4.0, 5.0]], dtype=torch.float64)
    gap, count, recency, decayed = repeat_buckets(
        tokens, times, torch.full((1, 5), 8.0, dtype=torch.float64), 10
    )
    assert gap[0, 3].tolist() == [
        0,
        0,
        2 + 1,
        1 + 2,
        0,
    ]  # row t=3: item 7 (gap 6) and item 5 (last at j=3, gap 4)
    assert count[0, 3].tolist() == [0, 0, 1, 2, 0]  # item 5 was visited twice by t=3
    assert recency[0, 4].tolist() == [0, 0, 1 + 2, 1 + 1, 1]  # events since the last visit: 2, 1, 0
    assert decayed[0, 3].tolist() == pytest.approx([0, 0, 0.9, 0.81 + 1, 0])  # 0.9 ** events ago, summed
    assert (gap[0, 0] == 0).all()  # padding never counts


def test_untrained_livesasrec_ranks_like_repeat():
    data, available = live_data(n_users=40)
    model = LiveSASRec(**FAST, epochs=1, seed=0).fit(data)
    model._repeat_rate = 0.8  # the data's share of repeat interactions, as _prepare measures it
    model.net_ = model._make_net(data.n_items, model._config()).eval()  # the initial weights
    ctx = Context(items=np.array([3, 5, 3, 7, 3, 5]), ts=np.arange(6.0), time=10.0)
    scores = model.score_batch([ctx])[0]
    assert scores[3] > scores[5] > scores[7] > np.delete(scores, [3, 5, 7]).max()


def test_livesasrec_softmax_over_available_items_only():
    data, _ = live_data(n_users=40)
    model = LiveSASRec(**FAST, epochs=1, seed=0).fit(data)
    model._prepare(data)
    cfg = model._config()
    windows = model._windows(data, cfg)
    batch = next(iter(model._batches(windows, cfg, np.random.default_rng(0))))
    net = model.net_
    noise = torch.randn(4, 32, generator=torch.Generator().manual_seed(0)) * 3.0
    with torch.no_grad():
        before = float(model._loss(net, batch))
        net.item_emb.weight[37:] += noise  # items 36..39: never available, never watched
        net.item_bias[36:] += 5.0
        after = float(model._loss(net, batch))
    assert after == pytest.approx(before, rel=1e-6)
    plain = SASRec(**FAST, epochs=1, seed=0).fit(data)  # the full softmax does see them
    with torch.no_grad():
        a = float(plain._loss(plain.net_, batch))
        plain.net_.item_emb.weight[37:] += noise
        assert float(plain._loss(plain.net_, batch)) > a + 0.1


def test_livesasrec_beats_sasrec_with_availability_and_repeats():
    data, available = live_data()
    rng = np.random.default_rng(1)
    cases = []
    for u in range(data.n_users):  # test: the validation event, ranked among the live items
        cases.append(
            (
                Context(items=data.sequences[u], ts=data.timestamps[u], time=data.meta["valid_times"][u]),
                int(data.valid_targets[u]),
                available(data.meta["valid_times"][u]),
            )
        )
    rng.shuffle(cases)

    def ndcg(model) -> float:
        scores = model.score_batch([c for c, _, _ in cases])
        out = []
        for s, (_, target, cand) in zip(scores, cases, strict=True):
            rank = int((s[cand] > s[target]).sum())
            out.append(1 / np.log2(rank + 2) if rank < 10 else 0.0)
        return float(np.mean(out))

    params = {**FAST, "epochs": 8, "patience": 8, "seed": 0}
    live = ndcg(LiveSASRec(**params).fit(data))
    plain = ndcg(SASRec(**params).fit(data))
    assert live > plain + 0.05, (live, plain)


def test_registry_names():
    assert type(create_model("sasrec")) is SASRec
    assert type(create_model("livesasrec", n_time_buckets=8)) is LiveSASRec


# ---- real data -----------------------------------------------------------------------------
def test_beats_popularity_on_amazon_scientific_small():
    folder = data_dir() / "amazon-scientific-small"
    if not folder.exists():
        pytest.skip(f"real data not found at {folder} (set LIVESHELF_DATA_DIR)")
    rows: dict[int, tuple[list[int], int]] = {}
    for split in ("valid", "test"):
        with open(folder / f"Scientific.{split}.inter") as f:
            next(f)
            for line in f:
                u, ctx, t = line.rstrip("\n").split("\t")
                if split == "valid":
                    rows[int(u)] = ([int(x) for x in ctx.split()], int(t))
                else:
                    rows[int(u)] = (rows[int(u)][0], rows[int(u)][1], int(t))  # type: ignore[assignment]
    users = sorted(rows)
    n_items = len((folder / "Scientific.item2index").read_text().splitlines())
    seqs = [np.array(rows[u][0]) for u in users]
    data = TrainData(
        item_ids=np.array([str(i) for i in range(n_items)], dtype=object),
        user_ids=np.array([str(u) for u in users], dtype=object),
        sequences=seqs,
        valid_targets=np.array([rows[u][1] for u in users]),
    )
    model = SASRec(hidden=32, max_len=20, dropout=0.2, lr=5e-3, epochs=4, n_threads=1, seed=0).fit(data)
    ctxs = [Context(items=np.append(s, rows[u][1])) for s, u in zip(seqs, users, strict=True)]
    targets = np.array([rows[u][2] for u in users])
    scores = model.score_batch(ctxs)
    ranks = (scores > scores[np.arange(len(targets)), targets][:, None]).sum(1)
    pop = np.bincount(np.concatenate(seqs), minlength=n_items).astype(float)
    pop_ranks = (pop[None, :] > pop[targets][:, None]).sum(1)

    def ndcg(r):
        return float(np.mean(np.where(r < 10, 1 / np.log2(r + 2), 0.0)))

    assert ndcg(ranks) > ndcg(pop_ranks) + 0.01, (ndcg(ranks), ndcg(pop_ranks))


def _window_data(lengths: list[int]) -> TrainData:
    seqs = [np.arange(n, dtype=np.int64) % 30 for n in lengths]
    return TrainData(
        item_ids=np.array([f"i{k}" for k in range(30)], dtype=object),
        user_ids=np.array([f"u{k}" for k in range(len(lengths))], dtype=object),
        sequences=seqs,
    )


def test_training_windows_overlap_by_the_stride_and_cover_every_target():
    data = _window_data([120, 15, 1])
    model = SASRec(max_len=20, window_stride=5)
    cfg = model._config()
    w = model._windows(data, cfg)
    starts = w["starts"][w["users"] == 0]
    # ends every 5 items from the last (120) back to the first window that starts at 0
    assert sorted((starts + 21).clip(max=120).tolist(), reverse=True)[:3] == [120, 115, 110]
    assert starts.min() == 0 and (starts == 0).sum() == 1
    short = w["users"] == 1
    assert short.sum() == 1 and w["lengths"][short][0] == 14  # shorter than max_len + 1: one window
    assert 2 not in w["users"]  # one item: nothing to predict
    # every target of user 0 is predicted at least once; with max_len-long windows it is once exactly
    for stride, most in ((5, 4), (20, 1)):
        w = model._windows(data, dataclasses.replace(cfg, window_stride=stride))
        seen = np.zeros(120, dtype=np.int64)
        for k in np.flatnonzero(w["users"] == 0):
            n = int(w["lengths"][k])
            s = int(w["starts"][k])
            seen[s + 1 : s + 1 + n] += 1
        assert (seen[1:] >= 1).all() and seen[0] == 0
        assert seen.max() <= most and (stride != 20 or (seen[1:] == 1).all())


def test_window_stride_is_validated():
    with pytest.raises(ConfigError, match="window_stride"):
        SASRec(max_len=20, window_stride=21)._config()
    with pytest.raises(ConfigError, match="window_stride"):
        SASRec(window_stride=0)._config()
    assert SASRec(max_len=50)._config().stride == 50  # default: no overlap
    assert SASRec(max_len=50, window_stride=10)._config().stride == 10


def test_reduce_lr_on_plateau_halves_the_rate_after_patience_evaluations():
    from liveshelf.models.trainer import ReduceLROnPlateau

    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.4)
    scores = iter([0.1, 0.2, 0.2, 0.15, 0.3, 0.1, 0.1])
    trainer = Trainer(
        net,
        opt,
        loss_fn=lambda module, batch: module(batch).pow(2).mean(),
        batches=lambda epoch: [torch.ones(3, 2)],
        evaluate=lambda module: {"ndcg@10": next(scores)},
        epochs=7,
        callbacks=[plateau := ReduceLROnPlateau("ndcg@10", factor=0.5, patience=2)],
    ).fit()
    # epochs 3, 4 do not beat 0.2: halved after epoch 4; 0.3 at epoch 5 is a new best; 6, 7: halved again
    assert plateau.reductions == [4, 7]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    assert trainer.epoch == 7
    with pytest.raises(ConfigError, match="lr_decay"):
        SASRec(lr_decay=1.5)._config()


def test_sasrec_trains_with_plateau_decay_and_overlapping_windows():
    data = successor_data(n_users=60)
    model = SASRec(**{**FAST, "epochs": 4, "patience": 4}, lr_decay=0.5, lr_patience=1, window_stride=2).fit(
        data
    )
    assert len(model.history_) >= 1 and np.isfinite(model.score_batch([data.context(0)])).all()
