"""KuaiLive (Kuaishou live streaming, arXiv 2508.05633) and a generator for its file layout.

Folder layout (CSV with header; the reader needs ``click.csv`` and ``room.csv``; the others are
read when present)::

    click.csv     user_id,live_id,streamer_id,timestamp,watch_live_time
    comment.csv   user_id,live_id,streamer_id,timestamp[,comment text column]
    like.csv      user_id,live_id,streamer_id,timestamp
    gift.csv      user_id,live_id,streamer_id,timestamp,gift_price
    room.csv      live_id,streamer_id,live_type,start_timestamp,end_timestamp,live_content_category,...
    user.csv      user_id,gender,age,...            (optional)
    streamer.csv  streamer_id,gender,age,...,live_operation_tag,...   (optional)
    title_embeddings_pca128.npy   float matrix, one row per room title (optional)

Timestamps are epoch milliseconds in the release; seconds are accepted too (decided per column
by magnitude, see ``_common.epoch_seconds``). ``watch_live_time`` is in milliseconds
(``watch_unit="s"`` if a copy stores seconds).

Mapping to the schema:

* rooms: ``id`` = live_id, ``host`` = streamer_id, ``title`` = "" (the release ships title
  embeddings only), ``start``/``end`` from the room timestamps; extra columns ``category``
  (live_content_category) and ``live_type`` are kept on the rooms frame.
* events (room = live_id, item None): click -> ``enter`` with ``value`` = watch seconds (with
  ``with_leave=True`` also a ``leave`` at ``timestamp + watch``); comment -> ``comment`` (``text``
  from a ``comment``/``content``/``comment_content``/``text`` column when the copy has one);
  like -> ``like``; gift -> ``gift`` with ``value`` = gift_price. Event ids ``"<file>:<row>"``.
* hosts: streamer ids from room.csv (and streamer.csv), ``categories`` = a JSON list string of the distinct
  live_content_category values of the host's rooms, most frequent first (ties by name), so
  its first entry is the host's main category (read it with ``schema.host_categories``).
* users (when user.csv exists): ``gender`` M/F -> m/f, ``age`` range string -> ``age_band`` as given.
* room vectors (when ``title_embeddings_pca128.npy`` exists): ``Dataset.room_vectors["title_pca128"]``, the
  title embedding of each room. The release's room.csv column ``live_name_id`` ("the id associated with
  the live room title") is taken as the row of the matrix (rooms with the same title share a row); a copy
  that names it ``title_emb_index`` works too, and a negative or empty index means "no title". Without
  either column the rows are assumed to follow room.csv's rows, which is only accepted when the counts
  are equal. An index past the matrix, or non-finite values, are a DataFormatError naming the room. A
  room listed on several rows keeps its first row's title. Training in the host space averages a host's
  room vectors (``liveshelf.data.split``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from liveshelf.data.dataset import Dataset
from liveshelf.data.formats._common import (
    as_str,
    epoch_seconds,
    gender_code,
    join_str,
    make_events,
    make_frame,
    require_columns,
    require_dir,
    require_file,
)
from liveshelf.data.item_vectors import ItemVectors, check_vectors
from liveshelf.errors import DataFormatError, ValidationError
from liveshelf.errors import check_param as _check
from liveshelf.schema import HOST_COLUMNS, ROOM_COLUMNS, USER_COLUMNS, from_epoch_seconds

FORMAT = "kuailive"
INTERACTION_KEYS = ("user_id", "live_id", "streamer_id", "timestamp")
ROOM_KEYS = (
    "live_id",
    "streamer_id",
    "live_type",
    "start_timestamp",
    "end_timestamp",
    "live_content_category",
)
_TEXT_NAMES = ("comment", "content", "comment_content", "text")
TITLE_FILE = "title_embeddings_pca128.npy"
TITLE_MODALITY = "title_pca128"
#: room.csv columns that give a room's row of the title matrix (the release's name first).
TITLE_INDEX_COLUMNS = ("live_name_id", "title_emb_index")
_ID_DTYPES = {"user_id": str, "live_id": str, "streamer_id": str}
#: (file stem, event type, extra required column)
FILES: tuple[tuple[str, str, str | None], ...] = (
    ("click", "enter", "watch_live_time"),
    ("comment", "comment", None),
    ("like", "like", None),
    ("gift", "gift", "gift_price"),
)


def _read(path: Path, needed: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=_ID_DTYPES, keep_default_na=False, na_values={"timestamp": [""]})
    require_columns(frame, needed, path, FORMAT)
    return frame


def read_kuailive(path: str | Path, with_leave: bool = False, watch_unit: str = "ms") -> Dataset:
    """Read a KuaiLive folder into rooms, hosts, users and enter/comment/like/gift events."""
    _check("watch_unit", watch_unit, watch_unit in ("ms", "s"), "'ms' or 's'", "read_kuailive")
    folder = require_dir(Path(path), FORMAT)
    require_file(folder / "click.csv", FORMAT, "clicks: " + ",".join((*INTERACTION_KEYS, "watch_live_time")))
    room_file = require_file(folder / "room.csv", FORMAT, "rooms: " + ",".join(ROOM_KEYS))

    parts: list[pd.DataFrame] = []
    rows_per_file: dict[str, int] = {}
    for stem, etype, extra in FILES:
        file = folder / f"{stem}.csv"
        if not file.is_file():
            continue
        raw = _read(file, INTERACTION_KEYS + ((extra,) if extra else ()))
        rows_per_file[file.name] = len(raw)
        seconds = epoch_seconds(pd.to_numeric(raw["timestamp"], errors="coerce"))
        if np.isnan(seconds).any():
            row = int(np.isnan(seconds).argmax())
            raise DataFormatError(
                f"The 'timestamp' column of {str(file)!r} must be epoch milliseconds or seconds on every row; "
                f"data row {row + 1} has {raw['timestamp'].iloc[row]!r}."
            )
        value, text = None, None
        if stem == "click":
            watch = pd.to_numeric(raw["watch_live_time"], errors="coerce").to_numpy(dtype=np.float64)
            value = watch / 1000.0 if watch_unit == "ms" else watch
        elif stem == "gift":
            value = pd.to_numeric(raw["gift_price"], errors="coerce").to_numpy(dtype=np.float64)
        elif stem == "comment":
            text_col = next((c for c in _TEXT_NAMES if c in raw.columns), None)
            text = raw[text_col] if text_col else None
        ids = join_str(np.full(len(raw), stem), np.arange(len(raw)))
        parts.append(
            make_events(
                event_id=ids,
                ts=from_epoch_seconds(seconds),
                user=raw["user_id"],
                type=etype,
                room=raw["live_id"],
                value=value,
                text=text,
            )
        )
        if stem == "click" and with_leave:
            leave_at = seconds + np.nan_to_num(value, nan=0.0)
            parts.append(
                make_events(
                    event_id=join_str(np.full(len(raw), "leave"), np.arange(len(raw))),
                    ts=from_epoch_seconds(leave_at),
                    user=raw["user_id"],
                    type="leave",
                    room=raw["live_id"],
                    value=value,
                )
            )
    events = pd.concat(parts, ignore_index=True)
    order = np.lexsort((events["ts"].array.asi8, pd.factorize(events["user"], sort=True)[0]))
    events = events.iloc[order].reset_index(drop=True)

    rooms_raw = _read(room_file, ROOM_KEYS)
    rows_per_file[room_file.name] = len(rooms_raw)
    rooms = make_frame(
        ROOM_COLUMNS,
        len(rooms_raw),
        id=as_str(rooms_raw["live_id"]),
        host=as_str(rooms_raw["streamer_id"]),
        title="",
        start=from_epoch_seconds(epoch_seconds(pd.to_numeric(rooms_raw["start_timestamp"], errors="coerce"))),
        end=from_epoch_seconds(epoch_seconds(pd.to_numeric(rooms_raw["end_timestamp"], errors="coerce"))),
    )
    rooms["category"] = as_str(rooms_raw["live_content_category"]).to_numpy()
    rooms["live_type"] = as_str(rooms_raw["live_type"]).to_numpy()

    hosts = _hosts(rooms, folder / "streamer.csv")
    users = _users(folder / "user.csv")
    room_vectors = _title_vectors(folder / TITLE_FILE, rooms_raw, room_file)
    meta = {
        "format": FORMAT,
        "path": str(folder),
        "synthetic_ts": False,
        "rows_per_file": rows_per_file,
        "watch_unit": watch_unit,
    }
    return Dataset(
        name=f"{FORMAT}:{folder.name}",
        events=events,
        rooms=rooms,
        hosts=hosts,
        users=users,
        meta=meta,
        room_vectors=room_vectors,
    )


def _title_vectors(file: Path, rooms_raw: pd.DataFrame, room_file: Path) -> dict[str, ItemVectors]:
    """``{"title_pca128": (live ids, vectors)}`` from the title matrix (module docs), or {} without it."""
    if not file.is_file():
        return {}
    try:
        matrix = np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataFormatError(f"Cannot read the {FORMAT!r} title embeddings {str(file)!r}: {exc}.") from exc
    if not isinstance(matrix, np.ndarray) or matrix.ndim != 2:
        shape = getattr(matrix, "shape", None)
        raise DataFormatError(
            f"The {FORMAT!r} title embeddings {str(file)!r} must be a 2-D matrix (one row per title); "
            f"got shape {shape}."
        )
    live = as_str(rooms_raw["live_id"]).to_numpy(dtype=object)
    col = next((c for c in TITLE_INDEX_COLUMNS if c in rooms_raw.columns), None)
    if col is None:
        if len(matrix) != len(rooms_raw):
            raise DataFormatError(
                f"{str(room_file)!r} has no {' or '.join(TITLE_INDEX_COLUMNS)} column to say which row of "
                f"{str(file)!r} is a room's title, and the counts differ ({len(rooms_raw)} rooms, "
                f"{len(matrix)} rows), so rows cannot be matched to rooms in file order either."
            )
        rows = np.arange(len(matrix))
    else:
        index = pd.to_numeric(rooms_raw[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isnan(index) & ((index != np.floor(index)) | (index >= len(matrix)))
        if bad.any():
            r = int(np.argmax(bad))
            raise DataFormatError(
                f"Room {live[r]!r} of {str(room_file)!r} has {col} = {rooms_raw[col].iloc[r]!r}, but "
                f"{str(file)!r} has rows 0..{len(matrix) - 1}: the title matrix does not match room.csv."
            )
        has = ~np.isnan(index) & (index >= 0)
        live, rows = live[has], index[has].astype(np.int64)
    first = ~pd.Index(live).duplicated()
    live, rows = live[first], rows[first]
    try:
        vectors = check_vectors(TITLE_MODALITY, live, matrix[rows], field=TITLE_FILE, kind="room")
    except ValidationError as exc:
        raise DataFormatError(f"{str(file)!r}: {exc}") from exc
    return {TITLE_MODALITY: vectors}


def _hosts(rooms: pd.DataFrame, streamer_file: Path) -> pd.DataFrame:
    pairs = rooms.groupby(["host", "category"], sort=False).size().rename("n").reset_index()
    pairs = pairs.sort_values(["host", "n", "category"], ascending=[True, False, True], kind="stable")
    cats = pairs.groupby("host", sort=True)["category"].agg(tuple)
    ids = cats.index.to_numpy(dtype=object)
    if streamer_file.is_file():
        extra = pd.read_csv(streamer_file, dtype={"streamer_id": str}, usecols=lambda c: c == "streamer_id")
        ids = np.union1d(ids.astype(str), extra["streamer_id"].astype(str).to_numpy()).astype(object)
    categories = cats.reindex(ids).to_numpy(dtype=object)
    categories = np.array(
        [json.dumps(list(c) if isinstance(c, tuple) else [], ensure_ascii=False) for c in categories]
        if len(ids)
        else [],
        dtype=object,
    )
    return make_frame(HOST_COLUMNS, len(ids), id=ids, name="", categories=categories)


def _users(user_file: Path) -> pd.DataFrame | None:
    if not user_file.is_file():
        return None
    raw = pd.read_csv(user_file, dtype=str, keep_default_na=False)
    require_columns(raw, ("user_id",), user_file, FORMAT)
    age = raw["age"].replace("", None) if "age" in raw else None
    return make_frame(
        USER_COLUMNS,
        len(raw),
        id=raw["user_id"].to_numpy(dtype=object),
        gender=gender_code(raw["gender"]).to_numpy() if "gender" in raw else None,
        age_band=None if age is None else age.astype(object).to_numpy(),
    )


CATEGORIES = ("美妆", "服饰", "食品", "游戏", "聊天", "音乐", "舞蹈", "户外", "教育", "数码")
AGE_RANGES = ("12-17", "18-23", "24-30", "31-40", "41-49", "50+")
GIFT_PRICES = np.array([1, 1, 1, 2, 5, 10, 10, 20, 52, 99, 199, 520])


def write_synthetic_kuailive(
    folder: str | Path,
    n_users: int = 300,
    n_streamers: int = 40,
    n_days: int = 7,
    seed: int = 0,
    start: str = "2025-05-05T00:00:00Z",
    clicks_per_user: float = 20.0,
    repeat_prob: float = 0.6,
) -> Path:
    """Write click/comment/like/gift/room/user/streamer CSVs in the KuaiLive layout; return the folder.

    Streamers go live most days for 30 minutes to 4 hours (each room a new live_id, timestamps in
    ms). A user clicks into rooms live at the click time, preferring 1-3 favourite streamers with
    probability ``repeat_prob``; the watch time (ms) never runs past the room end. Comments,
    likes and gifts fall inside the watch window.
    """
    where = "write_synthetic_kuailive"
    _check("n_users", n_users, isinstance(n_users, int) and n_users >= 1, "an int >= 1", where)
    _check(
        "n_streamers", n_streamers, isinstance(n_streamers, int) and n_streamers >= 1, "an int >= 1", where
    )
    _check("n_days", n_days, isinstance(n_days, int) and n_days >= 1, "an int >= 1", where)
    _check("repeat_prob", repeat_prob, 0.0 <= repeat_prob <= 1.0, "a float in [0, 1]", where)
    rng = np.random.default_rng(seed)
    t0 = int(pd.Timestamp(start).timestamp() * 1000)
    day_ms, minute = 86_400_000, 60_000

    # Rooms: per streamer and day, live with probability ~0.7, at most one room a day.
    s_idx, d_idx = np.nonzero(
        rng.random((n_streamers, n_days)) < rng.uniform(0.4, 0.95, n_streamers)[:, None]
    )
    r_start = (
        t0
        + d_idx * day_ms
        + rng.integers(8 * 60, 22 * 60, len(s_idx)) * minute
        + rng.integers(0, minute, len(s_idx))
    )
    r_end = r_start + rng.integers(30, 240, len(s_idx)) * minute
    host_cat = rng.integers(0, len(CATEGORIES), n_streamers)
    cat = np.where(
        rng.random(len(s_idx)) < 0.85, host_cat[s_idx], rng.integers(0, len(CATEGORIES), len(s_idx))
    )
    streamer_ids = 10_000 + np.arange(n_streamers) * 13
    live_ids = 5_000_000 + np.arange(len(s_idx)) * 7 + rng.integers(0, 7, len(s_idx))
    room = (
        pd.DataFrame(
            {
                "live_id": live_ids,
                "streamer_id": streamer_ids[s_idx],
                "live_type": rng.integers(0, 3, len(s_idx)),
                "start_timestamp": r_start,
                "end_timestamp": r_end,
                "live_content_category": np.array(CATEGORIES, dtype=object)[cat],
                "title_emb_index": np.arange(len(s_idx)),
            }
        )
        .sort_values("start_timestamp", kind="stable")
        .reset_index(drop=True)
    )

    # Clicks: repeat clicks go to a favourite's room; others to a popular room.
    popularity = 1.0 / np.arange(1, n_streamers + 1) ** 0.8
    popularity = rng.permutation(popularity / popularity.sum())
    n_clicks = rng.poisson(clicks_per_user, n_users) + 1
    c_user = np.repeat(np.arange(n_users), n_clicks)
    favourites = rng.choice(n_streamers, size=(n_users, 3), p=popularity)
    host_of_room = np.searchsorted(streamer_ids, room["streamer_id"].to_numpy())
    room_pop = popularity[host_of_room] / popularity[host_of_room].sum()
    pick = rng.choice(len(room), size=len(c_user), p=room_pop)
    fav_host = favourites[c_user, rng.integers(0, 3, len(c_user))]
    fav_rooms_by_host = [np.flatnonzero(host_of_room == h) for h in range(n_streamers)]
    counts = np.array([len(r) for r in fav_rooms_by_host])
    use_fav = (rng.random(len(c_user)) < repeat_prob) & (counts[fav_host] > 0)
    flat = np.concatenate(fav_rooms_by_host) if len(room) else np.zeros(0, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    fav_pick = (
        flat[
            np.minimum(
                offsets[fav_host]
                + (rng.random(len(c_user)) * np.maximum(counts[fav_host], 1)).astype(np.int64),
                max(len(flat) - 1, 0),
            )
        ]
        if len(flat)
        else pick
    )
    r = np.where(use_fav, fav_pick, pick)
    rs, re_ = room["start_timestamp"].to_numpy()[r], room["end_timestamp"].to_numpy()[r]
    ts = rs + (rng.random(len(r)) * (re_ - rs - 1000)).astype(np.int64)
    watch = np.minimum(rng.exponential(180_000, len(r)).astype(np.int64) + 1000, re_ - ts)
    users = 700_000 + np.arange(n_users) * 3
    base = pd.DataFrame(
        {
            "user_id": users[c_user],
            "live_id": room["live_id"].to_numpy()[r],
            "streamer_id": room["streamer_id"].to_numpy()[r],
            "timestamp": ts,
        }
    )
    click = base.assign(watch_live_time=watch)

    def within(prob: float) -> pd.DataFrame:
        take = rng.random(len(base)) < prob * np.minimum(watch / 300_000, 1.0)
        frame = base[take].copy()
        frame["timestamp"] = ts[take] + (rng.random(int(take.sum())) * watch[take]).astype(np.int64)
        return frame

    comment, like, gift = within(0.5), within(0.6), within(0.15)
    gift["gift_price"] = rng.choice(GIFT_PRICES, len(gift))

    user = pd.DataFrame(
        {
            "user_id": users,
            "gender": rng.choice(["M", "F"], n_users),
            "age": rng.choice(AGE_RANGES, n_users),
            "device_brand": rng.choice(["APPLE", "HUAWEI", "OPPO"], n_users),
        }
    )
    streamer = pd.DataFrame(
        {
            "streamer_id": streamer_ids,
            "gender": rng.choice(["M", "F"], n_streamers),
            "age": rng.choice(AGE_RANGES[1:], n_streamers),
            "live_operation_tag": np.array(CATEGORIES, dtype=object)[host_cat],
        }
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in (
        ("click", click),
        ("comment", comment),
        ("like", like),
        ("gift", gift),
        ("room", room),
        ("user", user),
        ("streamer", streamer),
    ):
        sort_by = [c for c in ("timestamp", "start_timestamp") if c in frame.columns]
        frame = frame.sort_values(sort_by, kind="stable") if sort_by else frame
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder
