"""API keys, per-key rate limits, body-size limits and log-safe ids.

* ``X-API-Key``: writes and admin routes need a configured key (401 without one, 403 for
  a wrong one); reads accept one and need it only with ``read_key_required``.
* Rate limits: one token bucket per key (per client address for anonymous reads); an
  empty bucket answers 429 with ``Retry-After``.
* Body size: a pure ASGI middleware refuses bodies over ``max_body_bytes`` with 413,
  both from ``Content-Length`` and while streaming (chunked bodies: past the limit the
  app sees a client disconnect and its answer is replaced by the 413).
* Logs never hold raw user ids or keys: :func:`log_id` is a salted hash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import threading
import time
from collections import OrderedDict
from typing import Any

API_KEY_HEADER = "X-API-Key"


def log_id(value: str | None, salt: str) -> str:
    """A short salted hash of an id for logs (``-`` for none)."""
    if value is None:
        return "-"
    return hmac.new(salt.encode(), str(value).encode(), hashlib.sha256).hexdigest()[:12]


class KeyRing:
    """The accepted API keys, compared in constant time; ``key_id`` names a key without showing it."""

    def __init__(self, keys: set[str]) -> None:
        self._keys = [k.encode() for k in sorted(keys)]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def valid(self, key: str | None) -> bool:
        if not key:
            return False
        given = key.encode()
        ok = False
        for k in self._keys:  # no early exit: time does not depend on which key matched
            ok |= hmac.compare_digest(given, k)
        return ok

    @staticmethod
    def key_id(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()[:10]


class TokenBucket:
    """Buckets of ``burst`` tokens refilled at ``rate`` per second, one per client key (LRU-bounded)."""

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str, cost: float = 1.0, now: float | None = None) -> float:
        """0.0 when allowed, else the seconds to wait before ``cost`` tokens are there."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= cost:
                self._buckets[client] = (tokens - cost, now)
                wait = 0.0
            else:
                self._buckets[client] = (tokens, now)
                wait = (cost - tokens) / self.rate
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        return wait


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413 before the route reads them all."""

    def __init__(self, app: Any, max_bytes: int, on_refuse: Any = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_refuse = on_refuse

    async def _refuse(self, send: Any, size: str) -> None:
        if self.on_refuse is not None:
            self.on_refuse()
        body = json.dumps({"detail": f"The request body must be at most {self.max_bytes} bytes; got {size}. "
                                     "Split the batch into smaller requests."}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._refuse(send, f"{declared} bytes")
                    return
        seen = 0
        started = False
        too_large = False

        async def limited_receive() -> Any:
            # past the limit the app is told the client left; its answer is replaced by the 413 below
            nonlocal seen, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Any) -> None:
            nonlocal started
            if too_large and not started:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            await self._refuse(send, f"more than {self.max_bytes} bytes (streamed)")


def retry_after(wait: float) -> str:
    return str(max(1, math.ceil(wait)))
