"""Run an ASGI app with uvicorn in a background thread on a free local port.

For browser tests and screenshot scripts: the page needs a real HTTP server, and the
caller keeps its own thread to drive the browser.

>>> with BackgroundServer(create_app(settings)) as server:      # doctest: +SKIP
...     page.goto(server.url + "/")
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

from liveshelf.errors import ConfigError


def static_dir() -> Path:
    """The folder of the console's page files (``index.html``, ``app.js``, ``style.css``)."""
    return Path(__file__).resolve().parent / "static"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class BackgroundServer:
    """``with BackgroundServer(app) as server:`` serves ``app`` at ``server.url`` until the block ends.

    Start-up (the app's lifespan: state warm-up, model load) must finish within
    ``start_timeout`` seconds, else :class:`~liveshelf.errors.ConfigError` says so.
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int | None = None,
        start_timeout: float = 120.0,
        log_level: str = "warning",
    ) -> None:
        import uvicorn

        self.host = host
        self.port = port if port is not None else free_port(host)
        self.start_timeout = start_timeout
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host=host, port=self.port, log_level=log_level, lifespan="on", access_log=False
            )
        )
        self._thread = threading.Thread(target=self.server.run, name="liveshelf-console-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise ConfigError(
                    f"The server on {self.url} stopped while starting; see the log above "
                    "(a port in use, or an error in the app's start-up)."
                )
            if time.monotonic() > deadline:
                self.server.should_exit = True
                raise ConfigError(
                    f"The server on {self.url} did not start within {self.start_timeout:g} s. "
                    "Pass a larger start_timeout for a large store."
                )
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)


__all__ = ["BackgroundServer", "free_port", "static_dir"]
