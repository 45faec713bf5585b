"""Validated settings of the HTTP service (environment prefix ``LIVESHELF_``).

>>> ServeSettings(home="/tmp/ls", state="redis://127.0.0.1:6379/14", api_keys="k1,k2")  # doctest: +SKIP

Lists (``api_keys``, ``ingest_keys``, ``admin_keys``, ``delete_keys``, ``cors_origins``,
``allowed_hosts``, ``trusted_proxies``, ``blocked_items``) are read from the environment as
JSON (``'["a","b"]'``) or comma-separated text (``a,b``).

Key roles: ``api_keys`` open every route; ``ingest_keys`` the data writes (``POST /v1/events``,
``PUT /v1/items``, ``PUT /v1/rooms``, the console's simulate), ``admin_keys`` the model admin
routes, ``delete_keys`` ``DELETE /v1/users/{user}``. Any configured key opens the reads.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

if TYPE_CHECKING:
    from liveshelf.data.validate import Rules

#: Candidate sources and the reason ``source`` each one writes.
SOURCES: tuple[str, ...] = ("repeat", "sequence", "trending", "similar", "profile", "cf")

DEFAULT_WEIGHTS: dict[str, float] = {
    "repeat": 1.0,
    "sequence": 1.0,
    "trending": 0.6,
    "similar": 0.5,
    "profile": 0.4,
    "cf": 0.5,
}


def _split(value: Any) -> Any:
    """``"a, b"`` -> ``["a", "b"]``; JSON lists and real lists pass through."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [v.strip() for v in text.split(",") if v.strip()]
    return value


class ServeSettings(BaseSettings):
    """Everything ``liveshelf serve`` and :func:`liveshelf.serving.app.create_app` need."""

    model_config = SettingsConfigDict(env_prefix="LIVESHELF_", extra="ignore")

    home: Path = Field(
        default_factory=lambda: Path.home() / ".liveshelf",
        description="Folder of the event store and the model registry.",
    )
    state: str = Field("memory", description="Online state: 'memory' or 'redis://host:port/db'.")
    state_prefix: str = Field("liveshelf:", description="Key prefix of the Redis state.")
    model: str = Field("default", description="Registry name of the model served as the 'sequence' source.")
    cf_model: str | None = Field(None, description="Optional registry name of a second model ('cf' source).")
    workers: int = Field(1, ge=1, le=64, description="Worker processes; > 1 needs a Redis state.")
    text: bool = Field(True, description="Serve profiles, pitch texts and shelf Q&A (text intelligence).")
    sentiment_model: Path | None = Field(
        None,
        description="Folder of a sentiment model (liveshelf sentiment train); default <home>/sentiment "
        "when it exists. Without one, live comments are not monitored.",
    )
    alert_webhook: str | None = Field(None, description="URL that receives comment-spike alerts as JSON.")
    comment_demotion: float = Field(
        0.5, ge=0, le=1, description="How strongly negative comments demote an item on the shelf (0 = off)."
    )
    text_backend: str = Field(
        "grounded",
        pattern="^(grounded|hf|openai)$",
        description="Generation backend for pitch texts (grounded needs no model).",
    )
    warm_start: bool = Field(True, description="Build the online state from the event store at start-up.")
    warm_window_s: float = Field(
        7 * 86400.0,
        gt=0,
        description="Events replayed at start-up: this many seconds before the newest stored event.",
    )

    max_future_skew_s: float = Field(
        300.0,
        ge=0,
        le=86400.0,
        description="Posted events may lie at most this "
        "many seconds past the server's clock (clock skew); later ones are rejected.",
    )

    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Full-access keys of the X-API-Key header (every write, admin and deletion route).",
    )
    ingest_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Keys for data writes only: events, items, rooms, console simulate."
    )
    admin_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Keys for the model admin routes only (/v1/admin/...)."
    )
    delete_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Keys for user deletion only (DELETE /v1/users/{user})."
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "[::1]", "testserver"],
        description="Host names write requests may address (the Host header, port ignored; '*' = any, "
        "'*.example.com' = its subdomains). An Origin header, when sent, must be one of "
        "'cors_origins' or name an allowed host. Guards writes against DNS rebinding.",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of reverse proxies whose "
        "X-Forwarded-For header names the client; from anyone else it is ignored.",
    )
    auth_fail_rate_per_s: float = Field(
        0.2,
        gt=0,
        description="Failed-key attempts an address regains per "
        "second (its bucket of 'auth_fail_burst'); past it, 429.",
    )
    auth_fail_burst: int = Field(10, ge=1, description="Failed-key attempts an address may make at once.")
    read_key_required: bool = Field(False, description="Require an API key for reads too.")
    rate_per_s: float = Field(200.0, gt=0, description="Token-bucket refill rate per key (or per client).")
    rate_burst: int = Field(400, ge=1, description="Token-bucket size per key (or per client).")
    request_threads: int = Field(
        2,
        ge=1,
        le=256,
        description="Threads that run the route handlers of one worker "
        "(they share one interpreter lock; more threads only "
        "add hand-offs). Scale with --workers instead.",
    )
    max_in_flight: int = Field(
        32,
        ge=0,
        description="Requests one worker works on at once; more are refused at "
        "once with 503 and Retry-After (0: no limit, queue them all).",
    )
    max_body_bytes: int = Field(5_000_000, ge=1024, description="Largest accepted request body.")
    max_events: int = Field(10_000, ge=1, description="Largest accepted events batch.")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_salt: SecretStr = Field(
        default_factory=lambda: SecretStr(secrets.token_hex(16)),
        description="Salt of the hashed ids written to logs.",
    )
    pseudonym_key: SecretStr | None = Field(None, description="HMAC key of user ids (as at ingest).")

    weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_WEIGHTS),
        description="Hand-blend weight of each candidate source (the cold-start "
        "fallback when no learned ranker is promoted).",
    )
    use_ranker: bool = Field(
        True,
        description="Rank with the promoted learned ranker when there is one "
        "(False: always the hand blend, e.g. as the control arm of an A/B test).",
    )
    ranker_model: str = Field(
        "ranker",
        description="Registry name of the learned ranker; while it has no "
        "production version the hand blend ranks (and the answers say so).",
    )
    log_exposures: bool = Field(
        True,
        description="Log every feed / shelf / next-item answer as exposures "
        "(with the ranking features) under <home>/exposures.",
    )
    log_features: bool = Field(
        True,
        description="Compute the ranking features also when the hand blend ranks, "
        "so exposures carry them (needed to train a ranker from exposures).",
    )
    exposure_sample: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Share of requests whose exposures are logged (sampled by a hash of the request id).",
    )
    mmr_lambda: float = Field(0.8, ge=0.0, le=1.0, description="MMR trade-off: 1 = relevance only.")
    host_cap: int = Field(2, ge=1, description="Most rooms of one host in one feed.")
    brand_cap: int = Field(
        3,
        ge=1,
        description="Items of one brand in a row before others go first (the rest follow, none is hidden).",
    )
    blocked_items: Annotated[list[str], NoDecode] = Field(default_factory=list)
    history_len: int = Field(50, ge=1, le=1000, description="Recent events given to the model.")
    profile_half_life_s: float = Field(7 * 86400.0, gt=0)
    audience_limit: int = Field(200, ge=1, description="Most viewers aggregated for next-item.")
    content_embedding: Literal["auto", "hashed", "encoder"] = Field(
        "auto",
        description="Item vectors of the content index: 'auto' = the model's item embeddings when it "
        "exposes item_embeddings(), else hashed TF-IDF of the item text; 'encoder' = liveshelf.text.encoder "
        "(slower start; needs its model files).",
    )
    content_dim: int = Field(512, ge=16, le=65536, description="Width of the hashed TF-IDF item embedding.")
    text_build_after_s: float | None = Field(
        None,
        ge=0.0,
        description="Seconds after start-up when the text services "
        "(profiles, item facts, Q&A, pitch generator) start building in the "
        "background; unset: on the first request that needs them.",
    )
    room_stats_ttl_s: float = Field(
        1.0,
        ge=0.0,
        le=60.0,
        description="The feed reuses each live room's audience "
        "size for this many seconds (0: read it on every request).",
    )
    neighbours: int = Field(50, ge=1, le=1000, description="Content neighbours searched per recent item.")

    @field_validator(
        "api_keys",
        "ingest_keys",
        "admin_keys",
        "delete_keys",
        "cors_origins",
        "allowed_hosts",
        "trusted_proxies",
        "blocked_items",
        mode="before",
    )
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return [h.strip().lower() for h in value if h.strip()]

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        import ipaddress

        for v in value:
            try:
                ipaddress.ip_network(v.strip(), strict=False)
            except ValueError as exc:
                raise ValueError(
                    f"'trusted_proxies' must hold IP addresses or CIDR networks; got {v!r}"
                ) from exc
        return [v.strip() for v in value]

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(SOURCES))
        if unknown:
            raise ValueError(f"unknown source(s) {unknown} in 'weights'; expected keys among {list(SOURCES)}")
        bad = {k: v for k, v in value.items() if not v >= 0}
        if bad:
            raise ValueError(f"'weights' must be numbers >= 0; got {bad}")
        return {**{s: 0.0 for s in SOURCES}, **value} if value else dict(DEFAULT_WEIGHTS)

    @field_validator("state")
    @classmethod
    def _state(cls, value: str) -> str:
        if value != "memory" and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"'state' must be 'memory' or a redis:// URL; got {value!r}")
        return value

    @model_validator(mode="after")
    def _workers_need_redis(self) -> ServeSettings:
        if self.workers > 1 and self.state == "memory":
            raise ValueError(
                f"'workers' > 1 (got {self.workers}) needs a shared state: pass "
                "--state redis://host:port/db (each worker would hold its own memory state)."
            )
        return self

    def key_values(self, role: str = "api") -> set[str]:
        """The non-empty keys of one role: 'api' (full access), 'ingest', 'admin' or 'delete'."""
        keys = {
            "api": self.api_keys,
            "ingest": self.ingest_keys,
            "admin": self.admin_keys,
            "delete": self.delete_keys,
        }[role]
        return {k.get_secret_value() for k in keys if k.get_secret_value()}

    def any_keys(self) -> bool:
        """Some key of any role is configured (else the API is read-only)."""
        return any(self.key_values(role) for role in ("api", "ingest", "admin", "delete"))

    def event_rules(self, now: datetime | None = None) -> Rules:
        """The ingest rules of posted events: timestamps at most ``max_future_skew_s`` past ``now``."""
        from liveshelf.data.validate import Rules

        return Rules(now=now or datetime.now(UTC), max_future=timedelta(seconds=self.max_future_skew_s))
