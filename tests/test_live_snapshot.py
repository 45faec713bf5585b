"""The feed's column-wise pieces of the live snapshot equal the straightforward per-item / per-room versions."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from liveshelf.serving.live import LiveSnapshot
from liveshelf.serving.viewer import category_levels, level_shares


def _reference_best(grid: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per room: the best finite value (NaN: none) and its item position, ties to the larger position."""
    n = len(vals)
    best, at = np.full(len(grid), np.nan), np.full(len(grid), -1)
    for r, row in enumerate(grid):
        pairs = [(float(vals[c]), int(c)) for c in row if c < n and np.isfinite(vals[c])]
        if pairs:
            best[r], at[r] = max(pairs)
    return best, at


def _random_grid(rng: np.random.Generator, n: int, rooms: int, width: int) -> np.ndarray:
    grid = np.full((rooms, width), n)
    for r in range(rooms):
        k = int(rng.integers(0, min(width, n) + 1))
        grid[r, :k] = rng.choice(n, size=k, replace=False)
    return grid


def test_best_per_room_matches_a_per_room_scan():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 40))
        grid = _random_grid(rng, n, int(rng.integers(1, 10)), int(rng.integers(1, 6)))
        vals = rng.choice([0.0, 1.0, 2.0, np.nan, np.inf, -np.inf, -1.0, 0.5], size=n)
        snap = SimpleNamespace(grid=grid)
        best, at = LiveSnapshot.best_per_room(snap, vals)
        want_best, want_at = _reference_best(grid, vals)
        np.testing.assert_array_equal(best, want_best)
        np.testing.assert_array_equal(at, want_at)


def test_sparse_best_per_room_equals_the_dense_scan_for_sources_zero_elsewhere():
    rng = np.random.default_rng(1)
    for _ in range(300):
        n = int(rng.integers(1, 40))
        grid = _random_grid(rng, n, int(rng.integers(1, 10)), int(rng.integers(1, 6)))
        vals = np.zeros(n)
        nz = rng.choice(n, size=int(rng.integers(0, n + 1)), replace=False)
        vals[nz] = rng.choice([0.25, 1.0, 3.0], size=len(nz))
        snap = SimpleNamespace(
            grid=grid, items=list(range(n)), room_last=np.where(grid < n, grid, -1).max(axis=1)
        )
        best, at = LiveSnapshot.best_per_room_sparse(snap, vals, np.flatnonzero(vals))
        want_best, want_at = _reference_best(grid, vals)
        np.testing.assert_array_equal(best, want_best)
        np.testing.assert_array_equal(at, want_at)


def _reference_profile(snap: LiveSnapshot, v) -> tuple[np.ndarray, list[dict]]:
    """The profile source item by item: mean share over the item's category levels + its brand share."""
    shares = level_shares(v.category_weight)
    btot = max(sum(v.brand_weight.values()), 1e-12)
    values, causes = [], []
    for it in snap.items:
        info = snap.content_catalogue.get(it)
        levels = category_levels(info.category)
        g = [shares.get(level, 0.0) for level in levels]
        deep = max((d for d, x in enumerate(g) if x > 0), default=-1)
        b = v.brand_weight.get(info.brand, 0.0) / btot if info.brand else 0.0
        values.append((sum(g) / len(g) if g else 0.0) + b)
        if b > 0 and b > (g[deep] if deep >= 0 else 0.0):
            causes.append({"interest": f"brand:{info.brand}"})
        elif deep >= 0:
            causes.append({"interest": f"category:{levels[deep]}"})
        else:
            causes.append({})
    return np.asarray(values), causes


@pytest.fixture(scope="module")
def live_pipeline():
    from liveshelf.data.simulate import simulate
    from liveshelf.experiment.online_sim import live_times
    from liveshelf.serving.pipeline import Catalogue, Pipeline
    from liveshelf.serving.settings import ServeSettings
    from liveshelf.serving.state import MemoryState

    sim = simulate(n_users=200, n_hosts=8, days=1, seed=4, use_review_corpus=False)
    world = sim.dataset
    state = MemoryState()
    state.upsert_items(world.items)
    state.upsert_rooms(world.rooms)
    state.upsert_shelf(world.shelf)
    state.apply_events(world.events.sort_values("ts", kind="stable"))
    catalogue = Catalogue()
    catalogue.replace(world.items)
    pipe = Pipeline(state, catalogue, ServeSettings(text=False))
    start = float(pd.Timestamp(world.rooms["start"].min()).timestamp())
    t = live_times(sim, start, start + 86400, 3, min_rooms=3)[1]  # a minute with several rooms live
    return pipe, world, t


def test_profile_per_category_path_equals_the_per_item_source(live_pipeline):
    pipe, world, t = live_pipeline
    snap = pipe.live(t)
    assert snap.items, "the world should have live shelves an hour after the first room starts"
    snap.content_catalogue = pipe.catalogue
    users = world.events["user"].astype(str).value_counts().index[:40].tolist()  # the most active viewers
    checked = 0
    for u in users:
        v = pipe.viewer(u, t)
        value, cause, nz = snap.profile_sparse(v)
        want, want_causes = _reference_profile(snap, v)
        np.testing.assert_allclose(value, want, rtol=0, atol=1e-12)
        assert nz.tolist() == np.flatnonzero(want).tolist()
        assert [cause(c) for c in range(len(want))] == want_causes
        checked += int(len(nz) > 0)
    assert checked >= 20


def test_rank_share_at_equals_the_full_sort():
    from liveshelf.serving.features import rank_share, rank_share_at

    rng = np.random.default_rng(2)
    for _ in range(300):
        n = int(rng.integers(0, 30))
        values = rng.choice([0.0, 1.0, 2.0, np.nan, np.inf, -1.5], size=n)
        at = (
            rng.choice(n, size=min(n, int(rng.integers(0, 8))), replace=False) if n else np.zeros(0, np.int64)
        )
        np.testing.assert_array_equal(rank_share_at(values, at), rank_share(values)[at])


def test_feature_rows_of_the_rooms_shown_equal_those_of_all_rooms(live_pipeline):
    """The hand-blend feed logs rows of the rooms it showed only; they must be the rows a ranker would see."""
    from liveshelf.serving.features import room_features

    pipe, world, t = live_pipeline
    snap = pipe.live(t)
    n = len(snap.layout.rooms)
    users = world.events["user"].astype(str).value_counts().index[:15].tolist() + [None]
    rng = np.random.default_rng(3)
    for u in users:
        v = pipe.viewer(u, t)
        full = room_features(pipe, v, snap, t)
        at = rng.choice(n, size=min(n, 3), replace=False)
        part = room_features(pipe, v, snap, t, sources=full.sources, at=at)
        assert part.keys == [full.keys[j] for j in at]
        np.testing.assert_array_equal(part.X, full.X[at])


def test_a_saved_neighbour_table_answers_exactly_as_the_search(tmp_path):
    """``liveshelf index build`` precomputes every item's neighbours; searches from the table equal searches
    made on demand (sparse hashed TF-IDF and dense embeddings), and a table of another catalogue is not used."""
    from liveshelf.data.simulate import simulate
    from liveshelf.serving.content import ContentIndex, hashed_tfidf

    items = simulate(n_users=50, n_hosts=6, days=1, seed=5, use_review_corpus=False).dataset.items
    ids = items["id"].astype(str).tolist()
    texts = (items["title"].astype(str) + " " + items["category"].astype(str)).tolist()
    rng = np.random.default_rng(0)
    for vectors in (hashed_tfidf(texts, 256), rng.normal(size=(len(ids), 16)).astype(np.float32)):
        k = min(11, len(ids))
        on_demand = ContentIndex(ids, vectors, "test")
        built = ContentIndex(ids, vectors, "test")
        built.save_table(tmp_path, k)
        loaded = ContentIndex(ids, vectors, "test")
        assert loaded.load_table(tmp_path, k)
        for it in ids[:: max(1, len(ids) // 40)]:
            want = on_demand.neighbours([it], k - 1)
            assert want and built.neighbours([it], k - 1) == want and loaded.neighbours([it], k - 1) == want
        other = ContentIndex(ids[::-1], vectors[::-1], "test")  # another index: another fingerprint
        assert not other.load_table(tmp_path, k)


def test_cli_index_build_writes_the_table_the_server_uses(tmp_path):
    from typer.testing import CliRunner

    from liveshelf.cli import app
    from liveshelf.data.simulate import simulate
    from liveshelf.experiment.online_sim import prepare_home
    from liveshelf.serving.deps import build_services
    from liveshelf.serving.settings import ServeSettings

    result = CliRunner().invoke(app, ["index", "build", "--home", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "No event store" in result.output
    world = simulate(n_users=60, n_hosts=6, days=1, seed=6, use_review_corpus=False)
    home = tmp_path / "home"
    home.mkdir()
    prepare_home(home, world, float(pd.Timestamp(world.dataset.events["ts"].max()).timestamp()), oracle=False)
    result = CliRunner().invoke(app, ["index", "build", "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert len(list((home / "cache").glob("content-neighbours-*.npy"))) == 2
    services = build_services(ServeSettings(home=home, text=False))
    try:
        index = services.pipeline.content()
        assert index._table is not None and index._table[0] == services.pipeline.neighbour_k(index)
    finally:
        services.close()
