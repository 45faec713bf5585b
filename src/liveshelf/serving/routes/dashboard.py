"""The live-room console: the page at ``/`` and its JSON under ``/v1/dashboard``.

Page: ``GET /`` (``index.html``) and ``GET /dashboard/{app.js,style.css}`` from
``liveshelf/dashboard/static`` (a fixed list of files; nothing else is served).

JSON (all take ``at``, ISO 8601 or epoch seconds, default now, so a stored day can be replayed):

* ``GET  /v1/dashboard/config``                   what the page needs to start (no key needed);
* ``GET  /v1/dashboard/rooms``                    the rooms live now (audience, GMV, comment sparkline);
* ``GET  /v1/dashboard/rooms/{room}``             one room: audience profile, shelf ranked for the audience,
  next item with its pitch, comment stream with sentiment, alerts;
* ``POST /v1/dashboard/rooms/{room}/simulate``    synthetic viewers enter the room through ``POST /v1/events``;
  answers the room before and after and what changed;
* ``GET  /v1/dashboard/models``                   registry versions with offline metrics;
* ``GET  /v1/dashboard/experiments``              A/B experiments and their report PNGs;
* ``GET  /v1/dashboard/experiments/{name}/reports/{file}``  one report PNG.

The viewer view uses the public ``/v1/users/{user}/profile`` and ``/feed``. Reads need what
every read needs (``ReadAccess``). ``simulate`` writes events, so it needs what every data write
needs (``IngestAccess``): an ingest or full-access key, an allowed ``Host`` / ``Origin``; with no
key configured it is refused like every other write.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from liveshelf.errors import NotFoundError, ValidationError
from liveshelf.serving import console
from liveshelf.serving.access import IngestAccess, ReadAccess, guard
from liveshelf.serving.deps import AtDep, PipelineDep, Services, ServicesDep
from liveshelf.serving.schemas import (
    BODY,
    ID_DOC,
    READ,
    WRITE,
    EventIn,
    EventsIn,
    EventsOut,
    ItemRec,
    Printable,
    responses,
)
from liveshelf.serving.services.events import ingest_events
from liveshelf.serving.services.rooms import next_item

router = APIRouter(tags=["dashboard"])
log = logging.getLogger("liveshelf.serving")

STATIC = console.static_dir()
#: The page's files besides index.html, with their media types: the only files served.
ASSETS = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
POLL_MS = 2000

RoomId = Annotated[str, Path(min_length=1, max_length=256, json_schema_extra=ID_DOC), Printable]
SafeName = Annotated[str, Path(pattern=console.SAFE_NAME.pattern)]


# ------------------------------------------------------------------------------------ bodies
class ConsoleConfig(BaseModel):
    version: str
    keys: bool = Field(description="API keys are configured: the page asks for one (writes need it).")
    read_key_required: bool = Field(description="Reads need a key too: the page asks for one before loading.")
    comments: bool = Field(description="Live comments are monitored (a sentiment model is loaded).")
    text: bool = Field(description="Pitch texts and profiles are served.")
    model: str
    poll_ms: int = Field(description="How often the page refreshes its live views (milliseconds).")
    server_time: float


class SparkBucket(BaseModel):
    start: float
    n: int
    negative: int | None
    share: float | None


class RoomCard(BaseModel):
    room: str
    host: str | None
    title: str
    start: float
    audience: int
    shelf_size: int
    gmv: float = Field(description="Sum of the room's purchase values since it started.")
    orders: int
    comments: int = Field(description="Comments in the sparkline's window.")
    negative_share: float | None
    baseline: float | None
    alerts: list[dict[str, Any]]
    spark: list[SparkBucket]


class RoomsView(BaseModel):
    at: float
    comments_monitored: bool
    rooms: list[RoomCard]
    data_until: str | None = Field(
        None,
        description="When no room is live: the newest stored event's time "
        "(open the page with ?at=... to replay up to it).",
    )


class Share(BaseModel):
    key: str
    share: float


class AudienceProfile(BaseModel):
    viewers: int
    known: int = Field(description="Viewers with a history.")
    with_interests: int = Field(
        description="Viewers whose history names items (the shares average over them)."
    )
    categories: list[Share]
    leaf_categories: list[Share]
    brands: list[Share]


class CommentRow(BaseModel):
    ts: float
    user: str
    text: str
    item: str | None
    item_title: str | None
    p_negative: float | None
    negative: bool | None


class RoomView(BaseModel):
    room: str
    host: str | None
    title: str
    live: bool
    at: float
    model_version: str | None
    audience: AudienceProfile
    gmv: float
    orders: int
    items: list[ItemRec] = Field(description="The shelf ranked for the viewers present (next-item order).")
    next_item: ItemRec | None
    pitch: dict[str, Any] | None
    comments: list[CommentRow]
    sentiment: dict[str, Any] | None = Field(description="The comment monitor's rolling figures (None: off).")
    alerts: list[dict[str, Any]]


class SimulateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    viewers: int = Field(100, ge=1, le=1000)
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="Default: a new one per request.")
    focus: str | None = Field(
        None,
        max_length=200,
        description="Top-level category most viewers favour (default: drawn from the shelf).",
    )
    focus_share: float = Field(0.7, ge=0, le=1)
    negative_share: float = Field(0.1, ge=0, le=1, description="Share of the comments that are negative.")


class SimulateOut(BaseModel):
    room: str
    at: float
    burst: dict[str, Any]
    posted: EventsOut
    before: RoomView
    after: RoomView
    changes: dict[str, Any]


class ExperimentsView(BaseModel):
    available: bool = Field(
        description="Always true (the experiment store is part of serving; kept for clients)."
    )
    experiments: list[dict[str, Any]]


# ------------------------------------------------------------------------------------ helpers
def _sentiment(request: Request, services: Services) -> console.SentimentCache | None:
    """The app's sentiment cache (one per services object, i.e. per server start)."""
    held = getattr(request.app.state, "console_sentiment", None)
    if held is None or held[0] is not services:
        held = (services, console.SentimentCache.of(services))
        request.app.state.console_sentiment = held
    return held[1]


def _data_until(request: Request, services: Services) -> str | None:
    """The newest stored event's time (kept 30 s: it is only a hint)."""
    held = getattr(request.app.state, "console_data_until", None)
    now = time.monotonic()
    if held is None or held[0] is not services or now - held[1] > 30.0:
        with services.store.open() as store:
            last = store.stats()["last_ts"]
        held = (services, now, last)
        request.app.state.console_data_until = held
    return held[2]


def _room_view(
    request: Request,
    room: str,
    pipeline: Any,
    services: Services,
    client: str,
    at: float,
    k: int,
    comments: int,
) -> RoomView:
    nxt = next_item(room, pipeline, services, at, k)
    info = services.state.room(room) or {}
    audience = services.state.audience(room, at)[: services.settings.audience_limit]
    totals = console.room_totals(services, room, at)
    sentiment = _sentiment(request, services)
    snap = services.text.comments(room, at, limit=10) if sentiment is not None and services.text else None
    return RoomView(
        room=room,
        host=info.get("host"),
        title=info.get("title") or "",
        live=nxt.live,
        at=at,
        model_version=nxt.model_version,
        audience=AudienceProfile(**console.audience_profile(pipeline, audience, at)),
        gmv=totals["gmv"],
        orders=totals["orders"],
        items=nxt.items,
        next_item=nxt.item,
        pitch=nxt.pitch,
        comments=[
            CommentRow(**c) for c in console.comment_stream(services, room, at, sentiment, limit=comments)
        ],
        sentiment=None if snap is None else {k: v for k, v in snap.items() if k != "alerts"},
        alerts=[] if snap is None else snap["alerts"],
    )


def _snapshot(view: RoomView) -> dict[str, Any]:
    return {
        "audience": view.audience.model_dump(),
        "shelf": [i.item for i in view.items],
        "gmv": view.gmv,
        "next_item": None if view.next_item is None else view.next_item.item,
    }


#: Synthetic events are writes: the same key, Host and Origin rules as ``POST /v1/events``.
SimulateAccess = IngestAccess


# ------------------------------------------------------------------------------------ the page
@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    """The console (a static page; it reads the JSON routes below)."""
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.get("/dashboard/{name}", include_in_schema=False)
def asset(name: Annotated[str, Path(max_length=32)]) -> FileResponse:
    media = ASSETS.get(name)
    if media is None:
        raise HTTPException(404, f"No console file {name!r}; the console serves {sorted(ASSETS)}.")
    return FileResponse(STATIC / name, media_type=media, headers=PAGE_HEADERS)


# ------------------------------------------------------------------------------------ JSON
@router.get(
    "/v1/dashboard/config",
    response_model=ConsoleConfig,
    summary="What the console needs to start",
    responses=responses(503),
)
def config(request: Request, services: ServicesDep) -> ConsoleConfig:
    from liveshelf import __version__

    monitor = getattr(services.text, "monitor", None) if services.text is not None else None
    return ConsoleConfig(
        version=__version__,
        keys=bool(guard(request, services).keys),
        read_key_required=services.settings.read_key_required,
        comments=monitor is not None,
        text=services.text is not None,
        model=services.settings.model,
        poll_ms=POLL_MS,
        server_time=time.time(),
    )


@router.get(
    "/v1/dashboard/rooms",
    response_model=RoomsView,
    summary="Rooms live now with audience and GMV",
    responses=responses(*READ),
)
def rooms(request: Request, services: ServicesDep, _client: ReadAccess, at: AtDep) -> RoomsView:
    """Most viewers first; each with its GMV so far and a comment sparkline (volume, negative share)."""
    sentiment = _sentiment(request, services)
    cards = console.room_cards(services, at, sentiment)
    return RoomsView(
        at=at,
        comments_monitored=sentiment is not None,
        rooms=[RoomCard(**c) for c in cards],
        data_until=None if cards else _data_until(request, services),
    )


@router.get(
    "/v1/dashboard/rooms/{room}",
    response_model=RoomView,
    summary="One room for the console",
    responses=responses(*READ, 404),
)
def room(
    request: Request,
    room: RoomId,
    pipeline: PipelineDep,
    services: ServicesDep,
    client: ReadAccess,
    at: AtDep,
    k: Annotated[int, Query(ge=1, le=500)] = 50,
    comments: Annotated[int, Query(ge=1, le=200)] = 40,
) -> RoomView:
    """The audience's interests, the shelf ranked for them, the next item with talking points and reason,
    the latest comments with their sentiment, and the room's alerts."""
    return _room_view(request, room, pipeline, services, client, at, k, comments)


@router.post(
    "/v1/dashboard/rooms/{room}/simulate",
    response_model=SimulateOut,
    summary="Simulate viewers entering a room",
    responses=responses(*WRITE, *BODY, 404),
)
def simulate(
    request: Request,
    room: RoomId,
    body: SimulateIn,
    pipeline: PipelineDep,
    services: ServicesDep,
    client: SimulateAccess,
    at: AtDep,
    k: Annotated[int, Query(ge=1, le=500)] = 50,
) -> SimulateOut:
    """``viewers`` synthetic viewers enter in the minute before ``at``, view, click, cart, buy and comment;
    their events go through ``POST /v1/events`` (stored, applied to the state, seen by the monitor).
    Answers the room before and after, and what changed."""
    if services.state.room(room) is None:
        raise NotFoundError(
            f"Unknown room {room!r}: no room with this id was ever put. Pick a live room of "
            "GET /v1/dashboard/rooms."
        )
    shelf = [services.catalogue.get(it) for it in services.state.shelf(room, at)]
    shelf = [i for i in shelf if i is not None]
    if not shelf:
        raise ValidationError(
            f"Room {room!r} has no items on its shelf at {at} (it has ended or is empty); "
            "simulate viewers in a live room with a shelf.",
            field="room",
            value=room,
        )
    seed = body.seed if body.seed is not None else random.SystemRandom().randrange(2**31)
    before = _room_view(request, room, pipeline, services, client, at, k, 1)
    events, summary = console.viewer_burst(
        room,
        shelf,
        at,
        n=body.viewers,
        seed=seed,
        focus=body.focus,
        focus_share=body.focus_share,
        negative_share=body.negative_share,
    )
    posted = ingest_events(EventsIn(events=[EventIn(**e) for e in events]), services, client)
    after = _room_view(request, room, pipeline, services, client, at, k, 1)
    log.info(
        "console simulate room=%s viewers=%d events=%d accepted=%d",
        room,
        body.viewers,
        len(events),
        posted.accepted,
    )
    return SimulateOut(
        room=room,
        at=at,
        burst=summary,
        posted=posted,
        before=before,
        after=after,
        changes=console.changes(_snapshot(before), _snapshot(after)),
    )


@router.get(
    "/v1/dashboard/models", summary="Registry versions of the served models", responses=responses(*READ)
)
def models(services: ServicesDep, _client: ReadAccess) -> dict[str, Any]:
    """Per served model: every version with its offline metrics, the one served now, recent promotions."""
    return {"models": console.model_versions(services.models)}


@router.get(
    "/v1/dashboard/experiments",
    response_model=ExperimentsView,
    summary="A/B experiments",
    responses=responses(*READ),
)
def experiments(services: ServicesDep, _client: ReadAccess) -> ExperimentsView:
    return ExperimentsView(**console.experiments(services.settings.home))


@router.get(
    "/v1/dashboard/experiments/{name}/reports/{file}",
    summary="One experiment report chart (PNG)",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}, "description": "The chart."}, **responses(*READ, 404)},
)
def report(name: SafeName, file: SafeName, services: ServicesDep, _client: ReadAccess) -> FileResponse:
    path = console.report_path(services.settings.home, name, file)
    if path is None:
        raise NotFoundError(
            f"No report {file!r} of experiment {name!r}: see GET /v1/dashboard/experiments "
            "for the experiments and their report files."
        )
    return FileResponse(
        path,
        media_type="image/png",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
