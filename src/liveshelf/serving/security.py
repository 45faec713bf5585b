"""API keys with roles, rate limits, client addresses, Host / Origin checks, body-size limits, log-safe ids.

* ``X-API-Key``: writes and admin routes need a configured key of their role (401 without
  one or for an unknown one, 403 for a key of another role); reads accept any configured key
  and need one only with ``read_key_required``. The dependencies live in
  :mod:`liveshelf.serving.access`.
* Rate limits: one token bucket per key (per client address for anonymous reads); an
  empty bucket answers 429 with ``Retry-After``. Failed keys count against a second bucket
  per client address: once it is empty, requests with a key answer 429 (no key guessing).
* Client address: the peer, or the ``X-Forwarded-For`` client when the peer is a trusted proxy.
* ``Host`` / ``Origin`` of writes must name an allowed host (DNS rebinding).
* Body size: a pure ASGI middleware refuses bodies over ``max_body_bytes`` with 413,
  both from ``Content-Length`` and while streaming (chunked bodies: past the limit the
  app sees a client disconnect and its answer is replaced by the 413).
* Logs never hold raw user ids or keys: :func:`log_id` is a salted hash.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

API_KEY_HEADER = "X-API-Key"

#: Key roles; a full-access key (``api_keys``) holds every role.
ROLES: tuple[str, ...] = ("ingest", "admin", "delete")
FULL = "full"


def log_id(value: str | None, salt: str) -> str:
    """A short salted hash of an id for logs (``-`` for none)."""
    if value is None:
        return "-"
    return hmac.new(salt.encode(), str(value).encode(), hashlib.sha256).hexdigest()[:12]


class KeyRing:
    """The accepted API keys with their roles, compared in constant time; ``key_id`` names a key without showing it.

    ``KeyRing(keys)`` holds full-access keys only (every role); ``ingest`` / ``admin`` / ``delete``
    add keys of one role. :meth:`from_settings` reads all four lists of the serve settings.
    """

    def __init__(
        self,
        keys: Iterable[str] = (),
        *,
        ingest: Iterable[str] = (),
        admin: Iterable[str] = (),
        delete: Iterable[str] = (),
    ) -> None:
        pairs = [(k, FULL) for k in keys] + [
            (k, role) for role, ks in (("ingest", ingest), ("admin", admin), ("delete", delete)) for k in ks
        ]
        self._keys = [(k.encode(), role) for k, role in sorted(pairs) if k]

    @classmethod
    def from_settings(cls, settings: Any) -> KeyRing:
        return cls(
            settings.key_values("api"),
            ingest=settings.key_values("ingest"),
            admin=settings.key_values("admin"),
            delete=settings.key_values("delete"),
        )

    def __bool__(self) -> bool:
        return bool(self._keys)

    def has_role(self, role: str) -> bool:
        """Some key opens routes of ``role`` (full-access keys open all)."""
        return any(r in (FULL, role) for _, r in self._keys)

    def roles(self, key: str | None) -> frozenset[str]:
        """The roles ``key`` holds (``{"full"}`` for a full-access key; empty for an unknown key)."""
        if not key:
            return frozenset()
        given = key.encode()
        found = set()
        for k, role in self._keys:  # no early exit: time does not depend on which key matched
            if hmac.compare_digest(given, k):
                found.add(role)
        return frozenset(found)

    def valid(self, key: str | None) -> bool:
        """``key`` is a configured key of any role."""
        return bool(self.roles(key))

    def allows(self, key: str | None, role: str) -> bool:
        """``key`` opens routes of ``role``: a key of that role or a full-access key."""
        held = self.roles(key)
        return FULL in held or role in held

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

    def peek(self, client: str, cost: float = 1.0, now: float | None = None) -> float:
        """Like :meth:`take` but takes nothing: 0.0 when ``cost`` tokens are there, else the wait."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        return 0.0 if tokens >= cost else (cost - tokens) / self.rate

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


class LoadShedMiddleware:
    """Refuse a request at once (503, ``Retry-After: 1``) while ``limit`` requests are already in flight.

    Past its capacity a server that queues every request answers none in time (each waits behind the whole
    queue); one that sheds the excess keeps answering the rest within a bounded delay, and tells the client
    to retry. Health, readiness and metrics routes are never shed. ``limit`` 0: no limit.
    """

    EXEMPT = ("/healthz", "/readyz", "/metrics")

    def __init__(self, app: Any, limit: int, on_refuse: Any = None) -> None:
        self.app, self.limit, self.on_refuse = app, int(limit), on_refuse
        self.in_flight = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.limit <= 0 or scope.get("path", "") in self.EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            if self.on_refuse is not None:
                self.on_refuse()
            body = (
                b'{"detail":"The server is at capacity (%d requests in flight); retry in a moment."}'
                % self.limit
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"retry-after", b"1"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        self.in_flight += 1  # one event loop per worker: no lock needed
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413 before the route reads them all."""

    def __init__(self, app: Any, max_bytes: int, on_refuse: Any = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_refuse = on_refuse

    async def _refuse(self, send: Any, size: str) -> None:
        if self.on_refuse is not None:
            self.on_refuse()
        body = json.dumps(
            {
                "detail": f"The request body must be at most {self.max_bytes} bytes; got {size}. "
                "Split the batch into smaller requests."
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._refuse(send, f"{declared} bytes")
                    return
            elif name == b"transfer-encoding":
                chunked = True
        if not chunked and declared != -1:
            # the server reads at most Content-Length bytes (none without it): nothing to count while streaming
            await self.app(scope, receive, send)
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


# ------------------------------------------------------------------------------------ client address
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class Proxies:
    """The trusted reverse proxies (addresses or CIDR networks) and the client address they vouch for."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def trusted(self, address: str | None) -> bool:
        ip = _ip(address) if address else None
        return ip is not None and any(ip in n for n in self.networks)

    def client(self, peer: str | None, forwarded_for: str | None) -> str:
        """The client's address: ``peer`` unless it is a trusted proxy; then the right-most
        ``X-Forwarded-For`` entry that is not itself a trusted proxy (entries left of it can be forged)."""
        peer = peer or "unknown"
        if not forwarded_for or not self.trusted(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.trusted(hop):
                ip = _ip(hop)
                return str(ip) if ip is not None else hop[:64]
        return str(_ip(hops[0])) if hops and _ip(hops[0]) is not None else peer


# ------------------------------------------------------------------------------------ Host / Origin
def host_name(value: str) -> str:
    """``"Example.com:8000"`` -> ``"example.com"``; ``"[::1]:8000"`` -> ``"[::1]"``."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[: end + 1] if end > 0 else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """``host`` (no port) matches an entry: equal, ``*`` or ``*.suffix`` (its subdomains)."""
    for entry in allowed:
        if entry == "*" or entry == host:
            return True
        if entry.startswith("*.") and host.endswith(entry[1:]):
            return True
    return False


def origin_allowed(origin: str, allowed_hosts: Iterable[str], allowed_origins: Iterable[str]) -> bool:
    """An ``Origin`` header is allowed when it is one of ``allowed_origins`` or names an allowed host."""
    origin = origin.strip()
    if origin.rstrip("/") in {o.rstrip("/") for o in allowed_origins}:
        return True
    if origin.lower() == "null":
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return host_allowed(host_name(parts.netloc), list(allowed_hosts))
