"""Live-comment monitor: per-room rolling negative share, topics, spike alerts, a ranker signal.

:class:`CommentMonitor` scores batches of :class:`Comment` with a sentiment model (anything with
``predict_proba(texts) -> (N, 2)``, e.g. :class:`~liveshelf.monitor.sentiment.SentimentClassifier`);
a comment is negative when ``P(negative) >= threshold``. Comments fall into time buckets of
``bucket_s`` seconds per room, and per (room, item) when the comment names an item -- either its
``item`` field or, when that is empty, an alias registered with :meth:`CommentMonitor.set_items`
found in its text (longest alias wins). Rolling figures cover the last ``window_s`` seconds up
to the monitor's clock (the latest comment time seen, or the time given to :meth:`flush`).

Rooms silent for ``forget_after_s`` seconds (live rooms end) are forgotten.

When the clock passes the end of a bucket, the bucket is closed: its counts and the keywords of
its negative comments go to the :class:`~liveshelf.monitor.alerts.SpikeDetector` (if any) and any
alert goes to every sink. Comments arriving for an already closed bucket still count in the
rolling window but are not re-scored by the detector.

Keywords: jieba TF-IDF tags (``jieba.analyse.extract_tags``) over the Chinese negative texts,
and term counts of lower-cased words minus a stop-word list over the others, merged by their
score relative to each language's best.

:meth:`CommentMonitor.item_signal` is a demotion strength in [0, 1] for rankers: the item's
recent negative share, smoothed towards the room's long-run share ``p0`` with ``item_prior``
pseudo-comments, in excess of ``p0``: ``clip((s - p0) / (1 - p0), 0, 1)`` -- 0 for items without
negative evidence, near 1 when many recent comments about the item are negative. A ranker may
multiply its score by ``1 - weight * item_signal``.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from liveshelf.errors import ConfigError, check_param
from liveshelf.monitor.alerts import Alert, AlertSink, Burst, SpikeDetector

log = logging.getLogger(__name__)

_CJK = re.compile(r"[\u3400-\u9fff]")
_WORD = re.compile(r"[a-z][a-z']+")
_EN_STOP = """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers him his how i if in into is it its itself just me more most my no nor not of
    off on once only or other our ours out over own same she should so some such than that the their
    them then there these they this those through to too under until up very was we were what when where
    which while who whom why will with you your yours im ive dont cant its got get one also really would
    still again much"""
EN_STOPWORDS = frozenset(_EN_STOP.split())


class SentimentModel(Protocol):
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class Comment:
    """One live comment; ``ts`` in epoch seconds, ``item`` when it is known to be about one."""

    room: str
    ts: float
    text: str
    item: str | None = None
    user: str | None = None


@dataclass
class _Bucket:
    n: int = 0
    n_neg: int = 0
    neg_texts: list[str] = field(default_factory=list)
    items: dict[str, list[int]] = field(default_factory=dict)  # item -> [n, n_neg]
    closed: bool = False


class CommentMonitor:
    """Rolling per-room comment sentiment with optional spike detection and alert sinks."""

    def __init__(
        self,
        model: SentimentModel,
        *,
        bucket_s: float = 30.0,
        window_s: float = 300.0,
        threshold: float = 0.5,
        detector: SpikeDetector | None = None,
        sinks: Sequence[AlertSink] = (),
        keyword_k: int = 8,
        max_texts_per_bucket: int = 200,
        item_prior: float = 5.0,
        prior_share: float = 0.2,
        baseline_alpha: float = 0.05,
        forget_after_s: float = 1800.0,
    ) -> None:
        where = "CommentMonitor"
        check_param("bucket_s", bucket_s, bucket_s > 0, "a float > 0 (seconds)", where)
        check_param("window_s", window_s, window_s >= bucket_s, f"a float >= bucket_s={bucket_s}", where)
        check_param("threshold", threshold, 0 < threshold < 1, "a float in (0, 1)", where)
        check_param(
            "keyword_k", keyword_k, isinstance(keyword_k, int) and keyword_k >= 0, "an int >= 0", where
        )
        check_param("item_prior", item_prior, item_prior > 0, "a float > 0 (pseudo-comments)", where)
        check_param("prior_share", prior_share, 0 <= prior_share < 1, "a float in [0, 1)", where)
        check_param(
            "forget_after_s",
            forget_after_s,
            forget_after_s >= window_s,
            f"a float >= window_s={window_s} (seconds)",
            where,
        )
        check_param("baseline_alpha", baseline_alpha, 0 < baseline_alpha <= 1, "a float in (0, 1]", where)
        self.model = model
        self.bucket_s = float(bucket_s)
        self.window_buckets = max(1, int(round(window_s / bucket_s)))
        self.threshold = threshold
        self.detector = detector
        self.sinks = list(sinks)
        self.keyword_k = keyword_k
        self.max_texts_per_bucket = max_texts_per_bucket
        self.item_prior = item_prior
        self.prior_share = prior_share
        self.baseline_alpha = baseline_alpha
        self.forget_after_s = float(forget_after_s)
        self.clock = -math.inf
        self.alerts: deque[Alert] = deque(maxlen=10_000)
        self.n_scored = 0
        self._rooms: dict[str, dict[int, _Bucket]] = {}
        self._baseline: dict[str, float] = {}
        self._last_seen: dict[str, float] = {}
        self._aliases: dict[str, list[tuple[str, str]]] = {}

    # ------------------------------------------------------------- input
    def set_items(self, room: str, names: Mapping[str, str | Sequence[str]]) -> None:
        """Register the items on ``room``'s shelf: item id -> name or aliases found in comment text."""
        pairs = []
        for item, alias in names.items():
            for a in [alias] if isinstance(alias, str) else alias:
                if a and a.strip():
                    pairs.append((a.strip().lower(), str(item)))
        self._aliases[room] = sorted(pairs, key=lambda p: -len(p[0]))

    def add(self, comments: Iterable[Comment | Mapping[str, Any]]) -> list[Alert]:
        """Score and record comments (any order); returns the alerts of the buckets this closed."""
        batch = [c if isinstance(c, Comment) else _comment_from_mapping(c) for c in comments]
        if not batch:
            return []
        if math.isfinite(self.clock):  # older than the window: too late to matter
            oldest = (int(self.clock // self.bucket_s) - self.window_buckets + 1) * self.bucket_s
            batch = [c for c in batch if c.ts >= oldest]
            if not batch:
                return []
        p_neg = np.asarray(self.model.predict_proba([c.text for c in batch]))[:, 0]
        self.n_scored += len(batch)
        for c, p in zip(batch, p_neg, strict=True):
            neg = bool(p >= self.threshold)
            self._last_seen[c.room] = max(self._last_seen.get(c.room, -math.inf), c.ts)
            idx = int(c.ts // self.bucket_s)
            buckets = self._rooms.setdefault(c.room, {})
            b = buckets.get(idx)
            if b is None:  # a bucket that ended before this batch counts in the window, unscored
                b = buckets[idx] = _Bucket(closed=(idx + 1) * self.bucket_s <= self.clock)
            b.n += 1
            b.n_neg += neg
            if neg and len(b.neg_texts) < self.max_texts_per_bucket:
                b.neg_texts.append(c.text)
            item = c.item if c.item is not None else self._mentioned_item(c.room, c.text)
            if item is not None:
                counts = b.items.setdefault(item, [0, 0])
                counts[0] += 1
                counts[1] += neg
        return self.flush(max(c.ts for c in batch))

    def flush(self, now: float) -> list[Alert]:
        """Advance the clock to ``now`` (never backwards), close finished buckets, emit alerts."""
        self.clock = max(self.clock, float(now))
        current = int(self.clock // self.bucket_s)
        alerts: list[Alert] = []
        for room, buckets in self._rooms.items():
            for idx in sorted(buckets):
                b = buckets[idx]
                if b.closed or (idx + 1) * self.bucket_s > self.clock:
                    continue
                b.closed = True
                alerts += self._close(room, idx, b)
            for idx in [i for i in buckets if i <= current - self.window_buckets]:
                del buckets[idx]
        for room in [r for r, t in self._last_seen.items() if self.clock - t > self.forget_after_s]:
            self.forget(room)  # the room has ended: free its state
        for alert in alerts:
            self.alerts.append(alert)
            for sink in self.sinks:
                sink.emit(alert)
        return alerts

    def forget(self, room: str) -> None:
        """Drop the comments and baseline of ``room`` (done by :meth:`flush` after ``forget_after_s``
        without comments); its item aliases stay until ``set_items(room, {})``."""
        for state in (self._rooms, self._baseline, self._last_seen):
            state.pop(room, None)
        if self.detector is not None:
            self.detector.forget(room)

    def _close(self, room: str, idx: int, b: _Bucket) -> list[Alert]:
        if b.n:
            share = b.n_neg / b.n
            p0 = self._baseline.get(room, self.prior_share)
            self._baseline[room] = p0 + self.baseline_alpha * (share - p0)
        if self.detector is None:
            return []
        if b.n < self.detector.min_volume:
            return []
        start = idx * self.bucket_s
        keywords = extract_keywords(b.neg_texts, self.keyword_k) if b.n_neg else []
        alert = self.detector.update(room, start + self.bucket_s, b.n, b.n_neg, keywords, bucket_start=start)
        return [alert] if alert is not None else []

    def _mentioned_item(self, room: str, text: str) -> str | None:
        aliases = self._aliases.get(room)
        if not aliases:
            return None
        low = text.lower()
        return next((item for alias, item in aliases if alias in low), None)

    # ------------------------------------------------------------- rolling figures
    def _window(self, room: str) -> list[_Bucket]:
        current = int(self.clock // self.bucket_s) if math.isfinite(self.clock) else 0
        lo = current - self.window_buckets + 1
        return [b for i, b in self._rooms.get(room, {}).items() if lo <= i <= current]

    def rooms(self) -> list[str]:
        return sorted(self._rooms)

    def volume(self, room: str) -> int:
        """Comments of ``room`` in the rolling window."""
        return sum(b.n for b in self._window(room))

    def negative_share(self, room: str) -> float:
        """Share of negative comments of ``room`` in the rolling window (nan without comments)."""
        bs = self._window(room)
        n = sum(b.n for b in bs)
        return sum(b.n_neg for b in bs) / n if n else float("nan")

    def item_counts(self, room: str, item: str) -> tuple[int, int]:
        """(comments, negative comments) naming ``item`` in ``room``'s rolling window."""
        n = neg = 0
        for b in self._window(room):
            c = b.items.get(item)
            if c:
                n, neg = n + c[0], neg + c[1]
        return n, neg

    def item_negative_share(self, room: str, item: str) -> float:
        n, neg = self.item_counts(room, item)
        return neg / n if n else float("nan")

    def baseline(self, room: str) -> float:
        """The room's long-run negative share (EWMA over closed buckets; ``prior_share`` at first)."""
        return self._baseline.get(room, self.prior_share)

    def item_signal(self, room: str, item: str) -> float:
        """Demotion strength in [0, 1] for ``item`` in ``room`` (see the module docstring)."""
        n, neg = self.item_counts(room, item)
        if n == 0:
            return 0.0
        p0 = self.baseline(room)
        s = (neg + self.item_prior * p0) / (n + self.item_prior)
        return float(min(1.0, max(0.0, (s - p0) / (1.0 - p0))))

    def keywords(self, room: str, k: int | None = None) -> list[str]:
        """Top keywords of ``room``'s negative comments in the rolling window."""
        texts = [t for b in self._window(room) for t in b.neg_texts]
        return extract_keywords(texts, self.keyword_k if k is None else k)

    def snapshot(self, room: str) -> dict[str, Any]:
        """JSON-ready state of one room for the dashboard."""
        share = self.negative_share(room)
        items = sorted({i for b in self._window(room) for i in b.items})
        return {
            "room": room,
            "volume": self.volume(room),
            "negative_share": None if math.isnan(share) else round(share, 4),
            "baseline": round(self.baseline(room), 4),
            "keywords": self.keywords(room),
            "items": {i: round(self.item_signal(room, i), 4) for i in items},
        }


def _comment_from_mapping(m: Mapping[str, Any]) -> Comment:
    missing = [k for k in ("room", "ts", "text") if k not in m]
    if missing:
        raise ConfigError(
            f"A comment must have the keys 'room', 'ts' (epoch seconds) and 'text'; one lacks {missing}: "
            f"{dict(m)!r}. Add them or pass Comment objects."
        )
    item = m.get("item")
    return Comment(
        room=str(m["room"]),
        ts=float(m["ts"]),
        text=str(m["text"]),
        item=None if item is None or item == "" else str(item),
        user=m.get("user"),
    )


def extract_keywords(texts: Sequence[str], k: int = 8) -> list[str]:
    """Top ``k`` keywords of ``texts``: jieba TF-IDF tags for Chinese, stop-word-filtered counts otherwise.

    >>> extract_keywords(["shipping is slow", "slow shipping again", "so slow"], 2)
    ['slow', 'shipping']
    """
    if k <= 0 or not texts:
        return []
    zh = [t for t in texts if _CJK.search(t)]
    other = [t for t in texts if not _CJK.search(t)]
    scored: dict[str, float] = {}
    if zh:
        import jieba
        import jieba.analyse

        jieba.setLogLevel(logging.WARNING)
        tags = jieba.analyse.extract_tags("\n".join(zh), topK=k * 2, withWeight=True)
        tags = [(w, s) for w, s in tags if _is_keyword(w)]
        if tags:
            top = tags[0][1]
            for w, s in tags:
                scored[w] = max(scored.get(w, 0.0), s / top)
    if other:
        counts = Counter(w for t in other for w in _WORD.findall(t.lower()) if w not in EN_STOPWORDS)
        if counts:
            top = counts.most_common(1)[0][1]
            for w, c in counts.most_common(k * 2):
                scored[w] = max(scored.get(w, 0.0), c / top)
    return [w for w, _ in sorted(scored.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def _is_keyword(word: str) -> bool:
    w = word.strip()
    return len(w) >= 2 and not w.isdigit() and any(ch.isalnum() for ch in w)


def synthetic_comments(
    pos_texts: Sequence[str],
    neg_texts: Sequence[str],
    *,
    rooms: Sequence[str],
    duration_s: float,
    rate_per_s: float = 1.0,
    base_negative: float = 0.15,
    bursts: Sequence[Burst] = (),
    start: float = 0.0,
    seed: int = 0,
) -> list[Comment]:
    """A seeded comment stream: Poisson arrivals per room, texts drawn from ``pos_texts`` /
    ``neg_texts`` with P(negative) = ``base_negative``, or a burst's ``negative_share`` (and rate
    times its ``rate_multiplier``) inside a :class:`Burst`. Sorted by time."""
    check_param("pos_texts", len(pos_texts), len(pos_texts) > 0, "a non-empty list", "synthetic_comments")
    check_param("neg_texts", len(neg_texts), len(neg_texts) > 0, "a non-empty list", "synthetic_comments")
    check_param("rate_per_s", rate_per_s, rate_per_s > 0, "a float > 0", "synthetic_comments")
    rng = np.random.default_rng(seed)
    out: list[Comment] = []
    for room in rooms:
        room_bursts = [b for b in bursts if b.room == room]
        max_mult = max([1.0] + [b.rate_multiplier for b in room_bursts])
        n = rng.poisson(rate_per_s * max_mult * duration_s)
        ts = np.sort(start + rng.uniform(0, duration_s, size=n))
        for t in ts:
            burst = next((b for b in room_bursts if b.start <= t < b.end), None)
            mult = burst.rate_multiplier if burst else 1.0
            if rng.random() >= mult / max_mult:  # thinning: the room's rate outside bursts is rate_per_s
                continue
            p = burst.negative_share if burst else base_negative
            neg = rng.random() < p
            pool = neg_texts if neg else pos_texts
            out.append(Comment(room=room, ts=float(t), text=pool[int(rng.integers(len(pool)))]))
    out.sort(key=lambda c: (c.ts, c.room))
    return out
