"""Fine-tuning toolkit on tiny models built in the test (BERT and GPT-2 configs + small vocabularies)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from liveshelf.errors import ConfigError, NotFittedError, NotFoundError, ValidationError
from liveshelf.text.finetune import FinetuneConfig, Finetuner, classification_report, detect_target_modules
from liveshelf.text.finetune.data import IGNORE, encode_generation, pad_batch

POS = ["good", "great", "nice", "happy", "love"]
NEG = ["bad", "awful", "poor", "sad", "hate"]
FILLER = ["the", "item", "was", "really", "very", "this", "shop", "host", "price", "it"]
NUM_WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="module", autouse=True)
def _threads():  # before the module's model fixtures: several torch threads crawl on a busy shared CPU
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    """A 2-layer, 32-d BERT "pretrained" (fully fine-tuned) on a 3-class word-family task, saved without head.

    PEFT methods adapt pretrained features; on a randomly initialised encoder they barely learn.
    """
    from transformers import BertConfig, BertModel, BertTokenizer

    raw = tmp_path_factory.mktemp("tiny-bert-raw")
    BertTokenizer(vocab={w: i for i, w in enumerate(SPECIAL + POS + NEG + FILLER)}).save_pretrained(raw)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(SPECIAL + POS + NEG + FILLER),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(raw)
    rng = random.Random(0)
    texts, labels = [], []
    for i in range(300):
        family = [POS, NEG, FILLER][i % 3]
        texts.append(" ".join(rng.sample(FILLER, 3) + [rng.choice(family)]))
        labels.append(["pos", "neg", "none"][i % 3])
    cfg = FinetuneConfig(method="full", model=str(raw), lr=3e-3, epochs=4, max_length=16, patience=None)
    pre = Finetuner(cfg, verbose=False).fit(texts, labels)
    folder = tmp_path_factory.mktemp("tiny-bert")
    pre.model_.bert.save_pretrained(folder)
    pre.tokenizer_.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> str:
    """A 2-layer, 32-d GPT-2 "pretrained" (fully fine-tuned) to name the next number word."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    raw = tmp_path_factory.mktemp("tiny-gpt2-raw")
    words = ["<pad>", "<unk>", "<eos>", "count", ":", "next"] + NUM_WORDS
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>"
    ).save_pretrained(raw)
    torch.manual_seed(0)
    GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(words),
            n_positions=32,
            n_embd=32,
            n_layer=2,
            n_head=2,
            eos_token_id=2,
            bos_token_id=2,
            pad_token_id=0,
        )
    ).save_pretrained(raw)
    prompts = [f"count : {NUM_WORDS[i]} next" for i in range(len(NUM_WORDS) - 1)] * 32
    targets = [NUM_WORDS[i + 1] for i in range(len(NUM_WORDS) - 1)] * 32
    cfg = FinetuneConfig(
        task="generation", method="full", model=str(raw), lr=3e-3, epochs=6, max_length=16, patience=None
    )
    pre = Finetuner(cfg, verbose=False).fit(prompts, targets)
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    pre.model_.save_pretrained(folder)
    pre.tokenizer_.save_pretrained(folder)
    return str(folder)


def sentiment_data(n: int, seed: int) -> tuple[list[str], list[int]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = rng.sample(FILLER, 4) + [rng.choice(POS if label else NEG)]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def make(tiny_bert: str, method: str, **kw) -> FinetuneConfig:
    base = {
        "task": "classification",
        "method": method,
        "model": tiny_bert,
        "epochs": 4,
        "batch_size": 16,
        "max_length": 16,
        "patience": None,
        "seed": 0,
    }
    lrs = {"full": 1e-3, "lora": 1e-2, "adalora": 1e-2, "ia3": 3e-1, "adapter": 3e-2}
    base["lr"] = lrs[method]
    base.update(kw)
    return FinetuneConfig(**base)


@pytest.fixture(scope="module")
def fitted(tiny_bert: str) -> dict[str, Finetuner]:
    train_x, train_y = sentiment_data(320, seed=1)
    valid_x, valid_y = sentiment_data(80, seed=2)
    return {
        m: Finetuner(make(tiny_bert, m), verbose=False).fit(train_x, train_y, valid_x, valid_y)
        for m in ("full", "lora", "adalora", "ia3", "adapter")
    }


@pytest.mark.parametrize("method", ["full", "lora", "adalora", "ia3", "adapter"])
def test_each_method_learns_a_separable_task(fitted, method):
    test_x, test_y = sentiment_data(100, seed=3)
    report = fitted[method].evaluate(test_x, test_y)
    assert report["accuracy"] > 0.9, report
    assert report["auc"] > 0.95
    assert set(report["per_class"]) == {"0", "1"}
    assert report["per_class"]["1"]["support"] == 50
    stats = fitted[method].fit_stats_
    assert stats["examples"] == 320 * 4 and stats["examples_per_s"] > 0 and stats["peak_mem_mb"] >= 0
    assert [h["epoch"] for h in fitted[method].history_] == [1, 2, 3, 4]


def test_trainable_shares_order(fitted):
    pct = {m: ft.fit_stats_["trainable_pct"] for m, ft in fitted.items()}
    assert pct["full"] == pytest.approx(100.0)
    assert pct["ia3"] < pct["lora"] < pct["full"]
    assert pct["adalora"] < pct["full"] and pct["adapter"] < pct["full"]
    adapter = fitted["adapter"].model_
    trainable = {n for n, p in adapter.named_parameters() if p.requires_grad}
    assert trainable and all(".down." in n or ".up." in n or n.startswith("classifier.") for n in trainable)
    assert sum(".down.weight" in n for n in trainable) == 2  # one adapter per layer


def test_detect_targets(fitted):
    from transformers import GPT2Config, GPT2LMHeadModel

    assert detect_target_modules(fitted["full"].model_) == ["query", "value"]
    gpt = GPT2LMHeadModel(GPT2Config(vocab_size=10, n_positions=8, n_embd=8, n_layer=1, n_head=2))
    assert detect_target_modules(gpt) == ["c_attn"]


@pytest.mark.parametrize("method", ["lora", "ia3", "adapter", "full"])
def test_save_load_same_predictions(fitted, method, tmp_path, tiny_bert):
    test_x, _ = sentiment_data(40, seed=4)
    ft = fitted[method]
    ft.save(tmp_path / method)
    files = {p.name for p in (tmp_path / method).iterdir()}
    if method in ("lora", "ia3"):
        assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    elif method == "adapter":
        assert "bottleneck_adapter.safetensors" in files and "model.safetensors" not in files
    else:
        assert "model.safetensors" in files
    loaded = Finetuner.load(tmp_path / method)
    np.testing.assert_allclose(loaded.predict_proba(test_x), ft.predict_proba(test_x), atol=1e-5)
    assert loaded.predict(test_x) == ft.predict(test_x)


@pytest.mark.parametrize("method", ["lora", "adalora", "ia3"])
def test_merge_gives_plain_hf_folder_with_same_predictions(fitted, method, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    test_x, _ = sentiment_data(40, seed=5)
    ft = fitted[method]
    before = ft.predict_proba(test_x)
    ft.merge_and_save(tmp_path / "merged")
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    np.testing.assert_allclose(Finetuner.load(tmp_path / "merged").predict_proba(test_x), before, atol=1e-4)
    np.testing.assert_allclose(ft.predict_proba(test_x), before, atol=1e-6)  # the live model is untouched
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "merged")
    with torch.no_grad():
        logits = model(
            **tok(test_x[:8], padding=True, truncation=True, max_length=16, return_tensors="pt")
        ).logits
    np.testing.assert_allclose(torch.softmax(logits, 1).numpy(), before[:8], atol=1e-4)


def test_adapter_cannot_merge(fitted, tmp_path):
    with pytest.raises(ConfigError, match="cannot be merged"):
        fitted["adapter"].merge_and_save(tmp_path / "x")


def test_class_weights_grad_accum_and_early_stopping(tiny_bert):
    x, y = sentiment_data(200, seed=6)
    x, y = x[:60] + [t for t, v in zip(x, y, strict=True) if v == 1][:20], y[:60] + [1] * 20  # imbalanced
    valid_x, valid_y = sentiment_data(40, seed=7)
    cfg = make(
        tiny_bert, "lora", epochs=6, grad_accum=2, batch_size=8, class_weights="balanced", patience=1, lr=1e-6
    )
    ft = Finetuner(cfg, verbose=False).fit(x, y, valid_x, valid_y)
    # lr 1e-6 barely moves the weights: macro-F1 does not improve, so patience 1 stops after epoch 2
    assert ft.fit_stats_["epochs_run"] < 6
    assert ft.fit_stats_["optimizer_steps"] == ft.fit_stats_["epochs_run"] * 5  # ceil(10 batches / 2)


def test_string_labels_and_pairs(tiny_bert):
    rng = random.Random(8)
    pairs, labels = [], []
    for _ in range(240):
        label = rng.choice(["pos", "neg"])
        pairs.append((" ".join(rng.sample(FILLER, 3)), rng.choice(POS if label == "pos" else NEG)))
        labels.append(label)
    ft = Finetuner(make(tiny_bert, "lora", epochs=5), verbose=False).fit(pairs, labels)
    assert ft.labels_ == ["neg", "pos"]
    assert np.mean([p == t for p, t in zip(ft.predict(pairs[:60]), labels[:60], strict=True)]) > 0.9


def ranking_pairs(n: int, seed: int) -> tuple[list[tuple[str, str]], list[int], list[tuple[str, str, str]]]:
    """Context says which word family the user likes; the relevant item shares it."""
    rng = random.Random(seed)
    pairs, labels, triples = [], [], []
    for _ in range(n):
        likes_pos = rng.random() < 0.5
        ctx = " ".join(rng.sample(FILLER, 2) + [rng.choice(POS if likes_pos else NEG)])
        good, bad = rng.choice(POS if likes_pos else NEG), rng.choice(NEG if likes_pos else POS)
        pairs += [(ctx, good), (ctx, bad)]
        labels += [1, 0]
        triples.append((ctx, good, bad))
    return pairs, labels, triples


@pytest.mark.parametrize("loss", ["pointwise", "bpr"])
def test_ranking_cross_encoder(tiny_bert, loss):
    pairs, labels, triples = ranking_pairs(160, seed=9)
    valid_pairs, valid_labels, _ = ranking_pairs(40, seed=10)
    cfg = make(tiny_bert, "lora", task="ranking", ranking_loss=loss, epochs=5)
    ft = Finetuner(cfg, verbose=False)
    if loss == "pointwise":
        ft.fit(pairs, labels, valid_pairs, valid_labels)
    else:
        ft.fit(triples, None, valid_pairs, valid_labels)
    test_pairs, test_labels, _ = ranking_pairs(50, seed=11)
    assert ft.evaluate(test_pairs, test_labels)["auc"] > 0.9
    assert ft.score(test_pairs).shape == (100,)


def test_ranking_pairwise_needs_triples(tiny_bert):
    pairs, labels, _ = ranking_pairs(10, seed=12)
    with pytest.raises(ValidationError, match="triples"):
        Finetuner(make(tiny_bert, "lora", task="ranking", ranking_loss="bpr"), verbose=False).fit(
            pairs, labels
        )


def counting_data(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    prompts, targets = [], []
    for _ in range(n):
        i = rng.randrange(len(NUM_WORDS) - 2)
        prompts.append(f"count : {NUM_WORDS[i]} next")
        targets.append(f"{NUM_WORDS[i + 1]} {NUM_WORDS[i + 2]}")
    return prompts, targets


def test_generation_masks_prompt_tokens(tiny_gpt2):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    feats = encode_generation(tok, ["count : one next"], ["two three"], max_length=32)
    ids, labels = feats[0]["input_ids"], feats[0]["labels"]
    assert labels[:4] == [IGNORE] * 4 and labels[4:] == ids[4:] == tok("two three")["input_ids"] + [
        tok.eos_token_id
    ]
    batch = pad_batch(feats + encode_generation(tok, ["count : one"], ["two"], 32), tok.pad_token_id)
    assert batch["labels"][1, -1].item() == IGNORE and batch["attention_mask"][1, -1].item() == 0
    # an over-long prompt keeps its end so the target survives truncation
    long = encode_generation(tok, ["count " * 40 + ": one next"], ["two"], max_length=8)[0]
    assert len(long["input_ids"]) == 8 and long["labels"][-2:] == tok("two")["input_ids"] + [tok.eos_token_id]


def test_generation_lora_learns_and_generates(tiny_gpt2, tmp_path):
    prompts, targets = counting_data(256, seed=13)
    valid_p, valid_t = counting_data(32, seed=14)
    cfg = FinetuneConfig(
        task="generation",
        method="lora",
        model=tiny_gpt2,
        lr=1e-2,
        epochs=6,
        batch_size=16,
        max_length=16,
        r=8,
        alpha=16,
        patience=None,
        seed=0,
    )
    ft = Finetuner(cfg, verbose=False)
    ft.fit(prompts, targets, valid_p, valid_t)
    losses = [h["valid_loss"] for h in ft.history_]
    assert losses[-1] < 0.6 * losses[0], losses
    assert ft.fit_stats_["trainable_pct"] < 50
    out = ft.generate(["count : three next", "count : six next"], max_new_tokens=3)
    assert len(out) == 2 and all(len(o.split()) <= 3 for o in out)
    assert out[0] == "four five", out
    short = ft.generate(["count : three next"], max_new_tokens=1)
    assert len(short[0].split()) <= 1
    ft.save(tmp_path / "gen")
    assert Finetuner.load(tmp_path / "gen").generate(["count : three next"], max_new_tokens=3) == out[:1]


def test_generation_needs_a_model():
    with pytest.raises(ConfigError, match="'model' parameter of FinetuneConfig"):
        FinetuneConfig(task="generation").validate()


def test_errors_name_the_parameter(tiny_bert, tmp_path):
    with pytest.raises(ConfigError, match="'method' parameter of FinetuneConfig must be one of"):
        FinetuneConfig(method="prefix").validate()
    with pytest.raises(NotFoundError, match="local Hugging Face model directory"):
        Finetuner(FinetuneConfig(model=str(tmp_path / "nope")), verbose=False).fit(["a", "b"], [0, 1])
    with pytest.raises(NotFittedError, match="not fitted yet"):
        Finetuner(verbose=False).predict(["x"])
    with pytest.raises(ValidationError, match="one label per text"):
        Finetuner(make(tiny_bert, "lora"), verbose=False).fit(["good", "bad"], [1])
    with pytest.raises(NotFoundError, match="finetune_config.json"):
        Finetuner.load(tmp_path)


def test_classification_report_numbers():
    proba = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    report = classification_report([0, 1, 2, 2], proba, ["a", "b", "c"])
    assert report["accuracy"] == 0.75
    assert report["per_class"]["c"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "support": 2,
    }
    assert report["per_class"]["a"]["precision"] == 0.5
    assert report["macro_f1"] == pytest.approx((2 / 3 + 1.0 + 2 / 3) / 3)
    assert 0.5 < report["auc"] <= 1.0


def test_cli_on_a_tiny_slice(tiny_bert, tmp_path):
    from typer.testing import CliRunner

    import liveshelf.cli.finetune_cmds  # noqa: F401  (registers the command)
    from liveshelf.cli.app import app

    x, y = sentiment_data(240, seed=15)
    csv = tmp_path / "reviews.csv"
    csv.write_text(
        "cat,label,review\n" + "".join(f"shop,{label},{text}\n" for text, label in zip(x, y, strict=True))
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "finetune",
            "--task",
            "classification",
            "--method",
            "lora",
            "--data",
            f"reviews:{csv}",
            "--out",
            str(out),
            "--model",
            tiny_bert,
            "--epochs",
            "6",
            "--limit",
            "160",
            "--lr",
            "0.02",
            "--max-length",
            "16",
            "--patience",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["n_train"] + metrics["n_valid"] + metrics["n_test"] == 160 and metrics["accuracy"] > 0.8
    assert (out / "adapter_model.safetensors").is_file() and (out / "metrics.json").is_file()
    assert Finetuner.load(out).predict(["good good"]) == [1]
