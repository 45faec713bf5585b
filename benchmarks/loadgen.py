"""Open-loop HTTP load generator for ``liveshelf serve`` (run as its own process by bench_serving.py).

Phase ``reads``: GET ``/v1/users/{user}/feed`` and ``/v1/rooms/{room}/shelf?user=...`` mixed
(``--feed-share``), sent at a fixed rate. Request i is *scheduled* at ``t0 + i / rate`` and
its latency is measured from that scheduled time, not from when a connection became free,
so a slow server cannot hide its queue (no coordinated omission). Requests go over
keep-alive HTTP/1.1 connections (raw asyncio streams: the client stays cheap next to the
server); a new connection is opened when all are busy, up to ``--max-conns``.

Phase ``events``: POST ``/v1/events`` batches of ``--batch`` new events as fast as the server
takes them over ``--conns`` connections, for ``--duration`` seconds.

Phase ``burst``: ``--viewers`` distinct viewers (users of the targets) each POST one ``enter``
event for one room (``--room``), ``--batch`` events per request (1: one request per viewer),
the requests scheduled evenly over ``--within`` seconds (open loop), while
``GET /v1/rooms/{room}/shelf?user=`` is read open loop at ``--rate`` (the user: a viewer who
entered already). Latency of both from the scheduled time; ``accepted`` / ``applied`` sum the
answers of the posts.

Output: one JSON object on stdout (per route: count, errors, p50/p95/p99 ms, achieved rate).

    python benchmarks/loadgen.py reads --url http://127.0.0.1:8000 --targets t.json --rate 300 --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import numpy as np


# ------------------------------------------------------------------------------------ HTTP/1.1
class Conn:
    """One keep-alive HTTP/1.1 connection (Content-Length or chunked bodies)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = time.monotonic()

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Connection: keep-alive"]
        for k, v in (headers or {}).items():
            head.append(f"{k}: {v}")
        if body or method in ("POST", "PUT"):
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        hdrs = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        if "content-length" in hdrs:
            data = await self.reader.readexactly(int(hdrs["content-length"]))
        elif hdrs.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            data = b"".join(parts)
        else:
            data = b""
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        self.used = time.monotonic()
        return status, data


#: An idle connection older than this is closed rather than reused: the server closes keep-alive
#: connections idle for 5 s (uvicorn's default), and a request sent just then would fail.
IDLE_REUSE_S = 4.0


class Pool:
    """Idle keep-alive connections; a new one when none is idle (at most ``max_conns`` in all)."""

    def __init__(self, host: str, port: int, max_conns: int) -> None:
        self.host, self.port, self.max_conns = host, port, max_conns
        self.idle: list[Conn] = []
        self.opened = 0
        self._free = asyncio.Condition()

    async def get(self) -> Conn:
        async with self._free:
            while not self.idle and self.opened >= self.max_conns:
                await self._free.wait()
            now = time.monotonic()
            while self.idle:
                conn = self.idle.pop()
                if now - conn.used < IDLE_REUSE_S:
                    return conn
                conn.close()  # the server may be closing it: a fresh connection instead
                self.opened -= 1
            self.opened += 1
        return Conn(self.host, self.port)

    async def put(self, conn: Conn, ok: bool) -> None:
        async with self._free:
            if ok and conn.writer is not None:
                self.idle.append(conn)
            else:
                conn.close()
                self.opened -= 1
            self._free.notify()

    def close(self) -> None:
        for c in self.idle:
            c.close()


async def drain(tasks: set[asyncio.Task], pool: Pool, timeout: float) -> int:
    """Wait for the requests still in flight (up to ``timeout`` + 5 s), cancel the rest, close the pool;
    returns how many were cancelled unfinished."""
    if tasks:
        await asyncio.wait(tasks, timeout=timeout + 5.0)
    unfinished = len(tasks)
    for t in list(tasks):
        t.cancel()
    pool.close()
    return unfinished


# ------------------------------------------------------------------------------------ results
@dataclass
class Route:
    latencies: list[float] = field(default_factory=list)  # seconds, from scheduled send time
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    sample_error: str = ""

    def add(self, seconds: float, status: int | None, error: str = "", kind: str = "exception") -> None:
        self.latencies.append(seconds)
        key = str(status) if status is not None else kind
        self.statuses[key] = self.statuses.get(key, 0) + 1
        if status is None or not 200 <= status < 300:
            self.errors += 1
            if not self.sample_error:
                self.sample_error = error[:300]

    def summary(self, wall_s: float) -> dict:
        lat = np.asarray(self.latencies) * 1000.0
        pct = np.percentile(lat, [50, 95, 99]) if len(lat) else [float("nan")] * 3
        return {
            "count": len(lat),
            "errors": self.errors,
            "statuses": self.statuses,
            "p50_ms": round(float(pct[0]), 2),
            "p95_ms": round(float(pct[1]), 2),
            "p99_ms": round(float(pct[2]), 2),
            "max_ms": round(float(lat.max()), 2) if len(lat) else None,
            "rate_per_s": round(len(lat) / wall_s, 1),
            "sample_error": self.sample_error,
        }


# ------------------------------------------------------------------------------------ phases
async def reads(
    url: str,
    targets: dict,
    rate: float,
    duration: float,
    feed_share: float,
    max_conns: int,
    seed: int,
    warmup_s: float,
    timeout: float,
) -> dict:
    """Open loop at ``rate``; a request unanswered ``timeout`` s after its scheduled time is an error."""
    u = urlsplit(url)
    pool = Pool(u.hostname or "127.0.0.1", u.port or 80, max_conns)
    rng = random.Random(seed)
    users, rooms = targets["users"], targets["rooms"]
    routes = {"feed": Route(), "shelf": Route()}
    tasks: set[asyncio.Task] = set()

    async def one(route: str, path: str, scheduled: float, record: bool) -> None:
        conn = await pool.get()
        ok = False
        try:
            left = scheduled + timeout - time.perf_counter()
            if left <= 0:
                raise TimeoutError
            status, body = await asyncio.wait_for(conn.request("GET", path), left)
            ok = True
            if record:
                routes[route].add(
                    time.perf_counter() - scheduled, status, body[:300].decode("utf-8", "replace")
                )
        except TimeoutError:
            if record:
                routes[route].add(
                    time.perf_counter() - scheduled, None, f"no answer within {timeout:g} s", "timeout"
                )
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            if record:
                routes[route].add(time.perf_counter() - scheduled, None, repr(exc))
        finally:
            await pool.put(conn, ok)

    def make() -> tuple[str, str]:
        route = "feed" if rng.random() < feed_share else "shelf"
        return route, path_of(route, rng.choice(users), rng.choice(rooms))

    total_s = warmup_s + duration
    n = int(total_s * rate)
    t0 = time.perf_counter() + 0.05
    first_recorded = t0 + warmup_s
    for i in range(n):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        route, path = make()
        task = asyncio.create_task(one(route, path, scheduled, scheduled >= first_recorded))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    sent_end = time.perf_counter()
    unfinished = await drain(tasks, pool, timeout)
    wall = max(sent_end - first_recorded, 1e-9)
    out = {name: r.summary(wall) for name, r in routes.items()}
    statuses = {
        k: routes["feed"].statuses.get(k, 0) + routes["shelf"].statuses.get(k, 0)
        for k in {*routes["feed"].statuses, *routes["shelf"].statuses}
    }
    out["all"] = Route(
        latencies=routes["feed"].latencies + routes["shelf"].latencies,
        errors=routes["feed"].errors + routes["shelf"].errors,
        statuses=statuses,
    ).summary(wall)
    out["meta"] = {
        "target_rate": rate,
        "duration_s": duration,
        "warmup_s": warmup_s,
        "send_lag_ms": round((sent_end - (t0 + (n - 1) / rate)) * 1000, 2),
        "connections_open_at_end": pool.opened,
        "unfinished": unfinished,
    }
    return out


async def events(
    url: str, targets: dict, duration: float, batch: int, conns: int, api_key: str, seed: int
) -> dict:
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    rng = random.Random(seed)
    users, rooms, shelves = targets["users"], targets["rooms"], targets["shelves"]
    run = uuid.uuid4().hex[:8]
    route = Route()
    accepted = 0
    counter = 0
    types = ("click", "click", "view", "cart", "purchase", "enter")

    def body() -> bytes:
        nonlocal counter
        now = time.time()
        evs = []
        for _ in range(batch):
            counter += 1
            j = rng.randrange(len(rooms))
            typ = rng.choice(types)
            ev = {
                "event_id": f"b{run}-{counter}",
                "ts": now,
                "user": rng.choice(users),
                "type": typ,
                "room": rooms[j],
            }
            if typ != "enter":
                ev["item"] = rng.choice(shelves[j])
            if typ == "purchase":
                ev["value"] = round(rng.uniform(5, 500), 2)
            evs.append(ev)
        return json.dumps({"events": evs}, separators=(",", ":")).encode()

    deadline = time.perf_counter() + duration
    headers = {"X-API-Key": api_key}

    async def worker() -> None:
        nonlocal accepted
        conn = Conn(host, port)
        try:
            while time.perf_counter() < deadline:
                data = body()
                t = time.perf_counter()
                try:
                    status, resp = await conn.request("POST", "/v1/events", data, headers)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    route.add(time.perf_counter() - t, None, repr(exc))
                    conn.close()
                    conn = Conn(host, port)
                    continue
                route.add(time.perf_counter() - t, status, resp[:300].decode("utf-8", "replace"))
                if 200 <= status < 300:
                    accepted += int(json.loads(resp)["accepted"])
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conns)))
    wall = time.perf_counter() - t0
    out = {"events": route.summary(wall)}
    out["events"].update(
        batch=batch,
        connections=conns,
        accepted=accepted,
        events_per_s=round(accepted / wall, 1),
        wall_s=round(wall, 2),
    )
    return out


async def burst(
    url: str,
    targets: dict,
    room: str,
    viewers: int,
    within: float,
    rate: float,
    api_key: str,
    seed: int,
    timeout: float,
    max_conns: int,
    batch: int = 1,
) -> dict:
    """``viewers`` enter events (``batch`` per request) spread evenly over ``within`` s, shelf reads at ``rate``."""
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    rng = random.Random(seed)
    if viewers > len(targets["users"]):
        raise SystemExit(f"--viewers {viewers}: the targets hold only {len(targets['users'])} users")
    who = rng.sample(targets["users"], viewers)
    run = uuid.uuid4().hex[:8]
    routes = {"enter": Route(), "shelf": Route()}
    pool = Pool(host, port, max_conns)
    headers = {"X-API-Key": api_key}
    entered = 0
    counts = {"accepted": 0, "applied": 0}
    tasks: set[asyncio.Task] = set()

    async def one(route: str, method: str, path: str, body: bytes, scheduled: float) -> None:
        conn = await pool.get()
        ok = False
        try:
            left = scheduled + timeout - time.perf_counter()
            if left <= 0:
                raise TimeoutError
            status, resp = await asyncio.wait_for(conn.request(method, path, body, headers), left)
            ok = True
            routes[route].add(time.perf_counter() - scheduled, status, resp[:300].decode("utf-8", "replace"))
            if route == "enter" and status == 200:
                answer = json.loads(resp)
                counts["accepted"] += int(answer["accepted"])
                counts["applied"] += int(answer["applied"])
        except TimeoutError:
            routes[route].add(
                time.perf_counter() - scheduled, None, f"no answer within {timeout:g} s", "timeout"
            )
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            routes[route].add(time.perf_counter() - scheduled, None, repr(exc))
        finally:
            await pool.put(conn, ok)

    # one merged schedule: post i (viewers i*batch ...) at i * within / posts, read j at j / rate
    posts = -(-viewers // batch)
    plan = [(i * within / posts, "enter", i) for i in range(posts)]
    plan += [(j / rate, "shelf", j) for j in range(int(within * rate))]
    plan.sort()
    t0 = time.perf_counter() + 0.05
    for at, route, i in plan:
        scheduled = t0 + at
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if route == "enter":
            now = time.time()
            evs = [
                {"event_id": f"burst{run}-{v}", "ts": now, "user": who[v], "type": "enter", "room": room}
                for v in range(i * batch, min((i + 1) * batch, viewers))
            ]
            args = ("POST", "/v1/events", json.dumps({"events": evs}, separators=(",", ":")).encode())
            entered += len(evs)
        else:
            user = who[rng.randrange(max(entered, 1))]
            args = ("GET", f"/v1/rooms/{quote(room, safe='')}/shelf?user={quote(user, safe='')}&k=20", b"")
        task = asyncio.create_task(one(route, *args, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    sent_end = time.perf_counter()
    unfinished = await drain(tasks, pool, timeout)
    wall = max(sent_end - t0, 1e-9)
    out = {name: r.summary(wall) for name, r in routes.items()}
    out["meta"] = {
        "room": room,
        "viewers": viewers,
        "within_s": within,
        "read_rate": rate,
        "events_per_request": batch,
        "posts": posts,
        **counts,
        "unfinished": unfinished,
        "connections_open_at_end": pool.opened,
    }
    return out


def path_of(route: str, user: str, room: str) -> str:
    if route == "feed":
        return f"/v1/users/{quote(user, safe='')}/feed?k=10"
    return f"/v1/rooms/{quote(room, safe='')}/shelf?user={quote(user, safe='')}&k=20"


async def serial(url: str, targets: dict, route: str, count: int, seed: int, timeout: float) -> dict:
    """``count`` requests one after the other on one connection (closed loop: a per-request cost probe)."""
    u = urlsplit(url)
    conn = Conn(u.hostname or "127.0.0.1", u.port or 80)
    rng = random.Random(seed)
    r = Route()
    t0 = time.perf_counter()
    for _ in range(count):
        path = path_of(route, rng.choice(targets["users"]), rng.choice(targets["rooms"]))
        t = time.perf_counter()
        try:
            status, body = await asyncio.wait_for(conn.request("GET", path), timeout)
            r.add(time.perf_counter() - t, status, body[:300].decode("utf-8", "replace"))
        except TimeoutError:
            r.add(time.perf_counter() - t, None, f"no answer within {timeout:g} s", "timeout")
            conn.close()
            conn = Conn(conn.host, conn.port)
    conn.close()
    return {route: r.summary(time.perf_counter() - t0)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("phase", choices=["reads", "events", "serial", "burst"])
    ap.add_argument("--route", choices=["feed", "shelf"], default="feed", help="serial: the route probed")
    ap.add_argument("--count", type=int, default=20, help="serial: requests sent")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds after the scheduled time: an error")
    ap.add_argument("--url", required=True)
    ap.add_argument("--targets", required=True, help="JSON file: users, rooms, shelves (room -> item ids)")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds sent but not recorded (reads)")
    ap.add_argument("--rate", type=float, default=300.0)
    ap.add_argument("--feed-share", type=float, default=0.5)
    ap.add_argument("--max-conns", type=int, default=64)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--api-key", default="")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--room", default="", help="burst: the room entered (default: the targets' first room)")
    ap.add_argument("--viewers", type=int, default=2000, help="burst: distinct viewers entering")
    ap.add_argument("--within", type=float, default=10.0, help="burst: seconds the entries are spread over")
    ap.add_argument("--burst-batch", type=int, default=1, help="burst: enter events per request")
    a = ap.parse_args(argv)
    with open(a.targets, encoding="utf-8") as fh:
        targets = json.load(fh)
    if a.phase == "reads":
        out = asyncio.run(
            reads(a.url, targets, a.rate, a.duration, a.feed_share, a.max_conns, a.seed, a.warmup, a.timeout)
        )
    elif a.phase == "burst":
        out = asyncio.run(
            burst(
                a.url,
                targets,
                a.room or targets["rooms"][0],
                a.viewers,
                a.within,
                a.rate,
                a.api_key,
                a.seed,
                a.timeout,
                a.max_conns,
                a.burst_batch,
            )
        )
    elif a.phase == "serial":
        out = asyncio.run(serial(a.url, targets, a.route, a.count, a.seed, a.timeout))
    else:
        out = asyncio.run(events(a.url, targets, a.duration, a.batch, a.conns, a.api_key, a.seed))
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
