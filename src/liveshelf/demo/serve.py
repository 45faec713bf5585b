"""The demo's server and live traffic: the app in a background thread, the held-back day replayed over HTTP."""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from liveshelf.demo.models import SERVED_NAME
from liveshelf.demo.timing import Timer
from liveshelf.serving.background import BackgroundServer, bind_socket


def serve_and_replay(
    home: Path,
    replay,
    *,
    console: Console,
    timer: Timer,
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
        server = BackgroundServer(
            create_app(settings), host, sock=sock, start_timeout=300.0, name="liveshelf-demo-server"
        )
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


__all__ = ["bind_socket", "serve_and_replay"]
