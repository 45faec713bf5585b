"""Request and response bodies of the HTTP API (pydantic; unknown fields are refused with 422).

Row-level rules (event types, required item/room per type, time window, duplicate ids,
printable ids, bounded amounts) are the ingest validator's (:mod:`liveshelf.data.validate`)
and come back as per-row errors; these models only refuse what is not even the right shape.

Response models with required nullable fields derive from :class:`_Out`: routes that drop
unset optional fields (``response_model_exclude_none``) still send those fields, ``null``
included, as the published schema says (the others stay plain models: no serializer call per
reason or item). :func:`responses` documents the error answers of an operation.

Hot routes (feed, shelf, next-item) keep their ``response_model`` for the published schema but
answer a :class:`FastJSON` built from plain dicts (:func:`reason_dicts`, :class:`ItemRecord`):
FastAPI then neither builds nor validates a model per item and reason, and orjson writes the
bytes. The dicts follow the models' rules exactly (``exclude_none``: unset optional fields are
left out, required nullable ones are sent as ``null``); ``tests/test_api_schema.py`` checks the
answers against the schema.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)
from starlette.responses import Response

from liveshelf.data.item_vectors import MAX_DIM
from liveshelf.names import ID_PATTERN, ID_RULE, is_printable_id, safe_name


def _printable(value: str | None) -> str | None:
    if value is not None and not is_printable_id(value):
        raise ValueError(f"must hold {ID_RULE}; got {value[:64]!r}")
    return value


#: Validators of ids and of names that become paths (clear 422 messages) and the pattern that documents ids.
Printable = AfterValidator(_printable)
SafeName = AfterValidator(lambda value: safe_name(value, "name"))
ID_DOC: dict[str, Any] = {"pattern": ID_PATTERN}

Id = Annotated[str, Field(min_length=1, max_length=256, json_schema_extra=ID_DOC), Printable]
Time = Annotated[str | float, Field(description="ISO 8601 time or epoch seconds (UTC).")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    """A response body whose required fields are always sent, also when ``None`` is excluded."""

    @model_serializer(mode="wrap")
    def _required_present(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        data = handler(self)
        if info.exclude_none and isinstance(data, dict):
            for name, f in type(self).model_fields.items():
                if f.is_required() and not f.exclude:
                    data.setdefault(
                        (f.serialization_alias or f.alias or name) if info.by_alias else name, None
                    )
        return data


# ------------------------------------------------------------------------------------ errors
class ErrorOut(BaseModel):
    detail: str = Field(description="What went wrong and how to fix it.")


_ERRORS: dict[int, str] = {
    400: "The request cannot be served as asked (the message says why).",
    401: "No API key, or an unknown one (send a configured key in X-API-Key).",
    403: "The key may not call this route (another role), or the Host / Origin header is not allowed.",
    404: "The named resource does not exist.",
    409: "The request conflicts with the resource's current state.",
    413: "The request body (or the batch) is too large.",
    429: "Too many requests (rate limit, or too many unknown keys from this address); see Retry-After.",
    503: "The service is starting or a dependency is unavailable; retry later (see Retry-After when sent).",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: each code with its :class:`ErrorOut` body and meaning."""
    return {code: {"model": ErrorOut, "description": _ERRORS[code]} for code in codes}


#: The error answers of reads, of writes and of a request body (400: not parseable, 413: too large);
#: every route that reaches the services can answer 503 (starting, or a dependency is down).
READ = (401, 429, 503)
WRITE = (401, 403, 429, 503)
BODY = (400, 413)


# ------------------------------------------------------------------------------------ events
class EventIn(_In):
    event_id: str | None = Field(None, max_length=256)
    ts: str | float | None = None
    user: str | None = Field(None, max_length=256)
    type: str | None = Field(None, max_length=32)
    room: str | None = Field(None, max_length=256)
    item: str | None = Field(None, max_length=256)
    value: float | None = None
    text: str | None = Field(None, max_length=10_000)


class EventsIn(_In):
    events: list[EventIn] = Field(..., description="At most 10,000 events (and 5 MB) per request.")


class RowError(BaseModel):
    row: int = Field(..., description="1-based position of the event in the request.")
    field: str
    value: str | None = None
    reason: str


class EventsOut(BaseModel):
    received: int
    accepted: int
    duplicate: int
    rejected: int
    applied: int = Field(..., description="New events applied to the online state.")
    errors: list[RowError]


# ------------------------------------------------------------------------------------ catalogue
class ItemIn(_In):
    id: Id
    title: str = Field(..., min_length=1, max_length=1000)
    description: str | None = Field(None, max_length=20_000)
    category: str | list[Annotated[str, Field(max_length=200)]] | None = None
    brand: str | None = Field(None, max_length=200)
    price: float | None = Field(None, ge=0, le=1e9)
    rating: float | None = None
    attributes: dict[str, Any] | None = None
    language: str | None = Field(None, max_length=16)
    embeddings: dict[str, Annotated[list[float], Field(max_length=MAX_DIM)]] | None = Field(
        None,
        max_length=16,
        description="The item's vectors by modality (e.g. image, video, audio, title_pca128: lower-case "
        "letters, digits, '_'), each a list of finite numbers of the modality's dimension; stored with the "
        "item, replacing its earlier vector of that modality. Modalities not sent are kept.",
    )
    modalities: dict[str, int] | None = Field(
        None, description="Read-only (as GET sends it): ignored here; send vectors in 'embeddings'."
    )

    @field_validator("category")
    @classmethod
    def _path(cls, value: str | list[str] | None) -> str | None:
        return " > ".join(value) if isinstance(value, list) else value


class ItemsIn(_In):
    items: list[ItemIn] = Field(..., min_length=1, max_length=10_000)


class ItemOut(BaseModel):
    id: str
    title: str
    description: str = ""
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    rating: float | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    language: str | None = None
    modalities: dict[str, int] = Field(
        default_factory=dict,
        description="The modalities the item has a vector of: name -> dimension (the vectors are not sent).",
    )


class UpsertOut(BaseModel):
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


class RoomIn(_In):
    id: Id
    host: Id
    title: str | None = Field(None, max_length=1000)
    start: Time | None = Field(None, description="Default: the request time.")
    end: Time | None = Field(None, description="None while live; a time ends the room then.")


class SlotIn(_In):
    room: Id
    item: Id
    start: Time | None = Field(None, description="Default: the request time.")
    end: Time | None = Field(None, description="None while on the shelf; a time takes the item off then.")
    pinned: bool = False


class RoomAction(_In):
    op: Literal["end_room", "remove_item", "unpin"]
    room: Id
    item: Id | None = None
    at: Time | None = Field(None, description="When it happens; default: the request time.")


class RoomsIn(_In):
    rooms: list[RoomIn] = Field(default_factory=list, max_length=10_000)
    shelf: list[SlotIn] = Field(default_factory=list, max_length=100_000)
    actions: list[RoomAction] = Field(default_factory=list, max_length=10_000)


class RoomsOut(BaseModel):
    rooms: UpsertOut
    shelf: UpsertOut
    actions: int


# ------------------------------------------------------------------------------------ recommendations
class Reason(BaseModel):
    source: str = Field(
        ...,
        description="repeat | sequence | cf | trending-in-room | similar-to | "
        "profile-match | context | on-shelf | live-now | comments-negative "
        "(a demotion: recent comments about the item turned negative)",
    )
    score: float = Field(
        ...,
        description="This source's part of the score: its share of the hand blend, or the "
        "learned ranker's contributions of the source's features.",
    )
    item: str | None = None
    room: str | None = None
    host: str | None = None
    interest: str | None = None
    shelf_item: str | None = None


class RoomRec(_Out):
    room: str
    host: str | None
    title: str = ""
    shelf_size: int
    score: float
    reasons: list[Reason]


class FeedOut(_Out):
    user: str
    at: float
    model_version: str | None
    fallback: bool = Field(..., description="True when the viewer is unknown and the feed is trending only.")
    ranked_by: str | None = Field(
        None,
        description="What decided the order: 'ranker@<version>' (the promoted "
        "learned ranker) or 'hand-blend' (the cold-start fallback).",
    )
    rooms: list[RoomRec]


class ItemRec(BaseModel):
    item: str
    title: str | None = None
    score: float
    reasons: list[Reason]
    pitch: dict[str, Any] | None = None


class ShelfOut(_Out):
    room: str
    user: str | None
    at: float
    live: bool
    model_version: str | None
    ranked_by: str | None = Field(
        None,
        description="What decided the order: 'ranker@<version>' (the promoted "
        "learned ranker) or 'hand-blend' (the cold-start fallback).",
    )
    items: list[ItemRec]


class NextItemOut(_Out):
    room: str
    at: float
    live: bool
    audience: int
    model_version: str | None
    ranked_by: str | None = Field(
        None,
        description="What decided the order: 'ranker@<version>' (the promoted "
        "learned ranker) or 'hand-blend' (the cold-start fallback).",
    )
    item: ItemRec | None
    items: list[ItemRec]
    pitch: dict[str, Any] | None = Field(
        None,
        description="For the suggested item: a reason, three talking points for the host and a push line, "
        "with the backend that wrote them and the item facts they use.",
    )


class CommentsOut(_Out):
    room: str
    volume: int = Field(description="Comments in the rolling window.")
    negative_share: float | None
    baseline: float = Field(description="The room's long-run negative share.")
    keywords: list[str]
    items: dict[str, float] = Field(description="Per item: demotion signal in [0, 1] from its comments.")
    alerts: list[dict[str, Any]]


class AskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=500, description="The viewer's question.")
    item: Annotated[str | None, Printable] = Field(
        None,
        min_length=1,
        max_length=256,
        json_schema_extra=ID_DOC,
        description="The item the viewer is looking at, if known (else the pinned item).",
    )
    lang: Literal["zh", "en"] | None = None


class AskOut(_Out):
    room: str
    question: str
    answer: str
    lang: str
    item: str | None
    intent: str | None
    known: bool = Field(description="False when the answer is 'I don't know' (nothing in the item's facts).")
    source: str | None = None
    facts_used: list[str] = []


class Weighted(BaseModel):
    key: str
    weight: float


class ProfileOut(_Out):
    user: str
    at: float
    events: int
    first_ts: float | None
    last_ts: float | None
    event_types: dict[str, int]
    recent_items: list[str]
    top_categories: list[Weighted]
    top_leaf_categories: list[Weighted]
    top_brands: list[Weighted]
    top_hosts: list[Weighted]
    half_life_s: float
    interests: dict[str, Any] | None = Field(
        None,
        description="Decayed interest profile: category / brand / price-band shares, hosts, active hours, "
        "human-readable tags (zh, en). Null for a viewer with no interest events.",
    )


class DeleteOut(BaseModel):
    user: str
    events: int
    users: int
    state: bool


# ------------------------------------------------------------------------------------ hot-route answers
def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class FastJSON(Response):
    """A JSON answer written by orjson from plain dicts (no response-model validation)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY)


#: :class:`Reason`'s fields, in its order: a reason dict keeps these (None values left out).
REASON_FIELDS: tuple[str, ...] = tuple(Reason.model_fields)


def reason_dicts(reasons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pipeline's reasons as :class:`Reason` answers: its fields only, ``None`` left out, score a float."""
    out = []
    for r in reasons:
        d = {k: v for k in REASON_FIELDS if (v := r.get(k)) is not None}
        d["score"] = float(d["score"])
        out.append(d)
    return out


class ItemRecord:
    """One :class:`ItemRec` as a plain record (``item``, ``title``, ``score``, ``reasons``, ``pitch``)
    with the attributes the text services adjust; :meth:`body` is its answer dict."""

    __slots__ = ("item", "pitch", "reasons", "score", "title")

    def __init__(self, item: str, title: str | None, score: float, reasons: list[Any]) -> None:
        self.item, self.title, self.score, self.reasons = item, title, score, reasons
        self.pitch: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        d: dict[str, Any] = {"item": self.item}
        if self.title is not None:
            d["title"] = self.title
        d["score"] = float(self.score)
        d["reasons"] = [
            r if isinstance(r, dict) else r.model_dump(mode="json", exclude_none=True) for r in self.reasons
        ]
        if self.pitch is not None:
            d["pitch"] = self.pitch
        return d


# ------------------------------------------------------------------------------------ admin
class VersionOut(BaseModel):
    name: str
    version: str
    model_type: str
    created_at: str
    production: bool
    metrics: dict[str, Any] = Field(default_factory=dict)


class PromoteIn(_In):
    version: Annotated[str, Field(pattern=r"^v\d{4,}$", max_length=32)]
