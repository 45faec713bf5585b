"""Golden answers: the serving path answers a recorded request set exactly as it did before the hot-path work.

The world (simulator, seeded), the exposures that train the ranker (the online simulator, seeded)
and the ranker (LightGBM, deterministic, one thread) are rebuilt here; the answers of
``tests/data/golden_serving.json`` were recorded by this test's ``record`` mode on the code before
the feed / shelf / next-item paths were vectorised, and every answer must match: the same keys in
the same order, the same scores (to 1e-6) and the same reasons (sources, causes, scores).

Re-record only for an intended change of answers::

    LIVESHELF_RECORD_GOLDEN=1 pytest tests/test_serving_golden.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from liveshelf.serving.app import create_app
from liveshelf.serving.settings import ServeSettings

GOLDEN = Path(__file__).parent / "data" / "golden_serving.json"
KEY = "golden-key"
RECORD = os.environ.get("LIVESHELF_RECORD_GOLDEN", "") not in ("", "0")


def _settings(home: Path, **kw) -> ServeSettings:
    return ServeSettings(home=home, api_keys=KEY, rate_per_s=1e5, rate_burst=100_000, text=False, **kw)


@pytest.fixture(scope="module")
def golden_world(tmp_path_factory):
    """Simulated world; ``itemknn`` in production; a ranker for both surfaces trained from served exposures."""
    from liveshelf.data.simulate import simulate
    from liveshelf.experiment.online_sim import OnlineSimulator, live_times, prepare_home
    from liveshelf.experiment.ranker_train import train_ranker

    world = simulate(n_users=300, n_hosts=10, days=2, seed=11, use_review_corpus=False)
    start = float(pd.Timestamp(world.dataset.rooms["start"].min()).timestamp())
    times = live_times(world, start + 86400 - start % 86400, start + 2 * 86400, 7)
    home = tmp_path_factory.mktemp("golden") / "home"
    home.mkdir()
    prepare_home(home, world, times[0], oracle=False)
    ev = world.dataset.events
    before = ev[(ev["ts"] < pd.Timestamp(times[0], unit="s", tz="UTC")) & (ev["type"] != "impression")]
    users = sorted(set(before["user"].astype(str)))
    with TestClient(create_app(_settings(home))) as client:
        OnlineSimulator(world, client, api_key=KEY, feed_k=4, shelf_k=8, seed=5).run(
            users[:120], times[0], gap_s=2.0
        )
        client.app.state.services.exposures.flush()
    report = train_ranker(
        home, source="exposures", margin=-10.0, params={"n_estimators": 40, "min_child_samples": 5}
    )
    assert report.promoted and set(report.surfaces_kept) == {"item", "room"}, report.to_dict()
    return home, times[1:], users


def _recs(ranked) -> list[list]:
    return [[r.key, r.score, r.reasons] for r in ranked.recs]


def _answers(home: Path, times: list[float], users: list[str], use_ranker: bool) -> dict[str, list]:
    out: dict[str, list] = {}
    viewers = [*users[:10], *users[-6:], "nobody-at-all", None]
    with TestClient(create_app(_settings(home, use_ranker=use_ranker, log_exposures=False))) as client:
        p = client.app.state.services.pipeline
        for t in times:
            rooms = [r for r in sorted(p.state.live_layout(t).rooms)]
            for u in viewers:
                ranked = p.rank_feed(u, t, 10)
                out[f"feed|{u}|{t}"] = [ranked.ranked_by, ranked.known, _recs(ranked)]
            for room in rooms:
                for u in viewers[::3]:
                    ranked = p.rank_shelf(u, room, t, 20)
                    out[f"shelf|{room}|{u}|{t}"] = [ranked.ranked_by, _recs(ranked)]
                ranked = p.rank_next_item(room, t, 5)
                out[f"next|{room}|{t}"] = [ranked.ranked_by, ranked.audience, _recs(ranked)]
    return json.loads(json.dumps(out))  # as JSON holds them (tuples -> lists)


def _same(a, b, path: str = "") -> str | None:
    """The first difference between two answers (floats to 1e-6), or None.

    Answers carry scores rounded to 6 decimals, so a last-bit difference in the arithmetic (another BLAS,
    another CPU) can move a rounded score by one unit of the 6th decimal: that is still the same answer."""
    if isinstance(a, float) or isinstance(b, float):
        ok = isinstance(a, int | float) and isinstance(b, int | float) and abs(float(a) - float(b)) <= 1.5e-6
        return None if ok else f"{path}: {a!r} != {b!r}"
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = _same(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{path}: keys {sorted(set(a) ^ set(b))} differ"
        for k in a:
            d = _same(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def test_answers_match_the_recorded_golden_set(golden_world):
    home, times, users = golden_world
    got = {"ranker": _answers(home, times, users, True), "hand-blend": _answers(home, times, users, False)}
    assert all(v[0].startswith("ranker@") for v in got["ranker"].values() if v[-1]), (
        "the ranker ranks every answer"
    )
    assert all(v[0] == "hand-blend" for v in got["hand-blend"].values())
    if RECORD:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(got, ensure_ascii=False, sort_keys=True, separators=(",", ":")))
        pytest.skip(f"recorded {sum(len(v) for v in got.values())} answers to {GOLDEN}")
    want = json.loads(GOLDEN.read_text())
    assert set(want) == set(got)
    n = 0
    for mode in want:
        assert set(want[mode]) == set(got[mode]), mode
        for key in sorted(want[mode]):
            diff = _same(want[mode][key], got[mode][key], f"{mode}:{key}")
            assert diff is None, diff
            n += 1
    nonempty = sum(1 for mode in got for v in got[mode].values() if v[-1])
    assert n >= 200 and nonempty >= 100, (n, nonempty)
