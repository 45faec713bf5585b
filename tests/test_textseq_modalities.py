"""TextSeq fuses other item modalities (image, video ...) with the text; the ranker reads one
similarity pair per modality. Colour data as in test_textseq.py, but the text says nothing about the
colour: only the "image" vector does, so a model that uses the image is the one that learns the pattern.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from liveshelf.errors import ConfigError
from liveshelf.models import Context, load_model
from liveshelf.models.textseq import TextSeq
from test_textseq import COLD, FAST, N_ITEMS, colour_data

torch.set_num_threads(2)


def image(seed: int = 0, missing: tuple[int, ...] = (10, 11)) -> np.ndarray:
    """(N_ITEMS, 6): the colour in the first dimension (+ noise), NaN rows for ``missing`` items."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.3, size=(N_ITEMS, 6)).astype(np.float32)
    x[:, 0] += np.where(np.arange(N_ITEMS) % 2 == 0, 1.0, -1.0)
    x[list(missing)] = np.nan
    return x


def data_with(**vectors: np.ndarray):
    return dataclasses.replace(colour_data(n_users=120), item_vectors=vectors or None)


def text_vectors() -> np.ndarray:  # colour-blind "text": random, no colour in it
    return np.random.default_rng(5).normal(size=(N_ITEMS, 8)).astype(np.float32)


def colour_share(model: TextSeq) -> float:
    red, blue = Context(items=[0, 2, 4, 6]), Context(items=[1, 3, 5, 7])
    s = model.score_batch([red, blue])
    warm = np.array([i for i in range(N_ITEMS) if i not in COLD])
    shares = []
    for row, colour in ((s[0], 0), (s[1], 1)):
        top = warm[np.argsort(-row[warm])[:8]]
        shares.append(np.mean(top % 2 == colour))
    return float(np.mean(shares))


@pytest.fixture(scope="module")
def fused() -> TextSeq:
    params = {**FAST, "use_id": False, "epochs": 20, "patience": 20}
    return TextSeq(**params).fit(data_with(image=image()), item_vectors=text_vectors())


def test_image_modality_carries_the_pattern_text_alone_cannot(fused):
    params = {**FAST, "use_id": False, "epochs": 20, "patience": 20}
    text_only = TextSeq(**params, modalities="none").fit(
        data_with(image=image()), item_vectors=text_vectors()
    )
    assert text_only.modality_weights() == {}
    assert colour_share(fused) >= 0.8 > colour_share(text_only) + 0.15
    weights = fused.modality_weights()
    assert set(weights) == {"text", "image"} and all(0 < w < 1 for w in weights.values())
    assert fused.net_.modal_mask_image.numpy()[[10, 11]].tolist() == [0.0, 0.0]


def test_fused_model_saves_loads_and_adds_items(fused, tmp_path):
    fused.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    ctx = [Context(items=[0, 2, 4]), Context(items=[1, 10])]
    np.testing.assert_allclose(loaded.score_batch(ctx), fused.score_batch(ctx), atol=1e-5)
    loaded.add_items(["new"], vectors=text_vectors()[:1])
    s = loaded.score_batch(ctx)
    assert s.shape == (2, N_ITEMS + 1) and np.isfinite(s).all()
    assert loaded.net_.modal_mask_image.numpy()[-1] == 0.0  # a new item has no image yet


def test_modality_choice_and_bad_vectors_are_named():
    x = image()
    params = {**FAST, "epochs": 1}
    with pytest.raises(ConfigError, match="'video'.*has \\['image'\\]"):
        TextSeq(**params, modalities="video").fit(data_with(image=x), item_vectors=text_vectors())
    with pytest.raises(ConfigError, match=r"item_vectors\['image'\] must have shape \(40, d\)"):
        TextSeq(**params).fit(data_with(image=x[:5]), item_vectors=text_vectors())
    with pytest.raises(ConfigError, match="'modalities'"):
        TextSeq(**params, modalities=" ").fit(data_with(image=x), item_vectors=text_vectors())
    # a modality no item has is left out; "image" named explicitly is the same as "all" here
    empty = np.full((N_ITEMS, 3), np.nan, dtype=np.float32)
    m = TextSeq(**params, modalities="all").fit(data_with(image=x, video=empty), item_vectors=text_vectors())
    assert m.net_.modalities == ["image"]


def test_ranker_reads_one_similarity_pair_per_modality(tmp_path):
    from liveshelf.models.ranker.hybrid import HybridRanker

    data = data_with(image=image())
    ranker = HybridRanker(sources="pop,itemknn", top_n=20, seed=0).fit(data)
    names = ranker.feature_names_
    assert "image_last" in names and "image_hist" in names
    rows, items, X, _ = ranker._features([Context(items=[0, 2]), Context(items=[10])], ranker.models_)
    col = X[:, names.index("image_last")]
    has = ~np.isin(items, [10, 11])
    assert np.isfinite(col[(rows == 0) & has]).all()  # last item 2 has an image
    assert np.isnan(col[(rows == 0) & ~has]).all()  # candidates without one: missing
    assert np.isnan(col[rows == 1]).all()  # last item 10 has none: missing, not 0
    red, blue = (rows == 0) & (items % 2 == 0) & has, (rows == 0) & (items % 2 == 1) & has
    assert col[red].mean() > col[blue].mean() + 0.5  # same colour, similar image
    ranker.save(tmp_path / "ranker")  # the vectors travel with the artifact
    loaded = load_model(tmp_path / "ranker")
    assert loaded.feature_names_ == names
    ctx = [Context(items=[0, 2]), Context(items=[10])]
    np.testing.assert_allclose(loaded.score_batch(ctx), ranker.score_batch(ctx), atol=1e-6)
