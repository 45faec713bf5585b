"""Online state: what serving knows *now*, updated by every posted event.

Two backends behind one interface, :class:`OnlineState`:

- :class:`MemoryState` (default): one process, thread-safe, snapshots to
  ``<home>/state/online_state.json`` and restores from it on restart;
- :class:`RedisState`: a Redis server shared by several workers or machines.

``make_state("memory")`` / ``make_state("redis://127.0.0.1:6379/0", prefix="shop:")``.

The interface (times are epoch seconds, datetimes or ISO strings; ids are strings)::

    apply_events(events_frame) -> int             # schema EVENT_COLUMNS, ts UTC datetimes
    user_sequence(user, limit=None) -> [(item, room, ts, type)]   # oldest first, <= max_seq
    delete_user(user)                             # sequence + audience membership
    upsert_items(frame)                           # id, category  (category counters)
    upsert_rooms(frame); end_room(room, t); room(room) -> dict | None; live_rooms(t) -> [room]
    upsert_shelf(frame); unpin(room, item, t); end_slot(room, item, t); shelf(room, t) -> [item]
    audience(room, t) -> [user]; prune(t) -> int
    top(kind, k, t, scope=None) -> [(key, value)]; counter(kind, key, t) -> float
    snapshot(path); restore(path); export() -> dict; load(dict); clear(); close()

Semantics:

- Live: ``start <= t < end``, ``end`` None = live (as :class:`~liveshelf.data.timeline.Timeline`).
  ``shelf`` and ``audience`` are empty for a known room that is not live at ``t``.
- Sequences keep every event type but impressions (``sequence_types``), the batch sorted by
  ``ts``; entries are appended in arrival order and capped at ``max_seq`` (default 200).
- Audience: any event in a room but an impression marks the viewer present at its time;
  ``leave`` removes them; a viewer unseen for ``audience_ttl`` seconds (default 600) no
  longer counts. ``end_room`` empties the audience.
- Counters decay exponentially with ``half_life`` seconds (default 3600): each event adds
  ``schema.EVENT_WEIGHTS[type]`` at its time. Kinds: ``item``, ``room``, ``host`` (via the
  room's host), ``room_item`` (scope = room; keys are items) and ``category`` (every level of
  the item's category path, once known through ``upsert_items``).
- Idempotent: an event whose ``event_id`` was applied within ``dedupe_window`` seconds (event
  time, default 86,400; 0 = off) before the batch's latest event is skipped, so a retried
  post counts once. ``apply_events`` returns the number of events actually applied.
- ``delete_user`` forgets the sequence and audience membership; counters are anonymous
  aggregates and keep the user's past contributions.
- Read-your-writes: ``apply_events`` returns after the state changed (Redis: one MULTI/EXEC),
  so the next read in any worker sees the events.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from liveshelf.errors import ConfigError
from liveshelf.serving.state.base import ANCHOR, COUNTER_KINDS, SEQUENCE_TYPES, OnlineState
from liveshelf.serving.state.memory import MemoryState

SNAPSHOT_NAME = "online_state.json"


def snapshot_path(home: Path | str) -> Path:
    """Where the memory state of ``home`` snapshots to: ``<home>/state/online_state.json``."""
    return Path(home).expanduser() / "state" / SNAPSHOT_NAME


def make_state(
    spec: str = "memory", *, home: Path | str | None = None, prefix: str = "liveshelf:", **params: Any
) -> OnlineState:
    """A state from a spec: ``"memory"`` or a Redis URL (``redis://``, ``rediss://``, ``unix://``).

    With ``home``, a memory state is restored from :func:`snapshot_path` when that file exists.
    ``params`` go to the backend (``max_seq``, ``half_life``, ``audience_ttl``, ...).
    """
    if spec == "memory":
        state: OnlineState = MemoryState(**params)
        if home is not None and snapshot_path(home).is_file():
            state.restore(snapshot_path(home))
        return state
    if spec.startswith(("redis://", "rediss://", "unix://")):
        from liveshelf.serving.state.redis import RedisState

        return RedisState(spec, prefix=prefix, **params)
    raise ConfigError(
        f"The state spec must be 'memory' or a Redis URL such as 'redis://127.0.0.1:6379/0'. "
        f"Got {spec!r} instead."
    )


def __getattr__(name: str) -> Any:
    if name == "RedisState":  # imported lazily: redis is only needed for the shared backend
        from liveshelf.serving.state.redis import RedisState

        return RedisState
    raise AttributeError(name)


__all__ = [
    "ANCHOR",
    "COUNTER_KINDS",
    "SEQUENCE_TYPES",
    "MemoryState",
    "OnlineState",
    "RedisState",
    "make_state",
    "snapshot_path",
]
