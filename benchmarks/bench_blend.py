"""Does the learned ranker order a room's shelf better than the hand blend and than "trending in room"?

Judged by the simulator's hidden truth, in two worlds:

* **world A** (seed 1): day 1's events are ingested and ``itemknn`` trained on them is production. Day 2
  is replayed through the HTTP API: at ``REPLAY_TIMES`` moments (each with >= 3 live rooms) the
  world's own events up to then are posted, then ``REPLAY_USERS`` simulated viewers visit (feed ->
  enter a room -> shelf -> views, clicks, carts, purchases, posted back; ``OnlineSimulator``). The
  server, ranking with the hand blend, logs every answer with its features. ``liveshelf ranker train
  --from exposures`` then learns the ranker from those exposures and the outcomes that followed; it is
  promoted. On day 3 (the world's events up to the evaluation time posted), returning viewers x rooms
  live then request the shelf under each setting.
* **world B** (seed 7, other hosts, a larger English share and broader interests): never trained on.
  Its days 1-2 are ingested, ``itemknn`` trained on them; the ranker learned in world A is copied
  into its registry and evaluated on its day 3 the same way.

Score of a setting: the mean true preference (``World.truth.preference``) of the top-3 shelf items
served, over all (viewer, room) requests; ``oracle`` ranks the shelf by that very preference (the
ceiling), ``trending only`` by the room's trending counters alone. An A/B test ranker vs hand blend
through the API on world A's day 3 (``OnlineSimulator``, always-valid p-value) closes the run.

Knobs (environment): ``BLEND_USERS`` (world size, 1500), ``BLEND_REPLAY_USERS`` (200),
``BLEND_REPLAY_TIMES`` (10), ``BLEND_AB_USERS`` (1200).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import common
import numpy as np

N_USERS = int(os.environ.get("BLEND_USERS", 1500))
REPLAY_USERS = int(os.environ.get("BLEND_REPLAY_USERS", 400))
REPLAY_TIMES = int(os.environ.get("BLEND_REPLAY_TIMES", 24))
AB_USERS = int(os.environ.get("BLEND_AB_USERS", 8000))
EVAL_TIMES = 3
EVAL_USERS = 150
EVAL_ROOMS = 4
DAY = 86400.0
KEY = "bench-key"


def _settings(home: Path, **kw):
    from liveshelf.serving.settings import ServeSettings

    return ServeSettings(
        home=home,
        rate_per_s=1e6,
        rate_burst=1_000_000,
        text=False,
        log_exposures=False,
        max_events=10_000,
        api_keys=KEY,
        **kw,
    )


SETTINGS = {
    "hand blend": {"use_ranker": False},
    "trending only": {"use_ranker": False, "weights": {"trending": 1.0}},
    "ranker": {},
    # the ceiling: the shelf in the order of the viewer's true preference, no diversification
    "oracle": {
        "use_ranker": False,
        "model": "oracle",
        "weights": {"sequence": 1.0},
        "mmr_lambda": 1.0,
        "brand_cap": 1000,
    },
}


def _post(client, frame) -> int:
    from liveshelf.experiment.online_sim import event_payloads

    body = event_payloads(frame)
    for lo in range(0, len(body), 5000):
        r = client.post("/v1/events", json={"events": body[lo : lo + 5000]}, headers={"X-API-Key": KEY})
        assert r.status_code == 200, r.text[:300]
    return len(body)


def _events_between(world, lo: float, hi: float):
    import pandas as pd

    ev = world.dataset.events
    ts = ev["ts"]
    return ev[(ts >= pd.Timestamp(lo, unit="s", tz="UTC")) & (ts < pd.Timestamp(hi, unit="s", tz="UTC"))]


def _returning(world, t: float) -> list[str]:
    import pandas as pd

    ev = world.dataset.events
    before = ev[(ev["ts"] < pd.Timestamp(t, unit="s", tz="UTC")) & (ev["type"] != "impression")]
    return sorted(set(before["user"].astype(str)))


def day_start(world) -> float:
    from liveshelf.data.timeline import to_seconds_array

    first = float(np.nanmin(to_seconds_array(world.dataset.rooms["start"].to_numpy())))
    return first - first % DAY


def replay_day(home: Path, world, lo: float, hi: float, seed: int = 0) -> dict:
    """Day [lo, hi) through the API with the hand blend: the world's events and simulated visits; exposures logged."""
    from fastapi.testclient import TestClient

    from liveshelf.experiment.online_sim import OnlineSimulator, live_times
    from liveshelf.serving.app import create_app

    settings = _settings(home).model_copy(update={"log_exposures": True})
    times = live_times(world, lo, hi, REPLAY_TIMES)
    users = np.asarray(world.truth.user_ids, dtype=object)
    rng = np.random.default_rng(seed)
    posted, cursor = 0, lo
    with TestClient(create_app(settings)) as client:
        sim = OnlineSimulator(world, client, api_key=KEY, feed_k=6, shelf_k=10, seed=seed)
        total = None
        for t in times:
            t = max(t, sim.clock or t)
            posted += _post(client, _events_between(world, cursor, t))
            cursor = t
            stats = sim.run(rng.choice(users, size=REPLAY_USERS, replace=False).tolist(), t, gap_s=2.0)
            total = stats if total is None else _add(total, stats)
        posted += _post(client, _events_between(world, cursor, hi))
        client.app.state.services.exposures.flush()
    return {"world_events_posted": posted, **(total.to_dict() if total else {})}


def _add(a, b):
    for k in ("visits", "requests", "entered", "clicks", "carts", "purchases", "events"):
        setattr(a, k, getattr(a, k) + getattr(b, k))
    a.gmv += b.gmv
    return a


def evaluate(
    home: Path, world, times: list[float], world_name: str, settings: dict | None = None
) -> list[dict]:
    """Top-3 true preference of the shelf under each setting at ``times`` (the world's events posted up to each)."""
    from fastapi.testclient import TestClient

    from liveshelf.serving.app import create_app

    rows = []
    for setting, over in (SETTINGS if settings is None else settings).items():
        top, mean, by = [], [], set()
        with TestClient(create_app(_settings(home, **over))) as client:
            for t in times:
                rooms = _rooms_at(world, t)
                for u in _returning(world, t)[:EVAL_USERS]:
                    for room in rooms[:EVAL_ROOMS]:
                        body = client.get(
                            f"/v1/rooms/{room}/shelf", params={"user": u, "at": t, "k": 50}
                        ).json()
                        items = [x["item"] for x in body["items"]]
                        if len(items) < 6:
                            continue
                        by.add(body.get("ranked_by", "").split("@")[0])
                        p = world.truth.preference([u] * len(items), items)
                        top.append(float(np.mean(p[:3])))
                        mean.append(float(np.mean(p)))
        rows.append(
            {
                "world": world_name,
                "setting": setting,
                "top3_preference": round(float(np.mean(top)), 4),
                "shelf_mean_preference": round(float(np.mean(mean)), 4),
                "requests": len(top),
                "ranked_by": ",".join(sorted(by)),
            }
        )
    return rows


def _rooms_at(world, t: float) -> list[str]:
    """The rooms live at ``t`` with the largest shelves (the same for every setting)."""
    from liveshelf.data.timeline import to_seconds_array

    sh = world.dataset.shelf
    start, end = to_seconds_array(sh["start"].to_numpy()), to_seconds_array(sh["end"].to_numpy())
    on = sh[(start <= t) & ((t < end) | np.isnan(end))]
    rooms = world.dataset.rooms
    rs, re_ = to_seconds_array(rooms["start"].to_numpy()), to_seconds_array(rooms["end"].to_numpy())
    live = set(rooms["id"].astype(str)[(rs <= t) & ((t < re_) | np.isnan(re_))])
    sizes = on[on["room"].astype(str).isin(live)].groupby("room")["item"].nunique()
    return [str(r) for r in sizes.sort_values(ascending=False, kind="stable").index[:EVAL_ROOMS]]


def predict_timing(model, n: int = 200, repeats: int = 2000) -> dict:
    """Milliseconds of one predict call (and one contributions call) over ``n`` candidates, one thread."""
    from liveshelf.serving.features import ITEM_FEATURES

    X = np.random.default_rng(0).normal(size=(n, len(ITEM_FEATURES)))
    out = {"candidates": n}
    for what, fn in (("predict", model.predict), ("contributions", model.contributions)):
        ms = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn("item", X)
            ms.append((time.perf_counter() - t) * 1e3)
        out[f"{what}_p50_ms"] = round(float(np.percentile(ms, 50)), 4)
        out[f"{what}_p99_ms"] = round(float(np.percentile(ms, 99)), 4)
    return out


def post_until(home: Path, world, lo: float, hi: float) -> None:
    from fastapi.testclient import TestClient

    from liveshelf.serving.app import create_app

    with TestClient(create_app(_settings(home))) as client:
        _post(client, _events_between(world, lo, hi))


def ab_test(home: Path, world, lo: float, hi: float) -> dict:
    """Ranker vs hand blend on 50/50 traffic through the API (shelf and feed), read with the always-valid test."""
    from fastapi.testclient import TestClient

    from liveshelf.experiment.ab_report import analyse, write_report
    from liveshelf.experiment.abtest import Arm, Experiment, ExperimentStore
    from liveshelf.experiment.online_sim import OnlineSimulator, live_times
    from liveshelf.serving.app import create_app

    exp = Experiment(
        "ranker-vs-blend",
        arms=[Arm("hand-blend", 0.5, settings={"use_ranker": False}), Arm("ranker", 0.5)],
        salt="blend",
        primary="ctr",
        tau=0.01,
        surfaces=["shelf"],
    )  # the ranker ranks shelves (its room surface stayed on the hand blend)
    store = ExperimentStore(home)
    store.create(exp, start=True)
    users = np.asarray(world.truth.user_ids, dtype=object)
    rng = np.random.default_rng(5)
    times = live_times(world, lo, hi, 6)
    per = max(AB_USERS // len(times), 1)
    shutil.rmtree(home / "exposures", ignore_errors=True)
    with TestClient(create_app(_settings(home).model_copy(update={"log_exposures": True}))) as client:
        sim = OnlineSimulator(world, client, api_key=KEY, feed_k=6, shelf_k=10, seed=5)
        for t in times:
            sim.run(
                rng.choice(users, size=min(per, len(users)), replace=False).tolist(),
                max(t, sim.clock or t),
                visits_per_user=2,
                gap_s=2.0,
            )
        client.app.state.services.experiments.flush()
        client.app.state.services.exposures.flush()
    result = analyse(exp, store.exposures(exp.name), store.outcomes(exp.name), looks=10, n_boot=500)
    paths = write_report(result, store.folder(exp.name))
    out_png = common.RESULTS / "blend_ab.png"
    shutil.copyfile(paths["png"], out_png)
    shutil.copyfile(paths["markdown"], common.RESULTS / "blend_ab.md")
    # ground truth behind the clicks: the true preference of the top-3 shelf items each arm showed
    from liveshelf.serving.exposures import read_exposures

    ex = read_exposures(home, surface="shelf")
    pref = world.truth.preference(ex["user"].to_numpy(), ex["candidate"].to_numpy())
    exam = world.truth.exam(ex["position"].to_numpy() + 1)  # as OnlineSimulator looks at a shelf
    arms_seen = sorted(set(ex["arm"]))
    top = (ex["position"] < 3).to_numpy()
    top3 = {str(a): round(float(pref[(ex["arm"] == a).to_numpy() & top].mean()), 4) for a in arms_seen}
    expected = {
        str(a): round(
            float(
                (pref * exam)[(ex["arm"] == a).to_numpy()].sum()
                / ex.loc[ex["arm"] == a, "request_id"].nunique()
            ),
            4,
        )
        for a in arms_seen
    }
    comp = result["comparisons"]["ranker"]
    arms = result["arms"]
    return {
        "users": result["users"],
        "srm_mismatch": result["srm"]["mismatch"],
        "always_valid_p": comp["always_valid_p"],
        "significant": comp["significant"],
        "ctr": {a: arms[a]["metrics"]["ctr"]["estimate"] for a in arms},
        "conversion": {a: arms[a]["metrics"]["conversion"]["estimate"] for a in arms},
        "ctr_lift": comp["metrics"]["ctr"]["relative"],
        "conversion_lift": comp["metrics"]["conversion"]["relative"],
        "shelf_top3_true_preference": top3,
        "expected_clicks_per_shelf": expected,
        "ranked_by": sorted(set(ex["ranked_by"])),
        "report_png": out_png.name,
        "report_md": "blend_ab.md",
    }


def main() -> None:
    from liveshelf.data.simulate import simulate
    from liveshelf.experiment.online_sim import live_times, prepare_home
    from liveshelf.experiment.ranker_train import train_ranker
    from liveshelf.models.ranker.live import LiveRanker
    from liveshelf.registry import ModelRegistry

    t_start, cpu_start = time.perf_counter(), time.process_time()
    tmp = Path(tempfile.mkdtemp(prefix="liveshelf-blend-"))
    rows, extra = [], {}
    try:
        # ---- world A: replay day 2, learn from its exposures, evaluate on day 3
        world_a = simulate(n_users=N_USERS, n_hosts=30, days=3, seed=1, use_review_corpus=False)
        d0 = day_start(world_a)
        home_a = tmp / "a"
        first = live_times(world_a, d0, d0 + DAY, 1)[0]
        prepare_home(home_a, world_a, first + 2 * 3600)  # a first history, and itemknn trained on it
        t = time.perf_counter()
        extra["replay"] = replay_day(home_a, world_a, first + 2 * 3600, d0 + 2 * DAY)
        extra["replay"]["seconds"] = round(time.perf_counter() - t, 1)
        report = train_ranker(home_a, source="exposures", log=print, seed=0)
        extra["ranker_from_exposures"] = report.to_dict()
        print(report.reason)
        if report.version is None:
            raise SystemExit(f"the ranker was refused on every surface: {report.reason}")
        times_a = live_times(world_a, d0 + 2 * DAY, d0 + 3 * DAY, EVAL_TIMES + 2)[1:-1]
        post_until(home_a, world_a, d0 + 2 * DAY, times_a[0])
        rows += evaluate(home_a, world_a, times_a[:1], "A (trained on its days 1-2)")
        # how the ranker treats the position bias of its logged clicks (default: LightGBM's unbiased lambdarank)
        variants = {}
        for mode in ("feature", "none"):
            rep = train_ranker(
                home_a,
                source="exposures",
                seed=0,
                params={"position": mode},
                name=f"ranker-{mode}",
                margin=-1.0,
            )  # promoted whatever its held-out figure: it is measured below
            extra[f"ranker_position_{mode}"] = rep.surfaces.get("item", {}).get("ndcg@5")
            variants[f"ranker (position {'as a feature' if mode == 'feature' else 'ignored'})"] = {
                "ranker_model": f"ranker-{mode}"
            }
        rows += evaluate(home_a, world_a, times_a[:1], "A (trained on its days 1-2)", variants)
        extra["ranker_predict_ms"] = predict_timing(ModelRegistry(home_a / "models").load("ranker"))
        # ---- world B: never trained on
        world_b = simulate(
            n_users=N_USERS,
            n_hosts=40,
            days=3,
            seed=7,
            en_share=0.6,
            interest_alpha=0.5,
            use_review_corpus=False,
        )
        d0b = day_start(world_b)
        home_b = tmp / "b"
        times_b = live_times(world_b, d0b + 2 * DAY, d0b + 3 * DAY, EVAL_TIMES + 2)[1:-1]
        prepare_home(home_b, world_b, times_b[0])
        reg = ModelRegistry(home_b / "models")
        ranker = LiveRanker.load(ModelRegistry(home_a / "models").path("ranker", report.version))
        reg.promote("ranker", reg.register(ranker, name="ranker", lineage={"trained_in": "world A"}))
        rows += evaluate(home_b, world_b, times_b[:1], "B (never trained on)")
        # ---- A/B through the API on world A's day 3
        t = time.perf_counter()
        extra["ab"] = ab_test(home_a, world_a, times_a[0] + 600, d0 + 3 * DAY)
        extra["ab"]["seconds"] = round(time.perf_counter() - t, 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {}
    for w in sorted({r["world"] for r in rows}):
        by = {r["setting"]: r["top3_preference"] for r in rows if r["world"] == w}
        gap = by["oracle"] - by["trending only"]
        summary[w] = {
            "ranker_vs_trending": round(by["ranker"] / by["trending only"], 3),
            "ranker_vs_hand_blend": round(by["ranker"] / by["hand blend"], 3),
            "gap_closed": round((by["ranker"] - by["trending only"]) / gap, 3) if gap > 0 else None,
        }
    common.write_result(
        "blend",
        rows,
        summary=summary,
        **extra,
        seconds=round(time.perf_counter() - t_start, 1),
        cpu_seconds=round(time.process_time() - cpu_start, 1),
        loadavg=os.getloadavg(),
        users=N_USERS,
        replay_users=REPLAY_USERS,
        replay_times=REPLAY_TIMES,
        note="simulated worlds (30/40 hosts, 3 days); itemknn in production; top-3 true preference "
        "of the served shelf; the ranker learned from world A's logged exposures only",
    )
    common.print_table("blend summary", [{"world": w, **v} for w, v in summary.items()])


if __name__ == "__main__":
    main()
