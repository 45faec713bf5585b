from datetime import UTC, datetime

import numpy as np
import pandas as pd

from liveshelf.schema import EVENT_TYPES, Item, from_epoch_seconds, to_epoch_seconds, utc


def test_event_types_cover_the_funnel():
    for t in (
        "impression",
        "enter",
        "leave",
        "view",
        "click",
        "cart",
        "purchase",
        "like",
        "comment",
        "gift",
        "share",
        "follow",
    ):
        assert t in EVENT_TYPES


def test_epoch_round_trip_keeps_microseconds_and_missing():
    s = pd.Series(pd.to_datetime(["2026-11-01T10:00:00.123456Z", None], utc=True))
    sec = to_epoch_seconds(s)
    assert np.isnan(sec[1])
    assert abs(sec[0] - datetime(2026, 11, 1, 10, 0, 0, 123456, tzinfo=UTC).timestamp()) < 1e-6
    back = from_epoch_seconds(sec[:1])
    assert back.iloc[0] == s.iloc[0]


def test_utc_accepts_naive_iso_and_epoch():
    assert utc("2026-11-01 10:00").tzinfo is not None
    assert utc(0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert utc(datetime(2026, 1, 1)).tzinfo == UTC


def test_item_text_joins_fields():
    it = Item(id="i1", title="Serum", category=("Beauty", "Skin"), brand="Acme", description="30ml")
    assert it.text() == "Serum. Beauty > Skin. Acme. 30ml"


def test_from_epoch_seconds_maps_missing_to_nat():
    out = from_epoch_seconds([0.0, np.nan, np.inf])
    assert out.iloc[0] == pd.Timestamp(0, tz="UTC")
    assert out.iloc[1:].isna().all()
