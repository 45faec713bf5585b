"""Text intelligence for the server: profiles, pitch generation and shelf Q&A kept current.

One object per process, fed by the same writes as the online state (events, items, rooms),
so a profile, a pitch or an answer reflects the click posted a moment ago. Routes call it;
it holds no HTTP logic. Thread-safe behind one lock (the builders are plain Python).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from liveshelf.errors import NotFoundError
from liveshelf.monitor.alerts import Alert, MemorySink, SpikeDetector
from liveshelf.monitor.comments import Comment, CommentMonitor
from liveshelf.profile import ProfileBuilder
from liveshelf.serving.heap import release_freed_memory
from liveshelf.text.facts import ItemFacts, facts_table
from liveshelf.text.generate import GenerationRequest, make_generator
from liveshelf.text.qa import ShelfQA

log = logging.getLogger("liveshelf.serving")


class _BackgroundSink:
    """Delivers alerts to a slow sink (a webhook) off the request thread."""

    def __init__(self, sink: Any) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.sink = sink
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="liveshelf-alerts")

    def emit(self, alert: Alert) -> None:
        self._pool.submit(self.sink.emit, alert)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class TextServices:
    """Profiles, pitches, shelf Q&A and (with a sentiment model) the live-comment monitor.

    ``sentiment_model`` is a :class:`~liveshelf.monitor.sentiment.SentimentClassifier` (or any
    ``predict_proba`` model); without one, comments are not monitored. ``alert_webhook`` receives
    every spike alert as JSON (delivered off the request thread); alerts are also kept in memory
    for the dashboard.

    ``background=True`` builds the profiles, item facts, Q&A index and generator (seconds for a large
    catalogue) in a thread, so a server is ready without them: writes made meanwhile are queued and
    applied, in order, once they are built; :meth:`profile`, :meth:`ask` and :meth:`pitch` wait for the
    build. The comment monitor (what :meth:`demote_by_comments` reads) is built at once. The build starts
    on :meth:`start`, on the first read that needs it, or ``start_after_s`` seconds after construction,
    whichever comes first (so it need not compete for the interpreter with the rest of a server's start-up).
    """

    profiles: ProfileBuilder
    facts: dict[str, ItemFacts]
    qa: ShelfQA
    generator: Any

    def __init__(
        self,
        items: pd.DataFrame,
        rooms: pd.DataFrame | None = None,
        *,
        backend: str = "grounded",
        backend_options: dict[str, Any] | None = None,
        half_life: float = 7 * 86_400.0,
        sentiment_model: Any = None,
        alert_webhook: str | None = None,
        comment_demotion: float = 0.5,
        background: bool = False,
        start_after_s: float | None = 0.0,
        source: Callable[[], tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame]] | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self.alerts = MemorySink()
        self._webhook: _BackgroundSink | None = None
        self.monitor: CommentMonitor | None = None
        self.comment_demotion = float(comment_demotion)
        if sentiment_model is not None:
            sinks: list[Any] = [self.alerts]
            if alert_webhook:
                from liveshelf.monitor.alerts import WebhookSink

                self._webhook = _BackgroundSink(WebhookSink(alert_webhook))
                sinks.append(self._webhook)
            self.monitor = CommentMonitor(sentiment_model, detector=SpikeDetector(), sinks=sinks)
        rooms = rooms if rooms is not None and len(rooms) else None
        self._hosts: dict[str, str] = {}
        if rooms is not None:
            self._remember_hosts(rooms)
        self._ready = threading.Event()
        self._pending: list[
            Callable[[], Any] | pd.DataFrame
        ] = []  # writes to replay once built (frames: events)
        self._source = source if background else None
        self._started = False  # the build began (with a source: writes from then on are queued, not dropped)
        self._error: BaseException | None = None
        self._go = threading.Event()
        self._thread: threading.Thread | None = None
        # with a source the build reads the catalogue and rooms itself: the frames given here are not kept alive
        build = functools.partial(
            self._build,
            None if self._source is not None else items,
            None if self._source is not None else rooms,
            backend,
            backend_options,
            half_life,
        )
        if background:
            self._thread = threading.Thread(
                target=self._build_logged,
                args=(build, None if start_after_s is None else float(start_after_s)),
                name="text-services",
                daemon=True,
            )
            self._thread.start()
        else:
            build()

    # ------------------------------------------------------------------ build
    def _build(
        self,
        items: pd.DataFrame | None,
        rooms: pd.DataFrame | None,
        backend: str,
        backend_options: dict[str, Any] | None,
        half_life: float,
    ) -> None:
        with self._lock:
            self._started = True
        history: set[str] = set()
        events = None
        if self._source is not None:  # what was written before the build began: read back from the store
            items, rooms, events = self._source()
            rooms = rooms if rooms is not None and len(rooms) else None
        assert items is not None  # given at construction, or read from the source
        profiles = ProfileBuilder(items, rooms, half_life=half_life)
        if events is not None and len(events):
            profiles.update(events)
            if "event_id" in events.columns:
                history = set(events["event_id"].dropna().astype(str))
        facts = facts_table(items)
        qa = ShelfQA(items, facts=facts)
        brands = items["brand"].dropna().astype(str).unique().tolist() if "brand" in items.columns else []
        generator = make_generator(
            backend,
            **(
                {"encode": profiles.encode_texts, "known_brands": brands}
                if backend == "grounded"
                else dict(backend_options or {})
            ),
        )
        with self._lock:  # the writes queued meanwhile, in order, then ready
            self.profiles, self.facts, self.qa, self.generator = profiles, facts, qa, generator
            for op in self._pending:
                if isinstance(op, pd.DataFrame):  # events posted during the build, less those it read back
                    fresh = (
                        op[~op["event_id"].astype(str).isin(history)] if history and "event_id" in op else op
                    )
                    if len(fresh):
                        self._update_profiles(fresh)
                else:
                    op()
            self._pending.clear()
            self._ready.set()

    def start(self) -> None:
        """Start the background build now (no-op when it runs already or the services were built at once)."""
        self._go.set()

    def _build_logged(self, build: Callable[[], None], start_after_s: float | None) -> None:
        self._go.wait(start_after_s)
        try:
            build()
            release_freed_memory()  # the build's temporaries: hundreds of MB on a large catalogue
        except BaseException as exc:  # the readers raise it; the writes queued are dropped with the build
            log.exception("text services failed to build")
            with self._lock:
                self._error = exc
                self._pending.clear()
                self._ready.set()

    @property
    def ready(self) -> bool:
        """Whether the profiles, facts, Q&A index and generator are built."""
        return self._ready.is_set() and self._error is None

    def wait_ready(self, timeout_s: float | None = None) -> bool:
        """Start the build if it waits, and wait for it (``timeout_s`` None: as long as it takes); raises if it
        failed."""
        self._go.set()
        done = self._ready.wait(timeout_s)
        if self._error is not None:
            raise RuntimeError(
                f"The text services failed to build ({type(self._error).__name__}: "
                f"{self._error}); see the server log."
            ) from self._error
        return done

    def _when_built(self, op: Callable[[], Any], events: pd.DataFrame | None = None) -> None:
        """Run a write now, or queue it until the build is done (call with the lock held). Before a build that
        reads its data from the store began, the write is dropped: the build reads it back."""
        if self._ready.is_set():
            if self._error is None:
                op()
        elif self._source is None or self._started:
            self._pending.append(op if events is None else events)

    # ------------------------------------------------------------------ writes
    def update_events(self, events: pd.DataFrame) -> int:
        """Feed events to the profiles and the comment monitor; returns the events given (profiles that are
        still being built take them once built)."""
        if not len(events):
            return 0
        with self._lock:
            self._when_built(functools.partial(self._update_profiles, events), events)
            if self.monitor is not None:
                self._monitor_comments(events)
            return len(events)

    def _update_profiles(self, events: pd.DataFrame) -> None:
        self.profiles.update(events)

    def _monitor_comments(self, events: pd.DataFrame) -> None:
        mask = (events["type"] == "comment") & events["room"].notna() & events["text"].notna()
        if not mask.any():
            return
        rows = events.loc[mask, ["room", "ts", "text", "item"]]
        ts = pd.to_datetime(rows["ts"], utc=True)
        seconds = ((ts - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy()
        assert self.monitor is not None  # only called when there is one; it is never unset
        self.monitor.add(
            [
                Comment(room=str(r), ts=float(t), text=str(x), item=None if pd.isna(i) else str(i))
                for r, t, x, i in zip(rows["room"], seconds, rows["text"], rows["item"], strict=True)
            ]
        )

    def upsert_items(self, items: pd.DataFrame) -> None:
        with self._lock:
            self._when_built(functools.partial(self._upsert_items, items))

    def _upsert_items(self, items: pd.DataFrame) -> None:
        self.profiles.upsert_items(items)
        facts = facts_table(items)
        self.qa.upsert_items(items, facts=facts)
        self.facts.update(facts)

    def add_rooms(self, rooms: pd.DataFrame) -> None:
        with self._lock:
            self._when_built(functools.partial(self._add_rooms, rooms))
            self._remember_hosts(rooms)

    def _add_rooms(self, rooms: pd.DataFrame) -> None:
        self.profiles.add_rooms(rooms)

    def set_shelf(self, room: str, items: list[str]) -> None:
        """Let the comment monitor find shelf items named in comment text (by title)."""
        if self.monitor is None:
            return
        with self._lock:
            self._when_built(functools.partial(self._set_shelf, room, list(items)))

    def _set_shelf(self, room: str, items: list[str]) -> None:
        names = {i: self.facts[i].title for i in items if i in self.facts and self.facts[i].title}
        assert self.monitor is not None  # only called when there is one; it is never unset
        self.monitor.set_items(room, names)

    def close(self) -> None:
        if self._webhook is not None:
            self._webhook.close()

    def delete_user(self, user: str) -> None:
        with self._lock:
            self._when_built(functools.partial(self._forget_user, user))

    def _forget_user(self, user: str) -> None:
        self.profiles._users.pop(user, None)

    def _remember_hosts(self, rooms: pd.DataFrame) -> None:
        for rid, host in zip(rooms["id"].astype(str), rooms["host"].astype(str), strict=True):
            self._hosts[rid] = host

    # ------------------------------------------------------------------ reads
    def profile(self, user: str, t: float) -> dict[str, Any] | None:
        self.wait_ready()
        with self._lock:
            if user not in self.profiles:
                return None
            return self.profiles.profile(user, t).to_dict()

    def comments(self, room: str, t: float | None = None, limit: int = 20) -> dict[str, Any] | None:
        """The room's rolling comment sentiment, keywords, per-item demotion and recent alerts."""
        if self.monitor is None:
            return None
        with self._lock:
            if t is not None:
                self.monitor.flush(t)
            return {**self.monitor.snapshot(room), "alerts": self.alerts.recent(room, limit)}

    def demote_by_comments(self, room: str, recs: list[Any]) -> list[Any]:
        """Scale each recommendation's ``score`` by ``1 - demotion * item_signal`` (items whose recent
        comments in this room turned negative sink) and re-sort; records get a ``comments`` reason."""
        if self.monitor is None or not recs:
            return recs
        with self._lock:
            signals = [self.monitor.item_signal(room, r.item) for r in recs]
        if not any(signals):
            return recs
        for r, s in zip(recs, signals, strict=True):
            if s > 0:
                r.score = float(r.score) * (1.0 - self.comment_demotion * s)
                r.reasons.append(self._reason(room, s))
        return sorted(recs, key=lambda r: -r.score)

    @staticmethod
    def _reason(room: str, signal: float) -> Any:
        from liveshelf.serving.schemas import Reason

        return Reason(source="comments-negative", room=room, score=round(-signal, 4))

    def ask(self, question: str, shelf: list[str], pinned: str | None, lang: str | None) -> dict[str, Any]:
        self.wait_ready()
        with self._lock:
            return self.qa.answer(question, shelf, pinned=pinned, lang=lang).to_dict()

    def pitch(
        self,
        item: str,
        user: str | None = None,
        room: str | None = None,
        t: float | None = None,
        lang: str | None = None,
    ) -> dict[str, Any]:
        """Reason, three talking points and a push line for ``item`` (for ``user``, or generic)."""
        self.wait_ready()
        with self._lock:
            facts = self.facts.get(item)
            if facts is None:
                raise NotFoundError(
                    f"Unknown item {item!r}: it is not in the catalogue. Add it with PUT /v1/items."
                )
            known = user if user is not None and user in self.profiles else None
            prof = self.profiles.profile(known, t) if known is not None else None
            interest = self.profiles.interest_vector(known, item) if known is not None else None
            if interest is not None and not np.any(interest):
                interest = None
            req = GenerationRequest(
                item=facts,
                user=user,
                profile=prof,
                interest=interest,
                lang=lang,
                host=self._hosts.get(room) if room else None,
            )
            return self.generator.generate_one(req).to_dict()
