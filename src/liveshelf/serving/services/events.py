"""Ingest a batch of events: validate, store (idempotent by event_id), update the online state, answer.

:func:`ingest_events` is what ``POST /v1/events`` does; the console's simulated viewers go through it too.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pyarrow as pa
from fastapi import HTTPException

from liveshelf.data.ingest import Ingestor
from liveshelf.data.store import EventStore, StoredEvents
from liveshelf.data.validate import table_to_frame, validate
from liveshelf.serving.deps import Services
from liveshelf.serving.schemas import EventsIn, EventsOut, RowError
from liveshelf.serving.sync import REQUEST_WAIT_S, Fresh, StateUnavailable

log = logging.getLogger("liveshelf.serving")

_STR_FIELDS = ("event_id", "user", "type", "room", "item", "text")


def _ts_text(value: str | float | None) -> str | None:
    """Timestamps travel as text (ISO or epoch seconds); the validator parses both."""
    if value is None or isinstance(value, str):
        return value
    return repr(float(value)) if math.isfinite(value) else "not-a-time"


def events_table(body: EventsIn) -> pa.Table:
    rows = body.events
    cols = {f: pa.array([getattr(e, f) for e in rows], pa.string()) for f in _STR_FIELDS}
    ts = [e.ts for e in rows]
    kinds = set(map(type, ts))
    seconds = np.asarray(ts, dtype=np.float64) if kinds <= {float, int} else None
    if seconds is not None and np.isfinite(seconds).all():  # epoch seconds only: parsed without text
        cols["ts"] = pa.array(seconds, pa.float64())
    else:
        cols["ts"] = pa.array([_ts_text(v) for v in ts], pa.string())
    cols["value"] = pa.array([e.value for e in rows], pa.float64())
    return pa.table(cols)


def _fresh_frame(stored: StoredEvents | None) -> pd.DataFrame | None:
    """The events the store took as new (schema columns), or None when there were none."""
    if stored is None or not stored.new.num_rows:
        return None
    return table_to_frame("events", stored.new.drop_columns(["seq"]))


def _apply(
    services: Services, store: EventStore, stored: StoredEvents | None, fresh: pd.DataFrame | None
) -> int:
    """Bring the online state up to the store (this batch and anything missed) before answering; returns how many
    of this batch's new events the state holds. The store is the source of truth: when the state cannot be
    reached the batch stays stored and acknowledged, and the sync thread applies it once the state answers."""
    if services.state_sync is None:
        return services.state.apply_events(fresh) if fresh is not None else 0
    head = stored.head if stored is not None else None
    batch = (
        Fresh(fresh, stored.head_before, stored.head) if fresh is not None and stored is not None else None
    )
    try:
        services.state_sync.catch_up(store, wait_s=REQUEST_WAIT_S, fresh=batch)
    except StateUnavailable:  # stored and acknowledged; the sync thread applies it once the state answers
        log.warning("events stored; the online state is unavailable and will catch up")
        return 0
    finally:
        if head is not None:
            services.state_sync.stored(head)  # the sync thread catches up to it if this step failed
    # this batch is in the state once the state's seq reached it (whoever applied it: this request, the sync
    # thread or another worker)
    seq = services.state_sync.status.state_seq
    return len(fresh) if fresh is not None and seq is not None and head is not None and seq >= head else 0


def ingest_events(body: EventsIn, services: Services, client: str) -> EventsOut:
    """Validate every event (the ingest rules), store the new ones and apply them to the online state
    before answering, so the next read sees them (see ``POST /v1/events``). Raises a 413 for a batch over
    ``settings.max_events``."""
    n = len(body.events)
    if n > services.settings.max_events:
        services.metrics.rejected.labels("batch").inc()
        raise HTTPException(
            413,
            f"The 'events' list must hold at most {services.settings.max_events} events. "
            f"Got {n} instead; split the batch.",
        )
    if n == 0:
        return EventsOut(received=0, accepted=0, duplicate=0, rejected=0, applied=0, errors=[])
    raw = events_table(body)
    rules = services.settings.event_rules()  # one clock for both passes below; the allowed future skew
    checked = validate("events", raw, rules, services.pseudonymiser)
    with services.store.open() as store:
        report, stored = Ingestor(
            store, pseudonymiser=services.pseudonymiser, rules=rules
        ).store_checked_events(
            checked, source="<arrow>", warnings=False
        )  # validated once, above; one insert says what was new
        fresh = _fresh_frame(stored)
        applied = _apply(services, store, stored, fresh)
        if services.text is not None and fresh is not None:
            services.text.update_events(fresh)
        if services.experiments is not None:  # A/B outcome log (serving/experiments.py)
            services.experiments.observe_events(fresh)
    m = services.metrics.events
    m.labels("accepted").inc(report.accepted)
    m.labels("duplicate").inc(report.duplicate)
    m.labels("rejected").inc(report.rejected)
    log.info(
        "events client=%s received=%d accepted=%d duplicate=%d rejected=%d",
        client,
        n,
        report.accepted,
        report.duplicate,
        report.rejected,
    )
    errors = [
        RowError(
            row=int(r.row),
            field=str(r.field),
            value=None if pd.isna(r.value) else str(r.value)[:200],
            reason=str(r.reason),
        )
        for r in checked.rejects.itertuples(index=False)
    ]
    return EventsOut(
        received=n,
        accepted=report.accepted,
        duplicate=report.duplicate,
        rejected=report.rejected,
        applied=int(applied),
        errors=errors[:1000],
    )


__all__ = ["events_table", "ingest_events"]
