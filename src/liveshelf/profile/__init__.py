"""User profiles built incrementally from events: what a viewer likes, when, and from whom.

A :class:`ProfileBuilder` keeps, per user, time-decayed sums (half-life ``half_life`` seconds)
of event weights (:mod:`liveshelf.profile.weights`, the table serving's request-time viewer uses too:
a purchase 5, a cart 3, a click or a view 1, an impression 0) over

* leaf categories, brands, price bands (:data:`liveshelf.text.facts.PRICE_BANDS`) and item
  attribute values (colour, shipping, material ...) of the items they touched;
* hosts (through the room of each event, room-only events such as ``enter`` or ``gift`` count);
* local hours of the day (``utc_offset_hours``), one count per non-impression event;
* item-text embeddings of the items they touched (a bounded history of the ``max_history``
  strongest items, each with its decayed weight).

Decay is exact and order-independent: an event of weight ``w`` at ``t`` adds
``w * 2 ** ((t - A_u) / half_life)`` to the user's sums (``A_u`` a per-user anchor, moved when
the exponent grows large), and a read at ``T`` multiplies by ``2 ** (-(T - A_u) / half_life)``.
``update(events)`` may be called with any slice of events in any order.

Interest embedding (attention against the candidate)
----------------------------------------------------
With history item vectors ``h_j`` (L2-normalised text embeddings) and decayed weights ``w_j``,
and a candidate item vector ``c``::

    a_j = w_j * exp(h_j . W . c / tau) / sum_k (w_k * exp(h_k . W . c / tau))
    V   = sum_j a_j h_j

Without a candidate ``V`` is the weighted mean of the ``h_j``. ``W`` is the identity by default
(plain cosine attention). :meth:`ProfileBuilder.fit_bilinear` learns ``W`` instead, by logistic
regression of "the next item the user touched" against random items on
``(decayed history mean, item)`` pairs, ``P(next) = sigmoid(u . W . i + b)``, with an L2 pull
of ``W`` towards the identity; the fitted matrix is ``bilinear_`` and the attention uses it.

Item vectors come from ``item_vectors`` (an array aligned with the items frame), from
``encoder`` (anything with ``encode(texts) -> (N, D)``, e.g. ``liveshelf.text.encoder.TextEncoder``,
or the name of one: ``encoder="e5"`` is multilingual-e5-small, which reads Chinese titles by meaning),
or by default from :class:`~liveshelf.text.hashing.CharHashEncoder` (hashed character 1-2-grams, no model
weights), which reads Chinese and English titles alike.

Serving's request-time :class:`~liveshelf.profile.viewer.Viewer` (the pipeline's ``repeat`` and ``profile``
sources, ``GET /profile``) decays the same weights over the viewer's recent events.
"""

from __future__ import annotations

from liveshelf.profile.builder import ProfileBuilder, event_seconds, sequence_frame, simulator_category_map
from liveshelf.profile.tags import DAY_PARTS, profile_tags
from liveshelf.profile.viewer import Viewer, build_viewer, category_levels, level_shares, profile_summary
from liveshelf.profile.weights import EVENT_WEIGHTS, decay, event_weight
from liveshelf.text.hashing import CharHashEncoder
from liveshelf.text.user_profile import UserProfile, profile_language

__all__ = [
    "DAY_PARTS",
    "EVENT_WEIGHTS",
    "CharHashEncoder",
    "ProfileBuilder",
    "UserProfile",
    "Viewer",
    "build_viewer",
    "category_levels",
    "decay",
    "event_seconds",
    "event_weight",
    "level_shares",
    "profile_language",
    "profile_summary",
    "profile_tags",
    "sequence_frame",
    "simulator_category_map",
]
