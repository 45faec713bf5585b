"""Multi-behaviour e-commerce folders (Tmall, Taobao, JData as shipped with CRGCN / MB-CGCN / MuLe).

Each folder holds ``user item`` pairs (space separated, integer ids, one pair a line):

* ``train.txt``: purchase (the target behaviour), split "train"
* ``cart.txt``: cart, split "train"
* ``collect.txt``: like (a favourite / collect), split "train"
* ``test.txt``: purchase, split "test"
* ``valid.txt``: purchase pairs, see below

``buy.txt`` is a byte copy of ``train.txt`` and is read only when ``train.txt`` is absent.
``view.txt`` is not shipped with these copies; when present it is read as ``view``.
``collect.txt`` is missing for Taobao.

``valid.txt`` is a subset of ``train.txt`` (every valid pair is also a train pair), not extra
data. The published protocol (MuLe, CRGCN) trains on all of ``train.txt`` and tests on
``test.txt``, so by default the valid pairs stay "train" and are listed in
``meta["valid_pairs"]``. ``valid_from_train=True`` marks those purchase events "valid" instead,
holding them out of training.

There are no timestamps: each user's events get synthetic seconds 0, 1, 2, ... in the order
view, like, cart, purchase (train), purchase (test), each in file order, so the test purchases
come last.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from liveshelf.data.dataset import Dataset
from liveshelf.data.formats._common import (
    as_str,
    make_events,
    require_dir,
    require_file,
    sequence_ids,
    synthetic_ts,
)
from liveshelf.errors import DataFormatError

FORMAT = "multibehavior"
#: (file stem, event type, split), in the synthetic time order used for each user.
BEHAVIOURS: tuple[tuple[str, str, str], ...] = (
    ("view", "view", "train"),
    ("collect", "like", "train"),
    ("cart", "cart", "train"),
    ("train", "purchase", "train"),
    ("test", "purchase", "test"),
)


def read_pairs(path: Path) -> pd.DataFrame:
    """``user item`` lines -> frame with int64 columns ``user``, ``item``."""
    try:
        frame = pd.read_csv(
            path, sep=r"\s+", header=None, names=["user", "item"], dtype=np.int64, usecols=[0, 1], engine="c"
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataFormatError(
            f"The {FORMAT!r} file {str(path)!r} must hold 'user item' integer pairs, one a line: {exc}."
        ) from exc
    return frame


def read_multibehavior(path: str | Path, valid_from_train: bool = False) -> Dataset:
    """Read one multi-behaviour folder (tmall, taobao, jdata)."""
    folder = require_dir(Path(path), FORMAT)
    if not (folder / "train.txt").is_file() and (folder / "buy.txt").is_file():
        train_file = folder / "buy.txt"
    else:
        train_file = require_file(folder / "train.txt", FORMAT, "target purchases, 'user item' per line")
    test_file = require_file(folder / "test.txt", FORMAT, "held-out purchases, 'user item' per line")

    parts: list[pd.DataFrame] = []
    rows_per_file: dict[str, int] = {}
    for code, (stem, _etype, _split) in enumerate(BEHAVIOURS):
        file = {"train": train_file, "test": test_file}.get(stem, folder / f"{stem}.txt")
        if not file.is_file():
            continue
        pairs = read_pairs(file)
        rows_per_file[file.name] = len(pairs)
        parts.append(pairs.assign(behaviour=np.int8(code)))
    frame = pd.concat(parts, ignore_index=True)
    types = np.array([b[1] for b in BEHAVIOURS], dtype=object)[frame["behaviour"].to_numpy()]
    split = np.array([b[2] for b in BEHAVIOURS], dtype=object)[frame["behaviour"].to_numpy()]

    valid_pairs = None
    valid_file = folder / "valid.txt"
    if valid_file.is_file():
        valid_pairs = read_pairs(valid_file)
        rows_per_file[valid_file.name] = len(valid_pairs)
        if valid_from_train:
            width = int(max(frame["item"].max(), valid_pairs["item"].max())) + 1
            key = frame["user"].to_numpy() * width + frame["item"].to_numpy()
            valid_key = valid_pairs["user"].to_numpy() * width + valid_pairs["item"].to_numpy()
            train_code = [b[0] for b in BEHAVIOURS].index("train")
            held = np.isin(key, valid_key) & (frame["behaviour"].to_numpy() == train_code)
            split[held] = "valid"

    # A stable sort by user keeps the behaviour order above within each user.
    order = np.argsort(frame["user"].to_numpy(), kind="stable")
    users = frame["user"].to_numpy()[order]
    pos = pd.Series(users).groupby(users, sort=False).cumcount().to_numpy()
    user_str = as_str(users)
    events = make_events(
        event_id=sequence_ids(user_str, pos),
        ts=synthetic_ts(pos),
        user=user_str,
        type=types[order],
        item=frame["item"].to_numpy()[order],
    )
    meta = {
        "format": FORMAT,
        "path": str(folder),
        "synthetic_ts": True,
        "rows_per_file": rows_per_file,
        "valid_pairs": None if valid_pairs is None else valid_pairs.astype("str"),
        "valid_from_train": valid_from_train,
        "max_user_id": int(frame["user"].max()),
        "max_item_id": int(frame["item"].max()),
    }
    return Dataset(
        name=f"{FORMAT}:{folder.name}", events=events, split=pd.Series(split[order], name="split"), meta=meta
    )
