"""``POST /v1/events``: validate, store (idempotent by event_id), update the online state, answer.

The work is :func:`liveshelf.serving.services.events.ingest_events`; this module is the HTTP door.
"""

from __future__ import annotations

from fastapi import APIRouter

from liveshelf.serving.access import IngestAccess
from liveshelf.serving.deps import ServicesDep
from liveshelf.serving.schemas import BODY, WRITE, EventsIn, EventsOut, responses
from liveshelf.serving.services.events import ingest_events

router = APIRouter(prefix="/v1", tags=["events"])


@router.post(
    "/events", response_model=EventsOut, summary="Post a batch of events", responses=responses(*WRITE, *BODY)
)
def post_events(body: EventsIn, services: ServicesDep, client: IngestAccess) -> EventsOut:
    """Validate every event (the ingest rules), store the new ones and apply them to the online state
    before answering, so the next read sees them. Re-posting an event_id is a no-op (``duplicate``).
    The store is the source of truth: when the online state cannot be reached the events are still
    stored (``accepted``; ``applied`` 0) and the state applies them as soon as it answers again."""
    return ingest_events(body, services, client)
