"""RecBole atomic files: ``<name>.inter``, ``<name>.item``, ``<name>.user``.

Tab-separated with a typed header, e.g. ``user_id:token  item_id:token  rating:float
timestamp:float``. Fields are found by name (the ``:type`` suffix is dropped):

* ``.inter``: ``user_id``, ``item_id`` (required), ``rating`` (-> ``value``), ``timestamp``
  (epoch seconds or milliseconds; without it each user's rows get synthetic seconds 0, 1, ...).
* ``.item``: title from ``title`` / ``movie_title`` / ``item_title`` / ``name``; category from
  ``categories`` / ``category`` / ``genre`` / ``genres`` / ``class`` (as given, e.g. the ml-100k genre
  string "Animation Children's Comedy"); ``brand``, ``price``, ``description`` when present; every
  other field goes into ``attributes`` (JSON), e.g. ``release_year``.
* ``.user``: ``gender`` (M/F -> m/f), ``age`` (-> ``age_band``); other fields (occupation, zip
  code) are not part of the user schema and are dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from liveshelf.data.dataset import Dataset
from liveshelf.data.formats._common import (
    age_band,
    epoch_seconds,
    gender_code,
    json_objects,
    make_events,
    make_frame,
    positions,
    require_columns,
    require_file,
    sequence_ids,
    sort_events,
)
from liveshelf.errors import DataFormatError
from liveshelf.schema import ITEM_COLUMNS, USER_COLUMNS, from_epoch_seconds

FORMAT = "recbole"
TITLE_FIELDS = ("title", "movie_title", "item_title", "name")
CATEGORY_FIELDS = ("categories", "category", "genre", "genres", "class")
EVENT_TYPES_ALLOWED = ("view", "click", "purchase", "like")


def resolve_stem(path: Path) -> tuple[Path, str]:
    """(folder, stem) from a folder ``D`` holding ``D.inter`` (or one ``*.inter``) or a ``.inter`` file."""
    if path.is_file():
        if path.suffix != ".inter":
            raise DataFormatError(
                f"The {FORMAT!r} reader takes a folder or a '.inter' file; got {str(path)!r}. "
                f"Pass the folder that holds '<name>.inter'."
            )
        return path.parent, path.stem
    if not path.is_dir():
        raise DataFormatError(
            f"The {FORMAT!r} reader expects the folder or file {str(path)!r}, which does not exist. "
            f"Pass the folder that holds '<name>.inter'."
        )
    if (path / f"{path.name}.inter").is_file():
        return path, path.name
    inters = sorted(path.glob("*.inter"))
    if len(inters) == 1:
        return path, inters[0].stem
    expected = path / f"{path.name}.inter"
    raise DataFormatError(
        f"The {FORMAT!r} reader expects the file {str(expected)!r} (interactions); "
        f"found {[p.name for p in inters] or 'no .inter file'} in {str(path)!r}. "
        f"Name the file after its folder or pass the '.inter' file itself."
    )


def read_atomic(path: Path) -> pd.DataFrame:
    """One atomic file with the ``:type`` suffixes dropped; ``float`` fields parsed as numbers."""
    with path.open(encoding="utf-8") as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
    dtypes = {h: (np.float64 if h.endswith(":float") else str) for h in header}
    try:
        frame = pd.read_csv(
            path,
            sep="\t",
            dtype=dtypes,
            keep_default_na=False,
            na_values={h: [""] for h, t in dtypes.items() if t is np.float64},
            quoting=3,
        )
    except ValueError as exc:
        raise DataFormatError(
            f"The {FORMAT!r} file {str(path)!r} does not parse with its header {header}: {exc}. "
            f"Fields typed ':float' must hold numbers."
        ) from exc
    frame.columns = [c.split(":", 1)[0] for c in frame.columns]
    return frame


def read_recbole(path: str | Path, event_type: str = "view") -> Dataset:
    """Read RecBole atomic files; each interaction becomes one ``event_type`` event."""
    if event_type not in EVENT_TYPES_ALLOWED:
        raise DataFormatError(
            f"The 'event_type' parameter of read_recbole must be one of {list(EVENT_TYPES_ALLOWED)}. "
            f"Got {event_type!r} instead."
        )
    folder, stem = resolve_stem(Path(path))
    inter_path = require_file(folder / f"{stem}.inter", FORMAT, "interactions")
    inter = read_atomic(inter_path)
    require_columns(inter, ("user_id", "item_id"), inter_path, FORMAT)

    value = (
        pd.to_numeric(inter["rating"], errors="coerce").to_numpy(dtype=np.float64)
        if "rating" in inter
        else None
    )
    synthetic = "timestamp" not in inter
    if synthetic:
        seconds = positions(inter["user_id"]).astype(np.float64)
    else:
        seconds = epoch_seconds(pd.to_numeric(inter["timestamp"], errors="coerce"))
        if np.isnan(seconds).any():
            row = int(np.isnan(seconds).argmax())
            raise DataFormatError(
                f"The 'timestamp' field of {str(inter_path)!r} must be a number on every row; "
                f"row {row + 1} has {inter['timestamp'].iloc[row]!r}."
            )
    events = make_events(
        event_id=np.zeros(len(inter)),
        ts=from_epoch_seconds(seconds),
        user=inter["user_id"],
        type=event_type,
        item=inter["item_id"],
        value=value,
    )
    events, _ = sort_events(events)
    events["event_id"] = sequence_ids(events["user"], positions(events["user"])).to_numpy()

    meta = {"format": FORMAT, "path": str(folder), "stem": stem, "synthetic_ts": synthetic}
    items = _read_items(folder / f"{stem}.item")
    users = _read_users(folder / f"{stem}.user")
    return Dataset(name=f"{FORMAT}:{stem}", events=events, items=items, users=users, meta=meta)


def _first(frame: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in frame.columns), None)


def _read_items(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    raw = read_atomic(path)
    require_columns(raw, ("item_id",), path, FORMAT)
    title_col, cat_col = _first(raw, TITLE_FIELDS), _first(raw, CATEGORY_FIELDS)
    known = {"item_id", title_col, cat_col, "brand", "price", "description"}
    extra = raw[[c for c in raw.columns if c not in known]]
    price = pd.to_numeric(raw["price"], errors="coerce").to_numpy() if "price" in raw else None
    return make_frame(
        ITEM_COLUMNS,
        len(raw),
        id=raw["item_id"].to_numpy(dtype=object),
        title=raw[title_col].str.strip().to_numpy(dtype=object) if title_col else "",
        description=raw["description"].to_numpy(dtype=object) if "description" in raw else "",
        category=raw[cat_col].str.strip().to_numpy(dtype=object) if cat_col else "",
        brand=raw["brand"].replace("", None).to_numpy(dtype=object) if "brand" in raw else None,
        price=price,
        attributes=json_objects(extra) if len(extra.columns) else "{}",
    )


def _read_users(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    raw = read_atomic(path)
    require_columns(raw, ("user_id",), path, FORMAT)
    return make_frame(
        USER_COLUMNS,
        len(raw),
        id=raw["user_id"].to_numpy(dtype=object),
        gender=gender_code(raw["gender"]).to_numpy() if "gender" in raw else None,
        age_band=age_band(raw["age"]).to_numpy() if "age" in raw else None,
    )
