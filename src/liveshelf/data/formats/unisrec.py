"""UniSRec / RecBole sequential split files (Amazon "Scientific" and friends).

A folder holds ``<P>.train.inter``, ``<P>.valid.inter``, ``<P>.test.inter`` (header
``user_id:token  item_id_list:token_seq  item_id:token``; each row is a prefix of a user's
sequence and the next item), ``<P>.item2index`` / ``<P>.user2index`` (``token<TAB>index``) and
``<P>.text`` (``item_id:token  text:token_seq``). The prefix ``P`` is found from the ``*.text``
file name.

The reader rebuilds each user's full sequence (prefix lists are truncated at 50 items, so the
train targets are used, not only the longest prefix) and marks every event with the file its
target came from: the test target is the last event, the valid target the one before, the
rest are "train". Ids are the original tokens (item ASINs, user ids) from the index files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from liveshelf.data.dataset import Dataset
from liveshelf.data.formats._common import (
    make_events,
    make_frame,
    require_dir,
    require_file,
    sequence_ids,
    synthetic_ts,
)
from liveshelf.errors import DataFormatError
from liveshelf.schema import ITEM_COLUMNS

FORMAT = "unisrec"
SPLITS = ("train", "valid", "test")
_SPLIT_ORDER = {"train": 0, "valid": 1, "test": 2}


def find_prefix(folder: Path) -> str:
    """The dataset prefix ``P`` of ``P.text`` (or ``P.train.inter`` when there is no text)."""
    require_dir(folder, FORMAT)
    texts = sorted(folder.glob("*.text"))
    if len(texts) == 1:
        return texts[0].name[: -len(".text")]
    trains = sorted(folder.glob("*.train.inter"))
    if len(texts) == 0 and len(trains) == 1:
        return trains[0].name[: -len(".train.inter")]
    found = [p.name for p in texts] or [p.name for p in trains]
    raise DataFormatError(
        f"The {FORMAT!r} reader needs exactly one '<prefix>.text' file in {str(folder)!r} to find the "
        f"dataset prefix; found {found or 'none'}. Pass prefix='...' to choose one."
    )


def _read_index(path: Path) -> pd.Series:
    """``token<TAB>index`` lines -> Series token indexed by int index."""
    frame = pd.read_csv(
        path,
        sep="\t",
        header=None,
        names=["token", "index"],
        dtype={"token": str},
        keep_default_na=False,
        quoting=3,
    )
    if frame["index"].dtype.kind not in "iu":
        raise DataFormatError(f"The {FORMAT!r} index file {str(path)!r} must hold 'token<TAB>int' lines.")
    return pd.Series(frame["token"].to_numpy(dtype=object), index=frame["index"].to_numpy())


def _read_inter(path: Path, split: str) -> pd.DataFrame:
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    cols = list(frame.columns)
    if (
        len(cols) != 3
        or not cols[0].startswith("user_id")
        or not cols[1].startswith("item_id_list")
        or not cols[2].startswith("item_id")
    ):
        raise DataFormatError(
            f"The {FORMAT!r} file {str(path)!r} must have the header "
            f"'user_id:token<TAB>item_id_list:token_seq<TAB>item_id:token'; got {cols}."
        )
    frame.columns = ["user", "prefix", "target"]
    frame["length"] = frame["prefix"].str.count(" ").to_numpy() + 1
    frame["split"] = split
    frame["row"] = np.arange(len(frame))
    return frame


def _to_tokens(values: pd.Series, index: pd.Series | None, what: str, path: Path) -> pd.Series:
    """Map index strings to tokens when the file holds indices; keep tokens otherwise."""
    if index is None:
        return values
    by_index = pd.Series(index.to_numpy(), index=index.index.astype(str))
    mapped = values.map(by_index)
    if mapped.notna().all():
        return mapped
    if values.isin(index.to_numpy()).all():
        return values
    bad = values[mapped.isna()].iloc[0]
    raise DataFormatError(
        f"The {FORMAT!r} file {str(path)!r} has the {what} {bad!r}, which is neither an index nor a token "
        f"of the {what} index file. Use the index files that came with the split."
    )


def read_unisrec(path: str | Path, prefix: str | None = None) -> Dataset:
    """Read a UniSRec split folder into a :class:`Dataset` with ``split`` per event."""
    folder = Path(path)
    prefix = prefix or find_prefix(folder)
    files = {
        s: require_file(folder / f"{prefix}.{s}.inter", FORMAT, f"{s} prefixes and targets") for s in SPLITS
    }
    item_index_path = folder / f"{prefix}.item2index"
    user_index_path = folder / f"{prefix}.user2index"
    item_index = _read_index(item_index_path) if item_index_path.is_file() else None
    user_index = _read_index(user_index_path) if user_index_path.is_file() else None

    rows = pd.concat([_read_inter(files[s], s) for s in SPLITS], ignore_index=True)
    rows["split_order"] = rows["split"].map(_SPLIT_ORDER)
    # Within a user: shorter prefixes first; at equal (truncated) length train rows come in
    # descending order in the files, so the later row in the file is the earlier target.
    rows = rows.sort_values(
        ["user", "split_order", "length", "row"], ascending=[True, True, True, False], kind="stable"
    ).reset_index(drop=True)

    # The first row of each user carries the items before the first target.
    first = rows.groupby("user", sort=False).head(1)
    head_items = first[["user", "prefix"]].assign(item=first["prefix"].str.split(" ")).explode("item")
    head = pd.DataFrame(
        {
            "user": head_items["user"].to_numpy(),
            "item": head_items["item"].to_numpy(),
            "split": "train",
            "group": 0,
        }
    )
    tail = pd.DataFrame(
        {
            "user": rows["user"].to_numpy(),
            "item": rows["target"].to_numpy(),
            "split": rows["split"].to_numpy(),
            "group": 1,
        }
    )
    seq = pd.concat([head, tail], ignore_index=True)
    seq["order"] = np.arange(len(seq))
    seq = seq.sort_values(["user", "group", "order"], kind="stable").reset_index(drop=True)
    seq["pos"] = seq.groupby("user", sort=False).cumcount()
    _check_last_targets(seq, files)

    seq["item"] = _to_tokens(seq["item"], item_index, "item", files["train"])
    seq["user"] = _to_tokens(seq["user"], user_index, "user", files["train"])
    seq = seq.sort_values(["user", "pos"], kind="stable").reset_index(drop=True)

    pos = seq["pos"].to_numpy()
    events = make_events(
        event_id=sequence_ids(seq["user"], pos),
        ts=synthetic_ts(pos),
        user=seq["user"],
        type="purchase",
        item=seq["item"],
    )
    split = pd.Series(seq["split"].to_numpy(dtype=object), name="split")

    items = _read_items(folder / f"{prefix}.text", item_index)
    meta = {
        "format": FORMAT,
        "path": str(folder),
        "prefix": prefix,
        "synthetic_ts": True,
        "item_index": None if item_index is None else item_index.sort_index().tolist(),
        "user_index": None if user_index is None else user_index.sort_index().tolist(),
    }
    return Dataset(name=f"{FORMAT}:{folder.name}", events=events, items=items, split=split, meta=meta)


def _check_last_targets(seq: pd.DataFrame, files: dict[str, Path]) -> None:
    """The test target must be the last event and the valid target the one before."""
    size = seq.groupby("user", sort=False)["pos"].transform("size").to_numpy()
    pos = seq["pos"].to_numpy()
    split = seq["split"].to_numpy()
    is_test, is_valid = split == "test", split == "valid"
    ok_test = is_test == (pos == size - 1)
    ok_valid = is_valid == (pos == size - 2)
    bad = ~(ok_test & ok_valid)
    if bad.any():
        user = seq["user"].to_numpy()[bad.argmax()]
        raise DataFormatError(
            f"The {FORMAT!r} files must give every user exactly one valid and one test row; user "
            f"{user!r} does not. Check {str(files['valid'])!r} and {str(files['test'])!r}."
        )


def _read_items(path: Path, item_index: pd.Series | None) -> pd.DataFrame | None:
    """Items in item-index order (text as title); items without text keep an empty title."""
    if path.is_file():
        text = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
        if len(text.columns) < 2:
            raise DataFormatError(
                f"The {FORMAT!r} file {str(path)!r} must have 'item_id:token<TAB>text:token_seq'."
            )
        text = pd.Series(text.iloc[:, 1].str.strip().to_numpy(), index=text.iloc[:, 0].to_numpy())
    else:
        text = None
    if item_index is not None:
        ids = item_index.sort_index().to_numpy(dtype=object)
    elif text is not None:
        ids = text.index.to_numpy(dtype=object)
    else:
        return None
    titles = np.full(len(ids), "", dtype=object) if text is None else text.reindex(ids).fillna("").to_numpy()
    return make_frame(
        ITEM_COLUMNS,
        len(ids),
        id=ids,
        title=titles,
        description="",
        category="",
        attributes="{}",
        language="en",
    )
