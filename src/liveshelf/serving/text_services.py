"""Text intelligence for the server: profiles, pitch generation and shelf Q&A kept current.

One object per process, fed by the same writes as the online state (events, items, rooms),
so a profile, a pitch or an answer reflects the click posted a moment ago. Routes call it;
it holds no HTTP logic. Thread-safe behind one lock (the builders are plain Python).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd

from liveshelf.errors import NotFoundError
from liveshelf.monitor.alerts import Alert, MemorySink, SpikeDetector
from liveshelf.monitor.comments import Comment, CommentMonitor
from liveshelf.profile import ProfileBuilder
from liveshelf.text.facts import ItemFacts, facts_table
from liveshelf.text.generate import GenerationRequest, make_generator
from liveshelf.text.qa import ShelfQA


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
    """

    def __init__(self, items: pd.DataFrame, rooms: pd.DataFrame | None = None, *,
                 backend: str = "grounded", backend_options: dict[str, Any] | None = None,
                 half_life: float = 7 * 86_400.0, sentiment_model: Any = None,
                 alert_webhook: str | None = None, comment_demotion: float = 0.5) -> None:
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
        self.profiles = ProfileBuilder(items, rooms if rooms is not None and len(rooms) else None,
                                       half_life=half_life)
        self.qa = ShelfQA(items)
        self.facts: dict[str, ItemFacts] = facts_table(items)
        brands = items["brand"].dropna().astype(str).unique().tolist() if "brand" in items.columns else []
        self.generator = make_generator(backend, **({"encode": self.profiles.encode_texts,
                                                     "known_brands": brands} if backend == "grounded"
                                                    else dict(backend_options or {})))
        self._hosts: dict[str, str] = {}
        if rooms is not None and len(rooms):
            self._remember_hosts(rooms)

    # ------------------------------------------------------------------ writes
    def update_events(self, events: pd.DataFrame) -> int:
        if not len(events):
            return 0
        with self._lock:
            n = self.profiles.update(events)
            if self.monitor is not None:
                self._monitor_comments(events)
            return n

    def _monitor_comments(self, events: pd.DataFrame) -> None:
        mask = (events["type"] == "comment") & events["room"].notna() & events["text"].notna()
        if not mask.any():
            return
        rows = events.loc[mask, ["room", "ts", "text", "item"]]
        ts = pd.to_datetime(rows["ts"], utc=True)
        seconds = ((ts - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy()
        self.monitor.add([Comment(room=str(r), ts=float(t), text=str(x), item=None if pd.isna(i) else str(i))
                          for r, t, x, i in zip(rows["room"], seconds, rows["text"], rows["item"], strict=True)])

    def upsert_items(self, items: pd.DataFrame) -> None:
        with self._lock:
            self.profiles.upsert_items(items)
            self.qa.upsert_items(items)
            self.facts.update(facts_table(items))

    def add_rooms(self, rooms: pd.DataFrame) -> None:
        with self._lock:
            self.profiles.add_rooms(rooms)
            self._remember_hosts(rooms)

    def set_shelf(self, room: str, items: list[str]) -> None:
        """Let the comment monitor find shelf items named in comment text (by title)."""
        if self.monitor is None:
            return
        with self._lock:
            names = {i: self.facts[i].title for i in items if i in self.facts and self.facts[i].title}
            self.monitor.set_items(room, names)

    def close(self) -> None:
        if self._webhook is not None:
            self._webhook.close()

    def delete_user(self, user: str) -> None:
        with self._lock:
            self.profiles._users.pop(user, None)

    def _remember_hosts(self, rooms: pd.DataFrame) -> None:
        for rid, host in zip(rooms["id"].astype(str), rooms["host"].astype(str), strict=True):
            self._hosts[rid] = host

    # ------------------------------------------------------------------ reads
    def profile(self, user: str, t: float) -> dict[str, Any] | None:
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
        with self._lock:
            return self.qa.answer(question, shelf, pinned=pinned, lang=lang).to_dict()

    def pitch(self, item: str, user: str | None = None, room: str | None = None,
              t: float | None = None, lang: str | None = None) -> dict[str, Any]:
        """Reason, three talking points and a push line for ``item`` (for ``user``, or generic)."""
        with self._lock:
            facts = self.facts.get(item)
            if facts is None:
                raise NotFoundError(f"Unknown item {item!r}: it is not in the catalogue. Add it with PUT /v1/items.")
            known = user is not None and user in self.profiles
            prof = self.profiles.profile(user, t) if known else None
            interest = self.profiles.interest_vector(user, item) if known else None
            if interest is not None and not np.any(interest):
                interest = None
            req = GenerationRequest(item=facts, user=user, profile=prof, interest=interest, lang=lang,
                                    host=self._hosts.get(room) if room else None)
            return self.generator.generate_one(req).to_dict()
