"""TextSeq: text-determined learning, inductive (cold item) scoring, persistence, conformance.

Item texts are encoded by a tiny randomly initialised BERT saved to a temporary folder, so
the tests run the real TextEncoder path (tokeniser, pooling, cache) without a download.
Items are "red" or "blue" by their text; users consume items of one colour only, so the
next item's colour is determined by the text of the context items.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from liveshelf.errors import ConfigError, NotFittedError
from liveshelf.evaluation.coldstart import evaluate_cold, hide_items
from liveshelf.evaluation.protocols import ProtocolSplit, TestCase
from liveshelf.models import BaseRecommender, Context, Recommender, TrainData, load_model
from liveshelf.models.registry import get_model_class
from liveshelf.models.textseq import TextSeq
from liveshelf.text.encoder import TextEncoder

torch.set_num_threads(2)

N_ITEMS = 40  # even = red, odd = blue
COLD = (36, 37, 38, 39)  # never in training sequences
WORDS = {0: "red crimson scarlet ruby cherry", 1: "blue azure navy cobalt sapphire"}
FAST = {
    "hidden": 32,
    "n_layers": 1,
    "n_heads": 2,
    "max_len": 10,
    "dropout": 0.1,
    "lr": 5e-3,
    "batch_size": 64,
    "n_threads": 2,
    "epochs": 15,
    "patience": 15,
    "seed": 0,
}


def item_text(i: int) -> str:
    return f"{WORDS[i % 2]} widget n{i}"


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> str:
    from transformers import BertConfig, BertModel, BertTokenizer

    path = tmp_path_factory.mktemp("tiny-bert")
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "widget",
        *" ".join(WORDS.values()).split(),
        *[f"n{i}" for i in range(N_ITEMS)],
    ]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(path / "vocab.txt")).save_pretrained(str(path))
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    BertModel(cfg).save_pretrained(str(path))
    return str(path)


def colour_data(n_users: int = 200, seed: int = 0) -> TrainData:
    rng = np.random.default_rng(seed)
    warm = {c: np.array([i for i in range(N_ITEMS) if i % 2 == c and i not in COLD]) for c in (0, 1)}
    seqs, valid = [], []
    for u in range(n_users):
        items = rng.choice(warm[u % 2], size=int(rng.integers(5, 10)))
        seqs.append(items[:-1])
        valid.append(items[-1])
    return TrainData(
        item_ids=np.array([f"i{i}" for i in range(N_ITEMS)], dtype=object),
        user_ids=np.array([f"u{u}" for u in range(n_users)], dtype=object),
        sequences=seqs,
        valid_targets=np.array(valid),
        item_text=[item_text(i) for i in range(N_ITEMS)],
    )


@pytest.fixture(scope="module", params=[False, True], ids=["text", "text+id"])
def fitted(request, encoder_dir, tmp_path_factory) -> TextSeq:
    cache = tmp_path_factory.mktemp("cache")
    return TextSeq(**FAST, use_id=request.param, encoder=encoder_dir, cache_dir=str(cache)).fit(colour_data())


def colour_share(scores: np.ndarray, colour: int, k: int = 10) -> float:
    top = np.argsort(-scores)[:k]
    return float(np.mean(top % 2 == colour))


def test_learns_text_determined_pattern(fitted):
    red, blue = Context(items=[0, 2, 4, 6]), Context(items=[1, 3, 5, 7])
    s = fitted.score_batch([red, blue])
    assert colour_share(s[0], 0) >= 0.9 and colour_share(s[1], 1) >= 0.9
    # 18 warm items per colour: knowing the colour gives recall@10 ~ 10/18, not knowing it ~ 10/36
    assert max(h["recall@10"] for h in fitted.history_) > 0.45
    assert fitted.best_epoch_ >= 1 and fitted.fit_seconds_ > 0


def test_cold_items_scored_by_text(fitted):
    assert fitted.net_.seen[list(COLD)].sum() == 0 and fitted.net_.seen.sum() == N_ITEMS - len(COLD)
    s = fitted.score_batch([Context(items=[0, 2, 4, 6]), Context(items=[1, 3, 5, 7])])
    assert np.isfinite(s).all()
    # cold red items (36, 38) above cold blue ones (37, 39) for a red context, and the reverse
    assert min(s[0][[36, 38]]) > max(s[0][[37, 39]])
    assert min(s[1][[37, 39]]) > max(s[1][[36, 38]])
    if fitted.use_id:  # the ID part of an item without training events is zero
        assert torch.all(
            fitted.net_.item_vectors()[list(COLD)] == fitted.net_.adaptor(fitted.net_.text_emb[list(COLD)])
        )


def test_add_items_after_fit(fitted, encoder_dir):
    model = TextSeq(**fitted.get_params())
    model.item_ids_, model.user_ids_ = fitted.item_ids_.copy(), fitted.user_ids_.copy()
    model.net_ = type(fitted.net_)(fitted.net_.text_emb.clone(), fitted.net_.seen.clone(), model._config())
    model.net_.load_state_dict(fitted.net_.state_dict())
    model.net_.eval()
    model.add_items(["new-red", "new-blue"], texts=[item_text(100), item_text(101)])
    assert model.n_items_ == N_ITEMS + 2 and list(model.item_ids_[-2:]) == ["new-red", "new-blue"]
    s = model.score_batch([Context(items=[0, 2, 4]), Context(items=[1, 3, 5])])
    assert s.shape == (2, N_ITEMS + 2) and np.isfinite(s).all()
    assert s[0, N_ITEMS] > s[0, N_ITEMS + 1] and s[1, N_ITEMS + 1] > s[1, N_ITEMS]
    with pytest.raises(ConfigError, match="new, distinct item ids"):
        model.add_items(["i0"], texts=["red"])
    with pytest.raises(ConfigError, match="exactly one of 'texts' or 'vectors'"):
        model.add_items(["x"])
    with pytest.raises(ConfigError, match=r"shape \(1, 32\)"):
        model.add_items(["x"], vectors=np.zeros((1, 5)))


def test_vectors_are_the_encoders(fitted, encoder_dir):
    want = TextEncoder(encoder_dir).encode([item_text(i) for i in range(N_ITEMS)])
    np.testing.assert_allclose(fitted.net_.text_emb.numpy(), want, atol=1e-5)


def test_save_load_round_trip_without_encoder(encoder_dir, tmp_path):
    enc = tmp_path / "encoder"
    shutil.copytree(encoder_dir, enc)
    model = TextSeq(
        **{**FAST, "epochs": 3}, use_id=True, encoder=str(enc), cache_dir=str(tmp_path / "cache")
    ).fit(colour_data(n_users=60))
    model.save(tmp_path / "m")
    shutil.rmtree(enc)
    shutil.rmtree(tmp_path / "cache")
    again = load_model(tmp_path / "m")  # needs neither the encoder nor the cache
    assert isinstance(again, TextSeq) and again.get_params() == model.get_params()
    ctxs = [Context(items=[0, 2, 36]), Context(items=[1]), Context(items=[])]
    np.testing.assert_allclose(again.score_batch(ctxs), model.score_batch(ctxs), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        model.score_batch(ctxs)[1], model.score(ctxs[1], np.arange(N_ITEMS)), atol=1e-5
    )


def test_precomputed_vectors_and_conformance():
    rng = np.random.default_rng(0)
    data = colour_data(n_users=60)
    vectors = rng.normal(size=(N_ITEMS, 8)).astype(np.float32)
    model = TextSeq(**{**FAST, "epochs": 2})
    assert isinstance(model, BaseRecommender) and isinstance(model, Recommender)
    assert get_model_class("textseq") is TextSeq and model.name == "textseq"
    with pytest.raises(NotFittedError, match="not fitted yet"):
        model.score_batch([Context(items=[1])])
    model.fit(data, item_vectors=vectors)
    np.testing.assert_array_equal(model.net_.text_emb.numpy(), vectors)
    ctxs = [Context(items=[3, 5]), Context(items=np.zeros(0, dtype=np.int64)), Context(items=[999, 1])]
    s = model.score_batch(ctxs)
    assert s.shape == (3, N_ITEMS) and s.dtype == np.float32 and np.isfinite(s).all()
    np.testing.assert_allclose(s[0][[4, 7]], model.score(ctxs[0], np.array([4, 7])), atol=1e-5)
    # deterministic under the seed
    again = TextSeq(**{**FAST, "epochs": 2}).fit(data, item_vectors=vectors)
    np.testing.assert_allclose(again.score_batch(ctxs), s, atol=1e-5)


def test_unseen_items_are_left_out_of_the_training_softmax():
    rng = np.random.default_rng(2)
    data = colour_data(n_users=60)
    vectors = rng.normal(size=(N_ITEMS, 8)).astype(np.float32)
    batch = {"tokens": torch.tensor([[0, 1, 3], [2, 4, 6]]), "targets": torch.tensor([[-1, 3, 5], [4, 6, 8]])}
    losses = {}
    for mask in (True, False):
        model = TextSeq(**{**FAST, "epochs": 1}, mask_unseen=mask).fit(data, item_vectors=vectors)
        net = model.net_.eval()
        with torch.no_grad():
            items = net.item_vectors()
            logits = net.logits(net(batch["tokens"], items)[batch["targets"] >= 0], items)
            losses[mask] = float(model._loss(net, batch))
        warm = np.setdiff1d(np.arange(N_ITEMS), COLD)
        target = batch["targets"][batch["targets"] >= 0]
        want = logits if not mask else logits[:, warm]
        want_target = target if not mask else torch.from_numpy(np.searchsorted(warm, target.numpy()))
        assert losses[mask] == pytest.approx(
            float(torch.nn.functional.cross_entropy(want, want_target)), rel=1e-5
        )


def test_whitening_and_id_dropout():
    rng = np.random.default_rng(1)
    data = colour_data(n_users=60)
    raw = (rng.normal(size=(N_ITEMS, 6)) @ (np.eye(6) + 0.8) + 3.0).astype(
        np.float32
    )  # correlated, off-centre
    model = TextSeq(**{**FAST, "epochs": 1}, whiten=True, use_id=True, id_dropout=0.5).fit(
        data, item_vectors=raw
    )
    x = model.net_.text_emb.numpy()
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-4)

    def max_corr(a: np.ndarray) -> float:
        c = np.corrcoef(a.T)
        return float(np.abs(c - np.eye(len(c))).max())

    assert max_corr(raw) > 0.6 and max_corr(x) < 0.5 * max_corr(raw)  # decorrelated (up to the shrinkage)
    model.add_items(["copy-of-3"], vectors=raw[3:4])  # new raw vectors get the same transform
    np.testing.assert_allclose(model.net_.text_emb[-1].numpy(), x[3], atol=1e-5)
    net = model.net_
    net.train()
    torch.manual_seed(0)
    a, b = net.item_vectors(), net.item_vectors()
    assert not torch.allclose(a, b)  # ID parts dropped at random in training
    net.eval()
    torch.testing.assert_close(net.item_vectors(), net.item_vectors())


def test_bad_inputs():
    data = colour_data(n_users=20)
    with pytest.raises(ConfigError, match="The 'n_experts' parameter of TextSeq must be an int >= 1. Got 0"):
        TextSeq(n_experts=0).fit(data, item_vectors=np.zeros((N_ITEMS, 4)))
    with pytest.raises(ConfigError, match="'temperature' parameter of TextSeq must be None or a float >= 0"):
        TextSeq(temperature=-1.0).fit(data, item_vectors=np.zeros((N_ITEMS, 4)))
    with pytest.raises(ConfigError, match="The 'id_dropout' parameter of TextSeq must be a float in"):
        TextSeq(id_dropout=1.0).fit(data, item_vectors=np.zeros((N_ITEMS, 4)))
    with pytest.raises(
        ConfigError, match=r"'item_vectors' parameter of TextSeq must be a float array of shape \(40, d\)"
    ):
        TextSeq(**FAST).fit(data, item_vectors=np.zeros((3, 4)))
    no_text = TrainData(item_ids=data.item_ids, user_ids=data.user_ids, sequences=data.sequences)
    with pytest.raises(ConfigError, match="TrainData.item_text is None"):
        TextSeq(**FAST).fit(no_text)


def test_hide_items_and_cold_evaluation():
    data = colour_data(n_users=80)
    cases = [TestCase(context=data.context(u), target=int(data.valid_targets[u])) for u in range(80)]
    split = ProtocolSplit("loo", "colours", data, cases)
    cold = hide_items(split, fraction=0.25, seed=1)
    hidden = cold.hidden
    assert hidden.sum() == 10
    assert not any(hidden[s].any() for s in cold.split.train.sequences)
    assert all(len(a) <= len(b) for a, b in zip(cold.split.train.sequences, data.sequences, strict=True))
    vt = cold.split.train.valid_targets
    assert not hidden[vt[vt >= 0]].any()
    assert len(cold.split.cases) == 80  # test cases as in the base split
    sub = cold.cold_cases().cases
    assert sub and all(hidden[c.target] for c in sub)
    assert len(sub) == sum(hidden[c.target] for c in cases)
    np.testing.assert_array_equal(hide_items(split, fraction=0.25, seed=1).hidden, hidden)  # seeded
    rng = np.random.default_rng(0)
    model = TextSeq(**{**FAST, "epochs": 2}).fit(cold.split.train, item_vectors=rng.normal(size=(N_ITEMS, 8)))
    res = evaluate_cold(model, cold)
    assert 0 <= res["cold"]["recall@10"] <= 1 and 0 <= res["all"]["ndcg@10"] <= 1
    with pytest.raises(ConfigError, match="The 'fraction' parameter of hide_items"):
        hide_items(split, fraction=1.5)
