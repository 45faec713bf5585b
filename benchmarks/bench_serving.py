"""Load test of ``liveshelf serve``: a separate client process drives a running server.

World (built once with numpy, cached under ``$TMPDIR/liveshelf-bench/serving-<key>``):
100k users, 50k items, 2k rooms live from one hour before the build with no end (so they
are live at the server's clock during the test, on any later run), 25 shelf items per room,
~300k events over the two days before the build. It is ingested into an EventStore home;
an ``itemknn`` model is fitted on it, registered and promoted as ``default``.

For each state backend (memory, then Redis db 15 under a unique prefix, removed afterwards)
``liveshelf serve`` starts as a subprocess on a free port of 127.0.0.1, on a private copy of
the home; ``benchmarks/loadgen.py`` (another process) then runs, in this order:

1. serial probes: ``/feed`` then ``/shelf?user=``, one request at a time (the server's CPU per
   request of each route, measured with psutil on the server process: independent of the load
   other processes put on the machine);
2. events: ``POST /v1/events`` batches of 500 new events as fast as answered, 4 connections,
   20 s (quick: 8 s);
3. reads: 300 req/s open loop, 50 % ``/feed`` and 50 % ``/shelf?user=``, latency from the
   scheduled send time, 60 s (``BENCH_QUICK=1``: 10 s); last, because an overloaded server
   keeps a queue that only its restart clears.

``BENCH_DURATION`` / ``BENCH_EVENTS_DURATION`` (seconds) and ``BENCH_BACKENDS`` (``memory,redis``)
override the plan. The server is stopped at the end, also when the benchmark is interrupted.
"""

from __future__ import annotations

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
    items = pd.DataFrame({
        "id": item_ids, "title": brand + " " + leaf + " " + pd.Series(item_ids).str[1:].to_numpy(),
        "description": "直播间爆款 " + leaf, "category": paths, "brand": brand, "price": price,
        "rating": np.round(rng.uniform(3.0, 5.0, N_ITEMS), 1),
        "attributes": [json.dumps({"stock": int(s)}) for s in rng.integers(1, 500, N_ITEMS)],
        "language": "zh"})
    users = pd.DataFrame({"id": user_ids, "gender": rng.choice(["f", "m"], N_USERS),
                          "age_band": rng.choice(["18-24", "25-34", "35-44"], N_USERS),
                          "region": rng.choice(["north", "south", "east", "west"], N_USERS),
                          "spending_tier": rng.choice(["low", "mid", "high", "vip"], N_USERS)})
    hosts = pd.DataFrame({"id": host_ids, "name": [f"host {h}" for h in range(n_hosts)],
                          "categories": [json.dumps([p.split(" > ")[0]], ensure_ascii=False)
                                         for p in np.asarray(lv.path_zh, dtype=object)[room_cat]]})
    start = now - pd.Timedelta(days=3)  # before every event: the ranker replays them on live shelves
    rooms = pd.DataFrame({"id": room_ids, "host": host_ids, "title": [f"直播 {r}" for r in range(N_ROOMS)],
                          "start": pd.Series([start] * N_ROOMS), "end": pd.Series([pd.NaT] * N_ROOMS,
                                                                                  dtype="datetime64[us, UTC]")})
    slot_room = room_of_item
    shelf = pd.DataFrame({"room": room_ids[slot_room], "item": item_ids, "start": pd.Series([start] * N_ITEMS),
                          "end": pd.Series([pd.NaT] * N_ITEMS, dtype="datetime64[us, UTC]"),
                          "pinned": (np.arange(N_ITEMS) % SHELF_PER_ROOM) == 0})
    for f in (rooms, shelf):
        f["start"] = f["start"].astype("datetime64[us, UTC]")

    # events: each user has 1-2 favourite rooms (Zipf popularity) and buys from their shelves
    room_pop = 1.0 / np.arange(1, N_ROOMS + 1) ** 0.8
    room_pop = rng.permutation(room_pop / room_pop.sum())
    fav = rng.choice(N_ROOMS, size=(N_USERS, 2), p=room_pop)
    ev_user = np.sort(rng.integers(0, N_USERS, N_EVENTS))
    ev_room = np.where(rng.random(N_EVENTS) < 0.85, fav[ev_user, rng.integers(0, 2, N_EVENTS)],
                       rng.choice(N_ROOMS, N_EVENTS, p=room_pop))
    ev_item = ev_room * SHELF_PER_ROOM + np.minimum(rng.geometric(0.25, N_EVENTS) - 1, SHELF_PER_ROOM - 1)
    types = np.array(["enter", "view", "click", "like", "cart", "purchase"], dtype=object)
    ev_type = types[rng.choice(len(types), N_EVENTS, p=[0.2, 0.3, 0.3, 0.08, 0.08, 0.04])]
    t_end = now.timestamp() - 120.0
    ev_ts = np.sort(rng.uniform(t_end - 2 * 86400, t_end, N_EVENTS))  # sorted within users below
    order = np.lexsort((ev_ts, ev_user))
    has_item = ev_type != "enter"
    events = pd.DataFrame({
        "event_id": "e" + pd.Series(np.arange(N_EVENTS)).astype(str).str.zfill(8),
        "ts": pd.to_datetime(ev_ts[order], unit="s", utc=True).astype("datetime64[us, UTC]"),
        "user": user_ids[ev_user[order]], "type": ev_type[order], "room": room_ids[ev_room[order]],
        "item": np.where(has_item[order], item_ids[ev_item[order]], None),
        "value": np.where(ev_type[order] == "purchase", price[ev_item[order]], np.nan),
        "text": None})
    return {"items": items, "users": users, "hosts": hosts, "rooms": rooms, "shelf": shelf, "events": events}


def build_home(folder: Path) -> dict[str, Any]:
    """Ingest the world into ``folder`` (an EventStore home) and promote an itemknn model; returns the targets."""
    from liveshelf.data.ingest import Ingestor
    from liveshelf.data.split import dataset_to_train_data
    from liveshelf.data.store import EventStore
    from liveshelf.models import create_model
    from liveshelf.serving.registry import ModelRegistry

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
    shelves = frames["shelf"].groupby("room", sort=True)["item"].apply(list)
    targets = {"users": frames["users"]["id"].tolist(), "rooms": shelves.index.tolist(),
               "shelves": shelves.tolist(), "built": now.isoformat(), "ingest_s": round(t_ingest, 1),
               "fit_s": round(time.perf_counter() - t0 - t_ingest, 1), "model": "itemknn"}
    (folder / "targets.json").write_text(json.dumps(targets))
    return targets


def cached_home() -> Path:
    key = f"u{N_USERS}-i{N_ITEMS}-r{N_ROOMS}-s{SHELF_PER_ROOM}-e{N_EVENTS}-seed{SEED}-v2"
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
    """``liveshelf serve`` in a subprocess; stopped (then killed if it must be) on exit."""

    def __init__(self, home: Path, state: str, prefix: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "LIVESHELF_API_KEYS": API_KEY, "LIVESHELF_STATE_PREFIX": prefix,
               # one load-generator address stands for many viewers: lift the per-client rate limit
               "LIVESHELF_RATE_PER_S": "1000000", "LIVESHELF_RATE_BURST": "1000000",
               "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([CLI, "serve", "--home", str(home), "--state", state, "--host", "127.0.0.1",
                                      "--port", str(self.port), "--log-level", "warning"],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     preexec_fn=_die_with_parent if sys.platform == "linux" else None)
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

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def loadgen(args: list[str], timeout: float) -> dict[str, Any]:
    out = subprocess.run([PY, str(HERE / "loadgen.py"), *args], capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
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
    return {"backend": backend, "route": route, "mode": mode, "n": s["count"], "errors": s["errors"],
            "p50_ms": s["p50_ms"], "p95_ms": s["p95_ms"], "p99_ms": s["p99_ms"], **extra}


def run_backend(template: Path, backend: str, work: Path, plan: dict[str, float],
                details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    home = work / f"home-{backend}"
    shutil.copytree(template, home)
    prefix = f"lsbench-{uuid.uuid4().hex[:10]}:"
    state = "memory" if backend == "memory" else REDIS_URL
    server = Server(home, state, prefix, work / f"server-{backend}.log")
    targets = str(template / "targets.json")
    rows: list[dict[str, Any]] = []

    def note(what: str, out: dict[str, Any]) -> None:
        details.append({"backend": backend, "phase": what, **out})
        print(f"[{backend}] {what}: {json.dumps(out)}", flush=True)

    try:
        t = time.perf_counter()
        ready = server.wait_ready()
        start_s = time.perf_counter() - t
        note("ready", {"startup_s": round(start_s, 1), **ready, "rss_mb": round(server.rss_mb())})
        if ready.get("live_rooms") != N_ROOMS:
            raise RuntimeError(f"expected {N_ROOMS} live rooms, the server reports {ready.get('live_rooms')}")

        # 1. closed-loop probes: the server's CPU per request of each route, on its own
        for route in ("feed", "shelf"):
            n = int(plan[f"serial_{route}"])
            cpu0 = server.cpu_s()
            out = loadgen(["serial", "--url", server.url, "--targets", targets, "--route", route, "--count", str(n),
                           "--timeout", "60", "--seed", str(SEED)], timeout=n * 60 + 60)[route]
            cpu_ms = 1000.0 * (server.cpu_s() - cpu0) / max(out["count"], 1)
            note(f"serial {route}", out)
            rows.append(_row(backend, route, "serial", out, rate_per_s=out["rate_per_s"],
                             server_cpu_ms=round(cpu_ms, 2)))

        # 2. events as fast as accepted
        load0, cpu0 = os.getloadavg()[0], server.cpu_s()
        e = loadgen(["events", "--url", server.url, "--targets", targets, "--duration", str(plan["events"]),
                     "--batch", str(BATCH), "--conns", str(EVENT_CONNS), "--api-key", API_KEY, "--seed", str(SEED)],
                    timeout=plan["events"] + 300)["events"]
        cpu_events = server.cpu_s() - cpu0
        note("events", e)
        rows.append(_row(backend, "events", f"{BATCH}/post x{EVENT_CONNS}", e, rate_per_s=e["events_per_s"],
                         server_cpu_ms=round(1e6 * cpu_events / max(e["accepted"], 1), 1), target=EVENTS_TARGET,
                         ratio=round(e["events_per_s"] / EVENTS_TARGET, 3)))
        note("events cpu", {"server_cpu_s": round(cpu_events, 2), "load_avg_1m": round((load0 + os.getloadavg()[0]) / 2, 1),
                            "events_per_server_cpu_s": round(e["accepted"] / max(cpu_events, 1e-9))})

        # 3. open loop at the target rate (last: an overload leaves a queue that only a restart clears)
        load0, cpu0 = os.getloadavg()[0], server.cpu_s()
        r = loadgen(["reads", "--url", server.url, "--targets", targets, "--rate", str(RATE),
                     "--duration", str(plan["duration"]), "--feed-share", str(FEED_SHARE), "--timeout", "5",
                     "--seed", str(SEED)], timeout=plan["duration"] + 120)
        cpu_reads = server.cpu_s() - cpu0
        load = round((load0 + os.getloadavg()[0]) / 2, 1)
        sent = r["all"]["count"] + int(RATE * r["meta"]["warmup_s"])
        note("open loop", r)
        for route in ("feed", "shelf"):
            s = r[route]
            rows.append(_row(backend, route, f"open {RATE * (FEED_SHARE if route == 'feed' else 1 - FEED_SHARE):g}/s",
                             s, rate_per_s=s["rate_per_s"], target=P99_TARGET_MS, ratio=round(s["p99_ms"] / P99_TARGET_MS, 2)))
        note("open loop cpu", {"server_cpu_s": round(cpu_reads, 1), "requests_sent": sent, "load_avg_1m": load})
        note("end", {"rss_mb": round(server.rss_mb())})
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
    plan = {"duration": float(os.environ.get("BENCH_DURATION", 10 if quick else 60)),
            "events": float(os.environ.get("BENCH_EVENTS_DURATION", 8 if quick else 20)),
            "serial_feed": 5 if quick else 10, "serial_shelf": 30 if quick else 100}
    backends = os.environ.get("BENCH_BACKENDS", "memory,redis").split(",")
    template = cached_home()
    targets = json.loads((template / "targets.json").read_text())
    notes = [f"world built {targets['built']} (ingest {targets['ingest_s']} s, itemknn fit {targets['fit_s']} s): "
             f"{N_USERS} users, {N_ITEMS} items, {N_ROOMS} live rooms x {SHELF_PER_ROOM} shelf items, "
             f"{N_EVENTS} events; model itemknn (registry name 'default', promoted)",
             "serial: one request at a time on one connection; server_cpu_ms = server process CPU (psutil, "
             "user+system) per request, independent of the machine's load (Redis's own CPU not included)",
             f"open: open loop at {RATE:g} req/s ({FEED_SHARE:.0%} feed, 50% shelf?user=), latency from the "
             "scheduled send time, no answer within 5 s = error (timeout); target/ratio: p99 against 15 ms",
             f"events: POST /v1/events, {BATCH} new events per request, {EVENT_CONNS} connections, as fast as "
             "answered; rate_per_s = accepted events/s, server_cpu_ms = server CPU per 1000 events; "
             "target/ratio: events/s against 20k",
             "rate limit lifted (LIVESHELF_RATE_PER_S=1e6): one client address stands for all viewers",
             "uvicorn runs with h11 and asyncio (httptools / uvloop are not installed); one worker",
             "the machine is shared: see load_avg in details; absolute latencies are inflated by it"]
    rows: list[dict[str, Any]] = []
    details: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="liveshelf-bench-serving-"))
    try:
        for backend in backends:
            if backend == "redis" and not redis_up():
                notes.append(f"redis: skipped, nothing answers at {REDIS_URL}")
                continue
            rows += run_backend(template, backend, work, plan, details)
    finally:
        for log in work.glob("server-*.log"):
            tail = log.read_text(errors="replace")[-1500:]
            if "Traceback" in tail or "ERROR" in tail:
                print(f"--- {log.name} (tail)\n{tail}", flush=True)
        shutil.rmtree(work, ignore_errors=True)
    common.write_result("serving", rows, quick=quick, notes=notes, plan=plan, details=details,
                        load_avg_1m_end=round(os.getloadavg()[0], 1))


if __name__ == "__main__":
    main()
