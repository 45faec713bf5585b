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
from liveshelf.profile import ProfileBuilder
from liveshelf.text.facts import ItemFacts, facts_table
from liveshelf.text.generate import GenerationRequest, make_generator
from liveshelf.text.qa import ShelfQA


class TextServices:
    def __init__(self, items: pd.DataFrame, rooms: pd.DataFrame | None = None, *,
                 backend: str = "grounded", backend_options: dict[str, Any] | None = None,
                 half_life: float = 7 * 86_400.0) -> None:
        self._lock = threading.RLock()
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
            return self.profiles.update(events)

    def upsert_items(self, items: pd.DataFrame) -> None:
        with self._lock:
            self.profiles.upsert_items(items)
            self.qa.upsert_items(items)
            self.facts.update(facts_table(items))

    def add_rooms(self, rooms: pd.DataFrame) -> None:
        with self._lock:
            self.profiles.add_rooms(rooms)
            self._remember_hosts(rooms)

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
