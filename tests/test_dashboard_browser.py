"""The live-room console in a real headless Chromium (Playwright), against a real uvicorn server.

The server runs in a thread over a copy of ``test_api``'s simulated world, with API keys and a
comment sentiment model. The page is opened in replay mode (``?at=...``) at the world's time.
Screenshots go to pytest's tmp dir and, when ``LIVESHELF_ARTIFACTS`` names a folder, there too.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

import test_api as api
import test_dashboard_api as dash
from liveshelf.dashboard import BackgroundServer
from liveshelf.serving.app import create_app
from test_api import KEY, T0, iso, live_rooms, shelf_items

world_template = api.world_template
phrase_sentiment = dash.phrase_sentiment

CHROMIUM = Path("/usr/bin/chromium")
T = T0.timestamp()

expect.set_options(timeout=30_000)

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def server(world_template, phrase_sentiment, tmp_path_factory):
    template, frames = world_template
    home = tmp_path_factory.mktemp("console") / "home"
    shutil.copytree(template, home)
    settings = api.make_settings(home, "memory", "browser:", sentiment_model=phrase_sentiment[0])
    with BackgroundServer(create_app(settings)) as srv:
        yield srv, frames, home


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (make chromium); the browser tests need it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.console_errors = errors  # type: ignore[attr-defined]
    yield pg
    context.close()


def wait_until(check, timeout: float = 30.0) -> None:
    """Poll ``check()`` from Python (the page's CSP forbids the eval that ``wait_for_function`` needs)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting for the page"
        time.sleep(0.2)


def save_screenshot(page, tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    page.screenshot(path=str(out), full_page=True)
    extra = os.environ.get("LIVESHELF_ARTIFACTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(extra) / name)
    assert out.stat().st_size > 10_000
    return out


def post_events(url: str, events: list[dict]) -> dict:
    req = urllib.request.Request(
        url + "/v1/events",
        data=json.dumps({"events": events}).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": KEY},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def stable_room(frames: dict, lo: float, hi: float, skip: set[str] = frozenset()) -> str:
    """A room live over [lo, hi] with at least 3 items on its shelf at both ends."""
    return next(
        r
        for r in sorted(live_rooms(frames, lo) & live_rooms(frames, hi) - skip)
        if len(shelf_items(frames, r, lo)) >= 3 and len(shelf_items(frames, r, hi)) >= 3
    )


def test_console_shows_live_rooms_a_room_and_what_100_simulated_viewers_change(server, page, tmp_path):
    srv, frames, _ = server
    t = T + 60
    page.goto(f"{srv.url}/?at={quote(iso(t))}#rooms")
    expected = live_rooms(frames, t)
    expect(page.locator(".room-card")).to_have_count(len(expected))
    shown = set(page.eval_on_selector_all(".room-card", "els => els.map(e => e.dataset.room)"))
    assert shown == expected
    assert page.locator(".room-card svg.spark").count() == len(expected)
    assert page.locator("#key-form").is_visible()  # keys are configured: the page offers the key field
    save_screenshot(page, tmp_path, "console-rooms.png")

    room = stable_room(frames, t, t + 120)
    page.click(f".room-card[data-room='{room}']")
    on_shelf = shelf_items(frames, room, t)
    expect(page.locator("#shelf li[data-item]")).to_have_count(len(on_shelf))
    ranked = page.eval_on_selector_all("#shelf li[data-item]", "els => els.map(e => e.dataset.item)")
    assert set(ranked) == on_shelf
    nxt = page.locator("#next-item .next-card")
    assert nxt.get_attribute("data-item") == ranked[0]
    assert page.locator("#next-item .points li").count() == 3
    assert page.locator("#next-item .reason").inner_text().startswith("Why:")
    viewers_before = int(page.locator("#room-kpis [data-kpi=audience] .kpi-value").inner_text())

    page.fill("#key", KEY)
    page.click("#key-form button")
    page.click("#simulate")
    page.wait_for_selector("#changes:not([hidden])")
    assert "100 simulated viewers" in page.locator("#changes h3").inner_text()
    after = page.locator("#changes [data-change=viewers] .after").inner_text()
    assert int(after) == viewers_before + 100
    kpi = page.locator("#room-kpis [data-kpi=audience] .kpi-value")
    wait_until(lambda: int(kpi.inner_text()) >= viewers_before + 100)  # the polled view has them too
    expect(page.locator("#audience ul.categories li").first).to_be_visible()  # their interests
    save_screenshot(page, tmp_path, "console-room.png")
    assert page.console_errors == []


def test_a_burst_of_negative_comments_shows_an_alert_in_the_room(server, page, tmp_path, phrase_sentiment):
    srv, frames, _ = server
    _, model, pools = phrase_sentiment
    neg_texts = [str(x) for x in pools[("builtin-zh", 0)] if model.predict_proba([str(x)])[0, 0] >= 0.5]
    pos_texts = [str(x) for x in pools[("builtin-zh", 1)] if model.predict_proba([str(x)])[0, 0] < 0.5]
    b0 = math.ceil((T + 600) / 30) * 30  # later than anything the other test posted: the monitor's clock
    room = stable_room(frames, b0, b0 + 900)
    calm = [
        {
            "event_id": f"calm-{k}-{j}",
            "ts": b0 + k * 30 + j,
            "user": f"calm{j}",
            "type": "comment",
            "room": room,
            "text": (neg_texts[j % len(neg_texts)] if j % 8 == 0 else pos_texts[j % len(pos_texts)]),
        }
        for k in range(8)
        for j in range(24)
    ]
    assert post_events(srv.url, calm)["accepted"] == len(calm)

    start = b0 + 8 * 30 + 5
    page.goto(f"{srv.url}/?at={quote(iso(start))}&speed=10#room/{room}")
    page.wait_for_selector("#comments li.positive")
    assert page.locator("#alerts li.alert").count() == 0  # calm chatter: no alert yet

    clock = page.evaluate("window.liveshelfConsole.clock()")
    burst_at = (math.floor(clock / 30) + 2) * 30  # a bucket the page's clock has not reached yet
    burst = [
        {
            "event_id": f"burst-{j}",
            "ts": burst_at + j * 0.5,
            "user": f"angry{j}",
            "type": "comment",
            "room": room,
            "text": neg_texts[j % len(neg_texts)],
        }
        for j in range(30)
    ]
    assert post_events(srv.url, burst)["accepted"] == len(burst)
    page.wait_for_selector("#alerts li.alert", timeout=45_000)  # once the clock closes the burst's bucket
    assert "negative spike" in page.locator("#alerts li.alert").first.inner_text()
    assert page.locator("#comments li.negative").count() >= 10
    save_screenshot(page, tmp_path, "console-alert.png")

    page.goto(f"{srv.url}/?at={quote(iso(burst_at + 60))}#rooms")
    page.wait_for_selector(f".room-card[data-room='{room}'] .badge.alert")
    assert page.console_errors == []


def test_viewer_view_shows_profile_and_feed_and_models_with_experiment_charts(server, page):
    srv, frames, home = server
    t = T + 60
    page.goto(f"{srv.url}/?at={quote(iso(t))}#viewer/{api.ACTIVE_USER}")
    page.wait_for_selector("#viewer-feed li[data-room]")
    feed = set(page.eval_on_selector_all("#viewer-feed li[data-room]", "els => els.map(e => e.dataset.room)"))
    assert feed and feed <= live_rooms(frames, t)
    assert page.locator("#viewer-profile ul.bars li").count() >= 1
    assert int(page.locator("#viewer-profile [data-kpi=events] .kpi-value").inner_text()) > 0
    page.click("nav a[data-tab=models]")
    page.wait_for_selector("table.versions tr[data-version=v0001].production")
    assert page.locator("#experiments").inner_text().strip() == "No experiments."

    from PIL import Image

    from liveshelf.experiment.abtest import Arm, Experiment, ExperimentStore

    store = ExperimentStore(home)
    store.create(
        Experiment(name="pop-vs-knn", arms=[Arm("control"), Arm("b", model="default", version="v0002")])
    )
    Image.new("RGB", (320, 160), (40, 90, 200)).save(store.folder("pop-vs-knn") / "report.png")
    page.click("nav a[data-tab=rooms]")
    page.click("nav a[data-tab=models]")
    img = page.locator("[data-experiment=pop-vs-knn] img.report")
    expect(img).to_be_visible()
    wait_until(lambda: img.evaluate("i => i.complete && i.naturalWidth") == 320)  # the PNG, via the API
    assert page.console_errors == []
