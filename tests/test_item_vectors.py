"""Item vectors of any modality (issue 16): stored with the item in the event store, checked before anything
is written, carried by the Dataset into TrainData (aligned, NaN rows for items without one), loaded with
``liveshelf ingest embeddings``, ``PUT /v1/items`` and the KuaiLive reader."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from liveshelf.cli import app
from liveshelf.data.dataset import Dataset
from liveshelf.data.formats import read_kuailive, write_synthetic_kuailive
from liveshelf.data.ingest import Ingestor
from liveshelf.data.item_vectors import ItemVectors, align, mean_by_group
from liveshelf.data.split import dataset_to_train_data, index_events, to_train_data
from liveshelf.data.store import EventStore
from liveshelf.data.validate import Rules, validate
from liveshelf.errors import DataFormatError, ValidationError
from liveshelf.schema import EVENT_COLUMNS

RULES = Rules(now=datetime(2024, 7, 1, tzinfo=UTC))
ITEMS = ["i1", "i2", "i3", "i4"]


def _events() -> list[dict]:
    t = pd.Timestamp("2024-06-01T10:00:00Z")
    rows = []
    for k, (user, item) in enumerate(
        [("alice", "i1"), ("alice", "i2"), ("alice", "i5"), ("bob", "i3"), ("bob", "i1"), ("bob", "i4")]
    ):
        rows.append(
            {
                "event_id": f"e{k}",
                "ts": (t + pd.Timedelta(minutes=k)).isoformat(),
                "user": user,
                "type": "click",
                "item": item,
                "room": "r1",
            }
        )
    return rows


@pytest.fixture()
def store(tmp_path: Path):
    with EventStore(tmp_path / "home") as s:
        ing = Ingestor(s, rules=RULES)
        ing.ingest_items([{"id": i, "title": f"item {i}"} for i in ITEMS])
        ing.ingest_events(_events())
        yield s


def _snapshot(store: EventStore) -> tuple:
    sets = store.item_vector_sets()
    return (
        store.modalities(),
        {m: (v.ids.tolist(), v.vectors.tolist()) for m, v in sets.items()},
        store.stats()["loads"],
        store.count("items"),
    )


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------------ store
def test_store_round_trip_modalities_and_reopen(store):
    image = _rng().normal(size=(3, 4)).astype(np.float32)
    assert store.modalities() == {}
    assert store.put_item_vectors("image", ["i3", "i1", "i2"], image) == 3
    assert store.put_item_vectors("title_pca128", ["i1"], np.ones((1, 2))) == 1
    ids, vectors = store.item_vectors("image")
    assert ids.tolist() == ["i1", "i2", "i3"] and vectors.dtype == np.float32 and vectors.shape == (3, 4)
    np.testing.assert_array_equal(vectors, image[[1, 2, 0]])
    assert store.modalities() == {"image": 4, "title_pca128": 2}
    assert store.item_modalities("i1") == {"image": 4, "title_pca128": 2}
    assert store.item_modalities("i4") == {} and store.item_vectors("video").ids.shape == (0,)
    home = store.home
    store.close()
    with EventStore(home, read_only=True) as again:
        np.testing.assert_array_equal(again.item_vectors("image").vectors, image[[1, 2, 0]])
        assert again.modalities() == {"image": 4, "title_pca128": 2}


def test_upsert_replaces_an_items_vector_and_keeps_the_others(store):
    store.put_item_vectors("image", ["i1", "i2"], np.array([[1.0, 0.0], [0.0, 1.0]]))
    loads = store.stats()["loads"]
    assert store.put_item_vectors("image", ["i2", "i3"], np.array([[5.0, 5.0], [2.0, 2.0]]), source="t") == 2
    ids, vectors = store.item_vectors("image")
    assert ids.tolist() == ["i1", "i2", "i3"]
    np.testing.assert_array_equal(vectors, [[1, 0], [5, 5], [2, 2]])
    assert store.stats()["loads"] == loads + 1
    row = store._rows(
        "SELECT kind, source, n_rows, inserted, updated FROM loads ORDER BY loaded_at DESC LIMIT 1"
    )
    assert row == [("item_vectors:image", "t", 2, 1, 1)]


BAD_CALLS = [
    # (modality, ids, vectors, error message pattern)
    (
        "image",
        ["i1"],
        np.ones((1, 3)),
        r"must have dimension 2, the dimension already stored for it; got dimension 3",
    ),
    (
        "image",
        ["i1", "nope"],
        np.ones((2, 2)),
        r"Item 'nope' is not in the catalogue.*liveshelf ingest items",
    ),
    (
        "image",
        ["i1", "i2"],
        np.array([[1.0, 0.0], [np.nan, 1.0]]),
        r"item 'i2' \(modality 'image'\) holds nan",
    ),
    ("image", ["i3"], np.array([[np.inf, 0.0]]), r"item 'i3' \(modality 'image'\) holds inf"),
    ("image", ["i3"], np.array([[1e30, 0.0]]), r"item 'i3'.*entries must lie in"),
    ("image", ["i1", "i1"], np.ones((2, 2)), r"Item 'i1' appears more than once"),
    ("image", ["i1", "i2", "i3"], np.ones((2, 2)), r"3 item id\(s\) but 2 vector row\(s\)"),
    (
        "Image",
        ["i1"],
        np.ones((1, 2)),
        r"A modality name \('modality'\) must be a lower-case letter.*'Image'",
    ),
    ("im age", ["i1"], np.ones((1, 2)), r"modality name"),
    ("image", ["i1"], np.ones(2), r"must be a 2-D matrix"),
    ("image", ["i1"], np.array([["a", "b"]]), r"must be numbers"),
    ("image", [7], np.ones((1, 2)), r"non-empty printable string"),
    ("image", ["i1", "i2"], [[1.0, 2.0], [1.0]], r"rows of one length"),
]


@pytest.mark.parametrize(("modality", "ids", "vectors", "pattern"), BAD_CALLS)
def test_bad_vectors_are_refused_clearly_and_nothing_is_written(store, modality, ids, vectors, pattern):
    store.put_item_vectors("image", ["i4"], np.array([[0.5, 0.5]]))
    before = _snapshot(store)
    with pytest.raises(ValidationError, match=pattern):
        store.put_item_vectors(modality, ids, vectors)
    assert _snapshot(store) == before


def test_a_failed_item_upsert_with_vectors_rolls_both_back(store):
    store.put_item_vectors("image", ["i1"], np.array([[1.0, 2.0]]))
    before = _snapshot(store)
    table = validate("items", pd.DataFrame({"id": ["i9"], "title": ["new"]}), RULES).table
    bad = {"image": ItemVectors(np.array(["i9"], dtype=object), np.ones((1, 3), np.float32))}
    with pytest.raises(ValidationError, match="dimension 2"):
        store.upsert("items", table, source="t", vectors=bad)
    assert _snapshot(store) == before
    good = {"image": ItemVectors(np.array(["i9"], dtype=object), np.ones((1, 2), np.float32))}
    assert store.upsert("items", table, source="t", vectors=good) == (1, 0, 0)
    assert store.item_modalities("i9") == {"image": 2}


# ------------------------------------------------------------------------------------ training
def test_train_data_gets_vectors_aligned_with_nan_rows(store):
    vectors = _rng(1).normal(size=(3, 5))
    store.put_item_vectors("image", ["i3", "i1", "i4"], vectors)
    ds = store.to_dataset()
    assert set(ds.item_vectors) == {"image"} and ds.item_vectors["image"].dim == 5
    data = dataset_to_train_data(ds)
    assert data.item_ids.tolist() == ["i1", "i2", "i3", "i4", "i5"]  # catalogue first, then events only
    mat = data.item_vectors["image"]
    assert mat.dtype == np.float32 and mat.shape == (data.n_items, 5)
    expected = {"i3": vectors[0], "i1": vectors[1], "i4": vectors[2]}
    for row, item in enumerate(data.item_ids):
        if item in expected:
            np.testing.assert_allclose(mat[row], expected[item], rtol=1e-6)
        else:
            assert np.isnan(mat[row]).all()
    # a protocol's split keeps the same vocabulary, so the same matrix
    index = index_events(ds)
    train, _ = to_train_data(index, index.position() == 0)
    np.testing.assert_array_equal(train.item_vectors["image"], mat)


def test_no_vectors_means_none():
    events = pd.DataFrame(
        {c: [None] * 2 for c in EVENT_COLUMNS}
        | {
            "event_id": ["a", "b"],
            "ts": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
            "user": ["u", "u"],
            "type": ["click", "click"],
            "item": ["x", "y"],
        }
    )
    assert dataset_to_train_data(Dataset(name="t", events=events)).item_vectors is None


def test_host_space_averages_the_hosts_room_vectors():
    rooms = pd.Series(["h1", "h1", "h2"], index=["r1", "r2", "r3"])
    sets = {
        "title": ItemVectors(
            np.array(["r1", "r2", "r9"], dtype=object), np.array([[1, 1], [3, 5], [7, 7]], np.float32)
        )
    }
    out = mean_by_group(sets, rooms, np.array(["h2", "h1"], dtype=object))["title"]
    assert np.isnan(out[0]).all()
    np.testing.assert_array_equal(out[1], [2, 3])
    aligned = align(sets, np.array(["r2", "zz"], dtype=object))["title"]
    np.testing.assert_array_equal(aligned[0], [3, 5])
    assert np.isnan(aligned[1]).all() and aligned.dtype == np.float32


# ------------------------------------------------------------------------------------ CLI
runner = CliRunner()


def _output(result) -> str:
    return result.output + (getattr(result, "stderr", "") or "")


def _home_with_items(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    with EventStore(home) as s:
        Ingestor(s, rules=RULES).ingest_items([{"id": i, "title": i} for i in ITEMS])
    return home


def _cli(*args: str):
    return runner.invoke(app, ["ingest", "embeddings", *args])


def test_cli_npy_with_ids_text_json_and_npy(tmp_path):
    home = _home_with_items(tmp_path)
    matrix = _rng(2).normal(size=(3, 6)).astype(np.float32)
    np.save(tmp_path / "covers.npy", matrix)
    (tmp_path / "ids.txt").write_text("i2\ni1\ni3\n", encoding="utf-8")
    result = _cli(
        str(tmp_path / "covers.npy"),
        "--ids",
        str(tmp_path / "ids.txt"),
        "--modality",
        "image",
        "--home",
        str(home),
    )
    assert result.exit_code == 0, _output(result)
    assert "stored 3 image vector(s) of dimension 6" in result.output
    (tmp_path / "ids.json").write_text(json.dumps(["i4", "i1", "i2"]), encoding="utf-8")
    result = _cli(
        str(tmp_path / "covers.npy"),
        "--ids",
        str(tmp_path / "ids.json"),
        "--modality",
        "video",
        "--home",
        str(home),
    )
    assert result.exit_code == 0, _output(result)
    np.save(tmp_path / "ids.npy", np.array(["i3", "i2", "i1"]))
    result = _cli(
        str(tmp_path / "covers.npy"),
        "--ids",
        str(tmp_path / "ids.npy"),
        "--modality",
        "audio",
        "--home",
        str(home),
    )
    assert result.exit_code == 0, _output(result)
    with EventStore(home, read_only=True) as s:
        ids, vectors = s.item_vectors("image")
        assert ids.tolist() == ["i1", "i2", "i3"]
        np.testing.assert_array_equal(vectors, matrix[[1, 0, 2]])
        assert s.item_vectors("video").ids.tolist() == ["i1", "i2", "i4"]
        assert s.modalities() == {"audio": 6, "image": 6, "video": 6}


def test_cli_parquet(tmp_path):
    home = _home_with_items(tmp_path)
    table = pa.table({"item_id": ["i1", "i4"], "vector": [[0.1, 0.2, 0.3], [1.0, 2.0, 3.0]]})
    pq.write_table(table, tmp_path / "v.parquet")
    result = _cli(str(tmp_path / "v.parquet"), "--modality", "image", "--home", str(home))
    assert result.exit_code == 0, _output(result)
    assert "stored 2 image vector(s) of dimension 3" in result.output
    with EventStore(home, read_only=True) as s:
        np.testing.assert_allclose(s.item_vectors("image").vectors, [[0.1, 0.2, 0.3], [1, 2, 3]], rtol=1e-6)


def test_cli_bad_files_fail_clearly_and_store_nothing(tmp_path):
    home = _home_with_items(tmp_path)
    np.save(tmp_path / "ok.npy", np.ones((2, 3)))
    (tmp_path / "ids.txt").write_text("i1\ni2\n", encoding="utf-8")
    assert (
        _cli(
            str(tmp_path / "ok.npy"),
            "--ids",
            str(tmp_path / "ids.txt"),
            "--modality",
            "image",
            "--home",
            str(home),
        ).exit_code
        == 0
    )

    nan = np.ones((2, 3))
    nan[1, 2] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    (tmp_path / "ids2.txt").write_text("i3\ni4\n", encoding="utf-8")
    pq.write_table(pa.table({"item_id": ["i3"], "vec": [[1.0]]}), tmp_path / "cols.parquet")
    pq.write_table(
        pa.table({"item_id": ["i3", "i4"], "vector": [[1.0, 2.0, 3.0], [1.0]]}), tmp_path / "ragged.parquet"
    )
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    (tmp_path / "short.txt").write_text("i3\n", encoding="utf-8")
    (tmp_path / "unknown.txt").write_text("i3\nghost\n", encoding="utf-8")
    cases = [
        (
            [str(tmp_path / "nan.npy"), "--ids", str(tmp_path / "ids2.txt")],
            "image",
            r"item 'i4' \(modality 'image'\) holds nan",
        ),
        (
            [str(tmp_path / "ok.npy"), "--ids", str(tmp_path / "unknown.txt")],
            "image",
            "Item 'ghost' is not in the catalogue",
        ),
        (
            [str(tmp_path / "ok.npy"), "--ids", str(tmp_path / "short.txt")],
            "image",
            r"1 item id\(s\) but 2 vector row\(s\)",
        ),
        ([str(tmp_path / "ok.npy")], "image", "pass --ids"),
        ([str(tmp_path / "ok.npy"), "--ids", str(tmp_path / "missing.txt")], "image", "does not exist"),
        ([str(tmp_path / "junk.npy"), "--ids", str(tmp_path / "ids2.txt")], "image", "Cannot read"),
        ([str(tmp_path / "cols.parquet")], "image", r"\['vector'\] are missing"),
        ([str(tmp_path / "ragged.parquet")], "image", "item 'i4'.*has 1 entries"),
        (
            [str(tmp_path / "ok.npy"), "--ids", str(tmp_path / "ids2.txt")],
            "image_",
            None,
        ),  # fine: another modality
        ([str(tmp_path / "ok.npy"), "--ids", str(tmp_path / "ids.txt")], "Bad-Name", "modality name"),
        ([str(tmp_path / "x.csv")], "image", "unknown file format"),
    ]
    np.save(tmp_path / "wide.npy", np.ones((2, 5)))
    cases.append(
        ([str(tmp_path / "wide.npy"), "--ids", str(tmp_path / "ids2.txt")], "image", "must have dimension 3")
    )
    for args, modality, pattern in cases:
        with EventStore(home, read_only=True) as s:
            before = (s.modalities(), s.item_vectors("image").ids.tolist())
        result = _cli(*args, "--modality", modality, "--home", str(home))
        if pattern is None:
            assert result.exit_code == 0, _output(result)
            continue
        text = " ".join(_output(result).split())
        assert result.exit_code != 0, (args, text)
        assert pd.Series([text]).str.contains(pattern).iloc[0], (pattern, text)
        with EventStore(home, read_only=True) as s:
            assert (s.modalities(), s.item_vectors("image").ids.tolist()) == before


# ------------------------------------------------------------------------------------ KuaiLive
def test_kuailive_reads_title_embeddings_by_title_index(tmp_path):
    folder = write_synthetic_kuailive(tmp_path / "kl", n_users=20, n_streamers=4, n_days=2, seed=0)
    assert read_kuailive(folder).room_vectors == {}
    room = pd.read_csv(folder / "room.csv")
    titles = _rng(3).normal(size=(len(room), 8)).astype(np.float32)
    np.save(folder / "title_embeddings_pca128.npy", titles)
    ds = read_kuailive(folder)
    ids, vectors = ds.room_vectors["title_pca128"]
    assert len(ids) == len(room)
    by_room = dict(zip(ids, vectors, strict=True))
    for live, row in zip(room["live_id"].astype(str), room["title_emb_index"], strict=True):
        np.testing.assert_array_equal(by_room[live], titles[row])
    # the host space gets each host's mean room title
    data = dataset_to_train_data(ds, target="host")
    mat = data.item_vectors["title_pca128"]
    assert mat.shape == (data.n_items, 8)
    for h, host in enumerate(data.item_ids):
        rows = room.loc[room["streamer_id"].astype(str) == host, "title_emb_index"]
        if len(rows):
            np.testing.assert_allclose(mat[h], titles[rows].mean(axis=0), rtol=1e-5, atol=1e-6)
        else:
            assert np.isnan(mat[h]).all()


def test_kuailive_release_column_and_bad_title_files(tmp_path):
    folder = write_synthetic_kuailive(tmp_path / "kl", n_users=20, n_streamers=4, n_days=2, seed=1)
    room = pd.read_csv(folder / "room.csv")
    n = len(room)
    # the release: live_name_id, shared titles, -1 = no title
    names = np.arange(n) % 3
    names[0] = -1
    room.drop(columns=["title_emb_index"]).assign(live_name_id=names).to_csv(folder / "room.csv", index=False)
    np.save(folder / "title_embeddings_pca128.npy", np.eye(3, 4, dtype=np.float32))
    ids, vectors = read_kuailive(folder).room_vectors["title_pca128"]
    assert len(ids) == n - 1 and str(room["live_id"].iloc[0]) not in set(ids)
    np.testing.assert_array_equal(vectors[0], np.eye(3, 4)[names[1]])

    np.save(folder / "title_embeddings_pca128.npy", np.eye(2, 4, dtype=np.float32))  # too few rows
    with pytest.raises(DataFormatError, match="live_name_id = .*rows 0..1"):
        read_kuailive(folder)
    bad = np.eye(3, 4, dtype=np.float32)
    bad[2, 1] = np.nan
    np.save(folder / "title_embeddings_pca128.npy", bad)
    with pytest.raises(DataFormatError, match=r"room '.*' \(modality 'title_pca128'\) holds nan"):
        read_kuailive(folder)
    # no index column: rows follow room.csv, only when the counts agree
    room.drop(columns=["title_emb_index"]).to_csv(folder / "room.csv", index=False)
    np.save(folder / "title_embeddings_pca128.npy", np.ones((n + 1, 4), dtype=np.float32))
    with pytest.raises(DataFormatError, match=f"{n} rooms, {n + 1} rows"):
        read_kuailive(folder)
    np.save(folder / "title_embeddings_pca128.npy", np.ones((n, 4), dtype=np.float32))
    assert len(read_kuailive(folder).room_vectors["title_pca128"].ids) == n


# ------------------------------------------------------------------------------------ API
def test_api_put_items_with_embeddings_and_get_lists_modalities(tmp_path):
    from fastapi.testclient import TestClient

    import test_api as api
    from liveshelf.serving.app import create_app

    home = tmp_path / "home"
    with EventStore(home) as s:
        Ingestor(s, rules=RULES).ingest_items([{"id": i, "title": i} for i in ITEMS])
        s.put_item_vectors("image", ["i1"], np.array([[0.0, 1.0, 0.0]]))
    app = create_app(api.make_settings(home, "memory", "vec:"))
    with TestClient(app) as client:
        auth = api.AUTH
        body = {
            "items": [
                {
                    "id": "new1",
                    "title": "新品",
                    "embeddings": {"image": [0.1, 0.2, 0.3], "video": [1.0, 2.0]},
                },
                {"id": "i2", "title": "i2", "embeddings": {"image": [0.0, 0.0, 1.0]}},
            ]
        }
        r = client.put("/v1/items", json=body, headers=auth)
        assert r.status_code == 200, r.text
        assert r.json() == {"inserted": 1, "updated": 0, "unchanged": 1}
        got = client.get("/v1/items/new1", headers=auth).json()
        assert got["modalities"] == {"image": 3, "video": 2} and "embeddings" not in got
        assert client.get("/v1/items/i3", headers=auth).json()["modalities"] == {}
        # GET -> PUT round trip: 'modalities' is read-only and ignored, vectors are kept
        r = client.put("/v1/items", json={"items": [got]}, headers=auth)
        assert r.status_code == 200, r.text
        assert client.get("/v1/items/new1", headers=auth).json()["modalities"] == {"image": 3, "video": 2}

        def refused(payload: dict | bytes, pattern: str, loc_tail: str | None = None) -> None:
            before = client.get("/v1/items/i3", headers=auth).json()
            if isinstance(payload, bytes):
                r = client.put(
                    "/v1/items", content=payload, headers={**auth, "Content-Type": "application/json"}
                )
            else:
                r = client.put("/v1/items", json=payload, headers=auth)
            assert r.status_code == 422, r.text
            detail = r.json()["detail"][0]
            assert pd.Series([detail["msg"]]).str.contains(pattern).iloc[0], detail
            if loc_tail is not None:
                assert detail["loc"][-1] == loc_tail, detail
            assert (
                client.get("/v1/items/ghost", headers=auth).status_code == 404
            )  # the new item was not written
            assert client.get("/v1/items/i3", headers=auth).json() == before

        ghost = {"id": "ghost", "title": "g"}
        refused(
            b'{"items": [{"id": "ghost", "title": "g"}, {"id": "i3", "title": "x", "embeddings": {"image": [1.0, NaN, 0.0]}}]}',
            r"item 'i3' \(modality 'image'\) holds nan",
            "image",
        )
        refused(
            b'{"items": [{"id": "i3", "title": "x", "embeddings": {"image": [1e400, 0.0, 0.0]}}, {"id": "ghost", "title": "g"}]}',
            r"item 'i3' \(modality 'image'\) holds inf",
        )
        refused(
            {"items": [ghost, {"id": "i3", "title": "x", "embeddings": {"image": [1e12, 0.0, 0.0]}}]},
            "entries must lie in",
        )
        refused(
            {"items": [{**ghost, "embeddings": {"image": [1.0, 2.0]}}, {"id": "i3", "title": "x"}]},
            "must have dimension 3, the dimension already stored",
            "image",
        )
        refused(
            {
                "items": [
                    {**ghost, "embeddings": {"audio": [1.0, 2.0]}},
                    {"id": "i3", "title": "x", "embeddings": {"audio": [1.0]}},
                ]
            },
            r"'audio' vector of item 'i3' has 1 entries",
        )
        refused(
            {"items": [{**ghost, "embeddings": {"Cover Image": [1.0]}}]}, r"Item 'ghost': A modality name"
        )
        refused({"items": [{**ghost, "embeddings": {"image": []}}]}, r"dimension in \[1, 8192\]")
        r = client.put("/v1/items", json={"items": [{**ghost, "embeddings": {"image": ["x"]}}]}, headers=auth)
        assert r.status_code == 422
    with EventStore(home, read_only=True) as s:
        assert s.modalities() == {"image": 3, "video": 2}
        assert s.item_vectors("image").ids.tolist() == ["i1", "i2", "new1"]


def test_the_loops_store_source_carries_the_vectors(store):
    from liveshelf.experiment.loop_sources import StoreSource

    store.put_item_vectors("image", ["i2"], np.array([[0.5, 0.25]]))
    home = store.home
    store.close()
    source = StoreSource(home)
    data = dataset_to_train_data(source.dataset(source.head()))
    row = data.item_ids.tolist().index("i2")
    np.testing.assert_array_equal(data.item_vectors["image"][row], [0.5, 0.25])
    assert np.isnan(np.delete(data.item_vectors["image"], row, axis=0)).all()
