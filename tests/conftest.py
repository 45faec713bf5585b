"""Shared test set-up: offline, seeded, and where the real data lies."""

from __future__ import annotations

import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
# models that cache (e.g. text embeddings under <home>/cache) must not write into the user's home
if "LIVESHELF_HOME" not in os.environ:
    import tempfile

    os.environ["LIVESHELF_HOME"] = tempfile.mkdtemp(prefix="liveshelf-test-home-")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from liveshelf.config import data_dir  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    yield


@pytest.fixture(scope="session")
def shared_data():
    """The folder of real data sets; tests that need it skip when it is absent."""
    path = data_dir()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent (set LIVESHELF_DATA_DIR)")
    return path
