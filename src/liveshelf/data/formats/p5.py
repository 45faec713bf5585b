"""P5 / TIGER sequence files: ``user_sequence.txt`` with ``user item1 item2 ...`` per line.

Lines are in time order; there are no timestamps. The standard leave-one-out split is
returned in ``split``: a user's last item is "test", the second last "valid", the rest
"train" (a user with two items has no "train" event; one with a single item has only "test").
Users keep the file's line order; each user's events are contiguous and in sequence order.
"""

from __future__ import annotations

from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd

from liveshelf.data.dataset import Dataset
from liveshelf.data.formats._common import make_events, require_file, sequence_ids, synthetic_ts
from liveshelf.errors import DataFormatError

FORMAT = "p5"
FILE_NAME = "user_sequence.txt"


def read_p5(path: str | Path) -> Dataset:
    """Read ``user_sequence.txt`` (or a folder holding it) with a leave-one-out split."""
    path = Path(path)
    file = path / FILE_NAME if path.is_dir() else path
    require_file(file, FORMAT, "one 'user item1 item2 ...' line per user")
    # One split per line (22k lines for Beauty), then flat numpy arrays for the events.
    rows = [line.split() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    n_items = np.fromiter((len(r) - 1 for r in rows), dtype=np.int64, count=len(rows))
    if (n_items < 1).any():
        bad = int(np.argmax(n_items < 1))
        raise DataFormatError(
            f"The {FORMAT!r} file {str(file)!r} must have 'user item1 item2 ...' on every line; "
            f"non-empty line {bad + 1} is {' '.join(rows[bad])!r}. Remove lines without items."
        )
    users = pd.Series([r[0] for r in rows], dtype="str")
    if users.duplicated().any():
        dup = users[users.duplicated()].iloc[0]
        raise DataFormatError(
            f"The {FORMAT!r} file {str(file)!r} must have one line per user; user {dup!r} has several. "
            f"Merge the lines of that user in time order."
        )
    items = pd.Series(list(chain.from_iterable(r[1:] for r in rows)), dtype="str")
    user_col = users.iloc[np.repeat(np.arange(len(rows)), n_items)].reset_index(drop=True)
    pos = np.arange(len(items)) - np.repeat(np.cumsum(n_items) - n_items, n_items)
    from_end = np.repeat(n_items, n_items) - 1 - pos
    split = np.where(from_end == 0, "test", np.where(from_end == 1, "valid", "train")).astype(object)
    events = make_events(
        event_id=sequence_ids(user_col, pos), ts=synthetic_ts(pos), user=user_col, type="purchase", item=items
    )
    meta = {"format": FORMAT, "path": str(file), "synthetic_ts": True}
    return Dataset(
        name=f"{FORMAT}:{file.parent.name}", events=events, split=pd.Series(split, name="split"), meta=meta
    )
