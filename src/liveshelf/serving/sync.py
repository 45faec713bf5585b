"""The online state as a view of the event store that always catches up.

The store is the source of truth: ``POST /v1/events`` commits a batch to it first. The online state
then applies every stored event it has not applied yet, by the store's ingest order (``seq``), and
moves its own seq in the same atomic step (:meth:`OnlineState.apply_synced`), so a state write that
fails is simply retried from the same point - never lost, never counted twice.

:class:`StateSync` does that on the request path (read-your-writes) and in a background thread
every ``interval_s``, which also notices a state that lost its data: a state without an epoch (a
Redis restarted empty, or flushed) is rebuilt from the store (:func:`rebuild_state`) without
restarting the API. While the state cannot be reached the store keeps accepting events; the
thread catches the state up once it answers again.

Several workers share one Redis state: catching up holds the state's sync lock, so one worker
applies a range while the others wait and then find nothing left to apply.

>>> sync = StateSync(state, store_gateway, window_s=7 * 86400); sync.start()    # doctest: +SKIP
>>> sync.catch_up()       # after a write: the state now holds every stored event  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

import pandas as pd

from liveshelf.serving.state.base import OnlineState

log = logging.getLogger("liveshelf.serving")

#: Events applied per catch-up / rebuild step: one state transaction each, small enough to answer well inside
#: the state's socket timeout on a busy machine (a rebuild that timed out would start over).
CATCH_UP_CHUNK = 1_000

#: How long a request waits for this process's sync step (a rebuild may run) before answering without it.
REQUEST_WAIT_S = 2.0


class StateUnavailable(Exception):
    """The online state cannot be reached (or is being rebuilt): answer 503 and retry."""


def state_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean "the state backend is unreachable" (Redis connection / timeout errors)."""
    errors: list[type[Exception]] = [StateUnavailable, ConnectionError, TimeoutError]
    try:
        import redis

        errors += [redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError]
    except ImportError:  # pragma: no cover - redis is a dependency
        pass
    return tuple(errors)


def recent_events(store: Any, window_s: float, *, now: float | None = None) -> pd.DataFrame:
    """The stored events within ``window_s`` seconds before the newest one (or before the clock, when stored
    events lie in the future: one event stamped ahead cannot empty the window), in time order."""
    events = store.training_frame()
    if not len(events):
        return events
    clock = pd.Timestamp(time.time() if now is None else now, unit="s", tz="UTC")
    anchor = min(events["ts"].max(), clock)
    since = anchor - pd.Timedelta(seconds=window_s)
    return events[events["ts"] >= since].sort_values("ts", kind="stable")


def rebuild_state(
    state: OnlineState,
    store: Any,
    window_s: float,
    *,
    chunk: int | None = None,
    text: Any = None,
    now: float | None = None,
) -> dict[str, int]:
    """Rebuild the online state from the store: items, rooms, shelf, then recent events in time order.

    The state is cleared first, so a restart (or a shared Redis state) never counts an event twice.
    Events replayed: those within ``window_s`` seconds before the newest stored one - or before the
    server's clock when stored events lie in the future, so one event stamped ahead cannot empty the
    window. The state is then marked synced with a new epoch at the store's newest seq. Events are replayed in
    steps of ``chunk`` (default: the state's ``replay_chunk``) without event-id de-duplication: the store holds
    each id once.
    """
    chunk = int(chunk or state.replay_chunk)
    state.clear()
    items = store.frame("items")
    if len(items):
        state.upsert_items(items[["id", "category"]])
    rooms = store.frame("rooms")
    if len(rooms):
        state.upsert_rooms(rooms)
    shelf = store.frame("shelf")
    if len(shelf):
        state.upsert_shelf(shelf)
    head = store.max_seq()
    events = recent_events(store, window_s, now=now)
    if len(events):
        for i in range(0, len(events), chunk):
            state.replay_events(events.iloc[i : i + chunk])
            state.keep_sync_lock()
        if text is not None:
            text.update_events(events)
    state.mark_synced(uuid.uuid4().hex, head)
    log.info(
        "state rebuilt: items=%d rooms=%d slots=%d events=%d seq=%d",
        len(items),
        len(rooms),
        len(shelf),
        len(events),
        head,
    )
    return {"items": len(items), "rooms": len(rooms), "shelf": len(shelf), "events": len(events)}


class Fresh(NamedTuple):
    """A batch just stored: its new events (schema columns) with store seqs in ``(after, seq]``; ``after`` is the
    store's newest seq before it."""

    frame: pd.DataFrame
    after: int
    seq: int


@dataclass
class SyncStatus:
    """What the sync knows: the state's epoch and seq, the store's head, rebuilds, the last error."""

    epoch: str | None = None
    state_seq: int | None = None
    store_seq: int | None = None
    rebuilds: int = 0
    rebuilding: bool = False
    last_error: str | None = None
    last_error_at: float | None = None
    last_ok_at: float | None = None

    @property
    def lag(self) -> int | None:
        if self.state_seq is None or self.store_seq is None:
            return None
        return max(self.store_seq - self.state_seq, 0)


class StateSync:
    """Keeps ``state`` caught up with the store behind ``gateway`` (see the module docstring)."""

    def __init__(
        self,
        state: OnlineState,
        gateway: Any,
        *,
        window_s: float,
        text: Any = None,
        interval_s: float = 0.5,
        rebuild_missing: bool = True,
        store_check_s: float = 10.0,
    ) -> None:
        self.state, self.gateway, self.window_s, self.text = state, gateway, window_s, text
        self.interval_s = interval_s
        self.store_check_s = store_check_s
        self._known_head: int | None = None  # the newest seq this process stored
        self._checked_store_at = 0.0
        self.rebuild_missing = rebuild_missing
        self.status = SyncStatus()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors = state_errors()

    # ---- the one step -------------------------------------------------------------------------
    def catch_up(self, store: Any = None, wait_s: float | None = None, fresh: Fresh | None = None) -> int:
        """Apply every stored event the state lacks (rebuilding a state that lost its data); returns the number
        applied. ``store``: an open store (e.g. the request's own), else the gateway opens one. ``wait_s``: how
        long to wait for a step already running in this process (None: as long as it takes). ``fresh``: the
        batch the caller just stored; when the state holds everything stored before it, it is applied as it
        is, without reading it back. Raises :class:`StateUnavailable` when the state cannot be reached or the
        wait runs out."""
        if (
            store is None
        ):  # the store first, then the sync lock: the order a request (holding its store) takes
            with self.gateway.open() as opened:
                return self.catch_up(opened, wait_s, fresh)
        if not self._lock.acquire(timeout=-1 if wait_s is None else wait_s):
            raise StateUnavailable(
                "The online state is being caught up (or rebuilt) from the store; stored "
                "events are applied when it is done."
            )
        try:
            with self.state.sync_lock(timeout_s=10.0 if wait_s is None else wait_s):
                return self._step(store, fresh)
        except self._errors as exc:
            self._failed(exc)
            raise StateUnavailable(
                f"The online state is unavailable ({type(exc).__name__}); stored events are "
                "applied once it answers again."
            ) from exc
        finally:
            self._lock.release()

    def stored(self, seq: int) -> None:
        """This process stored events up to ``seq``: the sync thread catches up to it if a write failed."""
        head = self._known_head
        self._known_head = seq if head is None else max(seq, head)  # one assignment: no lock needed

    def _due(self) -> bool:
        """Whether the background thread must open the store: the state lost its data, lags behind what this
        process stored, or the periodic check of writes by others (e.g. a CLI ingest) is due. Reads only
        the state's sync point otherwise, so idle workers do not contend for the store."""
        epoch, seq = self.state.sync_point()
        if epoch is None:
            return True
        self.status.state_seq = seq
        if self._known_head is not None and (seq is None or seq < self._known_head):
            self.status.store_seq = max(self.status.store_seq or -1, self._known_head)
            return True
        self.status.last_ok_at = time.time()  # reachable and not behind what this process stored
        return time.monotonic() - self._checked_store_at >= self.store_check_s

    def _step(self, store: Any, fresh: Fresh | None = None) -> int:
        epoch, seq = self.state.sync_point()
        if fresh is not None and epoch is not None and seq is not None and seq == fresh.after:
            return self._apply_fresh(epoch, fresh)
        self._checked_store_at = time.monotonic()
        if epoch is None:
            if not self.rebuild_missing:  # start from now: the operator asked for no warm start
                self.state.mark_synced(uuid.uuid4().hex, store.max_seq())
                self.rebuild_missing = True
                epoch, seq = self.state.sync_point()
            else:
                self.status.rebuilding = True
                try:
                    rebuild_state(self.state, store, self.window_s, text=None)
                finally:
                    self.status.rebuilding = False
                self.status.rebuilds += 1
                epoch, seq = self.state.sync_point()
        applied = 0
        while True:
            frame, last = store.events_after(seq if seq is not None else -1, limit=CATCH_UP_CHUNK)
            if last == seq or not len(frame):
                break
            applied += self.state.apply_synced(frame, last)
            seq = last
            self.state.keep_sync_lock()
        self.status.store_seq = store.max_seq()
        self.status.epoch, self.status.state_seq = epoch, seq
        self.status.last_ok_at = time.time()
        return applied

    def _apply_fresh(self, epoch: str, fresh: Fresh) -> int:
        """The state is exactly at the store's head before ``fresh``: apply it and move to its head."""
        applied = self.state.apply_synced(fresh.frame, fresh.seq)
        s = self.status
        s.epoch, s.state_seq = epoch, fresh.seq
        s.store_seq = max(s.store_seq if s.store_seq is not None else -1, fresh.seq)
        s.last_ok_at = time.time()
        return applied

    def _failed(self, exc: BaseException) -> None:
        self.status.last_error = f"{type(exc).__name__}: {exc}"[:300]
        self.status.last_error_at = time.time()

    # ---- background ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="state-sync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if self._due():
                    self.catch_up()
            except StateUnavailable:
                pass  # logged in the status; the next tick retries
            except self._errors as exc:  # the state did not answer the cheap check either
                self._failed(exc)
            except Exception:  # never let the thread die: the next tick retries
                log.exception("state sync failed")

    def healthy(self, max_age_s: float = 5.0) -> bool:
        """The state answered within ``max_age_s``, holds every event this process stored, and no rebuild runs."""
        s = self.status
        recent_error = s.last_error_at is not None and (
            s.last_ok_at is None or s.last_error_at > s.last_ok_at
        )
        behind = self._known_head is not None and (s.state_seq is None or s.state_seq < self._known_head)
        return (
            not s.rebuilding
            and not recent_error
            and not behind
            and s.last_ok_at is not None
            and time.time() - s.last_ok_at <= max_age_s + self.interval_s
        )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


__all__ = [
    "CATCH_UP_CHUNK",
    "Fresh",
    "StateSync",
    "StateUnavailable",
    "SyncStatus",
    "rebuild_state",
    "recent_events",
    "state_errors",
]
