"""Per-item vectors of a non-text modality for a simulated world (a stand-in for cover-image embeddings).

Platforms hold image / video embeddings made by their own encoders. To test whether a model uses
such vectors, the simulator can emit an ``"image"`` vector per item in one of two kinds:

* ``informative``: a fixed random linear map of the item's hidden taste vector
  (``GroundTruth.item_vec``, the part of every user's preference that item texts do not carry) plus
  Gaussian noise with ``noise`` x the signal's scale per dimension: it carries part of the true
  preference;
* ``noise``: the noise alone (same scale), carrying nothing.

``coverage`` < 1 leaves a seeded share of the items without a vector (NaN rows), as real catalogues do.
"""

from __future__ import annotations

import numpy as np

from liveshelf.data.sim.truth import GroundTruth
from liveshelf.errors import check_param

KINDS = ("informative", "noise")


def image_vectors(
    truth: GroundTruth,
    kind: str = "informative",
    *,
    dim: int = 32,
    noise: float = 0.5,
    coverage: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """``(n_items, dim)`` float32 vectors in ``truth.item_ids`` order (NaN rows: no vector)."""
    where = "image_vectors"
    check_param("kind", kind, kind in KINDS, f"one of {list(KINDS)}", where)
    check_param("dim", dim, isinstance(dim, int) and dim >= 1, "an int >= 1", where)
    check_param("noise", noise, noise >= 0, "a float >= 0", where)
    check_param("coverage", coverage, 0 < coverage <= 1, "a float in (0, 1]", where)
    rng = np.random.default_rng(seed)
    latent = np.asarray(truth.item_vec, dtype=np.float64)  # (I, d)
    n, d = latent.shape
    mix = rng.normal(0.0, 1.0 / np.sqrt(d), size=(d, dim))  # (d, dim): a random "encoder"
    signal = latent @ mix  # (I, dim)
    scale = float(signal.std()) or 1.0
    if kind == "informative":
        out = signal + rng.normal(0.0, scale * noise, size=(n, dim))
    else:
        out = rng.normal(0.0, scale, size=(n, dim))
    if coverage < 1:
        out[rng.random(n) >= coverage] = np.nan
    return out.astype(np.float32)
