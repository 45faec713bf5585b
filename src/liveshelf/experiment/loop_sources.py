"""Where the continuous loop reads events: a :class:`Watermark` of how far it read, the :class:`EventSource`
protocol and the event store as a source (:class:`StoreSource`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from liveshelf.data.dataset import Dataset


@dataclass(frozen=True)
class Watermark:
    """How far a source has been read: last ingest ``seq``, latest event time ``ts`` (epoch s), ``events``."""

    seq: int = -1
    ts: float | None = None
    events: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class EventSource(Protocol):
    """Where new events come from. ``head`` is cheap; ``dataset`` returns everything up to a head."""

    def head(self) -> Watermark: ...

    def dataset(self, upto: Watermark) -> Dataset: ...


class StoreSource:
    """The :class:`~liveshelf.data.store.EventStore` in ``home``, opened read-only for each call.

    The ingestion watermark is the store's ``seq`` column (ingest order), so late events
    (old event time, ingested now) are seen as new.
    """

    def __init__(self, home: Path | str) -> None:
        self.home = Path(home).expanduser()

    def __repr__(self) -> str:
        return f"StoreSource({str(self.home)!r})"

    def _open(self):
        from liveshelf.data.store import EventStore

        return EventStore(self.home, read_only=True)

    def head(self) -> Watermark:
        with self._open() as store:
            seq, ts, n = store._rows(
                "SELECT coalesce(max(seq), -1), epoch_us(max(ts)), count(*) FROM events"
            )[0]
        return Watermark(seq=int(seq), ts=None if ts is None else float(ts) / 1e6, events=int(n))

    def dataset(self, upto: Watermark) -> Dataset:
        from liveshelf.schema import EVENT_COLUMNS

        cols = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
        with self._open() as store:
            events = store._frame(
                f'SELECT {cols} FROM events WHERE seq <= ? ORDER BY "user", ts, seq', [int(upto.seq)], ("ts",)
            )
            frames = {}
            for kind in ("items", "users", "rooms", "shelf", "hosts"):
                df = store.frame(kind)
                frames[kind] = df if len(df) else None
            vectors = store.item_vector_sets()
        return Dataset(
            name=f"store:{self.home.name}",
            events=events,
            **frames,
            item_vectors=vectors,
            meta={"source": "event_store", "watermark": upto.as_dict()},
        )


__all__ = ["EventSource", "StoreSource", "Watermark"]
