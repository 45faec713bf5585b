"""Pseudonymisation: keyed HMAC ids, stable per key, and raw ids never reach the store or rejects file."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from liveshelf.cli import app
from liveshelf.config import Settings
from liveshelf.data.ingest import Ingestor
from liveshelf.data.store import EventStore
from liveshelf.data.validate import Rules
from liveshelf.errors import ConfigError
from liveshelf.privacy.pseudonym import Pseudonymiser, from_settings

RULES = Rules(now=datetime(2024, 7, 1, tzinfo=UTC))
RAW_IDS = ["alice.raw.id.8731", "bob.raw.id.5519", "carol.raw.id.0042"]


def test_pseudonym_is_keyed_hmac_sha256_truncated():
    p = Pseudonymiser("k1")
    expected = hmac.new(b"k1", b"user:alice", hashlib.sha256).hexdigest()[:32]
    assert p("alice") == expected and len(p("alice")) == 32
    assert p("alice") == Pseudonymiser(b"k1")("alice")  # same key -> same pseudonym
    assert p("alice") != Pseudonymiser("k2")("alice")  # other key -> other pseudonym
    assert p("alice") != p("bob")
    assert p.event_id("alice") != p("alice")  # separate namespaces
    assert len(Pseudonymiser("k1", length=64)("alice")) == 64
    assert "k1" not in repr(p) and p.key_id == Pseudonymiser("k1").key_id != Pseudonymiser("k2").key_id


def test_vectorised_mapping_matches_scalar_and_keeps_nulls():
    p = Pseudonymiser("k")
    s = pd.Series(["a", None, "b", "a"], dtype="str")
    out = p.map_series(s)
    assert out.iloc[0] == out.iloc[3] == p("a") and out.iloc[2] == p("b") and pd.isna(out.iloc[1])
    arr = p.map_array(pa.array(["a", None, "b"]))
    assert arr.to_pylist() == [p("a"), None, p("b")]
    assert p.map_array(pa.array(["e1"]), "event").to_pylist() == [p.event_id("e1")]


def test_bad_keys_and_settings():
    with pytest.raises(ConfigError, match="'key' parameter of Pseudonymiser must be a non-empty"):
        Pseudonymiser("")
    with pytest.raises(
        ConfigError, match=r"'length' parameter of Pseudonymiser must be an int in \[16, 64\]"
    ):
        Pseudonymiser("k", length=8)
    assert from_settings(Settings(pseudonym_key=None)) is None
    with pytest.raises(ConfigError, match="LIVESHELF_PSEUDONYM_KEY"):
        from_settings(Settings(pseudonym_key=None), required=True)
    p = from_settings(Settings(pseudonym_key=SecretStr("s3cret")))
    assert p is not None and p("x") == Pseudonymiser("s3cret")("x")


def _events_csv(path: Path) -> Path:
    rows = ["event_id,ts,user,type,room,item,value"]
    for i in range(30):
        user = RAW_IDS[i % 3]
        rows.append(f"{user}:{i},2024-06-01T10:{i:02d}:00Z,{user},view,r1,i{i % 4},")
    rows.append(f"{RAW_IDS[0]}:bad,not-a-time,{RAW_IDS[0]},view,r1,i1,")  # rejected: ts
    rows.append(f"{RAW_IDS[1]}:neg,2024-06-01T11:00:00Z,{RAW_IDS[1]},purchase,r1,i1,-3")  # rejected: value
    rows.append(f"{RAW_IDS[2]}:2,2024-06-01T11:01:00Z,{RAW_IDS[2]},view,r1,i1,")  # rejected: duplicate
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def _ingest(home: Path, src: Path, pseudonymiser: Pseudonymiser | None, rejects: Path):
    with EventStore(home) as store:
        ing = Ingestor(store, pseudonymiser=pseudonymiser, rules=RULES)
        ing.ingest_users(
            [{"id": u, "gender": "f"} for u in RAW_IDS], rejects_path=rejects.with_suffix(".u.csv")
        )
        report = ing.ingest_events(src, rejects_path=rejects)
        frame = store.training_frame()
    return report, frame


def test_raw_ids_never_reach_the_store_or_the_rejects_file(tmp_path):
    src = _events_csv(tmp_path / "events.csv")

    # control: without pseudonymisation the raw ids are visible in the store file and the rejects
    plain_report, plain = _ingest(tmp_path / "plain", src, None, tmp_path / "plain-rejects.csv")
    assert set(plain["user"]) == set(RAW_IDS)
    plain_bytes = _all_bytes(tmp_path / "plain") + (tmp_path / "plain-rejects.csv").read_bytes()
    assert all(raw.encode() in plain_bytes for raw in RAW_IDS)

    p = Pseudonymiser("test-key")
    report, frame = _ingest(tmp_path / "home", src, p, tmp_path / "rejects.jsonl")
    assert (report.accepted, report.rejected) == (plain_report.accepted, plain_report.rejected) == (30, 3)
    assert set(frame["user"]) == {p(u) for u in RAW_IDS}
    assert frame["event_id"].str.len().eq(32).all()

    secret_bytes = _all_bytes(tmp_path / "home")
    rejects_text = (tmp_path / "rejects.jsonl").read_text(encoding="utf-8")
    for raw in RAW_IDS:
        assert raw.encode() not in secret_bytes
        assert raw not in rejects_text
        assert raw.split(".")[0] not in rejects_text  # not even a fragment
    rejects = pd.read_json(tmp_path / "rejects.jsonl", lines=True, dtype=False)
    assert rejects["row"].tolist() == [31, 32, 33]
    dup = rejects.iloc[2]
    assert dup["field"] == "event_id" and dup["value"] == p.event_id(f"{RAW_IDS[2]}:2")

    with EventStore(tmp_path / "home") as store:
        assert store.frame("users")["id"].tolist() == sorted(p(u) for u in RAW_IDS)
        assert store.delete_user(p(RAW_IDS[0])) == {"events": 10, "users": 1}


def test_store_refuses_a_second_key_or_raw_ids(tmp_path):
    src = _events_csv(tmp_path / "events.csv")
    with EventStore(tmp_path / "home") as store:
        Ingestor(store, pseudonymiser=Pseudonymiser("a"), rules=RULES).ingest_events(src)
        again = Ingestor(store, pseudonymiser=Pseudonymiser("a"), rules=RULES).ingest_events(src)
        assert again.duplicate == 30 and again.accepted == 0  # same key: idempotent
        with pytest.raises(ConfigError, match="written with the key with id"):
            Ingestor(store, pseudonymiser=Pseudonymiser("b"), rules=RULES).ingest_events(src)
        with pytest.raises(ConfigError, match="this ingest uses no pseudonymisation"):
            Ingestor(store, rules=RULES).ingest_users([{"id": "x"}])
        Ingestor(store, rules=RULES).ingest_items([{"id": "i1", "title": "fine"}])  # no user ids: allowed
        assert store.count("events") == 30 and store.count("users") == 0


def test_cli_pseudonymises_with_the_key_from_the_environment(tmp_path, monkeypatch):
    src = _events_csv(tmp_path / "events.csv")
    runner = CliRunner()
    monkeypatch.delenv("LIVESHELF_PSEUDONYM_KEY", raising=False)
    no_key = runner.invoke(
        app, ["ingest", "events", str(src), "--home", str(tmp_path / "x"), "--pseudonymise"]
    )
    assert no_key.exit_code != 0 and "LIVESHELF_PSEUDONYM_KEY" in no_key.output + (no_key.stderr or "")

    monkeypatch.setenv("LIVESHELF_PSEUDONYM_KEY", "cli-key")
    home = tmp_path / "home"
    result = runner.invoke(
        app, ["ingest", "events", str(src), "--home", str(home)]
    )  # on by default with a key
    assert result.exit_code == 0 and "accepted=30" in result.output
    with EventStore(home) as store:
        assert set(store.training_frame()["user"]) == {Pseudonymiser("cli-key")(u) for u in RAW_IDS}
    assert all(raw.encode() not in _all_bytes(home) for raw in RAW_IDS)  # store and default rejects folder
