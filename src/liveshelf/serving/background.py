"""Run an ASGI app with uvicorn in a background thread, on a socket bound before the server starts.

For the demo, browser tests and screenshot scripts: the page needs a real HTTP server, and the caller
keeps its own thread. The socket is bound first and handed to uvicorn, so no other process can take
the port between choosing it and serving on it (port 0 or ``None``: the OS picks a free one).

>>> with BackgroundServer(create_app(settings)) as server:      # doctest: +SKIP
...     page.goto(server.url + "/")
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from liveshelf.errors import ConfigError, check_param


def bind_socket(
    host: str, port: int, *, fallback: bool = True, where: str = "liveshelf demo"
) -> tuple[socket.socket, bool]:
    """A socket bound to ``host:port``, or to a free port when that one is taken (``fallback``) or 0.

    Returns ``(socket, fell_back)``. Hand the socket to uvicorn (:class:`BackgroundServer` does), so no
    other process can take the port between the check and the start.
    """
    check_param("port", port, isinstance(port, int) and 0 <= port <= 65535, "an int in [0, 65535]", where)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    candidates = (port, 0) if port and fallback else (port,)
    for candidate in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError:
            sock.close()
            continue
        return sock, bool(port) and candidate != port
    if port and not fallback:
        raise ConfigError(
            f"The 'port' parameter of {where} must name a free port on {host!r}. Got {port}, which is taken; "
            "pass another port, or none for a free one."
        )
    raise ConfigError(f"The '--host' option {host!r} cannot be bound (no free port). Pass another --host.")


class BackgroundServer:
    """uvicorn serving ``app`` on a bound socket in a daemon thread.

    ``with BackgroundServer(app) as server:`` serves ``app`` at ``server.url`` until the block ends; or
    ``start()`` / ``stop()``. ``port`` None or 0 picks a free port; a taken ``port`` falls back to a free
    one when ``fallback`` (``fell_back`` says so), else raises :class:`~liveshelf.errors.ConfigError`.
    ``sock``: serve on this socket (already bound) instead. Start-up (the app's lifespan: state warm-up,
    model load) must finish within ``start_timeout`` seconds, else a ``ConfigError`` says so.
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int | None = None,
        start_timeout: float = 120.0,
        log_level: str = "warning",
        *,
        sock: socket.socket | None = None,
        fallback: bool = False,
        name: str = "liveshelf-server",
    ) -> None:
        import uvicorn

        if sock is None:
            sock, self.fell_back = bind_socket(host, port or 0, fallback=fallback, where="BackgroundServer")
        else:
            self.fell_back = False
        self.sock = sock
        self.host = host
        self.port = int(sock.getsockname()[1])
        self.start_timeout = start_timeout
        config = uvicorn.Config(
            app, log_level=log_level, access_log=False, lifespan="on", proxy_headers=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True, name=name
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float | None = None) -> BackgroundServer:
        """Start the thread and wait until uvicorn serves (the app's start-up done)."""
        timeout = self.start_timeout if timeout_s is None else timeout_s
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                self.sock.close()
                raise ConfigError(
                    f"The server on {self.url} stopped while starting; see the log above "
                    "(an error in the app's start-up)."
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ConfigError(
                    f"The server on {self.url} did not start within {timeout:g} s. "
                    "Pass a larger start_timeout for a large store."
                )
            time.sleep(0.05)
        return self

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Ask uvicorn to exit (finishing requests in flight, running the app's shutdown); True when it did."""
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout_s)
        self.sock.close()
        return not self.thread.is_alive()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["BackgroundServer", "bind_socket"]
