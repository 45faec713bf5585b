"""Keyed pseudonyms for user ids (HMAC-SHA256), applied at ingest.

A pseudonym is ``hex(HMAC-SHA256(key, "user:" + raw_id))`` cut to ``length`` hex
characters (32 by default, i.e. 128 bits). The same key always gives the same
pseudonym, so sequences and joins keep working; without the key the raw id cannot be
recovered or checked. The key itself is never stored: a store only records
:attr:`Pseudonymiser.key_id`, a short HMAC of a fixed label, to refuse mixing keys.

Event ids are pseudonymised as well (``"event:" + raw_event_id``) because sources
often build them from the user id (``f"{user}:{position}"``).
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pandas as pd
import pyarrow as pa

from liveshelf.config import Settings, get_settings
from liveshelf.errors import ConfigError, check_param

_KEY_ID_LABEL = b"liveshelf:key-id"


class Pseudonymiser:
    """Map raw ids to keyed pseudonyms.

    >>> p = Pseudonymiser("secret")
    >>> p("alice") == p("alice"), len(p("alice"))
    (True, 32)
    """

    def __init__(self, key: str | bytes, length: int = 32) -> None:
        raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        check_param("key", "<empty>", len(raw) > 0, "a non-empty string or bytes", "Pseudonymiser")
        check_param(
            "length",
            length,
            isinstance(length, int) and 16 <= length <= 64,
            "an int in [16, 64] (hex characters of the digest)",
            "Pseudonymiser",
        )
        self._key = raw
        self.length = length

    def __repr__(self) -> str:  # never show the key
        return f"Pseudonymiser(key_id={self.key_id!r}, length={self.length})"

    @property
    def key_id(self) -> str:
        """A short public fingerprint of the key (safe to store)."""
        return hmac.new(self._key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:12]

    def _digest(self, namespace: str, raw: str) -> str:
        msg = f"{namespace}:{raw}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[: self.length]

    def __call__(self, user_id: str) -> str:
        """The pseudonym of one user id."""
        return self._digest("user", str(user_id))

    def event_id(self, event_id: str) -> str:
        """The pseudonym of one event id."""
        return self._digest("event", str(event_id))

    def map_series(self, values: pd.Series, namespace: str = "user") -> pd.Series:
        """Pseudonymise a column; missing values stay missing. One HMAC per distinct value."""
        check_param(
            "namespace",
            namespace,
            namespace in ("user", "event"),
            "'user' or 'event'",
            "Pseudonymiser.map_series",
        )
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        mapped = np.array([self._digest(namespace, str(u)) for u in uniques] + [None], dtype=object)
        out = mapped[np.where(codes < 0, len(uniques), codes)]
        return pd.Series(out, index=values.index, dtype="str", name=values.name)

    def map_array(self, values: pa.Array | pa.ChunkedArray, namespace: str = "user") -> pa.Array:
        """Pseudonymise an Arrow string column; nulls stay null. One HMAC per distinct value."""
        check_param(
            "namespace",
            namespace,
            namespace in ("user", "event"),
            "'user' or 'event'",
            "Pseudonymiser.map_array",
        )
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        enc = values.dictionary_encode()
        mapped = pa.array([self._digest(namespace, str(u)) for u in enc.dictionary.to_pylist()], pa.string())
        return mapped.take(enc.indices)


def from_settings(settings: Settings | None = None, *, required: bool = False) -> Pseudonymiser | None:
    """The pseudonymiser keyed by ``LIVESHELF_PSEUDONYM_KEY`` (None when unset, unless ``required``)."""
    settings = settings or get_settings()
    if settings.pseudonym_key is None or not settings.pseudonym_key.get_secret_value():
        if required:
            raise ConfigError(
                "Pseudonymisation was requested but no key is set: the 'pseudonym_key' setting is empty. "
                "Set the environment variable LIVESHELF_PSEUDONYM_KEY (or pass an explicit key)."
            )
        return None
    return Pseudonymiser(settings.pseudonym_key.get_secret_value())
