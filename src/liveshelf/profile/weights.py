"""The one table of event weights and the decay every viewer profile uses.

Both profiles weigh an event by :data:`liveshelf.schema.EVENT_WEIGHTS` (an impression 0, a view or a click 1,
a cart 3, a purchase 5; unknown types 1) times ``2 ** (-age / half_life)``: serving's request-time
:class:`~liveshelf.profile.viewer.Viewer` and the incremental :class:`~liveshelf.profile.builder.ProfileBuilder`
(``weights=`` overrides the table for one builder).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from liveshelf.schema import EVENT_WEIGHTS


def event_weight(event_type: object, weights: Mapping[str, float] = EVENT_WEIGHTS) -> float:
    """The weight of one event of ``event_type`` (1.0 for a type the table does not name)."""
    return float(weights.get(str(event_type), 1.0))


def decay(age: float, half_life: float) -> float:
    """``2 ** (-age / half_life)`` for ``age`` >= 0 seconds (a future event counts as now)."""
    return math.pow(2.0, -max(age, 0.0) / half_life)


__all__ = ["EVENT_WEIGHTS", "decay", "event_weight"]
