"""Forget a user everywhere: the event store, the online state, and the models trained on them.

:func:`forget_user` deletes the user's events and profile row from the store
(:meth:`EventStore.delete_user`), their sequence and presence from an online state when one
is given, and marks every registered model version that was trained on them as *stale*.
A version was trained on the user when its ``vocab.json`` lists their stored id (every
liveshelf model saves its user vocabulary); a version without a user vocabulary is marked
too, since nothing proves otherwise. The continuous-training loop
(:mod:`liveshelf.experiment.loop`) retrains a stale production model from scratch on the
store, which no longer holds the user, and replaces it.

Stored ids are pseudonyms when the store was ingested with a key: pass the raw id and the
key (``key=``, default ``LIVESHELF_PSEUDONYM_KEY``), or the pseudonym itself.

Files under ``<home>/privacy/``: ``stale.json`` (``{name: {version: {"marked_at", "reason"}}}``)
and ``deletions.jsonl`` (one line per request: time, counts, stale versions; never the id).

>>> report = forget_user(home, "alice", key="secret")                  # doctest: +SKIP
>>> report.events, report.stale                                          # doctest: +SKIP
(42, {'default': ['v0003', 'v0004']})
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from liveshelf.errors import ConfigError

PRIVACY_DIR = "privacy"
STALE_FILE = "stale.json"
LEDGER_FILE = "deletions.jsonl"


@dataclass
class ForgetReport:
    """What :func:`forget_user` removed and marked."""

    stored_id: str
    events: int
    users: int
    state: bool
    stale: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("stored_id")  # the report may be logged; the id of a forgotten user must not be
        return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def privacy_dir(home: Path | str) -> Path:
    return Path(home).expanduser() / PRIVACY_DIR


def stored_user_id(
    store_key_id: str | None,
    user: str | None,
    *,
    key: str | bytes | None = None,
    pseudonym: str | None = None,
) -> str:
    """The id the store keeps for a user: the pseudonym, or the raw id when the store has none.

    ``store_key_id`` is the store's ``pseudonym_key_id`` meta value (``"none"`` or None: not
    pseudonymised).
    """
    from liveshelf.privacy.pseudonym import Pseudonymiser

    if (user is None) == (pseudonym is None):
        raise ConfigError(
            "forget_user needs exactly one of 'user' (the raw id) and 'pseudonym' (the stored id). "
            f"Got user={'<set>' if user is not None else None}, "
            f"pseudonym={'<set>' if pseudonym is not None else None}."
        )
    if pseudonym is not None:
        return str(pseudonym)
    pseudonymised = store_key_id not in (None, "none")
    if key is None:
        if pseudonymised:
            raise ConfigError(
                f"The event store pseudonymises user ids (key id {store_key_id!r}), so the 'key' "
                "parameter of forget_user is required with a raw user id. Pass key= (the "
                "LIVESHELF_PSEUDONYM_KEY used at ingest) or pseudonym= (the stored id)."
            )
        return str(user)
    pz = Pseudonymiser(key)
    if not pseudonymised:
        raise ConfigError(
            f"The 'key' parameter of forget_user was given, but the event store holds raw user ids "
            f"(key id {store_key_id!r}). Leave the key out."
        )
    if pz.key_id != store_key_id:
        raise ConfigError(
            f"The 'key' parameter of forget_user has key id {pz.key_id!r}, but the store was "
            f"ingested with key id {store_key_id!r}. Pass the key used at ingest."
        )
    return pz(str(user))


def trained_on(version_dir: Path, stored_id: str) -> bool:
    """Whether the artifact in ``version_dir`` was trained on ``stored_id`` (its user vocabulary)."""
    vocab = version_dir / "vocab.json"
    if not vocab.is_file():
        return True  # nothing proves it was not
    users = json.loads(vocab.read_text()).get("user_ids")
    return True if users is None else stored_id in set(users)


def mark_stale(home: Path | str, name: str, versions: list[str], reason: str) -> None:
    """Record ``versions`` of model ``name`` as stale (kept forever: the artifacts still hold the data)."""
    if not versions:
        return
    folder = privacy_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / STALE_FILE
    data = json.loads(path.read_text()) if path.is_file() else {}
    entry = data.setdefault(name, {})
    for v in versions:
        entry.setdefault(v, {"marked_at": _now(), "reason": reason})
    from liveshelf.core.files import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True))


def stale_versions(home: Path | str, name: str) -> dict[str, dict[str, str]]:
    """``{version: {"marked_at", "reason"}}`` of the stale versions of model ``name``."""
    path = privacy_dir(home) / STALE_FILE
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text()).get(name, {}))


def forget_user(
    home: Path | str,
    user: str | None = None,
    *,
    key: str | bytes | None = None,
    pseudonym: str | None = None,
    state: Any = None,
    registry_root: Path | str | None = None,
    use_settings_key: bool = True,
) -> ForgetReport:
    """Delete a user from the store (and ``state``), and mark the model versions trained on them stale.

    ``registry_root`` defaults to ``<home>/models``. When the store is pseudonymised and no
    ``key`` is given, ``LIVESHELF_PSEUDONYM_KEY`` is used (unless ``use_settings_key=False``).
    """
    from liveshelf.data.store import EventStore

    home = Path(home).expanduser()
    with EventStore(home) as store:
        key_id = store.meta("pseudonym_key_id")
        if key is None and user is not None and use_settings_key and key_id not in (None, "none"):
            from liveshelf.config import Settings

            secret = Settings().pseudonym_key  # read now, not cached: the key may be set after start-up
            key = secret.get_secret_value() if secret is not None and secret.get_secret_value() else None
        stored = stored_user_id(key_id, user, key=key, pseudonym=pseudonym)
        counts = store.delete_user(stored)
    if state is not None:
        state.delete_user(stored)
    return record_deletion(home, stored, counts, state=state is not None, registry_root=registry_root)


def record_deletion(
    home: Path | str,
    stored: str,
    counts: dict[str, int],
    *,
    state: bool,
    registry_root: Path | str | None = None,
) -> ForgetReport:
    """After a user's data left the store (and state): mark the model versions trained on them stale, log it.

    :func:`forget_user` and the HTTP route ``DELETE /v1/users/{user}`` both end here, so a deletion
    through either path makes the loop retrain without the user.
    """
    from liveshelf.registry import ModelRegistry

    home = Path(home).expanduser()
    reg = ModelRegistry(Path(registry_root) if registry_root is not None else home / "models")
    stale: dict[str, list[str]] = {}
    at = _now()
    for name in reg.names():
        hit = [v for v in reg.versions(name) if trained_on(reg.path(name, v), stored)]
        if hit:
            mark_stale(home, name, hit, f"trained on a user deleted at {at}")
            stale[name] = hit
    report = ForgetReport(
        stored_id=stored,
        events=int(counts.get("events", 0)),
        users=int(counts.get("users", 0)),
        state=state,
        stale=stale,
    )
    folder = privacy_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LEDGER_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"at": at, **report.as_dict()}, sort_keys=True) + "\n")
    return report


__all__ = [
    "ForgetReport",
    "forget_user",
    "mark_stale",
    "record_deletion",
    "stale_versions",
    "stored_user_id",
    "trained_on",
]
