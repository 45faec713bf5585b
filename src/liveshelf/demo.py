"""The one-command demo: simulate -> ingest -> models -> registry -> server + dashboard -> live traffic.

Used by ``liveshelf demo`` (and ``make demo``). Every step is the same code a user runs on
real data; only the source is the simulator:

1. simulate a live-commerce world (Chinese and English hosts and items, ``en_share``) of
   ``days`` days of history plus one more day that is held back for the live replay;
2. ingest the history into the event store under ``home``;
3. evaluate the quick models (pop, repeat, itemknn) on the live protocol (next room), then
   train the item models served online (pop, itemknn and the text model ``textseq`` on the
   bundled all-MiniLM-L6-v2 encoder, embeddings cached under ``<LIVESHELF_HOME>/cache/text``),
   evaluate them on the temporal protocol, register them in ``<home>/models`` with metrics
   and lineage, and promote the best one;
4. start the HTTP server (uvicorn, in a thread) with the dashboard at ``/``;
5. replay the held-back day against it over HTTP in accelerated time
   (:mod:`liveshelf.data.sim.traffic`) until ``duration`` seconds have passed or Ctrl-C.

>>> from rich.console import Console                                            # doctest: +SKIP
>>> run_demo(home=Path("/tmp/demo"), users=300, hosts=12, days=1, seed=0, fresh=True,
...          console=Console(), serve=True, duration=30)                       # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import secrets
import shutil
import socket
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from liveshelf.errors import ConfigError, check_param

#: The registry name the demo server serves (ServeSettings.model's default).
SERVED_NAME = "default"
#: Item models trained for serving, baseline first (it becomes the rollback target).
ITEM_MODELS: tuple[str, ...] = ("pop", "itemknn", "textseq")


class _Timer:
    """Wall and CPU seconds per demo step, printed as a table at the end."""

    def __init__(self) -> None:
        self.steps: dict[str, dict[str, float]] = {}

    def step(self, name: str) -> _Step:
        return _Step(self, name)

    def table(self) -> Table:
        table = Table(title="timings (wall / CPU seconds)")
        table.add_column("step")
        table.add_column("wall s", justify="right")
        table.add_column("CPU s", justify="right")
        for name, t in self.steps.items():
            table.add_row(name, f"{t['wall_s']:.1f}", f"{t['cpu_s']:.1f}")
        return table


class _Step:
    def __init__(self, timer: _Timer, name: str) -> None:
        self.timer, self.name = timer, name

    def __enter__(self) -> _Step:
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self.t0
        self.timer.steps[self.name] = {
            "wall_s": round(self.wall, 2),
            "cpu_s": round(time.process_time() - self.c0, 2),
        }


def run_demo(
    *,
    home: Path,
    users: int,
    hosts: int,
    days: int,
    seed: int,
    fresh: bool,
    console: Console,
    models: tuple[str, ...] = ("pop", "repeat", "itemknn"),
    text_epochs: int = 3,
    en_share: float = 0.3,
    serve: bool = False,
    host: str = "127.0.0.1",
    port: int = 8000,
    duration: float | None = None,
    speed: float = 60.0,
    rate: float = 10.0,
) -> dict[str, Any]:
    """Run the demo (see the module docstring); returns a summary, also written to ``<home>/demo.json``.

    ``serve=False`` stops after the registry (no server, no traffic). ``duration`` is how long
    the server and the traffic run (None: until Ctrl-C).
    """
    check_param("days", days, isinstance(days, int) and days >= 1, "an int >= 1", "liveshelf demo")
    check_param(
        "text_epochs",
        text_epochs,
        isinstance(text_epochs, int) and text_epochs >= 1,
        "an int >= 1",
        "liveshelf demo",
    )
    check_param(
        "duration",
        duration,
        duration is None or duration > 0,
        "None or a number of seconds > 0",
        "liveshelf demo",
    )
    from liveshelf.data.ingest import Ingestor
    from liveshelf.data.store import EventStore

    home = Path(home).expanduser()
    if fresh and home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    timer = _Timer()

    with timer.step("simulate"), console.status("simulating a live-commerce world ..."):
        history, replay = simulate_world(users=users, hosts=hosts, days=days, seed=seed, en_share=en_share)
        folder = history.save(home / "world")
        replay.save(home / "replay")
    ds = history.dataset
    langs = ds.items["language"].value_counts().to_dict()
    console.print(
        f"[green]simulated[/] {len(ds.events):,} events, {len(ds.rooms):,} rooms, "
        f"{len(ds.items):,} items ({', '.join(f'{k}: {v:,}' for k, v in sorted(langs.items()))}) "
        f"in {timer.steps['simulate']['wall_s']:.1f}s -> {folder}; held back for the live replay: "
        f"{len(replay.dataset.rooms):,} rooms, {len(replay.dataset.events):,} events"
    )

    with timer.step("ingest"), EventStore(home) as store:
        t0 = time.perf_counter()
        reports = Ingestor(store).ingest_world(folder, rejects_dir=home / "rejects")
        console.print(_ingest_table(reports, time.perf_counter() - t0))
        console.print(_store_table(store.stats(), store.path if hasattr(store, "path") else home))
        dataset = store.to_dataset("demo")

    result: dict[str, Any] = {"home": str(home), "events": int(len(dataset.events))}
    with timer.step("quick models (live protocol)"):
        result["evaluation"] = _evaluate(dataset, models, seed, console, home / "evaluation")
    with timer.step("item models + text model"):
        trained = train_item_models(dataset, seed=seed, text_epochs=text_epochs, console=console)
    with timer.step("register + promote"):
        result["registry"] = register_models(
            home,
            trained,
            console,
            lineage={
                "source": "liveshelf demo",
                "world": str(folder),
                "seed": seed,
                "users": users,
                "hosts": hosts,
                "days": days,
                "en_share": en_share,
            },
        )
    result["item_models"] = {n: t["metrics"] for n, t in trained.items()}
    with timer.step("comment sentiment model"):
        result["sentiment"] = train_sentiment(dataset.events, home / "sentiment", seed=seed, console=console)

    if serve:
        result["serve"] = serve_and_replay(
            home,
            replay.dataset,
            console=console,
            timer=timer,
            host=host,
            port=port,
            duration=duration,
            speed=speed,
            rate=rate,
        )
    console.print(timer.table())
    result["timings"] = timer.steps
    (home / "demo.json").write_text(json.dumps(_finite(result), indent=2, default=str, allow_nan=False))
    return result


def _finite(value: Any) -> Any:
    """``value`` with NaN / infinite floats as None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ------------------------------------------------------------------------------------ simulate
def simulate_world(
    *, users: int, hosts: int, days: int, seed: int, en_share: float, today: date | None = None
) -> tuple[Any, Any]:
    """A world of ``days`` history days ending at today's UTC midnight, plus the next day for the replay.

    Returns ``(history, replay)`` worlds: history holds every item, user and host, the rooms that
    started before the cut (with their shelves) and the events before it; replay holds the rooms
    starting after the cut, their shelves and events.
    """
    from liveshelf.data.dataset import Dataset
    from liveshelf.data.simulate import SimConfig, World, simulate

    today = today or datetime.now(UTC).date()
    start = today - timedelta(days=days)
    world = simulate(
        SimConfig(
            n_users=users, n_hosts=hosts, days=days + 1, seed=seed, start=start.isoformat(), en_share=en_share
        )
    )
    ds = world.dataset
    cut = pd.Timestamp(today.isoformat(), tz="UTC")
    old_rooms = ds.rooms["start"] < cut
    hist_rooms, new_rooms = ds.rooms[old_rooms], ds.rooms[~old_rooms]
    hist_shelf = ds.shelf[ds.shelf["room"].isin(hist_rooms["id"])]
    new_shelf = ds.shelf[ds.shelf["room"].isin(new_rooms["id"])]
    before = ds.events["ts"] < cut
    hist_events = ds.events[before].reset_index(drop=True)
    new_events = ds.events[~before & (ds.events["room"].isna() | ds.events["room"].isin(new_rooms["id"]))]
    if not len(hist_events) or not len(new_rooms):
        raise ConfigError(
            f"The simulated world is too small for the demo ({len(hist_events)} history events, "
            f"{len(new_rooms)} rooms to replay). Pass more --users or --hosts."
        )
    history = World(
        Dataset(
            name="simulated",
            events=hist_events,
            items=ds.items,
            users=ds.users,
            rooms=hist_rooms.reset_index(drop=True),
            shelf=hist_shelf.reset_index(drop=True),
            hosts=ds.hosts,
            meta=ds.meta,
        ),
        world.truth,
        world.config,
        {**world.meta, "part": "history", "cut": cut.isoformat()},
    )
    replay = World(
        Dataset(
            name="simulated-replay",
            events=new_events.reset_index(drop=True),
            items=ds.items,
            users=ds.users,
            rooms=new_rooms.reset_index(drop=True),
            shelf=new_shelf.reset_index(drop=True),
            hosts=ds.hosts,
            meta=ds.meta,
        ),
        world.truth,
        world.config,
        {**world.meta, "part": "replay", "cut": cut.isoformat()},
    )
    return history, replay


def _ingest_table(reports: list, seconds: float | None) -> Table:
    table = Table(title="ingest" + (f" ({seconds:.1f}s)" if seconds else ""))
    for col in ("kind", "accepted", "rejected", "duplicate"):
        table.add_column(col, justify="right" if col != "kind" else "left")
    for r in reports:
        d = r.as_dict()
        table.add_row(str(d["kind"]), f"{d['accepted']:,}", f"{d['rejected']:,}", f"{d['duplicate']:,}")
    return table


def _store_table(stats: dict[str, Any], path: Any) -> Table:
    summary = Table(title=f"event store {path}")
    summary.add_column("what")
    summary.add_column("value", justify="right")
    for key, value in stats.items():
        if isinstance(value, dict):
            for k2, v2 in value.items():
                summary.add_row(f"{key}: {k2}", f"{v2:,}" if isinstance(v2, int) else str(v2))
        else:
            summary.add_row(str(key), f"{value:,}" if isinstance(value, int) else str(value))
    return summary


# ------------------------------------------------------------------------------------ models
def _evaluate(dataset, models: tuple[str, ...], seed: int, console: Console, out: Path) -> dict[str, Any]:
    """Quick models on the live protocol: which host's live room will the viewer enter next?"""
    from liveshelf.evaluation.runner import run

    t0 = time.perf_counter()
    results = run(dataset, list(models), protocol="live", out=out, seed=seed, progress=False)
    table = Table(
        title=f"live protocol: next room (by host) among rooms live at that moment "
        f"({time.perf_counter() - t0:.1f}s)"
    )
    table.add_column("model")
    for m in ("ndcg@10", "recall@1", "recall@10", "ndcg@10/repeat", "ndcg@10/new"):
        table.add_column(m, justify="right")
    for name, res in results["models"].items():
        met = res["metrics"]
        table.add_row(
            name,
            *[
                _fmt(met.get(m))
                for m in ("ndcg@10", "recall@1", "recall@10", "ndcg@10/repeat", "ndcg@10/new")
            ],
        )
    console.print(table)
    console.print(f"report: {out / 'report.md'}")
    return results


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def train_item_models(
    dataset, *, seed: int, text_epochs: int, console: Console, names: tuple[str, ...] = ITEM_MODELS
) -> dict[str, dict[str, Any]]:
    """Fit the item models on the temporal split of ``dataset`` and evaluate them on its test part.

    The fitted models are the ones registered (what was measured is what is served). ``textseq``
    encodes item texts with the bundled encoder through the embedding cache.
    """
    from liveshelf.evaluation.protocols import make_split
    from liveshelf.evaluation.runner import build_model, evaluate_model, seed_everything

    split = make_split(dataset, "temporal")
    summary = split.summary()
    out: dict[str, dict[str, Any]] = {}
    table = Table(
        title=f"temporal protocol: next item ({summary['cases']['all']:,} test cases, "
        f"{summary['n_items']:,} items)"
    )
    for col in ("model", "ndcg@10", "recall@10", "ndcg@10/new", "coverage@10", "fit s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name in names:
        params: dict[str, Any] = {"epochs": text_epochs, "patience": text_epochs} if name == "textseq" else {}
        seed_everything(seed)
        model = build_model(name, params, seed=seed)
        t0 = time.perf_counter()
        label = f"training {name}" + (
            f" ({text_epochs} epochs, item texts through the bundled MiniLM encoder)"
            if name == "textseq"
            else ""
        )
        with console.status(label + " ..."):
            model.fit(split.train)
        fit_s = time.perf_counter() - t0
        ev = evaluate_model(model, split)
        metrics = {k: v for k, v in ev.metrics.items() if v is not None and not k.startswith("gini")}
        out[name] = {
            "model": model,
            "metrics": metrics,
            "fit_seconds": round(fit_s, 2),
            "split": {
                "protocol": "temporal",
                "train_events": summary["n_train_events"],
                "test_cases": summary["cases"]["all"],
                "t_valid": pd.Timestamp(summary["t_valid"], unit="s", tz="UTC").isoformat(),
                "t_test": pd.Timestamp(summary["t_test"], unit="s", tz="UTC").isoformat(),
            },
        }
        table.add_row(
            name,
            *[_fmt(metrics.get(m)) for m in ("ndcg@10", "recall@10", "ndcg@10/new", "coverage@10")],
            f"{fit_s:.1f}",
        )
    console.print(table)
    return out


def register_models(
    home: Path, trained: dict[str, dict[str, Any]], console: Console, lineage: dict[str, Any]
) -> dict[str, Any]:
    """Register every trained item model under :data:`SERVED_NAME`; promote the baseline, then the best.

    The baseline (first model) is promoted first so the production history has a rollback target;
    the best by ndcg@10 (then recall@10) on the temporal test split is promoted last and served.
    """
    from liveshelf.registry import ModelRegistry

    reg = ModelRegistry(home / "models")
    versions: dict[str, str] = {}
    for i, (name, t) in enumerate(trained.items()):
        keep = {k: v for k, v in t["metrics"].items() if "/" not in k or k.endswith(("/new", "/repeat"))}
        versions[name] = reg.register(
            t["model"],
            name=SERVED_NAME,
            metrics=keep,
            lineage={**lineage, **t["split"], "model": name, "fit_seconds": t["fit_seconds"]},
        )
        if i == 0:
            reg.promote(SERVED_NAME, versions[name])
    best = max(
        trained,
        key=lambda n: (
            trained[n]["metrics"].get("ndcg@10", 0.0),
            trained[n]["metrics"].get("recall@10", 0.0),
        ),
    )
    info = reg.promote(SERVED_NAME, versions[best])
    table = Table(title=f"model registry {reg.root}")
    for col in ("name", "version", "model", "ndcg@10", "parent", "production"):
        table.add_column(col)
    for v in reg.list(SERVED_NAME):
        table.add_row(
            v.name,
            v.version,
            v.model_type,
            _fmt(v.metrics.get("ndcg@10")),
            str(v.lineage.get("parent") or "-"),
            "*" if v.production else "",
        )
    console.print(table)
    console.print(
        f"serving [bold]{best}[/] ({SERVED_NAME} {info.version}): best ndcg@10 on the temporal split"
    )
    return {"name": SERVED_NAME, "versions": versions, "production": info.version, "served_model": best}


def train_sentiment(events: pd.DataFrame, out: Path, *, seed: int, console: Console) -> dict[str, Any] | None:
    """Fit the live-comment sentiment model on the history's comments and save it to ``out``.

    The simulator labels each comment (``value`` 1 positive, 0 negative; its texts are real
    shopping reviews when the review corpus is present, else built-in phrases). A fifth is held
    out for the accuracy printed. The server finds the model at ``<home>/sentiment`` and monitors
    the replayed comments with it (dashboard sparklines, spike alerts, demotion).
    """
    import numpy as np
    from sklearn.model_selection import train_test_split

    from liveshelf.monitor.sentiment import SentimentClassifier, classification_metrics

    comments = events[
        (events["type"] == "comment") & events["text"].notna() & events["value"].isin([0.0, 1.0])
    ]
    labels = comments["value"].to_numpy().astype(np.int64)
    if len(comments) < 20 or np.bincount(labels, minlength=2).min() < 5:
        console.print(
            f"[yellow]only {len(comments)} labelled comments: no sentiment model, the server will not "
            "monitor comments.[/]"
        )
        return None
    texts = comments["text"].astype(str).to_numpy()
    tr, te = train_test_split(np.arange(len(texts)), test_size=0.2, stratify=labels, random_state=seed)
    model = SentimentClassifier(seed=seed).fit(texts[tr].tolist(), labels[tr])
    heldout = classification_metrics(labels[te], model.predict(texts[te].tolist()))
    model.save(out)
    console.print(
        f"comment sentiment model: {len(tr):,} comments, held-out accuracy "
        f"{heldout['accuracy']:.3f}, macro-F1 {heldout['macro_f1']:.3f} -> {out}"
    )
    return {"n_train": int(len(tr)), "heldout": heldout, "path": str(out)}


# ------------------------------------------------------------------------------------ server
def bind_socket(host: str, port: int) -> tuple[socket.socket, bool]:
    """A listening-ready socket on ``host:port``, or on a free port when that one is taken (or 0).

    Returns ``(socket, fell_back)``. The socket is handed to uvicorn, so no other process can take
    the port between the check and the start.
    """
    check_param(
        "port", port, isinstance(port, int) and 0 <= port <= 65535, "an int in [0, 65535]", "liveshelf demo"
    )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for candidate in (port, 0) if port else (0,):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError:
            sock.close()
            continue
        return sock, bool(port) and candidate != port
    raise ConfigError(f"The '--host' option {host!r} cannot be bound (no free port). Pass another --host.")


class ServerThread:
    """uvicorn serving ``app`` on a bound socket in a daemon thread; ``stop()`` shuts it down cleanly."""

    def __init__(self, app: Any, sock: socket.socket, log_level: str = "warning") -> None:
        import uvicorn

        self.sock = sock
        config = uvicorn.Config(
            app, log_level=log_level, access_log=False, lifespan="on", proxy_headers=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True, name="liveshelf-demo-server"
        )

    def start(self, timeout_s: float = 300.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive():
                raise ConfigError("The demo server stopped during start-up; see the log above.")
            if time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"The demo server did not start within {timeout_s:.0f} s.")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Ask uvicorn to exit (finishing requests in flight, running the app's shutdown); True when it did."""
        self.server.should_exit = True
        self.thread.join(timeout_s)
        self.sock.close()
        return not self.thread.is_alive()


def serve_and_replay(
    home: Path,
    replay,
    *,
    console: Console,
    timer: _Timer,
    host: str,
    port: int,
    duration: float | None,
    speed: float,
    rate: float,
) -> dict[str, Any]:
    """Start the server on ``home``, replay ``replay`` (a Dataset) against it, stop; returns the counts."""
    import httpx

    from liveshelf.data.sim.traffic import ReplayPlan, TrafficReplayer
    from liveshelf.serving.app import create_app
    from liveshelf.serving.settings import ServeSettings

    plan = ReplayPlan.from_frames(replay.events, replay.rooms, replay.shelf)
    key = secrets.token_urlsafe(18)
    settings = ServeSettings(
        home=home,
        model=SERVED_NAME,
        api_keys=[key],
        state="memory",
        workers=1,
        rate_per_s=max(200.0, 20 * rate),
        rate_burst=max(400, int(40 * rate)),
    )
    sock, fell_back = bind_socket(host, port)
    bound = sock.getsockname()[1]
    with (
        timer.step("server start"),
        console.status("starting the server (warm state, model, content index) ..."),
    ):
        server = ServerThread(create_app(settings), sock)
        server.start()
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{shown}:{bound}/"
    if fell_back:
        console.print(f"[yellow]port {port} is taken; using the free port {bound} instead.[/]")
    console.print(
        Panel.fit(
            f"[bold]dashboard[/]  {url}\n[bold]API docs[/]   {url}docs\n"
            f"[bold]metrics[/]    {url}metrics\n[bold]API key[/]    {key}  (X-API-Key header, "
            f"writes and admin)\n" + (f"stops after {duration:g} s" if duration else "Ctrl-C stops the demo"),
            title="liveshelf demo is live",
            border_style="green",
        )
    )
    console.print(f"demo server: {url}", soft_wrap=True, highlight=False)
    out: dict[str, Any] = {"url": url, "port": bound, "port_fell_back": fell_back}
    stop = threading.Event()
    client = httpx.Client(base_url=url, timeout=10.0)
    replayer = TrafficReplayer(client, plan, api_key=key, speed=speed, rate=rate)
    try:
        with timer.step("live traffic"):
            _replay_with_progress(replayer, console, duration, stop)
    except KeyboardInterrupt:
        stop.set()
        console.print("[yellow]Ctrl-C: stopping the demo ...[/]")
    finally:
        client.close()
        out["traffic"] = replayer.stats.as_dict()
        with timer.step("server stop"):
            out["clean_shutdown"] = server.stop()
    console.print(_traffic_table(out["traffic"]))
    console.print("server stopped" + ("" if out["clean_shutdown"] else " [red](did not exit in time)[/]"))
    return out


def _replay_with_progress(replayer, console: Console, duration: float | None, stop: threading.Event):
    """Run the replayer; a rich progress bar on a terminal, a status line every 10 s otherwise."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    if not console.is_terminal:
        last = [time.monotonic()]

        def line(stats) -> None:
            if time.monotonic() - last[0] >= 10.0:
                last[0] = time.monotonic()
                console.print(f"[{_sim_clock(stats)}] {stats.line()}", soft_wrap=True, highlight=False)

        stats = replayer.run(duration=duration, stop=stop, on_tick=line)
        console.print(f"[{_sim_clock(stats)}] {stats.line()}", soft_wrap=True, highlight=False)
        return stats
    columns = [
        SpinnerColumn(),
        TextColumn("[bold]live traffic[/] {task.fields[clock]}"),
        *([BarColumn()] if duration else []),
        TimeElapsedColumn(),
        TextColumn("{task.fields[stats]}"),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("traffic", total=duration, clock="", stats="")
        t0 = time.monotonic()

        def tick(stats) -> None:
            progress.update(
                task, completed=time.monotonic() - t0, clock=_sim_clock(stats), stats=stats.line()
            )

        return replayer.run(duration=duration, stop=stop, on_tick=tick)


def _sim_clock(stats) -> str:
    return (
        ""
        if not stats.sim_time
        else "sim " + pd.Timestamp(stats.sim_time, unit="s", tz="UTC").strftime("%H:%M")
    )


def _traffic_table(traffic: dict[str, Any]) -> Table:
    table = Table(title="live traffic replayed over HTTP")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key, value in traffic.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v:,}" for k, v in value.items()) or "-"
        elif isinstance(value, int):
            value = f"{value:,}"
        table.add_row(key, str(value))
    return table


__all__ = [
    "ITEM_MODELS",
    "SERVED_NAME",
    "ServerThread",
    "bind_socket",
    "register_models",
    "run_demo",
    "serve_and_replay",
    "simulate_world",
    "train_item_models",
]
