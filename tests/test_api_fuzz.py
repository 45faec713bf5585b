"""Fuzzing the HTTP API with hypothesis: no malformed input may cause a 5xx.

Bodies are arbitrary JSON, near-valid records with hostile values (huge / negative /
non-finite numbers, odd strings, wrong types), and raw non-JSON bytes; paths and query
parameters are arbitrary text. Each test is bounded (``max_examples``) and has no deadline.
"""

from __future__ import annotations

import json
import shutil
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liveshelf.schema import EVENT_TYPES
from liveshelf.serving.app import create_app
from test_api import AUTH, make_settings, world_template  # noqa: F401  (world_template is a fixture)

# derandomize: the same examples on every run, so CI is reproducible (seeded like everything else)
FUZZ = settings(
    max_examples=30,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
times = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**63), 2**63)
    | st.sampled_from(["2026-11-01T12:00:00Z", "2026-13-45T99:00", "", "now", "1e400", "-1", "NaN"])
    | st.text(max_size=25)
)
ids = st.text(max_size=40) | st.sampled_from(["u0000043", "r0000003", "i0000001", "", " ", "\x00", "a" * 300])


def records(fields: dict) -> st.SearchStrategy:
    """Dicts with any subset of ``fields`` (each value from its strategy or anything), sometimes an extra key."""
    return st.fixed_dictionaries(
        {}, optional={k: v | json_values for k, v in fields.items()}
    ) | st.dictionaries(st.sampled_from([*fields, "extra"]), json_values, max_size=len(fields) + 1)


events = records(
    {
        "event_id": ids,
        "ts": times,
        "user": ids,
        "type": st.sampled_from([*EVENT_TYPES, "zap", ""]),
        "room": ids,
        "item": ids,
        "value": st.floats() | st.integers(),
        "text": st.text(max_size=50),
    }
)
rooms = records({"id": ids, "host": ids, "title": st.text(max_size=20), "start": times, "end": times})
slots = records({"room": ids, "item": ids, "start": times, "end": times, "pinned": json_values})
actions = records(
    {
        "op": st.sampled_from(["end_room", "remove_item", "unpin", "explode"]),
        "room": ids,
        "item": ids,
        "at": times,
    }
)
items = records(
    {
        "id": ids,
        "title": st.text(max_size=20),
        "category": st.text(max_size=20) | st.lists(ids),
        "brand": ids,
        "price": st.floats() | st.integers(),
        "rating": st.floats(),
        "attributes": json_values,
        "language": ids,
    }
)


def send(client, method: str, path: str, body) -> object:
    """JSON as Python writes it: NaN / Infinity literals included (the server's parser accepts them)."""
    content = json.dumps(body, allow_nan=True).encode()
    return client.request(method, path, content=content, headers={**AUTH, "Content-Type": "application/json"})


@pytest.fixture(scope="module")
def client(world_template, tmp_path_factory):  # noqa: F811
    template, _ = world_template
    home = tmp_path_factory.mktemp("fuzz") / "home"
    shutil.copytree(template, home)
    with TestClient(create_app(make_settings(home, "memory", "fuzz:")), raise_server_exceptions=False) as c:
        yield c


@FUZZ
@given(
    body=json_values
    | st.fixed_dictionaries({"events": st.lists(events, max_size=6)})
    | st.fixed_dictionaries({"events": json_values})
)
def test_post_events_never_fails(client, body):
    r = send(client, "POST", "/v1/events", body)
    assert r.status_code in (200, 413, 422), r.text
    if r.status_code == 200:
        out = r.json()
        assert out["received"] == out["accepted"] + out["duplicate"] + out["rejected"]


@FUZZ
@given(
    body=json_values
    | st.fixed_dictionaries(
        {},
        optional={
            "rooms": st.lists(rooms, max_size=3),
            "shelf": st.lists(slots, max_size=3),
            "actions": st.lists(actions, max_size=3),
        },
    )
)
def test_put_rooms_never_fails(client, body):
    r = send(client, "PUT", "/v1/rooms", body)
    assert r.status_code in (200, 404, 422), r.text


@FUZZ
@given(body=json_values | st.fixed_dictionaries({"items": st.lists(items, max_size=3)}))
def test_put_items_never_fails(client, body):
    r = send(client, "PUT", "/v1/items", body)
    assert r.status_code in (200, 422), r.text


@FUZZ
@given(
    route=st.sampled_from(
        [
            "/v1/users/{x}/feed",
            "/v1/users/{x}/profile",
            "/v1/rooms/{x}/shelf",
            "/v1/rooms/{x}/next-item",
            "/v1/items/{x}",
        ]
    ),
    x=ids.filter(bool),
    at=st.none() | times.map(str),
    k=st.none() | st.integers() | st.text(max_size=5),
    user=st.none() | ids,
)
def test_reads_never_fail(client, route, x, at, k, user):
    params = {key: v for key, v in (("at", at), ("k", k), ("user", user)) if v is not None}
    r = client.get(route.replace("{x}", quote(x, safe="")), params=params)
    # 405: an id of "/" turns "/v1/items/{x}" into the PUT-only collection route
    assert r.status_code in (200, 404, 405, 422), r.text
    assert r.status_code != 405 or route == "/v1/items/{x}", r.text


@FUZZ
@given(raw=st.binary(max_size=200), path=st.sampled_from(["/v1/events", "/v1/items", "/v1/rooms"]))
def test_raw_bytes_never_fail(client, raw, path):
    method = client.post if path == "/v1/events" else client.put
    r = method(path, content=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code in (200, 400, 413, 422), r.text  # 400: not even UTF-8 text
