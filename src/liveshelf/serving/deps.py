"""What routes depend on, built once in the app's lifespan and reached through named dependencies.

``StateDep``, ``PipelineDep``, ``ServicesDep`` ... are ``Annotated[..., Depends(...)]``;
tests may swap any of them with ``app.dependency_overrides``. Who may call a route (keys by role,
rate limits, Host / Origin) is decided in :mod:`liveshelf.serving.access`.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from fastapi import Depends, HTTPException, Query, Request

from liveshelf.data.store import EventStore
from liveshelf.errors import ConfigError, NotFoundError, ValidationError
from liveshelf.privacy.pseudonym import Pseudonymiser
from liveshelf.serving.experiments import ExperimentService
from liveshelf.serving.exposures import ExposureLog
from liveshelf.serving.metrics import Metrics
from liveshelf.serving.pipeline import Catalogue, Pipeline
from liveshelf.serving.security import KeyRing, TokenBucket, log_id
from liveshelf.serving.settings import ServeSettings
from liveshelf.serving.state import OnlineState
from liveshelf.serving.sync import StateSync, rebuild_state
from liveshelf.serving.text_services import TextServices

log = logging.getLogger("liveshelf.serving")


# ------------------------------------------------------------------------------------ the store
class StoreGateway:
    """Access to the DuckDB event store.

    One process (``shared=False``): the store stays open, calls are serialised by a lock.
    Several workers (``shared=True``): DuckDB lets one process hold the file, so each call
    opens it, works and closes it, retrying while another worker holds it.
    """

    def __init__(self, home: Path, shared: bool, wait_s: float = 30.0) -> None:
        self.home = Path(home)
        self.shared = shared
        self.wait_s = wait_s
        self._lock = threading.RLock()
        self._store: EventStore | None = None

    @contextmanager
    def open(self) -> Iterator[EventStore]:
        with self._lock:
            if not self.shared:
                if self._store is None or self._store.closed:
                    self._store = EventStore(self.home)
                yield self._store
                return
            store = self._open_retrying()
            try:
                yield store
            finally:
                store.close()

    def _open_retrying(self) -> EventStore:
        deadline = time.monotonic() + self.wait_s
        pause = 0.005
        while True:
            try:
                return EventStore(self.home)
            except ConfigError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.1)

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


# ------------------------------------------------------------------------------------ models
class ModelSlot:
    """The production model of one registry name, or None while there is none (retried every ``poll_s``)."""

    def __init__(self, home: Path, name: str, poll_s: float = 1.0) -> None:
        from liveshelf.registry import ModelHolder, ModelRegistry

        self.name = name
        self.poll_s = poll_s
        self.registry = ModelRegistry(Path(home) / "models")
        self.holder = ModelHolder(self.registry, name, poll_s=poll_s)
        self._retry_at = 0.0

    def current(self) -> tuple[str | None, Any]:
        if self.holder.version is None and time.monotonic() < self._retry_at:
            return None, None
        try:
            return self.holder.current()
        except NotFoundError:
            self._retry_at = time.monotonic() + self.poll_s
            return None, None

    def get(self) -> Any:
        return self.current()[1]


# ------------------------------------------------------------------------------------ catalogue sync
class CatalogueSync:
    """Keeps every worker's catalogue equal: a shared version counter in Redis (None: one process)."""

    def __init__(self, url: str | None, prefix: str) -> None:
        self._client = None
        self._key = f"{prefix}catalogue:version"
        if url is not None:
            import redis

            # the same short timeouts as the state: a frozen Redis answers 503 quickly, never hangs a request
            self._client = redis.Redis.from_url(url, socket_timeout=1.5, socket_connect_timeout=1.5)
        self.seen: int = self.remote()

    @property
    def shared(self) -> bool:
        return self._client is not None

    def remote(self) -> int:
        if self._client is None:
            return 0
        v = self._client.get(self._key)
        return int(v) if v is not None else 0

    def bump(self) -> int:
        if self._client is None:
            return 0
        return int(self._client.incr(self._key))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


# ------------------------------------------------------------------------------------ services
@dataclass
class Services:
    settings: ServeSettings
    state: OnlineState
    store: StoreGateway
    catalogue: Catalogue
    pipeline: Pipeline
    metrics: Metrics
    keys: KeyRing
    bucket: TokenBucket
    pseudonymiser: Pseudonymiser | None
    models: dict[str, ModelSlot]
    sync: CatalogueSync
    text: TextServices | None = None
    experiments: ExperimentService | None = None  # A/B tests: serving/experiments.py
    exposures: ExposureLog | None = None  # every answer, with its ranking features: serving/exposures.py
    state_sync: StateSync | None = None  # keeps the online state caught up with the store: serving/sync.py
    started: float = field(default_factory=time.time)
    _sync_lock: threading.Lock = field(default_factory=threading.Lock)

    def user_key(self, raw: str) -> str:
        """The id a raw user id is stored under (its pseudonym when a key is set)."""
        return self.pseudonymiser(raw) if self.pseudonymiser is not None else raw

    def log_id(self, value: str | None) -> str:
        return log_id(value, self.settings.log_salt.get_secret_value())

    def model_version(self, role: str = "sequence") -> str | None:
        slot = self.models.get(role)
        if slot is None:
            return None
        version, _ = slot.current()
        if version is not None:
            self.metrics.set_model(role, slot.name, version)
        return version

    def sync_catalogue(self) -> None:
        """Reload the catalogue when another worker changed it (shared state only)."""
        remote = self.sync.remote()
        hit = remote == self.sync.seen
        self.metrics.cache_lookup("catalogue", hit)
        if hit:
            return
        with self._sync_lock:
            if remote != self.sync.seen:
                with self.store.open() as store:
                    frame = store.frame("items")
                self.catalogue.replace(frame)
                if len(frame):
                    self.state.upsert_items(frame[["id", "category"]])
                self.sync.seen = remote

    def catalogue_changed(self) -> None:
        new = self.sync.bump()
        if self.sync.shared and new == self.sync.seen + 1:  # else another worker changed it too: reload
            self.sync.seen = new

    def close(self) -> None:
        self.store.close()
        self.sync.close()
        self.state.close()
        if self.text is not None:
            self.text.close()
        if self.experiments is not None:
            self.experiments.close()
        if self.exposures is not None:
            self.exposures.close()
        if self.state_sync is not None:
            self.state_sync.stop()

    def log_exposure(
        self, surface: str, user: str | None, room: str | None, t: float, ranked: Any, ab: Any = None
    ) -> None:
        """Buffer one answer in the exposure log (no-op when logging is off)."""
        if self.exposures is None:
            return
        self.exposures.log(
            surface,
            user,
            room,
            t,
            ranked,
            model_version=ab.model_version() if ab is not None else self.model_version(),
            arm=None if ab is None else ab.arm,
            experiment=None if ab is None else ab.experiment,
        )


def services_of(request: Request) -> Services:
    """The app's services (503 while the server is starting)."""
    services = getattr(request.app.state, "services", None)
    if services is None:
        raise HTTPException(503, "The service is starting; retry in a moment.")
    return services


# Dependencies that neither block nor wait are ``async def``: FastAPI runs them on the event loop instead of
# sending each through the thread pool (a hop per dependency per request).
async def get_services(request: Request) -> Services:
    return services_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_state(services: ServicesDep) -> OnlineState:
    return services.state


def get_pipeline(services: ServicesDep) -> Pipeline:
    services.sync_catalogue()
    return services.pipeline


async def get_settings(services: ServicesDep) -> ServeSettings:
    return services.settings


StateDep = Annotated[OnlineState, Depends(get_state)]
PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
SettingsDep = Annotated[ServeSettings, Depends(get_settings)]


# ------------------------------------------------------------------------------------ parameters
def parse_time(value: str | float | None, name: str) -> float:
    """Epoch seconds from an ISO string or a number; ``None`` is now. Raises ValidationError naming ``name``."""
    if value is None:
        return time.time()
    try:
        if isinstance(value, (int, float)) or _is_number(value):
            t = float(value)
        else:
            ts = pd.Timestamp(str(value))
            ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
            t = ts.timestamp()
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValidationError(
            f"The '{name}' parameter must be an ISO 8601 time or epoch seconds. "
            f"Got {str(value)[:64]!r} instead.",
            field=name,
            value=value,
        ) from exc
    lo, hi = datetime(2000, 1, 1).timestamp(), datetime(2200, 1, 1).timestamp()
    if not lo <= t <= hi:
        raise ValidationError(
            f"The '{name}' parameter must lie between 2000 and 2200. Got {value!r} instead.",
            field=name,
            value=value,
        )
    return t


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


async def request_time(
    at: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Request time (ISO 8601 or epoch seconds); default now. For replays and tests.",
        ),
    ] = None,
) -> float:
    return parse_time(at, "at")


AtDep = Annotated[float, Depends(request_time)]
K = Annotated[int, Query(ge=1, le=500, description="How many to return.")]


# ------------------------------------------------------------------------------------ start-up
def build_services(settings: ServeSettings, state: OnlineState | None = None) -> Services:
    """Open the state and the store, load the catalogue, wire the pipeline (no request served yet)."""
    from liveshelf.serving.state import make_state

    home = Path(settings.home).expanduser()
    if state is None:
        state = make_state(settings.state, prefix=settings.state_prefix)
    store = StoreGateway(home, shared=settings.workers > 1)
    metrics = Metrics()
    catalogue = Catalogue()
    with store.open() as s:
        items = s.frame("items")
        rooms = s.frame("rooms")
    catalogue.replace(items)
    text = _text_services(settings, home, items, rooms, store) if settings.text else None
    models = {"sequence": ModelSlot(home, settings.model)}
    if settings.cf_model:
        models["cf"] = ModelSlot(home, settings.cf_model)
    models["ranker"] = ModelSlot(home, settings.ranker_model)
    pipeline = Pipeline(
        state,
        catalogue,
        settings,
        {role: slot.get for role, slot in models.items()},
        on_cache=metrics.cache_lookup,
        ranker_version=lambda: models["ranker"].current()[0],
    )
    pz = (
        Pseudonymiser(settings.pseudonym_key.get_secret_value())
        if (settings.pseudonym_key is not None and settings.pseudonym_key.get_secret_value())
        else None
    )
    sync = CatalogueSync(None if settings.state == "memory" else settings.state, settings.state_prefix)
    services = Services(
        settings=settings,
        state=state,
        store=store,
        catalogue=catalogue,
        pipeline=pipeline,
        metrics=metrics,
        keys=KeyRing.from_settings(settings),
        bucket=TokenBucket(settings.rate_per_s, settings.rate_burst),
        pseudonymiser=pz,
        models=models,
        sync=sync,
        text=text,
    )
    # ---- A/B experiments (<home>/experiments): arm pipelines share the state and the catalogue
    services.experiments = ExperimentService(
        home,
        state,
        catalogue,
        settings,
        {role: slot.get for role, slot in models.items()},
        services.model_version,
        ranker_version=lambda: models["ranker"].current()[0],
    )
    if settings.log_exposures:
        services.exposures = ExposureLog(home, sample=settings.exposure_sample)
    services.state_sync = StateSync(
        state, store, window_s=settings.warm_window_s, text=text, rebuild_missing=settings.warm_start
    )
    return services


def _text_services(
    settings: ServeSettings, home: Path, items: pd.DataFrame, rooms: pd.DataFrame, store: StoreGateway
) -> TextServices:
    model_dir = settings.sentiment_model or (home / "sentiment")
    sentiment = None
    if (Path(model_dir) / "config.json").exists():
        from liveshelf.monitor.sentiment import SentimentClassifier

        sentiment = SentimentClassifier.load(model_dir)
    elif settings.sentiment_model is not None:
        raise NotFoundError(
            f"The 'sentiment_model' setting points to {model_dir}, which holds no model "
            "(no config.json). Train one with 'liveshelf sentiment train' or unset it."
        )
    # built in a thread, from the store, on the first request that needs it (or text_build_after_s after the
    # start): the hot routes never wait for it nor share the interpreter with it
    return TextServices(
        items,
        rooms,
        backend=settings.text_backend,
        sentiment_model=sentiment,
        alert_webhook=settings.alert_webhook,
        comment_demotion=settings.comment_demotion,
        background=True,
        start_after_s=settings.text_build_after_s,
        source=functools.partial(_text_source, store, settings.warm_window_s),
    )


def _text_source(store: StoreGateway, window_s: float) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """What the text services are built from: the catalogue, the rooms and the recent events, as stored now."""
    from liveshelf.serving.sync import recent_events

    with store.open() as s:
        return s.frame("items"), s.frame("rooms"), recent_events(s, window_s)


def warm_state(
    state: OnlineState,
    store: EventStore,
    window_s: float,
    chunk: int | None = None,
    text: TextServices | None = None,
) -> dict[str, int]:
    """Rebuild the online state from the store (see :func:`liveshelf.serving.sync.rebuild_state`)."""
    return rebuild_state(state, store, window_s, chunk=chunk, text=text)
