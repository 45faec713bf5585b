"""Settings, read from the environment (prefix ``LIVESHELF_``) or passed explicitly."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The repository root (src/liveshelf/config.py -> ../../..).
REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIVESHELF_", extra="ignore")

    home: Path = Field(
        default_factory=lambda: Path.home() / ".liveshelf",
        description="Folder of the event store, registry and state snapshots.",
    )
    data_dir: Path = Field(
        default_factory=lambda: REPO_ROOT.parent / "shared" / "data",
        description="Where the public research data sets lie.",
    )
    pseudonym_key: SecretStr | None = Field(
        default=None, description="HMAC key; when set, user ids are pseudonymised at ingest."
    )
    seed: int = 0


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def data_dir() -> Path:
    """``LIVESHELF_DATA_DIR`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("LIVESHELF_DATA_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"
