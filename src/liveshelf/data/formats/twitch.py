"""The Twitch live-streaming log of Rappaz et al., RecSys'21 ("LiveRec"), and a generator for it.

File: CSV without header, one watching interval per row::

    user,stream,streamer,start,stop

``start``/``stop`` are 10-minute steps (0 .. 6148 in the full log, 43 days); the user watched
``stream`` (one broadcast) of ``streamer`` from step ``start`` up to, not including, step
``stop``. An interaction is available only while ``start <= step < stop``.

Mapping to the schema:

* step ``s`` -> timestamp ``epoch + s * 600 s``; ``epoch`` defaults to 2019-01-01T00:00:00Z (the
  public log carries no calendar date; the choice only fixes weekdays and hours of day).
* rooms = streams: ``id`` = stream, ``host`` = streamer, ``start`` = min ``start``, ``end`` = max
  ``stop`` over the stream's rows (the time the stream was seen live).
* hosts = streamers (``id`` = ``name`` = the streamer column, no categories).
* events: one ``enter`` per row at ``start`` with ``room`` = stream, ``value`` = watched seconds
  (``(stop - start) * 600``); with ``with_leave=True`` also one ``leave`` per row at ``stop``.
  Event ids are ``"{row}:enter"`` / ``"{row}:leave"`` (row = 0-based line number).
* ``meta["intervals"]``: the raw integer columns (user, stream, streamer, start, stop) for
  step-level protocols such as LiveRec's availability-filtered evaluation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from liveshelf.data.dataset import Dataset
from liveshelf.data.formats._common import as_str, join_str, make_events, make_frame, require_file
from liveshelf.errors import DataFormatError
from liveshelf.errors import check_param as _check
from liveshelf.schema import HOST_COLUMNS, ROOM_COLUMNS, from_epoch_seconds

FORMAT = "twitch"
COLUMNS = ("user", "stream", "streamer", "start", "stop")
STEP_SECONDS = 600
DEFAULT_EPOCH = "2019-01-01T00:00:00Z"
MAX_STEP_PUBLIC = 6148


def read_twitch_log(path: str | Path) -> pd.DataFrame:
    """The raw log as a frame with the five columns (ints, streamer as str)."""
    path = Path(path)
    if path.is_dir():
        csvs = sorted(path.glob("*.csv"))
        if len(csvs) != 1:
            raise DataFormatError(
                f"The {FORMAT!r} reader expects one CSV log (e.g. '100k_a.csv') in {str(path)!r}; "
                f"found {[p.name for p in csvs] or 'none'}. Pass the file itself."
            )
        path = csvs[0]
    require_file(path, FORMAT, "'user,stream,streamer,start,stop' rows without header")
    try:
        log = pd.read_csv(
            path,
            header=None,
            names=list(COLUMNS),
            dtype={
                "user": np.int64,
                "stream": np.int64,
                "streamer": str,
                "start": np.int64,
                "stop": np.int64,
            },
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataFormatError(
            f"The {FORMAT!r} file {str(path)!r} must hold 'user,stream,streamer,start,stop' rows without a header "
            f"(user, stream, start, stop integers): {exc}."
        ) from exc
    bad = log["stop"].to_numpy() <= log["start"].to_numpy()
    if bad.any():
        row = int(bad.argmax())
        raise DataFormatError(
            f"The {FORMAT!r} file {str(path)!r} must have start < stop on every row; row {row + 1} has "
            f"start={int(log['start'].iloc[row])}, stop={int(log['stop'].iloc[row])}."
        )
    return log


def read_twitch(path: str | Path, with_leave: bool = False, epoch: str = DEFAULT_EPOCH) -> Dataset:
    """Read a LiveRec Twitch log into rooms (streams), hosts (streamers) and enter events."""
    log = read_twitch_log(path)
    epoch_s = (
        pd.Timestamp(epoch).tz_convert("UTC").timestamp()
        if pd.Timestamp(epoch).tzinfo
        else pd.Timestamp(epoch, tz="UTC").timestamp()
    )
    start = log["start"].to_numpy()
    stop = log["stop"].to_numpy()
    n = len(log)
    rows = np.arange(n)
    user = as_str(log["user"])
    room = as_str(log["stream"])
    watched = ((stop - start) * STEP_SECONDS).astype(np.float64)
    parts = [
        make_events(
            event_id=join_str(rows, np.full(n, "enter")),
            ts=from_epoch_seconds(epoch_s + start * float(STEP_SECONDS)),
            user=user,
            type="enter",
            room=room,
            value=watched,
        )
    ]
    if with_leave:
        parts.append(
            make_events(
                event_id=join_str(rows, np.full(n, "leave")),
                ts=from_epoch_seconds(epoch_s + stop * float(STEP_SECONDS)),
                user=user,
                type="leave",
                room=room,
                value=watched,
            )
        )
    events = pd.concat(parts, ignore_index=True)
    # Sort by (user, ts); rows of equal time keep file order, enters before leaves.
    order = np.lexsort((events["ts"].array.asi8, np.concatenate([log["user"].to_numpy()] * len(parts))))
    events = events.iloc[order].reset_index(drop=True)

    streams = log.groupby("stream", sort=True).agg(
        host=("streamer", "first"), start=("start", "min"), stop=("stop", "max")
    )
    rooms = make_frame(
        ROOM_COLUMNS,
        len(streams),
        id=as_str(pd.Series(streams.index)),
        host=streams["host"],
        title="",
        start=from_epoch_seconds(epoch_s + streams["start"].to_numpy() * float(STEP_SECONDS)),
        end=from_epoch_seconds(epoch_s + streams["stop"].to_numpy() * float(STEP_SECONDS)),
    )
    streamers = np.sort(log["streamer"].unique())
    hosts = make_frame(
        HOST_COLUMNS, len(streamers), id=streamers, name=streamers, categories=["[]"] * len(streamers)
    )
    meta = {
        "format": FORMAT,
        "path": str(path),
        "synthetic_ts": False,
        "step_seconds": STEP_SECONDS,
        "epoch": pd.Timestamp(epoch_s, unit="s", tz="UTC").isoformat(),
        "max_step": int(stop.max(initial=0)),
        "intervals": log,
    }
    return Dataset(name=f"{FORMAT}:{Path(path).stem}", events=events, rooms=rooms, hosts=hosts, meta=meta)


def write_synthetic_twitch_log(
    path: str | Path,
    n_users: int = 1000,
    n_streamers: int = 100,
    n_steps: int = 1008,
    seed: int = 0,
    sessions_per_user: float = 12.0,
    repeat_prob: float = 0.7,
) -> Path:
    """Write a log in exactly the LiveRec format (no header) and return its path.

    Each streamer broadcasts on a daily schedule (144 steps a day) with a favourite start hour,
    2-8 hour streams and some days off; every broadcast is a new stream id. Each user has 1-5
    favourite streamers (popularity is Zipf-like). With probability ``repeat_prob`` a session
    joins a random broadcast of one of the user's favourites at a random step of it (repeat
    consumption); otherwise it picks a random step and any stream live then, by popularity.
    Watching lasts a geometric number of steps (mean 4) and stops at the latest when the stream
    ends, so every row lies inside its stream's availability window.
    """
    _check(
        "n_users",
        n_users,
        isinstance(n_users, int) and n_users >= 1,
        "an int >= 1",
        "write_synthetic_twitch_log",
    )
    _check(
        "n_streamers",
        n_streamers,
        isinstance(n_streamers, int) and n_streamers >= 1,
        "an int >= 1",
        "write_synthetic_twitch_log",
    )
    _check(
        "n_steps",
        n_steps,
        isinstance(n_steps, int) and n_steps >= 144,
        "an int >= 144 (one day)",
        "write_synthetic_twitch_log",
    )
    _check(
        "repeat_prob",
        repeat_prob,
        0.0 <= repeat_prob <= 1.0,
        "a float in [0, 1]",
        "write_synthetic_twitch_log",
    )
    rng = np.random.default_rng(seed)
    streams = _schedule(rng, n_streamers, n_steps)  # columns stream, streamer, start, stop
    popularity = 1.0 / np.arange(1, n_streamers + 1) ** 0.9
    popularity = rng.permutation(popularity / popularity.sum())

    # Favourites: 1-5 draws by popularity (a repeated draw just means fewer distinct favourites).
    n_fav = rng.integers(1, 6, n_users)
    favourites = rng.choice(n_streamers, size=(n_users, 5), p=popularity)
    n_sessions = rng.poisson(sessions_per_user, n_users) + 1
    s_user = np.repeat(np.arange(n_users), n_sessions)
    n_s = len(s_user)
    s_time = rng.integers(0, n_steps - 1, n_s)
    chosen = np.full(n_s, -1, dtype=np.int64)

    # Repeat sessions: a random broadcast of one of the user's favourites, joined at a random step.
    fav = favourites[s_user, (rng.random(n_s) * n_fav[s_user]).astype(np.int64)]
    by_host = streams.sort_values(["streamer", "start"], kind="stable")
    counts = np.bincount(by_host["streamer"].to_numpy(), minlength=n_streamers)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    repeat = (rng.random(n_s) < repeat_prob) & (counts[fav] > 0)
    k = offsets[fav] + (rng.random(n_s) * np.maximum(counts[fav], 1)).astype(np.int64)
    k = by_host.index.to_numpy()[np.minimum(k, len(by_host) - 1)]
    st, sp = streams["start"].to_numpy()[k], streams["stop"].to_numpy()[k]
    join_at = st + (rng.random(n_s) * (sp - st)).astype(np.int64)
    chosen[repeat] = k[repeat]
    s_time[repeat] = join_at[repeat]

    # Other sessions: any stream live at the session step, by streamer popularity (one draw
    # per step for all of that step's sessions). live[t, j] = streamer j's stream at step t or
    # -1 (a streamer never has two streams at once, see _schedule).
    live = np.full((n_steps, n_streamers), -1, dtype=np.int64)
    for idx, (j, a, b) in enumerate(zip(streams["streamer"], streams["start"], streams["stop"], strict=True)):
        live[a:b, j] = idx
    need = np.flatnonzero(~repeat)
    order = need[np.argsort(s_time[need], kind="stable")]
    times, starts_at = np.unique(s_time[order], return_index=True)
    for t, lo, hi in zip(times, starts_at, np.append(starts_at[1:], len(order)), strict=True):
        on = np.flatnonzero(live[t] >= 0)
        if on.size == 0:
            continue
        w = popularity[on] / popularity[on].sum()
        chosen[order[lo:hi]] = live[t, rng.choice(on, size=hi - lo, p=w)]
    keep = chosen >= 0
    s_user, s_time, chosen = s_user[keep], s_time[keep], chosen[keep]
    st_stop = streams["stop"].to_numpy()[chosen]
    duration = rng.geometric(0.25, len(chosen))  # mean 4 steps = 40 minutes
    stop = np.minimum(s_time + duration, st_stop)

    log = pd.DataFrame(
        {
            "user": s_user,
            "stream": streams["stream"].to_numpy()[chosen],
            "streamer": np.array([f"streamer_{j:05d}" for j in range(n_streamers)])[
                streams["streamer"].to_numpy()[chosen]
            ],
            "start": s_time,
            "stop": stop,
        }
    ).sort_values(["user", "start", "stream"], kind="stable")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    log.to_csv(path, header=False, index=False)
    return path


def _schedule(rng: np.random.Generator, n_streamers: int, n_steps: int) -> pd.DataFrame:
    """Broadcasts: each streamer goes live most days near a favourite hour for 2-8 hours."""
    day = 144
    n_days = -(-n_steps // day)
    fav_start = rng.integers(6, 90, n_streamers)
    active = rng.uniform(0.4, 0.95, n_streamers)
    rows = []
    for s in range(n_streamers):
        on = np.flatnonzero(rng.random(n_days) < active[s])
        starts = on * day + fav_start[s] + rng.integers(-6, 7, len(on))  # within [0, 96) of the day
        lengths = rng.integers(12, 49, len(on))
        stops = np.minimum(starts + lengths, n_steps)
        ok = starts < stops
        rows.append(pd.DataFrame({"streamer": s, "start": starts[ok], "stop": stops[ok]}))
    sched = pd.concat(rows, ignore_index=True).sort_values(["start", "streamer"], kind="stable")
    # Same-streamer broadcasts never overlap: each starts before step 96 of its day and lasts
    # at most 48 steps, so it ends before the next day begins.
    sched["stream"] = 100_000_000 + np.arange(len(sched)) * 7 + rng.integers(0, 7, len(sched))
    return sched.reset_index(drop=True)
