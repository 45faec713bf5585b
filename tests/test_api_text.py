"""Text intelligence through the HTTP API: profile interests, pitch texts, shelf Q&A."""

from __future__ import annotations

import pytest

import test_api as api
from liveshelf.text.grounding import check
from test_api import ACTIVE_USER, AUTH, T0, iso, live_rooms, shelf_items

# the world, both state backends and the served app come from the end-to-end API tests
world_template = api.world_template
backend = api.backend
served = api.served

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _live_room_with_shelf(frames, t):
    for room in sorted(live_rooms(frames, t)):
        if shelf_items(frames, room, t):
            return room
    raise AssertionError("the test world has no live room with a shelf at T0")


def test_profile_carries_decayed_interests_and_tags(served):
    client, frames, _ = served
    r = client.get(f"/v1/users/{ACTIVE_USER}/profile", params={"at": iso(T0)})
    assert r.status_code == 200, r.text
    interests = r.json()["interests"]
    assert interests is not None
    shares = interests["categories"]
    assert shares and all(0.0 <= v <= 1.0 for v in shares.values()) and sum(shares.values()) <= 1.0 + 1e-3
    assert interests["tags_zh"] and interests["tags_en"]
    # a viewer nobody has seen gets an empty profile, not an error
    r = client.get("/v1/users/nobody-at-all/profile", params={"at": iso(T0)})
    assert r.status_code == 200 and r.json()["interests"] is None


def test_next_item_has_a_grounded_pitch_for_the_suggested_item(served):
    client, frames, _ = served
    t = T0.timestamp()
    room = _live_room_with_shelf(frames, t)
    r = client.get(f"/v1/rooms/{room}/next-item", params={"at": iso(T0)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["item"]["item"] in shelf_items(frames, room, t)
    pitch = body["pitch"]
    assert pitch["item"] == body["item"]["item"] and pitch["backend"] == "grounded"
    assert len(pitch["talking_points"]) == 3 and pitch["reason"] and pitch["push"]
    assert pitch["facts_used"]
    from liveshelf.text.facts import facts_table

    facts = facts_table(frames["items"])[pitch["item"]]
    host = frames["rooms"].set_index("id").loc[room, "host"]
    for text in [pitch["reason"], pitch["push"], *pitch["talking_points"]]:
        assert check(text, facts, context=[host]).ok, text


def test_shelf_explain_attaches_pitches_only_when_asked(served):
    client, frames, _ = served
    room = _live_room_with_shelf(frames, T0.timestamp())
    plain = client.get(f"/v1/rooms/{room}/shelf", params={"at": iso(T0), "user": ACTIVE_USER}).json()
    assert all("pitch" not in it for it in plain["items"])
    explained = client.get(
        f"/v1/rooms/{room}/shelf", params={"at": iso(T0), "user": ACTIVE_USER, "explain": "true"}
    ).json()
    assert [it["item"] for it in explained["items"]] == [it["item"] for it in plain["items"]]
    assert all(it["pitch"]["item"] == it["item"] for it in explained["items"][:10])


def test_ask_answers_from_shelf_facts_and_admits_not_knowing(served):
    client, frames, _ = served
    t = T0.timestamp()
    room = _live_room_with_shelf(frames, t)
    on_shelf = sorted(shelf_items(frames, room, t))
    item = on_shelf[0]
    price = float(frames["items"].set_index("id").loc[item, "price"])
    r = client.post(
        f"/v1/rooms/{room}/ask", params={"at": iso(T0)}, json={"question": "这个多少钱？", "item": item}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["known"] and body["item"] == item and body["intent"] == "price"
    assert (
        f"{price:g}" in body["answer"] or f"{price:.1f}" in body["answer"] or f"{price:.2f}" in body["answer"]
    )
    r = client.post(
        f"/v1/rooms/{room}/ask",
        params={"at": iso(T0)},
        json={"question": "Does it come with a lifetime warranty?", "item": item, "lang": "en"},
    )
    assert r.status_code == 200 and r.json()["known"] is False
    # an item that is not on this shelf now is refused, an empty question is a 422
    off = sorted(set(frames["items"]["id"]) - set(on_shelf))[0]
    assert (
        client.post(
            f"/v1/rooms/{room}/ask", params={"at": iso(T0)}, json={"question": "多少钱", "item": off}
        ).status_code
        == 404
    )
    assert client.post(f"/v1/rooms/{room}/ask", json={"question": ""}).status_code == 422
    assert client.post("/v1/rooms/no-such-room/ask", json={"question": "多少钱"}).status_code == 404


def test_a_posted_purchase_moves_the_profile(served):
    client, frames, _ = served
    items = frames["items"]
    before = client.get(f"/v1/users/{ACTIVE_USER}/profile", params={"at": iso(T0)}).json()["interests"]
    other = items.iloc[0]
    events = [
        {
            "event_id": f"buy-{i}",
            "ts": iso(T0),
            "user": ACTIVE_USER,
            "type": "purchase",
            "item": other["id"],
            "value": 10.0,
        }
        for i in range(20)
    ]
    r = client.post("/v1/events", json={"events": events}, headers=AUTH)
    assert r.status_code == 200 and r.json()["accepted"] == 20, r.text
    after = client.get(f"/v1/users/{ACTIVE_USER}/profile", params={"at": iso(T0)}).json()["interests"]
    assert after["n_events"] == before["n_events"] + 20
    assert after["categories"] != before["categories"]


# ------------------------------------------------------------------------------ live comments
POSITIVE = [
    "质量很好，物流很快，非常满意",
    "很喜欢，已经回购了",
    "性价比高，推荐购买",
    "包装精美，味道不错",
    "great quality, love it",
    "主播讲解很专业，下单了",
]
NEGATIVE = [
    "质量太差了，根本不能用，退货",
    "假货，骗人的，千万别买",
    "发货太慢，客服态度很差",
    "收到就坏了，非常失望",
    "垃圾产品，差评",
]


@pytest.fixture(scope="module")
def sentiment_dir(tmp_path_factory, shared_data):
    """A sentiment model trained on a slice of real Chinese reviews."""
    from liveshelf.data.formats.reviews import read_reviews
    from liveshelf.monitor.sentiment import SentimentClassifier

    reviews = read_reviews(shared_data / "online-shopping-10-cats").sample(4000, random_state=0)
    model = SentimentClassifier(seed=0).fit(reviews["text"].tolist(), reviews["label"].to_numpy())
    out = tmp_path_factory.mktemp("sentiment")
    model.save(out)
    return out


def _comment_burst_scenario(template, frames, home, **settings):
    """Calm chatter for 4 minutes, then a burst of angry comments about the room's top item."""
    import shutil

    from fastapi.testclient import TestClient

    from liveshelf.serving.app import create_app

    shutil.copytree(template, home)
    t0 = T0.timestamp()
    room = _live_room_with_shelf(frames, t0)
    app = create_app(api.make_settings(home, "memory", "x:", **settings))
    with TestClient(app) as client:
        base = client.get(f"/v1/rooms/{room}/shelf", params={"at": iso(T0), "k": 50}).json()["items"]
        target = base[0]["item"]
        events, n = [], 0
        for bucket in range(8):  # calm: mostly positive chatter, 24 comments per 30 s bucket
            for j in range(24):
                text = NEGATIVE[j % len(NEGATIVE)] if j % 8 == 0 else POSITIVE[j % len(POSITIVE)]
                events.append(
                    {
                        "event_id": f"c{n}",
                        "ts": iso(t0 + bucket * 30 + j),
                        "user": f"v{j}",
                        "type": "comment",
                        "room": room,
                        "text": text,
                    }
                )
                n += 1
        for j in range(30):  # the burst: angry comments about the top item
            events.append(
                {
                    "event_id": f"c{n}",
                    "ts": iso(t0 + 8 * 30 + j),
                    "user": f"w{j}",
                    "type": "comment",
                    "room": room,
                    "item": target,
                    "text": NEGATIVE[j % len(NEGATIVE)],
                }
            )
            n += 1
        r = client.post("/v1/events", json={"events": events}, headers=AUTH)
        assert r.status_code == 200 and r.json()["accepted"] == n, r.text
        later = iso(t0 + 10 * 30)
        snap = client.get(f"/v1/rooms/{room}/comments", params={"at": later})
        after = client.get(f"/v1/rooms/{room}/shelf", params={"at": later, "k": 50}).json()["items"]
    return room, target, snap, after


def test_negative_comment_burst_raises_an_alert_and_demotes_the_item(world_template, tmp_path, sentiment_dir):
    template, frames = world_template
    room, target, snap, after = _comment_burst_scenario(
        template, frames, tmp_path / "on", sentiment_model=sentiment_dir, comment_demotion=0.9
    )
    snap = snap.json()
    assert snap["volume"] > 0 and snap["negative_share"] > snap["baseline"]
    assert snap["alerts"] and snap["alerts"][0]["room"] == room, snap
    signal = snap["items"][target]
    assert signal > 0.5
    # the same traffic without comment monitoring: the item is scored higher by exactly the demotion factor
    _, _, off_snap, plain = _comment_burst_scenario(template, frames, tmp_path / "off", comment_demotion=0.9)
    assert off_snap.status_code == 503
    demoted = next(it for it in after if it["item"] == target)
    undemoted = next(it for it in plain if it["item"] == target)
    assert any(reason["source"] == "comments-negative" for reason in demoted["reasons"])
    assert demoted["score"] == pytest.approx(undemoted["score"] * (1 - 0.9 * signal), rel=1e-3)
    others = {it["item"]: it["score"] for it in plain if it["item"] != target}
    assert all(it["score"] == pytest.approx(others[it["item"]]) for it in after if it["item"] != target)


def test_comments_route_says_when_monitoring_is_off(served):
    client, frames, _ = served
    room = _live_room_with_shelf(frames, T0.timestamp())
    r = client.get(f"/v1/rooms/{room}/comments", params={"at": iso(T0)})
    assert r.status_code == 503 and "sentiment" in r.json()["detail"]
