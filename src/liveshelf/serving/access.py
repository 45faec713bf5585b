"""Who may call a route: API keys by role, failed-key limits, client addresses, Host / Origin checks.

``ReadAccess`` (reads), ``IngestAccess`` (events, items, rooms, the console's simulate),
``AdminAccess`` (model admin) and ``DeleteAccess`` (user deletion) are named dependencies;
each answers with the client's log name and takes a rate-limit token.

* Keys: a route of a role accepts the keys of that role (``ingest_keys`` ...) and the
  full-access ``api_keys``; reads accept any configured key. No key on a route that needs one,
  or an unknown key: 401. A key of another role: 403. No key of the role configured at all:
  401 saying so (the API is read-only until one is set).
* Failed keys: each unknown key takes a token of its client address's bucket
  (``auth_fail_burst`` tokens, ``auth_fail_rate_per_s`` back per second); once it is empty,
  every request with a key from that address answers 429 with ``Retry-After``, a right key
  included, so a guess can never be confirmed.
* Client address: the connection's peer; ``X-Forwarded-For`` only when the peer is one of
  ``trusted_proxies`` (so a client cannot pick its own address to escape the limits).
* Writes: the ``Host`` header must name one of ``allowed_hosts`` and an ``Origin`` header, when
  sent, one of ``cors_origins`` or an allowed host; else 403 (a DNS-rebinding page in a
  browser on the operator's machine cannot write).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from liveshelf.serving.deps import Services, services_of
from liveshelf.serving.security import (
    API_KEY_HEADER,
    KeyRing,
    Proxies,
    TokenBucket,
    host_allowed,
    host_name,
    origin_allowed,
    retry_after,
)

#: What each role's routes are, for messages.
ROLE_ROUTES = {
    "ingest": "data writes (events, items, rooms)",
    "admin": "model administration",
    "delete": "user deletion",
}
ROLE_SETTING = {
    "ingest": "LIVESHELF_INGEST_KEYS",
    "admin": "LIVESHELF_ADMIN_KEYS",
    "delete": "LIVESHELF_DELETE_KEYS",
}


@dataclass
class Guard:
    """The access rules of one server start: keys with roles, proxies, the failed-key buckets."""

    keys: KeyRing
    proxies: Proxies
    failures: TokenBucket
    allowed_hosts: list[str]
    allowed_origins: list[str]

    @classmethod
    def of(cls, services: Services) -> Guard:
        s = services.settings
        return cls(
            keys=KeyRing.from_settings(s),
            proxies=Proxies(s.trusted_proxies),
            failures=TokenBucket(s.auth_fail_rate_per_s, s.auth_fail_burst),
            allowed_hosts=list(s.allowed_hosts),
            allowed_origins=list(s.cors_origins),
        )


_guard_lock = threading.Lock()


def guard(request: Request, services: Services) -> Guard:
    """The app's guard (one per services object, i.e. per server start)."""
    held = getattr(request.app.state, "access_guard", None)
    if held is None or held[0] is not services:
        with _guard_lock:
            held = getattr(request.app.state, "access_guard", None)
            if held is None or held[0] is not services:
                held = (services, Guard.of(services))
                request.app.state.access_guard = held
    return held[1]


def client_address(request: Request, services: Services) -> str:
    """The client's address (the peer, or the X-Forwarded-For client of a trusted proxy)."""
    peer = request.client.host if request.client else None
    return guard(request, services).proxies.client(peer, request.headers.get("x-forwarded-for"))


def _check_origin(request: Request, services: Services, g: Guard) -> None:
    host = request.headers.get("host")
    if host is not None and not host_allowed(host_name(host), g.allowed_hosts):
        services.metrics.rejected.labels("host").inc()
        raise HTTPException(
            403,
            f"The Host header {host[:100]!r} is not an allowed host of this server, so "
            "writes are refused (DNS rebinding). Add the name the server is reached by to "
            "LIVESHELF_ALLOWED_HOSTS.",
        )
    origin = request.headers.get("origin")
    if origin is not None and not origin_allowed(origin, g.allowed_hosts, g.allowed_origins):
        services.metrics.rejected.labels("origin").inc()
        raise HTTPException(
            403,
            f"The Origin header {origin[:100]!r} is not allowed to write here. Add it to "
            "LIVESHELF_CORS_ORIGINS, or its host to LIVESHELF_ALLOWED_HOSTS.",
        )


def _authenticate(request: Request, services: Services, role: str | None) -> str:
    """The client's rate-limit name (``key:<id>`` or ``anon:<address>``), or an HTTP error."""
    g = guard(request, services)
    address = client_address(request, services)
    key = request.headers.get(API_KEY_HEADER)
    if key:
        wait = g.failures.peek(address)
        if wait > 0:
            services.metrics.rejected.labels("auth_fail").inc()
            raise HTTPException(
                429,
                "Too many requests with unknown API keys from this address. "
                f"Retry in {wait:.0f} s with a configured key.",
                headers={"Retry-After": retry_after(wait)},
            )
        if not g.keys.valid(key):
            services.metrics.rejected.labels("bad_key").inc()
            wait = g.failures.take(address)
            if wait > 0:
                raise HTTPException(
                    429,
                    "Too many requests with unknown API keys from this address. "
                    f"Retry in {wait:.0f} s with a configured key.",
                    headers={"Retry-After": retry_after(wait)},
                )
            raise HTTPException(
                401,
                "The API key in the X-API-Key header is not valid.",
                headers={"WWW-Authenticate": "ApiKey"},
            )
        if role is not None and not g.keys.allows(key, role):
            services.metrics.rejected.labels("role").inc()
            raise HTTPException(
                403,
                f"This API key may not call {ROLE_ROUTES[role]}: send a key of "
                f"{ROLE_SETTING[role]} or LIVESHELF_API_KEYS.",
            )
        return f"key:{KeyRing.key_id(key)}"
    if role is not None or services.settings.read_key_required:
        services.metrics.rejected.labels("no_key").inc()
        if (role is not None and not g.keys.has_role(role)) or (role is None and not g.keys):
            setting = "LIVESHELF_API_KEYS" if role is None else f"LIVESHELF_API_KEYS or {ROLE_SETTING[role]}"
            raise HTTPException(
                401,
                "This route needs an API key, and the server has none configured for it. "
                f"Set {setting} and send one in the X-API-Key header.",
                headers={"WWW-Authenticate": "ApiKey"},
            )
        raise HTTPException(
            401,
            "Missing API key: send a configured key in the X-API-Key header.",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    return f"anon:{address}"


def _limit(services: Services, client: str) -> None:
    wait = services.bucket.take(client)
    if wait > 0:
        services.metrics.rejected.labels("rate").inc()
        raise HTTPException(
            429,
            f"Rate limit: at most {services.settings.rate_per_s:g} requests/s per key "
            f"(burst {services.settings.rate_burst}). Retry in {wait:.2f} s.",
            headers={"Retry-After": retry_after(wait)},
        )


def _access(request: Request, services: Services, role: str | None) -> str:
    if role is not None:
        _check_origin(request, services, guard(request, services))
    client = _authenticate(request, services, role)
    _limit(services, client)
    request.state.client = client if client.startswith("key:") else "anon:" + services.log_id(client)
    return request.state.client


# Coroutines: FastAPI runs them on the event loop (a plain ``def`` dependency costs a thread-pool hop
# per request); none of them waits on I/O.
async def read_access(request: Request) -> str:
    return _access(request, services_of(request), None)


async def ingest_access(request: Request) -> str:
    return _access(request, services_of(request), "ingest")


async def admin_access(request: Request) -> str:
    return _access(request, services_of(request), "admin")


async def delete_access(request: Request) -> str:
    return _access(request, services_of(request), "delete")


ReadAccess = Annotated[str, Depends(read_access)]
IngestAccess = Annotated[str, Depends(ingest_access)]
AdminAccess = Annotated[str, Depends(admin_access)]
DeleteAccess = Annotated[str, Depends(delete_access)]

__all__ = [
    "AdminAccess",
    "DeleteAccess",
    "Guard",
    "IngestAccess",
    "ReadAccess",
    "admin_access",
    "client_address",
    "delete_access",
    "guard",
    "ingest_access",
    "read_access",
]
