"""Ingestion: cleaning rules with row / field / value / reason, idempotency, formats,
crash safety (no half-written batches) and the ``liveshelf ingest`` commands."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from liveshelf.cli import app
from liveshelf.data.ingest import Ingestor, read_file, write_rejects
from liveshelf.data.store import EventStore
from liveshelf.data.validate import Rules, validate
from liveshelf.errors import ConfigError, DataFormatError, NotFoundError
from liveshelf.schema import EVENT_COLUMNS, TS_DTYPE

NOW = datetime(2024, 7, 1, tzinfo=UTC)
RULES = Rules(now=NOW)

# One good row, then one row per cleaning rule, with a few good rows in between.
BROKEN_EVENTS_CSV = textwrap.dedent("""\
    event_id,ts,user,type,room,item,value,text
    e1,2024-06-01T10:00:00Z,u1,purchase,r1,i1,19.9,
    e2,2024-06-01T10:01:00Z,u1,teleport,r1,i1,,
    ,2024-06-01T10:02:00Z,u1,view,r1,i1,,
    e4,2024-06-01T10:03:00Z,,view,r1,i1,,
    e5,not-a-time,u2,view,r1,i1,,
    e6,1999-12-31T23:00:00Z,u2,view,r1,i1,,
    e7,2024-07-03T00:00:00Z,u2,view,r1,i1,,
    e8,2024-06-01T10:07:00Z,u2,purchase,r1,,5,
    e9,2024-06-01T10:08:00Z,u2,enter,,i1,,
    e10,2024-06-01T10:09:00Z,u3,gift,r1,,-5,
    e1,2024-06-01T10:10:00Z,u3,view,r1,i2,,
    e12,1717236660,u3,enter,r2,,,
    e13,2024-06-01T10:12:00Z,u3,,r1,i1,,
    e14,2024-06-01T10:13:00Z,u3,purchase,r1,i3,abc,
    e15,2024-06-01 10:14:00,u4,comment,r2,,,"great, thanks"
    """)

EXPECTED_REJECTS = [  # (row, field, value, words of the reason)
    (2, "type", "teleport", "unknown event type"),
    (3, "event_id", None, "missing required id 'event_id'"),
    (4, "user", None, "missing required id 'user'"),
    (5, "ts", "not-a-time", "unparseable timestamp"),
    (6, "ts", "1999-12-31T23:00:00Z", "before 2000-01-01"),
    (7, "ts", "2024-07-03T00:00:00Z", "more than 1 day in the future"),
    (8, "item", None, "event type 'purchase' requires an item"),
    (9, "room", None, "event type 'enter' requires a room"),
    (10, "value", "-5", "negative value"),
    (11, "event_id", "e1", "duplicate event_id within the input (first at row 1)"),
    (13, "type", None, "missing required event type 'type'"),
    (14, "value", "abc", "value is not a number"),
]


@pytest.fixture()
def store(tmp_path: Path):
    with EventStore(tmp_path / "home") as s:
        yield s


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _events_frame(n: int = 6, start: str = "2024-06-01T10:00:00Z") -> pd.DataFrame:
    t0 = pd.Timestamp(start)
    return pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "ts": pd.Series([t0 + pd.Timedelta(minutes=i) for i in range(n)]).astype(TS_DTYPE),
            "user": [f"u{i % 2}" for i in range(n)],
            "type": ["enter", "view", "click", "cart", "purchase", "leave"][:n] + ["view"] * max(0, n - 6),
            "room": ["r1"] * n,
            "item": [None if i in (0, 5) else f"i{i}" for i in range(n)],
            "value": [None, None, None, None, 12.5, None][:n] + [None] * max(0, n - 6),
            "text": [None] * n,
        }
    )


def test_every_cleaning_rule_names_row_field_value_and_keeps_good_rows(store, tmp_path):
    src = _write(tmp_path / "events.csv", BROKEN_EVENTS_CSV)
    rejects_path = tmp_path / "out" / "rejects.csv"
    report = Ingestor(store, rules=RULES).ingest_events(src, rejects_path=rejects_path)

    got = [
        (int(r.row), r.field, None if pd.isna(r.value) else r.value, r.reason)
        for r in report.rejects.itertuples()
    ]
    assert len(got) == len(EXPECTED_REJECTS)
    for (row, fld, value, words), (g_row, g_fld, g_value, g_reason) in zip(
        EXPECTED_REJECTS, got, strict=True
    ):
        assert (g_row, g_fld, g_value) == (row, fld, value)
        assert words in g_reason
    assert (report.rows, report.accepted, report.rejected, report.duplicate) == (15, 3, 12, 0)

    kept = store.training_frame()
    assert sorted(kept["event_id"]) == ["e1", "e12", "e15"]
    e15 = kept.set_index("event_id").loc["e15"]
    assert e15["text"] == "great, thanks" and e15["ts"] == pd.Timestamp("2024-06-01T10:14:00Z")
    assert kept.set_index("event_id").loc["e12", "ts"] == pd.Timestamp(1717236660, unit="s", tz="UTC")
    assert kept.set_index("event_id").loc["e1", "value"] == pytest.approx(19.9)

    on_disk = pd.read_csv(rejects_path, dtype={"value": str})
    assert list(on_disk.columns) == ["row", "field", "value", "reason"]
    assert on_disk["row"].tolist() == [r[0] for r in EXPECTED_REJECTS]


def test_catalogue_rules_items_users_rooms_shelf(store):
    ing = Ingestor(store, rules=RULES)
    items = ing.ingest_items(
        [
            {
                "id": "i1",
                "title": "Face cream",
                "price": 10.0,
                "rating": 4.5,
                "category": ["美妆", "护肤"],
                "attributes": {"size": "50ml"},
            },
            {"id": "i2", "title": "  ", "price": 3.0},
            {"id": "i3", "title": "Mask", "price": -1.0},
            {"id": "i4", "title": "Lipstick", "rating": 7},
            {"id": "i5", "title": "Serum", "attributes": "not json"},
        ]
    )
    assert [(r.row, r.field, r.reason.split(";")[0]) for r in items.rejects.itertuples()] == [
        (2, "title", "item without title"),
        (3, "price", "negative price"),
        (4, "rating", "rating out of range"),
        (5, "attributes", "attributes is not a JSON object string"),
    ]
    stored = store.frame("items").set_index("id")
    assert list(stored.index) == ["i1"]
    assert stored.loc["i1", "category"] == "美妆 > 护肤"
    assert json.loads(stored.loc["i1", "attributes"]) == {"size": "50ml"}

    users = ing.ingest_users(
        [
            {"id": "u1", "gender": "F", "spending_tier": "VIP"},
            {"id": "u2", "gender": "x"},
            {"id": "u3", "spending_tier": "gold"},
        ]
    )
    assert [(r.row, r.field, r.value) for r in users.rejects.itertuples()] == [
        (2, "gender", "x"),
        (3, "spending_tier", "gold"),
    ]
    assert store.frame("users").iloc[0][["gender", "spending_tier"]].tolist() == ["f", "vip"]

    rooms = ing.ingest_rooms(
        [
            {"id": "r1", "host": "h1", "start": "2024-06-01T10:00:00Z", "end": "2024-06-01T11:00:00Z"},
            {"id": "r2", "host": "h1", "start": "2024-06-01T10:00:00Z", "end": "2024-06-01T09:00:00Z"},
            {"id": "r3", "start": "2024-06-01T10:00:00Z"},
        ]
    )
    assert [(r.row, r.field, r.reason) for r in rooms.rejects.itertuples()] == [
        (2, "end", "room end before start"),
        (3, "host", "missing required id 'host'"),
    ]

    shelf = ing.ingest_shelf(
        [
            {"room": "r1", "item": "i1", "start": "2024-06-01T10:00:00Z", "end": None, "pinned": "yes"},
            {"room": "r1", "item": "i2", "start": "2024-06-01T10:30:00Z", "end": "2024-06-01T10:10:00Z"},
            {"room": "r1", "item": "i3", "start": "2024-06-01T10:00:00Z", "pinned": "maybe"},
            {"room": "r1", "item": "i1", "start": "2024-06-01T10:00:00Z"},
        ]
    )
    assert [(r.row, r.field, r.reason.split(";")[0].split(" (")[0]) for r in shelf.rejects.itertuples()] == [
        (2, "end", "shelf slot end before start"),
        (3, "pinned", "pinned is not a boolean"),
        (4, "room", "duplicate shelf slot"),
    ]
    assert store.frame("shelf")["pinned"].tolist() == [True]


def test_host_categories_become_a_json_list_string(store):
    Ingestor(store).ingest_hosts(
        [
            {"id": "h1", "categories": '["美妆", "食品"]'},
            {"id": "h2", "categories": "a | b"},
            {"id": "h3", "categories": None},
        ]
    )
    Ingestor(store).ingest_hosts(pd.DataFrame({"id": ["h4"], "categories": [["x", "y"]]}))
    got = store.frame("hosts").set_index("id")["categories"].map(json.loads).to_dict()
    assert got == {"h1": ["美妆", "食品"], "h2": ["a", "b"], "h3": [], "h4": ["x", "y"]}


def test_purchase_of_item_never_on_a_shelf_is_accepted_with_a_warning(store):
    ing = Ingestor(store, rules=RULES)
    frame = _events_frame()
    first = ing.ingest_events(frame.iloc[:3])
    assert first.warnings == {}  # no shelf data yet: nothing to check against
    ing.ingest_shelf([{"room": "r1", "item": "i3", "start": "2024-06-01T09:00:00Z"}])
    report = ing.ingest_events(frame)
    assert report.warnings == {"purchase_not_on_shelf": 1}  # e4 buys i4, never shelved
    assert report.accepted == 3 and report.duplicate == 3 and store.count("events") == 6


def test_reingesting_the_same_file_adds_nothing(store, tmp_path):
    path = tmp_path / "events.parquet"
    _events_frame(40).to_parquet(path)
    ing = Ingestor(store, rules=RULES)
    first, second = ing.ingest_events(path), ing.ingest_events(path)
    assert (first.accepted, first.duplicate) == (40, 0)
    assert (second.accepted, second.inserted, second.duplicate, second.rejected) == (0, 0, 40, 0)
    assert store.count("events") == 40

    items = [{"id": f"i{i}", "title": f"item {i}", "price": float(i)} for i in range(5)]
    assert ing.ingest_items(items).inserted == 5
    again = ing.ingest_items(items)
    assert (again.inserted, again.updated, again.duplicate) == (0, 0, 5)
    items[2]["title"] = "renamed"
    changed = ing.ingest_items(items)
    assert (changed.inserted, changed.updated, changed.duplicate) == (0, 1, 4)
    assert store.frame("items").set_index("id").loc["i2", "title"] == "renamed"
    assert store.count("items") == 5


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_csv_parquet_and_jsonl_give_the_same_store(tmp_path, fmt):
    frame = _events_frame(12)
    path = tmp_path / f"events.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        out = frame.assign(ts=frame["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
        out.to_json(path, orient="records", lines=True)
    with EventStore(tmp_path / "home") as store:
        report = Ingestor(store, rules=RULES).ingest_events(path)
        got = store.training_frame()
    assert (report.accepted, report.rejected) == (12, 0)
    expected = frame.sort_values(["user", "ts"], kind="stable").reset_index(drop=True)
    for c in ("event_id", "user", "type", "room", "item", "text"):
        expected[c] = expected[c].astype("str")
    pd.testing.assert_frame_equal(
        got[list(EVENT_COLUMNS)].reset_index(drop=True), expected, check_dtype=False
    )
    assert str(got["ts"].dtype) == TS_DTYPE


def test_records_with_python_datetimes_and_numeric_ids(store):
    recs = [
        {"event_id": 7, "ts": datetime(2024, 6, 1, 10, tzinfo=UTC), "user": 42, "type": "VIEW", "item": 3},
        {"event_id": 8, "ts": "2024-06-01T12:00:00+02:00", "user": 42, "type": "view", "room": "r9"},
    ]
    report = Ingestor(store, rules=RULES).ingest_events(recs)
    assert report.accepted == 2
    seq = store.sequence("42")
    assert seq.items.tolist() == ["3", None] and seq.types.tolist() == ["view", "view"]
    assert seq.ts.tolist() == [datetime(2024, 6, 1, 10, tzinfo=UTC).timestamp()] * 2


def test_records_with_different_keys_and_float_ids(store):
    ing = Ingestor(store, rules=RULES)
    recs = [
        {"event_id": "a", "ts": "2024-06-01T10:00:00Z", "user": "u", "type": "view", "item": "i1"},
        {"event_id": "b", "ts": "2024-06-01T10:01:00Z", "user": "u", "type": "enter", "room": "r1"},
    ]
    assert ing.ingest_events(recs).accepted == 2  # 'room' appears only in the second record
    assert store.sequence("u").rooms.tolist() == [None, "r1"]
    floats = pd.DataFrame(
        {
            "event_id": [1.0, 2.0, float("nan")],
            "ts": [1717236000.0] * 3,
            "user": [10.0, 11.0, 12.0],
            "type": ["view"] * 3,
            "item": [5.0, 6.0, 7.0],
        }
    )
    report = ing.ingest_events(floats)
    assert (report.accepted, report.rejected) == (2, 1)
    assert report.rejects.iloc[0][["row", "field"]].tolist() == [3, "event_id"]
    assert store.sequence("10").items.tolist() == ["5"]
    empty = ing.ingest_events([])
    assert (empty.rows, empty.accepted) == (0, 0)


def test_future_window_is_configurable(store):
    rules = Rules(now=NOW, max_future=timedelta(hours=1), min_ts=datetime(2024, 1, 1, tzinfo=UTC))
    frame = _events_frame(3, start="2024-07-01T00:30:00Z")  # 00:30, 00:31, 00:32 -> within 1 h
    frame.loc[2, "ts"] = pd.Timestamp("2024-07-01T01:30:00Z")
    frame.loc[1, "ts"] = pd.Timestamp("2023-12-31T00:00:00Z")
    report = Ingestor(store, rules=rules).ingest_events(frame)
    assert [(r.row, r.reason.split(" (")[0]) for r in report.rejects.itertuples()] == [
        (2, "timestamp before 2024-01-01 is outside the plausible window"),
        (3, "timestamp more than 1 h in the future"),
    ]


def test_bad_sources_raise_clear_errors(store, tmp_path):
    ing = Ingestor(store)
    with pytest.raises(DataFormatError, match=r"events\.txt.*unknown file format '\.txt'"):
        ing.ingest_events(_write(tmp_path / "events.txt", "x"))
    with pytest.raises(NotFoundError, match=r"nope\.parquet' does not exist"):
        ing.ingest_events(tmp_path / "nope.parquet")
    with pytest.raises(DataFormatError, match=r"lacks required column\(s\) \['ts'\]"):
        ing.ingest_events(pd.DataFrame({"event_id": ["e"], "user": ["u"], "type": ["view"]}))
    with pytest.raises(ConfigError, match=r"must end in \.csv or \.jsonl"):
        write_rejects(pd.DataFrame({"row": [1]}), tmp_path / "rejects.xlsx")
    assert read_file(_write(tmp_path / "ids.csv", "id,title\n007,x\n"))["id"].to_pylist() == ["007"]


def test_validation_happens_before_any_write(store):
    """A source whose required column is missing writes nothing, not even the rows before it."""
    frame = _events_frame(5).drop(columns=["type"])
    with pytest.raises(DataFormatError):
        Ingestor(store).ingest_events(frame)
    assert store.stats()["loads"] == 0 and store.count("events") == 0


def test_failure_mid_batch_rolls_back_everything(store, monkeypatch):
    ing = Ingestor(store, rules=RULES)
    ing.ingest_events(_events_frame(4))
    ing.ingest_items([{"id": "i1", "title": "a"}])
    before = store.stats()

    def boom(*args, **kwargs):
        raise RuntimeError("disk unplugged after the rows were inserted")

    monkeypatch.setattr(EventStore, "_log_load", boom)
    with pytest.raises(RuntimeError, match="disk unplugged"):
        ing.ingest_events(_events_frame(30))
    with pytest.raises(RuntimeError, match="disk unplugged"):
        ing.ingest_items([{"id": "i1", "title": "changed"}, {"id": "i2", "title": "b"}])
    after = store.stats()
    assert {k: after[k] for k in ("events", "items", "loads")} == {"events": 4, "items": 1, "loads": 2}
    assert store.frame("items")["title"].tolist() == ["a"]

    monkeypatch.undo()
    assert ing.ingest_events(_events_frame(30)).inserted == 26  # the store still works
    assert before["events"] == 4


def test_killed_process_mid_transaction_leaves_store_as_before(tmp_path):
    home = tmp_path / "home"
    with EventStore(home) as store:
        Ingestor(store, rules=RULES).ingest_events(_events_frame(5))
    path = tmp_path / "more.parquet"
    _events_frame(50).to_parquet(path)
    script = textwrap.dedent(f"""
        import os
        from liveshelf.data.ingest import Ingestor
        from liveshelf.data.store import EventStore
        from liveshelf.data.validate import Rules
        import datetime as dt

        def die(*a, **k):
            os._exit(3)   # hard kill: no rollback, no close, after the insert ran

        EventStore._log_load = die
        store = EventStore({str(home)!r})
        Ingestor(store, rules=Rules(now=dt.datetime(2024, 7, 1, tzinfo=dt.UTC))).ingest_events({str(path)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    with EventStore(home) as store:
        assert store.count("events") == 5 and store.stats()["loads"] == 1
        assert Ingestor(store, rules=RULES).ingest_events(path).inserted == 45


def _world(folder: Path) -> Path:
    folder.mkdir()
    pd.DataFrame(
        {
            "id": ["i1", "i2"],
            "title": ["cream", "mask"],
            "description": ["", ""],
            "category": ["美妆 > 护肤", "美妆"],
            "brand": [None, "b"],
            "price": [9.9, 3.0],
            "rating": [4.0, None],
            "attributes": ["{}", '{"a": 1}'],
            "language": ["zh", "zh"],
        }
    ).to_parquet(folder / "items.parquet")
    pd.DataFrame(
        {
            "id": ["u0", "u1"],
            "gender": ["f", None],
            "age_band": ["18-24", None],
            "region": ["sh", None],
            "spending_tier": ["mid", "vip"],
        }
    ).to_parquet(folder / "users.parquet")
    pd.DataFrame({"id": ["h1"], "name": ["Host"], "categories": [["美妆", "食品"]]}).to_parquet(
        folder / "hosts.parquet"
    )
    start = pd.Timestamp("2024-06-01T10:00:00Z")
    pd.DataFrame(
        {
            "id": ["r1"],
            "host": ["h1"],
            "title": ["live"],
            "start": [start],
            "end": [start + pd.Timedelta(minutes=45)],
        }
    ).to_parquet(folder / "rooms.parquet")
    pd.DataFrame(
        {
            "room": ["r1", "r1"],
            "item": ["i1", "i2"],
            "start": [start, start],
            "end": [None, start + pd.Timedelta(minutes=5)],
            "pinned": [True, False],
        }
    ).to_parquet(folder / "shelf.parquet")
    _events_frame(6).to_parquet(folder / "events.parquet")
    return folder


def test_ingest_world_loads_every_kind_in_order(store, tmp_path):
    reports = Ingestor(store, rules=RULES).ingest_world(_world(tmp_path / "world"))
    assert [r.kind for r in reports] == ["items", "users", "hosts", "rooms", "shelf", "events"]
    assert [r.accepted for r in reports] == [2, 2, 1, 1, 2, 6]
    assert reports[-1].warnings == {"purchase_not_on_shelf": 1}
    assert store.frame("hosts")["categories"].tolist() == ['["美妆", "食品"]']
    with pytest.raises(DataFormatError, match="holds none of the expected files"):
        Ingestor(store).ingest_world(tmp_path)


# ----------------------------------------------------------------------------- CLI

runner = CliRunner()


def _output(result) -> str:
    return result.output + (getattr(result, "stderr", "") or "")


def test_cli_ingest_events_prints_summary(tmp_path, monkeypatch):
    monkeypatch.delenv("LIVESHELF_PSEUDONYM_KEY", raising=False)
    src = _write(
        tmp_path / "events.csv",
        "event_id,ts,user,type,room,item,value\n"
        "e1,2024-06-01T10:00:00Z,u1,view,r1,i1,\n"
        "e2,2024-06-01T10:01:00Z,u1,fly,r1,i1,\n",
    )
    home = tmp_path / "home"
    result = runner.invoke(app, ["ingest", "events", str(src), "--home", str(home)])
    assert result.exit_code == 0, _output(result)
    assert "accepted=1" in result.output and "rejected=1" in result.output and "duplicate=0" in result.output
    again = runner.invoke(app, ["ingest", "events", str(src), "--home", str(home)])
    assert again.exit_code == 0 and "accepted=0" in again.output and "duplicate=1" in again.output
    rejects = sorted((home / "rejects").glob("events-events-*.csv"))
    assert rejects and "unknown event type" in rejects[0].read_text()
    with EventStore(home) as store:
        assert store.count("events") == 1


def test_cli_future_window_option(tmp_path, monkeypatch):
    monkeypatch.delenv("LIVESHELF_PSEUDONYM_KEY", raising=False)
    ahead = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    src = _write(
        tmp_path / "ahead.csv", f"event_id,ts,user,type,room,item,value\ne1,{ahead},u1,view,r1,i1,\n"
    )
    strict = runner.invoke(app, ["ingest", "events", str(src), "--home", str(tmp_path / "a")])
    assert strict.exit_code == 0 and "rejected=1" in strict.output
    lenient = runner.invoke(
        app, ["ingest", "events", str(src), "--home", str(tmp_path / "b"), "--max-future-days", "5"]
    )
    assert lenient.exit_code == 0 and "accepted=1" in lenient.output


def test_cli_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing-events.csv"
    result = runner.invoke(app, ["ingest", "events", str(missing), "--home", str(tmp_path / "h")])
    assert result.exit_code != 0 and "missing-events.csv" in _output(result)
    assert "does not exist" in _output(result)
    odd = _write(tmp_path / "events.xlsx", "x")
    result = runner.invoke(app, ["ingest", "events", str(odd), "--home", str(tmp_path / "h")])
    assert result.exit_code != 0 and "events.xlsx" in _output(result)
    assert "unknown file format" in _output(result)


def test_cli_ingest_world(tmp_path, monkeypatch):
    monkeypatch.delenv("LIVESHELF_PSEUDONYM_KEY", raising=False)
    folder = _world(tmp_path / "world")
    result = runner.invoke(app, ["ingest", "world", str(folder), "--home", str(tmp_path / "h")])
    assert result.exit_code == 0, _output(result)
    for kind in ("items", "users", "hosts", "rooms", "shelf", "events"):
        assert f"{kind}: accepted=" in result.output
    with EventStore(tmp_path / "h") as store:
        assert store.stats()["events"] == 6 and store.stats()["shelf"] == 2


def test_validate_alone_writes_nothing_and_reports_counts():
    checked = validate("events", _events_frame(6), RULES)
    assert checked.n_rows == 6 and checked.n_rejected == 0 and checked.table.num_rows == 6
    assert str(checked.frame["ts"].dtype) == TS_DTYPE


_maybe = st.one_of(st.none(), st.just(""), st.just("  "))
_record = st.fixed_dictionaries(
    {
        "event_id": st.one_of(_maybe, st.sampled_from(["e1", "e2", "e3", "e4"])),
        "ts": st.one_of(
            _maybe,
            st.sampled_from(
                [
                    "2024-06-01T10:00:00Z",
                    "1999-01-01",
                    "2030-01-01T00:00:00Z",
                    "garbage",
                    "1717236000",
                    "2024-06-01 10:00",
                ]
            ),
        ),
        "user": st.one_of(_maybe, st.sampled_from(["u1", "u2"])),
        "type": st.one_of(_maybe, st.sampled_from(["view", "PURCHASE", "enter", "cart", "zap", "like"])),
        "room": st.one_of(_maybe, st.just("r1")),
        "item": st.one_of(_maybe, st.just("i1")),
        "value": st.one_of(st.none(), st.sampled_from(["1.5", "-2", "abc", "0"])),
    }
)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(st.lists(_record, min_size=1, max_size=12))
def test_validation_invariants_on_random_rows(records):
    checked = validate("events", pd.DataFrame(records), RULES)
    rejected_rows = set(checked.rejects["row"])
    assert checked.table.num_rows + len(rejected_rows) == len(records)
    assert rejected_rows <= set(range(1, len(records) + 1))
    good = checked.frame
    assert good["event_id"].is_unique and good["event_id"].notna().all() and good["user"].notna().all()
    assert good["type"].isin(["view", "purchase", "enter", "cart", "like"]).all()
    assert (good["ts"] >= pd.Timestamp("2000-01-01", tz="UTC")).all()
    assert (good["ts"] <= pd.Timestamp(NOW) + pd.Timedelta(days=1)).all()
    assert not (good["value"] < 0).any()
    assert good.loc[good["type"].isin(["purchase", "cart"]), "item"].notna().all()
    assert good.loc[good["type"] == "enter", "room"].notna().all()
