"""Load test of ``liveshelf serve``: a separate client process drives a running server.

World (built once with numpy, cached under ``$TMPDIR/liveshelf-bench/serving-<key>``):
100k users, 50k items, 2k rooms live from three days before the build with no end (so they
are live at the server's clock during the test, on any later run), 25 shelf items per room,
~300k events over the two days before the build. It is ingested into an EventStore home;
an ``itemknn`` model is fitted on it, registered and promoted as ``default``; then the learned
ranker is trained by replaying the stored events on the live shelves and promoted (it ranks
the surfaces that pass its gate; the report's figures are in the notes).

For each state backend (memory with one worker, then Redis db 15 under a unique prefix with
two workers, its keys removed afterwards) ``liveshelf serve`` starts as a subprocess on a free
port of 127.0.0.1, on a private copy of the home; ``benchmarks/loadgen.py`` (another process)
then runs, in this order:

1. serial probes: ``/feed`` then ``/shelf?user=``, one request at a time after a short warm-up
   (the server's CPU per request of each route, measured with psutil on the server process and
   its workers: independent of the load other processes put on the machine);
2. events: ``POST /v1/events`` batches of 500 new events as fast as answered, 4 connections,
   20 s (quick: 8 s);
3. reads: 300 req/s open loop, 50 % ``/feed`` and 50 % ``/shelf?user=``, latency from the
   scheduled send time, 60 s (``BENCH_QUICK=1``: 10 s);
4. burst: 2,000 distinct viewers each post one ``enter`` event for one live room (10 events per
   request, the requests spread evenly over 10 s), while that room's shelf is read open loop at
   100 req/s; last, like the reads before it, because an overloaded server keeps a queue that
   only its restart clears.

``results/serving.json`` holds the rows, the details of every phase and a ``summary`` object per
backend (``SUMMARY_FIELDS``), printed as a table at the end.

``BENCH_DURATION`` / ``BENCH_EVENTS_DURATION`` / ``BENCH_BURST_S`` (seconds), ``BENCH_BURST_BATCH``
(enter events per request; 1 = one request per viewer) and ``BENCH_BACKENDS``
(``memory,redis``) override the plan; ``BENCH_PROFILE=1`` records a py-spy flame graph of the
server in each phase (``results/flame-<backend>-<phase>.svg``). The server is stopped at the
end, also when the benchmark is interrupted.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

ROOT = HERE.parent
PY = sys.executable
CLI = str(Path(sys.executable).with_name("liveshelf"))

N_USERS, N_ITEMS, N_ROOMS, SHELF_PER_ROOM, N_EVENTS = 100_000, 50_000, 2_000, 25, 300_000
RATE, FEED_SHARE = 300.0, 0.5
P99_TARGET_MS, EVENTS_TARGET = 15.0, 20_000.0
BATCH, EVENT_CONNS = 500, 4
REDIS_URL = "redis://127.0.0.1:6379/15"
#: uvicorn workers per backend: the memory state lives in one process; Redis is shared by several
WORKERS = {"memory": 1, "redis": 2}
#: The burst: viewers entering one room within BURST_S seconds, BURST_BATCH enter events per POST (a
#: collector flushing every 50 ms), while its shelf is read at BURST_READ_RATE.
BURST_VIEWERS, BURST_S, BURST_BATCH, BURST_READ_RATE = 2000, 10.0, 10, 100.0
#: The ``summary`` object of serving.json, one per backend (issue 13).
SUMMARY_FIELDS = (
    "backend",
    "workers",
    "feed_p99_ms",
    "shelf_p99_ms",
    "read_rate_per_s",
    "read_errors",
    "events_per_s",
    "feed_cpu_ms",
    "shelf_cpu_ms",
    "startup_s",
    "rss_mb",
    "load_avg_1m",
)
API_KEY = "bench-" + uuid.uuid4().hex[:12]
SEED = 7


# ------------------------------------------------------------------------------------ the world
def world_frames(now: pd.Timestamp, seed: int = SEED) -> dict[str, pd.DataFrame]:
    """Schema frames of the benchmark world (rooms live from ``now - 1h`` with no end)."""
    from liveshelf.data.sim.catalog import leaves

    rng = np.random.default_rng(seed)
    lv = leaves()
    n_hosts = N_ROOMS  # one live room per host: the host cap does not hide rooms
    item_ids = np.array([f"i{i:06d}" for i in range(N_ITEMS)], dtype=object)
    user_ids = np.array([f"u{u:07d}" for u in range(N_USERS)], dtype=object)
    room_ids = np.array([f"r{r:05d}" for r in range(N_ROOMS)], dtype=object)
    host_ids = np.array([f"h{h:05d}" for h in range(n_hosts)], dtype=object)
    brands = np.array([f"brand{b:03d}" for b in range(400)], dtype=object)

    # each room sells a contiguous block of items of one or two leaf categories
    room_of_item = np.repeat(np.arange(N_ROOMS), SHELF_PER_ROOM)[:N_ITEMS]
    room_cat = rng.integers(0, len(lv.top), N_ROOMS)
    cat = np.where(rng.random(N_ITEMS) < 0.8, room_cat[room_of_item], rng.integers(0, len(lv.top), N_ITEMS))
    paths = np.asarray(lv.path_zh, dtype=object)[cat]
    leaf = np.array([p.split(" > ")[-1] for p in paths], dtype=object)
    brand = brands[rng.integers(0, len(brands), N_ITEMS)]
    price = np.round(lv.price[cat] * rng.lognormal(0, 0.4, N_ITEMS), 2)
    items = pd.DataFrame(
        {
            "id": item_ids,
            "title": brand + " " + leaf + " " + pd.Series(item_ids).str[1:].to_numpy(),
            "description": "直播间爆款 " + leaf,
            "category": paths,
            "brand": brand,
            "price": price,
            "rating": np.round(rng.uniform(3.0, 5.0, N_ITEMS), 1),
            "attributes": [json.dumps({"stock": int(s)}) for s in rng.integers(1, 500, N_ITEMS)],
            "language": "zh",
        }
    )
    users = pd.DataFrame(
        {
            "id": user_ids,
            "gender": rng.choice(["f", "m"], N_USERS),
            "age_band": rng.choice(["18-24", "25-34", "35-44"], N_USERS),
            "region": rng.choice(["north", "south", "east", "west"], N_USERS),
            "spending_tier": rng.choice(["low", "mid", "high", "vip"], N_USERS),
        }
    )
    hosts = pd.DataFrame(
        {
            "id": host_ids,
            "name": [f"host {h}" for h in range(n_hosts)],
            "categories": [
                json.dumps([p.split(" > ")[0]], ensure_ascii=False)
                for p in np.asarray(lv.path_zh, dtype=object)[room_cat]
            ],
        }
    )
    start = now - pd.Timedelta(days=3)  # before every event: the ranker replays them on live shelves
    rooms = pd.DataFrame(
        {
            "id": room_ids,
            "host": host_ids,
            "title": [f"直播 {r}" for r in range(N_ROOMS)],
            "start": pd.Series([start] * N_ROOMS),
            "end": pd.Series([pd.NaT] * N_ROOMS, dtype="datetime64[us, UTC]"),
        }
    )
    slot_room = room_of_item
    shelf = pd.DataFrame(
        {
            "room": room_ids[slot_room],
            "item": item_ids,
            "start": pd.Series([start] * N_ITEMS),
            "end": pd.Series([pd.NaT] * N_ITEMS, dtype="datetime64[us, UTC]"),
            "pinned": (np.arange(N_ITEMS) % SHELF_PER_ROOM) == 0,
        }
    )
    for f in (rooms, shelf):
        f["start"] = f["start"].astype("datetime64[us, UTC]")

    # events: each user has 1-2 favourite rooms (Zipf popularity) and buys from their shelves
    room_pop = 1.0 / np.arange(1, N_ROOMS + 1) ** 0.8
    room_pop = rng.permutation(room_pop / room_pop.sum())
    fav = rng.choice(N_ROOMS, size=(N_USERS, 2), p=room_pop)
    ev_user = np.sort(rng.integers(0, N_USERS, N_EVENTS))
    ev_room = np.where(
        rng.random(N_EVENTS) < 0.85,
        fav[ev_user, rng.integers(0, 2, N_EVENTS)],
        rng.choice(N_ROOMS, N_EVENTS, p=room_pop),
    )
    ev_item = ev_room * SHELF_PER_ROOM + np.minimum(rng.geometric(0.25, N_EVENTS) - 1, SHELF_PER_ROOM - 1)
    types = np.array(["enter", "view", "click", "like", "cart", "purchase"], dtype=object)
    ev_type = types[rng.choice(len(types), N_EVENTS, p=[0.2, 0.3, 0.3, 0.08, 0.08, 0.04])]
    t_end = now.timestamp() - 120.0
    ev_ts = np.sort(rng.uniform(t_end - 2 * 86400, t_end, N_EVENTS))  # sorted within users below
    order = np.lexsort((ev_ts, ev_user))
    has_item = ev_type != "enter"
    events = pd.DataFrame(
        {
            "event_id": "e" + pd.Series(np.arange(N_EVENTS)).astype(str).str.zfill(8),
            "ts": pd.to_datetime(ev_ts[order], unit="s", utc=True).astype("datetime64[us, UTC]"),
            "user": user_ids[ev_user[order]],
            "type": ev_type[order],
            "room": room_ids[ev_room[order]],
            "item": np.where(has_item[order], item_ids[ev_item[order]], None),
            "value": np.where(ev_type[order] == "purchase", price[ev_item[order]], np.nan),
            "text": None,
        }
    )
    return {"items": items, "users": users, "hosts": hosts, "rooms": rooms, "shelf": shelf, "events": events}


def build_home(folder: Path) -> dict[str, Any]:
    """Ingest the world into ``folder`` (an EventStore home) and promote an itemknn model; returns the targets."""
    from liveshelf.data.ingest import Ingestor
    from liveshelf.data.split import dataset_to_train_data
    from liveshelf.data.store import EventStore
    from liveshelf.models import create_model
    from liveshelf.registry import ModelRegistry

    now = pd.Timestamp.now(tz="UTC").floor("s")
    frames = world_frames(now)
    t0 = time.perf_counter()
    with EventStore(folder) as store:
        ing = Ingestor(store)
        for kind in ("items", "users", "hosts", "rooms", "shelf", "events"):
            report = ing.ingest(kind, frames[kind])
            if report.rejected:
                raise RuntimeError(f"bench world: {report.rejected} {kind} rows rejected: {report.as_dict()}")
        data = dataset_to_train_data(store.to_dataset())
    t_ingest = time.perf_counter() - t0
    model = create_model("itemknn").fit(data)
    reg = ModelRegistry(folder / "models")
    reg.promote("default", reg.register(model, name="default"))
    t_fit = time.perf_counter() - t0 - t_ingest
    # the learned ranker, trained by replaying the stored events on the live shelves, promoted when it passes
    from liveshelf.experiment.ranker_train import train_ranker

    report = train_ranker(folder, source="events", max_queries=3000)
    if not report.promoted:
        raise RuntimeError(
            f"bench world: the learned ranker was not promoted ({report.reason}); the benchmark "
            f"serves the ranker. Report: {json.dumps(report.to_dict(), default=str)[:2000]}"
        )
    # every item's content neighbours, precomputed as a deployment would (liveshelf index build)
    t1 = time.perf_counter()
    out = subprocess.run(
        [CLI, "index", "build", "--home", str(folder)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench world: liveshelf index build failed: {out.stderr[-2000:]}")
    t_index = time.perf_counter() - t1
    shelves = frames["shelf"].groupby("room", sort=True)["item"].apply(list)
    targets = {
        "users": frames["users"]["id"].tolist(),
        "rooms": shelves.index.tolist(),
        "shelves": shelves.tolist(),
        "built": now.isoformat(),
        "ingest_s": round(t_ingest, 1),
        "fit_s": round(t_fit, 1),
        "model": "itemknn",
        "ranker": ranker_summary(report.to_dict()),
        "index_build_s": round(t_index, 1),
    }
    (folder / "targets.json").write_text(json.dumps(targets))
    return targets


def ranker_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The training report's figures the notes cite: version, surfaces kept, held-out NDCG@5 per surface."""
    surfaces = {}
    for name, s in report.get("surfaces", {}).items():
        ndcg = s.get("ndcg@5", {})
        surfaces[name] = {
            "queries": s.get("queries"),
            "train_queries": s.get("train_queries"),
            **{f"ndcg5_{k.replace('-', '_')}": round(float(v), 4) for k, v in ndcg.items()},
            "p_vs_blend": (s.get("ranker_vs_blend") or {}).get("p_ttest"),
        }
    return {
        "version": report.get("version"),
        "promoted": report.get("promoted"),
        "surfaces_kept": report.get("surfaces_kept"),
        "train_s": report.get("seconds"),
        "surfaces": surfaces,
    }


def cached_home() -> Path:
    key = f"u{N_USERS}-i{N_ITEMS}-r{N_ROOMS}-s{SHELF_PER_ROOM}-e{N_EVENTS}-seed{SEED}-v4"
    folder = Path(tempfile.gettempdir()) / "liveshelf-bench" / f"serving-{key}"
    if not (folder / "targets.json").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        print(f"building the world in {folder} ...", flush=True)
        build_home(tmp)
        tmp.rename(folder)
    return folder


# ------------------------------------------------------------------------------------ the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the server child (Linux): SIGTERM when the benchmark process dies, however it dies."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Server:
    """``liveshelf serve`` in a subprocess (``workers`` uvicorn workers); stopped (then killed) on exit.

    CPU time and RSS are summed over the process and its children (the workers when there are several).
    """

    def __init__(self, home: Path, state: str, prefix: str, log: Path, workers: int = 1) -> None:
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "LIVESHELF_API_KEYS": API_KEY,
            "LIVESHELF_STATE_PREFIX": prefix,
            # one load-generator address stands for many viewers: lift the per-client rate limit
            "LIVESHELF_RATE_PER_S": "1000000",
            "LIVESHELF_RATE_BURST": "1000000",
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                CLI,
                "serve",
                "--home",
                str(home),
                "--state",
                state,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--workers",
                str(workers),
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        import psutil

        self.ps = psutil.Process(self.proc.pid)

    def wait_ready(self, timeout: float = 600.0) -> dict[str, Any]:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                r = httpx.get(self.url + "/readyz", timeout=2.0)
                if r.status_code == 200:
                    return r.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"server not ready after {timeout:.0f} s; see {self.log.name}")

    def _tree(self) -> list[Any]:
        import psutil

        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server and its live children."""
        import psutil

        total = 0.0
        for p in self._tree():
            try:
                t = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system
        return total

    def rss_mb(self) -> float:
        import psutil

        total = 0
        for p in self._tree():
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total / 2**20

    def drain(self, timeout: float = 120.0) -> float:
        """Wait until ``/healthz`` answers within 50 ms twice in a row (a queue left by an overload is worked
        off); returns the seconds waited."""
        import httpx

        t0 = time.monotonic()
        fast = 0
        while fast < 2 and time.monotonic() - t0 < timeout:
            t = time.perf_counter()
            try:
                ok = httpx.get(self.url + "/healthz", timeout=10.0).status_code == 200
            except httpx.HTTPError:
                ok = False
            fast = fast + 1 if ok and time.perf_counter() - t < 0.05 else 0
            time.sleep(0.2)
        return time.monotonic() - t0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


class Profile:
    """``py-spy record`` of the server (its workers included) for one phase: a flame graph SVG under
    ``benchmarks/results/``. Off unless ``BENCH_PROFILE=1``; stopped with SIGINT after the phase."""

    def __init__(self, server: Server, backend: str, phase: str, on: bool) -> None:
        self.proc: subprocess.Popen | None = None
        self.out = common.RESULTS / f"flame-{backend}-{phase}.svg"
        self.top: dict[str, Any] = {}
        if not on:
            return
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            raise RuntimeError("BENCH_PROFILE=1 needs py-spy: pip install -e '.[bench]'")
        common.RESULTS.mkdir(parents=True, exist_ok=True)
        cmd = [
            spy,
            "record",
            "-o",
            str(self.out),
            "--pid",
            str(server.proc.pid),
            "--rate",
            "200",
            "--nonblocking",
            "--duration",
            "600",
            "--format",
            "flamegraph",
            "--function",
        ]
        if server.workers > 1:
            cmd.append("--subprocesses")
        self.log = open(self.out.with_suffix(".log"), "wb")  # noqa: SIM115 - closed in __exit__
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        time.sleep(1.0)  # attached before the phase starts

    def __enter__(self) -> Profile:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()
        log = self.out.with_suffix(".log")
        if self.out.exists():
            log.unlink(missing_ok=True)
            self.top = flame_top(self.out)
            print(
                f"flame graph: {self.out.relative_to(ROOT)}; top frames (self %): "
                + "; ".join(f"{f['frame']} {f['self_pct']}" for f in self.top["self"][:5]),
                flush=True,
            )
        else:
            print(
                f"py-spy wrote no flame graph ({self.proc.returncode}): {log.read_text(errors='replace')[-500:]}",
                flush=True,
            )


def flame_top(svg: Path, n: int = 12) -> dict[str, Any]:
    """The frames of a py-spy flame graph with the most samples: ``self`` (on top of the stack) and
    ``total`` (anywhere in it, each sample counted once per frame), as % of all samples."""
    import re
    from collections import defaultdict

    pat = re.compile(
        r'<title>(.*?) \((?:[\d,]+) samples?, [\d.]+%\)</title><rect [^>]*?y="(\d+)"[^>]*?'
        r'fg:x="(\d+)" fg:w="(\d+)"'
    )
    text = svg.read_text(errors="replace")
    frames = [(int(y), int(x), int(w), html.unescape(name)) for name, y, x, w in pat.findall(text)]
    if not frames:
        return {"samples": 0, "self": [], "total": []}
    depths = sorted({f[0] for f in frames})
    step = min((b - a for a, b in zip(depths, depths[1:], strict=False)), default=1)
    by_depth: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for y, x, w, name in frames:
        by_depth[y].append((x, w, name))
    root = min(depths)
    samples = sum(w for x, w, _ in by_depth[root])
    own: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)

    def walk(y: int, lo: int, hi: int, above: frozenset[str]) -> int:
        covered = 0
        for x, w, name in by_depth.get(y, ()):
            if x < lo or x >= hi:
                continue
            covered += w
            if name not in above:
                total[name] += w
            own[name] += w - walk(y + step, x, x + w, above | {name})
        return covered

    walk(root, 0, samples + 1, frozenset())

    def top(d: dict[str, int]) -> list[dict[str, Any]]:
        ranked = sorted(((k, v) for k, v in d.items() if k != "all"), key=lambda kv: -kv[1])
        return [
            {"frame": k, "self_pct" if d is own else "total_pct": round(100 * v / samples, 1)}
            for k, v in ranked[:n]
        ]

    return {"samples": samples, "self": top(own), "total": top(total)}


def loadgen(args: list[str], timeout: float) -> dict[str, Any]:
    out = subprocess.run(
        [PY, str(HERE / "loadgen.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def clean_redis(prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    n = 0
    try:
        batch = []
        for key in client.scan_iter(match=f"{prefix}*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                n += client.delete(*batch)
                batch = []
        if batch:
            n += client.delete(*batch)
    finally:
        client.close()
    return n


def redis_up() -> bool:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
        client.ping()
        client.close()
        return True
    except redis.exceptions.RedisError:
        return False


# ------------------------------------------------------------------------------------ one backend
def _row(backend: str, route: str, mode: str, s: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "backend": backend,
        "route": route,
        "mode": mode,
        "n": s["count"],
        "errors": s["errors"],
        "p50_ms": s["p50_ms"],
        "p95_ms": s["p95_ms"],
        "p99_ms": s["p99_ms"],
        **extra,
    }


def _note_profile(note: Any, phase: str, prof: Profile) -> None:
    if prof.top:
        note(f"profile {phase}", {"svg": str(prof.out.relative_to(ROOT)), **prof.top})


def run_backend(
    template: Path,
    backend: str,
    work: Path,
    plan: dict[str, float],
    details: list[dict[str, Any]],
    summaries: dict[str, dict[str, Any]],
    profile: bool = False,
) -> list[dict[str, Any]]:
    home = work / f"home-{backend}"
    shutil.copytree(template, home)
    prefix = f"lsbench-{uuid.uuid4().hex[:10]}:"
    state = "memory" if backend == "memory" else REDIS_URL
    workers = WORKERS[backend]
    server = Server(home, state, prefix, work / f"server-{backend}.log", workers=workers)
    targets = str(template / "targets.json")
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"backend": backend, "workers": workers}
    loads: list[float] = []

    def note(what: str, out: dict[str, Any]) -> None:
        details.append({"backend": backend, "phase": what, **out})
        print(f"[{backend}] {what}: {json.dumps(out)}", flush=True)

    try:
        t = time.perf_counter()
        ready = server.wait_ready()
        start_s = time.perf_counter() - t
        summary["startup_s"] = round(start_s, 1)
        note(
            "ready",
            {"startup_s": round(start_s, 1), **ready, "rss_mb": round(server.rss_mb()), "workers": workers},
        )
        if ready.get("live_rooms") != N_ROOMS:
            raise RuntimeError(f"expected {N_ROOMS} live rooms, the server reports {ready.get('live_rooms')}")

        # 1. closed-loop probes: the server's CPU per request of each route, on its own (warm: a few unrecorded first)
        for route in ("feed", "shelf"):
            n = int(plan[f"serial_{route}"])
            loadgen(
                [
                    "serial",
                    "--url",
                    server.url,
                    "--targets",
                    targets,
                    "--route",
                    route,
                    "--count",
                    "3",
                    "--timeout",
                    "60",
                    "--seed",
                    str(SEED + 1),
                ],
                timeout=300,
            )
            with Profile(server, backend, f"serial-{route}", profile) as prof:
                cpu0 = server.cpu_s()
                out = loadgen(
                    [
                        "serial",
                        "--url",
                        server.url,
                        "--targets",
                        targets,
                        "--route",
                        route,
                        "--count",
                        str(n),
                        "--timeout",
                        "60",
                        "--seed",
                        str(SEED),
                    ],
                    timeout=n * 60 + 60,
                )[route]
                cpu_ms = 1000.0 * (server.cpu_s() - cpu0) / max(out["count"], 1)
            note(f"serial {route}", out)
            _note_profile(note, f"serial {route}", prof)
            summary[f"{route}_cpu_ms"] = round(cpu_ms, 2)
            rows.append(
                _row(
                    backend,
                    route,
                    "serial",
                    out,
                    rate_per_s=out["rate_per_s"],
                    server_cpu_ms=round(cpu_ms, 2),
                )
            )

        # 2. events as fast as accepted
        load0, cpu0 = os.getloadavg()[0], server.cpu_s()
        with Profile(server, backend, "events", profile) as prof:
            e = loadgen(
                [
                    "events",
                    "--url",
                    server.url,
                    "--targets",
                    targets,
                    "--duration",
                    str(plan["events"]),
                    "--batch",
                    str(BATCH),
                    "--conns",
                    str(EVENT_CONNS),
                    "--api-key",
                    API_KEY,
                    "--seed",
                    str(SEED),
                ],
                timeout=plan["events"] + 300,
            )["events"]
        cpu_events = server.cpu_s() - cpu0
        loads.append((load0 + os.getloadavg()[0]) / 2)
        note("events", e)
        _note_profile(note, "events", prof)
        summary["events_per_s"] = e["events_per_s"]
        rows.append(
            _row(
                backend,
                "events",
                f"{BATCH}/post x{EVENT_CONNS}",
                e,
                rate_per_s=e["events_per_s"],
                server_cpu_ms=round(1e6 * cpu_events / max(e["accepted"], 1), 1),
                target=EVENTS_TARGET,
                ratio=round(e["events_per_s"] / EVENTS_TARGET, 3),
            )
        )
        note(
            "events cpu",
            {
                "server_cpu_s": round(cpu_events, 2),
                "load_avg_1m": round(loads[-1], 1),
                "events_per_server_cpu_s": round(e["accepted"] / max(cpu_events, 1e-9)),
            },
        )

        # 3. open loop at the target rate (before the burst: an overload leaves a queue that only a restart clears)
        load0, cpu0 = os.getloadavg()[0], server.cpu_s()
        with Profile(server, backend, "open-loop", profile) as prof:
            r = loadgen(
                [
                    "reads",
                    "--url",
                    server.url,
                    "--targets",
                    targets,
                    "--rate",
                    str(RATE),
                    "--duration",
                    str(plan["duration"]),
                    "--feed-share",
                    str(FEED_SHARE),
                    "--timeout",
                    "5",
                    "--seed",
                    str(SEED),
                ],
                timeout=plan["duration"] + 120,
            )
        cpu_reads = server.cpu_s() - cpu0
        load = round((load0 + os.getloadavg()[0]) / 2, 1)
        loads.append(load)
        sent = r["all"]["count"] + int(RATE * r["meta"]["warmup_s"])
        note("open loop", r)
        _note_profile(note, "open loop", prof)
        for route in ("feed", "shelf"):
            s = r[route]
            summary[f"{route}_p99_ms"] = s["p99_ms"]
            rows.append(
                _row(
                    backend,
                    route,
                    f"open {RATE * (FEED_SHARE if route == 'feed' else 1 - FEED_SHARE):g}/s",
                    s,
                    rate_per_s=s["rate_per_s"],
                    target=P99_TARGET_MS,
                    ratio=round(s["p99_ms"] / P99_TARGET_MS, 2),
                )
            )
        summary["read_rate_per_s"] = RATE
        summary["read_errors"] = r["feed"]["errors"] + r["shelf"]["errors"]
        note(
            "open loop cpu",
            {
                "server_cpu_s": round(cpu_reads, 1),
                "requests_sent": sent,
                "load_avg_1m": load,
                "server_cpu_ms_per_request": round(1000 * cpu_reads / max(sent, 1), 2),
            },
        )
        # 4. burst: BURST_VIEWERS distinct viewers enter one room within BURST_S while its shelf is read (last: it
        #    may overload the server, and its queue would spill into a later phase)
        note("drain", {"waited_s": round(server.drain(), 1)})
        load0 = os.getloadavg()[0]
        with Profile(server, backend, "burst", profile) as prof:
            b = loadgen(
                [
                    "burst",
                    "--url",
                    server.url,
                    "--targets",
                    targets,
                    "--viewers",
                    str(BURST_VIEWERS),
                    "--within",
                    str(plan["burst"]),
                    "--rate",
                    str(BURST_READ_RATE),
                    "--api-key",
                    API_KEY,
                    "--burst-batch",
                    str(int(plan["burst_batch"])),
                    "--timeout",
                    "5",
                    "--seed",
                    str(SEED),
                ],
                timeout=plan["burst"] + 120,
            )
        loads.append((load0 + os.getloadavg()[0]) / 2)
        note("burst", b)
        _note_profile(note, "burst", prof)
        meta = b["meta"]
        rows.append(
            _row(
                backend,
                "burst enter",
                f"{BURST_VIEWERS} in {plan['burst']:g}s, {meta['events_per_request']}/post",
                b["enter"],
                rate_per_s=b["enter"]["rate_per_s"],
                accepted=meta["accepted"],
            )
        )
        rows.append(
            _row(
                backend,
                "burst shelf",
                f"open {BURST_READ_RATE:g}/s",
                b["shelf"],
                rate_per_s=b["shelf"]["rate_per_s"],
            )
        )

        summary["rss_mb"] = round(server.rss_mb())
        summary["load_avg_1m"] = round(max(loads), 1)
        note("end", {"rss_mb": summary["rss_mb"]})
        summaries[backend] = {k: summary.get(k) for k in SUMMARY_FIELDS}
    finally:
        server.stop()
        if backend != "memory":
            print(f"[{backend}] removed {clean_redis(prefix)} redis keys under {prefix}", flush=True)
        shutil.rmtree(home, ignore_errors=True)
    return rows


def _stop_on_term(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # runs the finally blocks: the server stops, Redis keys go


def main() -> None:
    signal.signal(signal.SIGTERM, _stop_on_term)
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    profile = os.environ.get("BENCH_PROFILE", "") not in ("", "0")
    plan = {
        "duration": float(os.environ.get("BENCH_DURATION", 10 if quick else 60)),
        "events": float(os.environ.get("BENCH_EVENTS_DURATION", 8 if quick else 20)),
        "burst": float(os.environ.get("BENCH_BURST_S", BURST_S)),
        "burst_batch": int(os.environ.get("BENCH_BURST_BATCH", BURST_BATCH)),
        "serial_feed": 10 if quick else 50,
        "serial_shelf": 30 if quick else 200,
    }
    backends = os.environ.get("BENCH_BACKENDS", "memory,redis").split(",")
    unknown = set(backends) - set(WORKERS)
    if unknown:
        raise SystemExit(f"BENCH_BACKENDS: unknown backend(s) {sorted(unknown)}; use {','.join(WORKERS)}")
    template = cached_home()
    targets = json.loads((template / "targets.json").read_text())
    rk = targets.get("ranker") or {}
    ranker_note = ", ".join(
        f"{name}: NDCG@5 ranker {f.get('ndcg5_ranker')} vs hand blend {f.get('ndcg5_hand_blend')} "
        f"vs trending {f.get('ndcg5_trending')} on {f.get('queries')} held-out queries "
        f"(paired t-test p {f.get('p_vs_blend'):.2g})"
        for name, f in (rk.get("surfaces") or {}).items()
    )
    notes = [
        f"world built {targets['built']} (ingest {targets['ingest_s']} s, itemknn fit {targets['fit_s']} s): "
        f"{N_USERS} users, {N_ITEMS} items, {N_ROOMS} live rooms x {SHELF_PER_ROOM} shelf items, "
        f"{N_EVENTS} events; model itemknn (registry name 'default', promoted)",
        f"learned ranker {rk.get('version')} trained by replaying the stored events (train_ranker(source="
        f"'events', max_queries=3000), {rk.get('train_s')} s) and promoted; surfaces kept: "
        f"{rk.get('surfaces_kept')} (the other surface is ranked by the hand blend); {ranker_note}",
        f"content neighbours of every item precomputed with `liveshelf index build` "
        f"({targets.get('index_build_s')} s); the server memory-maps them",
        "serial: one request at a time on one connection, after 3 unrecorded warm-up requests; server_cpu_ms "
        "= server CPU (psutil, user+system, the process and its workers) per request, independent of the "
        "machine's load (Redis's own CPU not included)",
        f"open: open loop at {RATE:g} req/s ({FEED_SHARE:.0%} feed, 50% shelf?user=), latency from the "
        "scheduled send time, no answer within 5 s = error (timeout); target/ratio: p99 against 15 ms",
        f"events: POST /v1/events, {BATCH} new events per request, {EVENT_CONNS} connections, as fast as "
        "answered; rate_per_s = accepted events/s, server_cpu_ms = server CPU per 1000 events; "
        "target/ratio: events/s against 20k",
        f"burst (last phase): {BURST_VIEWERS} distinct viewers each enter one live room: 'enter' events, "
        f"{plan['burst_batch']} per POST /v1/events, the posts evenly spread over {plan['burst']:g} s (open "
        f"loop), while GET /v1/rooms/<room>/shelf?user=<a viewer who entered> is read open loop at "
        f"{BURST_READ_RATE:g} req/s; latency from the scheduled time; accepted = events the posts acknowledged",
        "rate limit lifted (LIVESHELF_RATE_PER_S=1e6): one client address stands for all viewers",
        "liveshelf serve: uvicorn with uvloop + httptools; workers: "
        + ", ".join(f"{b} {w}" for b, w in WORKERS.items() if b in backends),
        "summary: per backend; feed/shelf_p99_ms and read_errors from the open loop at read_rate_per_s (the "
        "offered rate), feed/shelf_cpu_ms from the serial probes, load_avg_1m the highest 1-minute load "
        "average seen during the phases",
        "the machine is shared: see load_avg in details; absolute latencies are inflated by it",
    ]
    if profile:
        notes.append(
            "BENCH_PROFILE=1: py-spy flame graphs (200 Hz, --nonblocking) of the server during each "
            "phase in results/flame-<backend>-<phase>.svg; sampling costs the server some CPU"
        )
    rows: list[dict[str, Any]] = []
    details: list[dict[str, Any]] = []
    summaries: dict[str, dict[str, Any]] = {}
    work = Path(tempfile.mkdtemp(prefix="liveshelf-bench-serving-"))
    try:
        for backend in backends:
            if backend == "redis" and not redis_up():
                notes.append(f"redis: skipped, nothing answers at {REDIS_URL}")
                continue
            rows += run_backend(template, backend, work, plan, details, summaries, profile=profile)
    finally:
        for log in work.glob("server-*.log"):
            tail = log.read_text(errors="replace")[-1500:]
            if "Traceback" in tail or "ERROR" in tail:
                print(f"--- {log.name} (tail)\n{tail}", flush=True)
        shutil.rmtree(work, ignore_errors=True)
    common.write_result(
        "serving",
        rows,
        quick=quick,
        notes=notes,
        plan=plan,
        details=details,
        summary=summaries,
        ranker=rk,
        load_avg_1m_end=round(os.getloadavg()[0], 1),
    )
    common.print_table("serving summary", list(summaries.values()))


if __name__ == "__main__":
    main()
