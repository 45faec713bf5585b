"""Declared model abilities (liveshelf.models.capabilities): who has them, and what they give."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from liveshelf.models import create_model
from liveshelf.models.capabilities import EmbedsItems, Incremental, WarmStartable
from liveshelf.models.sasrec import LiveSASRec, SASRec
from liveshelf.models.textseq import TextSeq
from test_sasrec import FAST, successor_data


@pytest.mark.parametrize("name", ["pop", "repeat", "trending", "itemknn", "als", "bpr"])
def test_models_with_update_are_incremental(name):
    model = create_model(name)
    assert isinstance(model, Incremental) and not isinstance(model, WarmStartable)


@pytest.mark.parametrize("cls", [SASRec, LiveSASRec, TextSeq])
def test_sasrec_family_embeds_items_and_warm_starts(cls):
    assert (
        issubclass(cls, EmbedsItems) and issubclass(cls, WarmStartable) and not issubclass(cls, Incremental)
    )


def test_item_embeddings_are_the_item_rows():
    data = successor_data(n_users=60)
    model = SASRec(**FAST, epochs=1).fit(data)
    emb = model.item_embeddings()
    assert emb.shape == (data.n_items, FAST["hidden"]) and emb.dtype == np.float32
    np.testing.assert_array_equal(emb, model.net_.item_emb.weight[1:].detach().numpy())
    text = TextSeq(**FAST, epochs=1).fit(data, item_vectors=np.random.default_rng(0).normal(size=(30, 8)))
    assert text.item_embeddings().shape == (data.n_items, FAST["hidden"])


def test_warm_start_copies_item_rows_by_id():
    parent_data = successor_data(n_items=25, n_users=60)
    parent = SASRec(**FAST, epochs=1).fit(parent_data)
    child_data = successor_data(n_items=30, n_users=60, seed=1)
    ids = [f"i{(k * 7) % 30}" for k in range(30)]  # the parent's 25 items in another order, plus 5 new
    child_data = replace(child_data, item_ids=np.array(ids, dtype=object))
    assert not SASRec(**FAST).warm_start_from(SASRec(**FAST))  # parent not fitted
    assert not SASRec(**FAST).warm_start_from(LiveSASRec(**FAST, epochs=1).fit(parent_data))  # other class
    child = SASRec(**{**FAST, "lr": 1e-12, "dropout": 0.0}, epochs=1, seed=3)
    assert child.warm_start_from(parent)
    child.fit(child_data)  # a step of 1e-12: the weights stay the parent's
    old = parent.item_embeddings()
    new = child.item_embeddings()
    for row, item in enumerate(ids):
        k = int(item[1:])
        if k < 25:
            torch.testing.assert_close(new[row], old[k], atol=1e-6, rtol=0)
    torch.testing.assert_close(
        child.net_.pos_emb.weight.detach(), parent.net_.pos_emb.weight.detach(), atol=1e-6, rtol=0
    )
