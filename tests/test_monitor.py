"""Comment monitor: rolling shares, items, keywords, spike detection on synthetic bursts, webhook."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest

from liveshelf.errors import ConfigError
from liveshelf.monitor.alerts import Alert, Burst, MemorySink, SpikeDetector, WebhookSink, detection_report
from liveshelf.monitor.comments import Comment, CommentMonitor, extract_keywords, synthetic_comments
from liveshelf.monitor.sentiment import SentimentClassifier

PHRASES = Path(__file__).resolve().parents[1] / "src" / "liveshelf" / "data" / "phrases" / "comments.json"


@pytest.fixture(scope="module")
def phrases() -> dict[str, list[str]]:
    d = json.loads(PHRASES.read_text(encoding="utf-8"))
    return {"pos": d["zh"]["pos"] + d["en"]["pos"], "neg": d["zh"]["neg"] + d["en"]["neg"]}


@pytest.fixture(scope="module")
def phrase_model(phrases) -> SentimentClassifier:
    texts = phrases["pos"] + phrases["neg"]
    labels = [1] * len(phrases["pos"]) + [0] * len(phrases["neg"])
    return SentimentClassifier(min_df=1, C=20.0).fit(texts, labels)


def _bucket_stream(rng, n_buckets, rate, base, bursts):
    """Per-bucket (n, n_neg); ``bursts`` = [(first_bucket, length, share)]."""
    out = []
    for i in range(n_buckets):
        n = int(rng.poisson(rate))
        share = next((s for b0, ln, s in bursts if b0 <= i < b0 + ln), base)
        out.append((n, int(rng.binomial(n, share))))
    return out


# ---------------------------------------------------------------- detector on counts
def test_detector_finds_every_burst_quickly_and_stays_quiet_when_calm():
    rng = np.random.default_rng(0)
    bucket = 30.0
    starts = [60, 150, 230, 310, 400, 470]
    stream = _bucket_stream(rng, 540, rate=40, base=0.15, bursts=[(s, 4, 0.45) for s in starts])
    det = SpikeDetector(min_volume=20, cooldown_s=300)
    alerts = [
        a
        for i, (n, k) in enumerate(stream)
        if (a := det.update("r1", (i + 1) * bucket, n, k, bucket_start=i * bucket)) is not None
    ]
    bursts = [Burst("r1", s * bucket, (s + 4) * bucket, 0.45) for s in starts]
    rep = detection_report(alerts, bursts, grace_s=60)
    assert rep["missed"] == 0, rep
    assert rep["max_delay_s"] <= 2 * bucket, rep  # the first or second burst bucket
    assert rep["false_alarms"] <= 1, rep
    assert 0.1 < det.baseline("r1") < 0.2  # bursts did not drag the baseline up

    calm = _bucket_stream(
        np.random.default_rng(1), 2880, rate=40, base=0.15, bursts=[]
    )  # 24 h of 30 s buckets
    det = SpikeDetector(min_volume=20, cooldown_s=300)
    n_alerts = sum(det.update("r2", (i + 1) * bucket, n, k) is not None for i, (n, k) in enumerate(calm))
    assert n_alerts <= 3


def test_min_volume_and_cooldown():
    det = SpikeDetector(min_volume=20, warmup=3, cooldown_s=120)
    for i in range(10):
        assert det.update("r", 30.0 * (i + 1), 40, 6) is None
    assert det.update("r", 330.0, 10, 10) is None  # all negative, but only 10 comments
    first = det.update("r", 360.0, 40, 30)
    assert isinstance(first, Alert) and first.n == 40 and first.z > 3
    assert first.negative_share == pytest.approx(0.75) and first.baseline == pytest.approx(0.15, abs=0.01)
    assert det.update("r", 390.0, 40, 30) is None  # cooling down
    assert det.update("r", 480.0, 40, 30) is not None  # 120 s later
    with pytest.raises(ConfigError, match="'min_volume' parameter of SpikeDetector must be an int >= 1"):
        SpikeDetector(min_volume=0)


# ---------------------------------------------------------------- monitor
def test_rolling_share_items_keywords_and_signal(phrase_model):
    mon = CommentMonitor(phrase_model, bucket_s=30, window_s=120)
    mon.set_items("r1", {"i-lip": ["口红", "lipstick"], "i-tea": "茶叶"})
    pos, neg = "这个价格太划算了", "等了好久还没发货"
    batch = [Comment("r1", 0.0 + i, pos) for i in range(8)] + [Comment("r1", 10.0 + i, neg) for i in range(2)]
    batch += [
        Comment("r1", 20.0, "口红" + neg),
        Comment("r1", 21.0, "lipstick " + neg),
        Comment("r1", 22.0, neg, item="i-lip"),
        Comment("r1", 23.0, "茶叶" + pos),
    ]
    batch += [{"room": "r2", "ts": 5.0, "text": "Package arrived damaged"}]
    assert mon.add(batch) == []
    assert mon.volume("r1") == 14
    assert mon.negative_share("r1") == pytest.approx(5 / 14)
    assert mon.item_counts("r1", "i-lip") == (3, 3)
    assert mon.item_counts("r1", "i-tea") == (1, 0)
    assert mon.item_signal("r1", "i-lip") > 0.2 > mon.item_signal("r1", "i-tea") == 0.0
    assert mon.item_signal("r1", "unknown") == 0.0
    assert "发货" in mon.keywords("r1")
    assert mon.negative_share("r2") == 1.0 and math.isnan(mon.negative_share("nope"))
    snap = mon.snapshot("r1")
    assert snap["volume"] == 14 and set(snap["items"]) == {"i-lip", "i-tea"}
    mon.flush(300.0)  # the window has moved past every comment
    assert mon.volume("r1") == 0 and math.isnan(mon.negative_share("r1"))
    assert mon.rooms() == ["r1", "r2"] and mon.baseline("r1") > mon.prior_share
    mon.flush(2000.0)  # 30 minutes without comments: the rooms have ended
    assert mon.rooms() == [] and mon.baseline("r1") == mon.prior_share
    mon.add([Comment("r1", 2001.0, "口红" + neg)])
    assert mon.item_counts("r1", "i-lip") == (1, 1)  # item aliases survive
    mon.add([Comment("r1", 1000.0, neg), Comment("r1", 1950.0, neg)])  # late: outside / inside the window
    assert mon.volume("r1") == 2 and mon.n_scored == 17
    with pytest.raises(ConfigError, match="must have the keys 'room', 'ts'"):
        mon.add([{"room": "r1", "text": "x"}])


def test_keywords_english_and_chinese():
    assert extract_keywords(["shipping is slow", "slow shipping again", "so slow"], 2) == ["slow", "shipping"]
    kw = extract_keywords(["发货太慢了，客服也不回复", "客服一直不回复", "发货慢"], 3)
    assert "客服" in kw and "发货" in kw


def test_end_to_end_bursts_on_a_synthetic_stream(phrase_model, phrases):
    bursts = [
        Burst("A", 1200, 1380, 0.6),
        Burst("B", 2400, 2550, 0.7, rate_multiplier=2.0),
        Burst("A", 3000, 3180, 0.6),
    ]
    stream = synthetic_comments(
        phrases["pos"],
        phrases["neg"],
        rooms=["A", "B", "C"],
        duration_s=3600,
        rate_per_s=1.2,
        base_negative=0.12,
        bursts=bursts,
        seed=0,
    )
    sink = MemorySink()
    mon = CommentMonitor(phrase_model, bucket_s=30, detector=SpikeDetector(min_volume=15), sinks=[sink])
    for i in range(0, len(stream), 200):  # arrives in batches, as from a queue
        mon.add(stream[i : i + 200])
    mon.flush(3600)
    rep = detection_report(mon.alerts, bursts, grace_s=60)
    assert rep["missed"] == 0 and rep["max_delay_s"] <= 60, rep
    assert rep["false_alarms"] <= 1, rep
    assert len(sink.alerts) == len(mon.alerts)
    recent = sink.recent(room="A")
    assert recent and all(r["room"] == "A" for r in recent)
    assert recent[0]["keywords"], recent[0]  # keywords of the negative comments of the spike bucket
    assert mon.n_scored == len(stream)


# ---------------------------------------------------------------- webhook
class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []
    fail_first = 0

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        cls = type(self)
        if cls.fail_first > 0:
            cls.fail_first -= 1
            self.send_response(503)
        else:
            cls.received.append(json.loads(body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture()
def hook_server():
    _Hook.received = []
    _Hook.fail_first = 0
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", _Hook
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_webhook_delivers_with_retries(hook_server):
    url, handler = hook_server
    alert = Alert(
        room="r9",
        ts=1_700_000_000.0,
        negative_share=0.6,
        z=4.2,
        n=50,
        keywords=("发货", "slow"),
        baseline=0.15,
        bucket_start=1_699_999_970.0,
    )
    sink = WebhookSink(url, timeout_s=2.0, retries=2, backoff_s=0.01)
    handler.fail_first = 2  # two 503s, then success on the last try
    assert sink.send(alert) is True
    assert sink.delivered == 1 and sink.failed == 0
    (payload,) = handler.received
    assert payload["type"] == "negative_spike" and payload["room"] == "r9"
    assert payload["keywords"] == ["发货", "slow"] and payload["n"] == 50
    assert payload["time"].startswith("2023-11-14T22:13:20")
    handler.fail_first = 5
    assert sink.send(alert) is False
    assert sink.failed == 1 and "503" in sink.last_error


def test_webhook_unreachable_does_not_raise():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = WebhookSink(f"http://127.0.0.1:{port}/x", timeout_s=0.5, retries=1, backoff_s=0.01)
    sink.emit(Alert(room="r", ts=0.0, negative_share=1.0, z=5.0, n=20))
    assert sink.failed == 1 and sink.delivered == 0 and "ConnectError" in sink.last_error
    with pytest.raises(ConfigError, match="'url' parameter of WebhookSink must be an http"):
        WebhookSink("ftp://x")
