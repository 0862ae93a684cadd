"""Shared fixtures: real SQLite files, a real mosquitto, the shared data folder."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
MODEL_CARD = ROOT / "models" / "emotion" / "model_card.json"

needs_shared = pytest.mark.skipif(
    not SHARED.exists(), reason="../shared/data is not present (fresh clone)"
)
needs_model = pytest.mark.skipif(
    not MODEL_CARD.exists(), reason="no trained emotion model in models/emotion/"
)


@pytest.fixture
def fresh_db(tmp_path):
    """A migrated Store on a new database file."""
    from appliance.store.db import Store

    store = Store(tmp_path / "test.db", box_id="test-box")
    yield store
    store.close()


@pytest.fixture
def broker(tmp_path):
    """A real mosquitto on a free loopback port."""
    from appliance.publish.broker import LocalBroker, find_mosquitto

    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    b = LocalBroker(workdir=tmp_path / "broker").start()
    yield b
    b.close()


class Collector:
    """A QoS 1 subscriber that records every message on a topic filter."""

    def __init__(self, url: str, topic: str = "#"):
        import paho.mqtt.client as mqtt

        from appliance.publish.mqtt import parse_url

        host, port, _ = parse_url(url)
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"collector-{time.monotonic_ns()}"
        )
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscriber did not subscribe"

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def payloads(self, suffix: str | None = None) -> list[dict]:
        with self._lock:
            msgs = list(self.messages)
        return [json.loads(p) for t, p in msgs if suffix is None or t.endswith(suffix)]

    def wait_for(self, n: int, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= n:
                    return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def collector(broker):
    c = Collector(broker.url)
    yield c
    c.close()
