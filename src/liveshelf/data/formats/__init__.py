"""Readers for public data formats, one module per format, and the ``FORMAT:PATH`` dispatcher.

>>> load_dataset("unisrec:amazon-scientific")          # doctest: +SKIP
>>> load_dataset("twitch:/data/100k_a.csv", with_leave=True)   # doctest: +SKIP

A relative PATH that does not exist from the working directory is looked up under
``liveshelf.config.data_dir()`` (``LIVESHELF_DATA_DIR``, default ``../shared/data``).
See docs/data-formats.md for each format's files and mapping.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liveshelf.config import data_dir
from liveshelf.data.dataset import Dataset
from liveshelf.data.formats.kuailive import read_kuailive, write_synthetic_kuailive
from liveshelf.data.formats.multibehavior import read_multibehavior
from liveshelf.data.formats.p5 import read_p5
from liveshelf.data.formats.recbole import read_recbole
from liveshelf.data.formats.reviews import read_reviews, read_reviews_dataset
from liveshelf.data.formats.twitch import read_twitch, read_twitch_log, write_synthetic_twitch_log
from liveshelf.data.formats.unisrec import read_unisrec
from liveshelf.errors import ConfigError, DataFormatError


@dataclass(frozen=True)
class FormatSpec:
    name: str
    reader: Callable[..., Dataset]
    description: str


FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        FormatSpec(
            "unisrec", read_unisrec, "UniSRec split folder: <P>.train/valid/test.inter, .item2index, .text"
        ),
        FormatSpec("p5", read_p5, "P5/TIGER user_sequence.txt: 'user item1 item2 ...' per line"),
        FormatSpec("recbole", read_recbole, "RecBole atomic files <name>.inter/.item/.user"),
        FormatSpec(
            "multibehavior", read_multibehavior, "train/cart/collect/valid/test.txt 'user item' pairs"
        ),
        FormatSpec(
            "reviews", read_reviews_dataset, "labelled reviews: 'cat,label,review' CSV or pos.txt/neg.txt"
        ),
        FormatSpec(
            "twitch", read_twitch, "LiveRec Twitch log: 'user,stream,streamer,start,stop' CSV, no header"
        ),
        FormatSpec("kuailive", read_kuailive, "KuaiLive folder: click/comment/like/gift/room.csv"),
    )
}


def available_formats() -> list[str]:
    """The format names ``load_dataset`` accepts, sorted."""
    return sorted(FORMATS)


def parse_spec(spec: str) -> tuple[str, str]:
    """``"FORMAT:PATH"`` -> (format, path); the path may itself contain ':'."""
    if not isinstance(spec, str) or ":" not in spec:
        raise DataFormatError(
            f"The data spec must be 'FORMAT:PATH' with FORMAT one of {available_formats()}. Got {spec!r} instead "
            f"(e.g. 'unisrec:../shared/data/amazon-scientific')."
        )
    fmt, path = spec.split(":", 1)
    fmt = fmt.strip().lower()
    if fmt not in FORMATS:
        raise DataFormatError(
            f"Unknown data format {fmt!r} in {spec!r}; known formats are {available_formats()}. "
            f"Write the spec as 'FORMAT:PATH'."
        )
    if not path.strip():
        raise DataFormatError(
            f"The data spec {spec!r} has no PATH after '{fmt}:'. Write it as '{fmt}:/path/to/data'."
        )
    return fmt, path.strip()


def resolve_path(path: str | Path) -> Path:
    """``path`` as given when it exists, else under ``data_dir()`` when relative and found there."""
    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        return p
    under = data_dir() / p
    return under if under.exists() else p


def load_dataset(spec: str, **kw: Any) -> Dataset:
    """Read ``"FORMAT:PATH"`` with that format's reader; ``kw`` go to the reader."""
    fmt, path = parse_spec(spec)
    reader = FORMATS[fmt].reader
    params = inspect.signature(reader).parameters
    unknown = sorted(k for k in kw if k not in params or k == "path")
    if unknown:
        allowed = [k for k in params if k != "path"]
        raise ConfigError(
            f"The {fmt!r} reader does not take the parameter(s) {unknown}; it takes {allowed}. Drop or rename them."
        )
    return reader(resolve_path(path), **kw)


__all__ = [
    "FORMATS",
    "FormatSpec",
    "available_formats",
    "load_dataset",
    "parse_spec",
    "read_kuailive",
    "read_multibehavior",
    "read_p5",
    "read_recbole",
    "read_reviews",
    "read_reviews_dataset",
    "read_twitch",
    "read_twitch_log",
    "read_unisrec",
    "resolve_path",
    "write_synthetic_kuailive",
    "write_synthetic_twitch_log",
]
