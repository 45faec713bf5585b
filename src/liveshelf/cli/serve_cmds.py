"""Command ``liveshelf serve``: the HTTP API (FastAPI + uvicorn)."""

from __future__ import annotations

from pathlib import Path

import typer

from liveshelf.cli.app import app


@app.command("serve")
def serve_cmd(
    home: Path | None = typer.Option(
        None,
        "--home",
        help="Folder of the event store and the model registry (default: LIVESHELF_HOME or ~/.liveshelf).",
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        max=64,
        help="Worker processes, each its own process on a core (> 1 needs --state "
        "redis://; default LIVESHELF_WORKERS or 1).",
    ),
    state: str | None = typer.Option(None, "--state", help="'memory' (default) or redis://host:port/db."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on."),
    model: str | None = typer.Option(
        None, "--model", help="Registry name of the served model (default 'default')."
    ),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
    loop: str = typer.Option(
        "auto", "--loop", help="Event loop: 'uvloop', 'asyncio' or 'auto' (uvloop when installed)."
    ),
    http: str = typer.Option(
        "auto", "--http", help="HTTP parser: 'httptools', 'h11' or 'auto' (httptools when installed)."
    ),
) -> None:
    """Serve the API; the online state is rebuilt from the store at start (rooms, shelves, recent events).

    API keys come from the environment (LIVESHELF_API_KEYS="k1,k2"), never from the command line.
    """
    import logging
    import os
    import secrets

    import uvicorn
    from rich.console import Console

    from liveshelf.errors import ConfigError
    from liveshelf.serving.settings import ServeSettings

    overrides: dict[str, object] = {}
    if workers is not None:
        overrides["workers"] = workers
    if home is not None:
        overrides["home"] = home
    if state is not None:
        overrides["state"] = state
    if model is not None:
        overrides["model"] = model
    try:
        settings = ServeSettings(**overrides)
    except ValueError as exc:
        raise ConfigError(f"Invalid serve settings: {exc}") from exc
    workers = settings.workers
    server = {
        "loop": _pick("--loop", loop, "uvloop", "asyncio"),
        "http": _pick("--http", http, "httptools", "h11"),
        # uvicorn's access log would print raw paths (user ids); the app logs route templates instead.
        # proxy_headers off: the app trusts X-Forwarded-For only from LIVESHELF_TRUSTED_PROXIES
        "access_log": False,
        "proxy_headers": False,
        "log_level": log_level,
        "host": host,
        "port": port,
    }
    console = Console(stderr=True)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not settings.any_keys():
        console.print(
            "[yellow]no API keys configured (LIVESHELF_API_KEYS): the API and the console are read-only.[/]"
        )
    console.print(
        f"liveshelf serve: home={settings.home} state={settings.state.split('@')[-1]} "
        f"workers={workers} loop={server['loop']} http={server['http']} http://{host}:{port}/docs"
    )
    if workers == 1:
        from liveshelf.serving.app import create_app

        uvicorn.run(create_app(settings), **server)
        return
    # several workers share a Redis state: build it once here, then the workers start without rebuilding
    import shutil
    import tempfile

    from liveshelf.data.store import EventStore
    from liveshelf.serving.deps import warm_state
    from liveshelf.serving.metrics import MULTIPROC_ENV
    from liveshelf.serving.state import make_state

    if settings.warm_start:
        shared = make_state(settings.state, prefix=settings.state_prefix)
        with EventStore(settings.home) as store:
            counts = warm_state(shared, store, settings.warm_window_s)
        shared.close()
        console.print(f"state built: {counts}")
    os.environ.update(
        {
            "LIVESHELF_HOME": str(settings.home),
            "LIVESHELF_STATE": settings.state,
            "LIVESHELF_STATE_PREFIX": settings.state_prefix,
            "LIVESHELF_MODEL": settings.model,
            "LIVESHELF_WORKERS": str(workers),
            "LIVESHELF_WARM_START": "false",
        }
    )
    os.environ.setdefault(
        "LIVESHELF_LOG_SALT", secrets.token_hex(16)
    )  # one salt: log ids match across workers
    own_dir = MULTIPROC_ENV not in os.environ
    if own_dir:  # /metrics then sums over the workers
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="liveshelf-metrics-")
    try:
        uvicorn.run("liveshelf.serving.app:create_app", factory=True, workers=workers, **server)
    finally:
        if own_dir:
            shutil.rmtree(os.environ.pop(MULTIPROC_ENV), ignore_errors=True)


def _pick(option: str, value: str, fast: str, fallback: str) -> str:
    """``auto``: the fast implementation when its package is installed, else the pure-Python one."""
    import importlib.util

    from liveshelf.errors import ConfigError

    if value not in ("auto", fast, fallback):
        raise ConfigError(f"{option} must be 'auto', {fast!r} or {fallback!r}; got {value!r}.")
    installed = importlib.util.find_spec(fast) is not None
    if value == fast and not installed:
        raise ConfigError(
            f"{option} {fast}: the '{fast}' package is not installed. Install liveshelf's "
            f"dependencies again (pip install -e .), or pass {option} {fallback}."
        )
    if value == "auto":
        return fast if installed else fallback
    return value
