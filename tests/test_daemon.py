"""Daemon logic with a fake emotion engine and injected sources (no sound card, no model needed)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from support import fakes
from support.fakes import ScriptedSource
from support.mqtt import cti_client

from appliance.capture.wav import read_wav
from appliance.config import config_from_dict
from appliance.ops.daemon import Daemon, DaemonOptions, run_daemon
from appliance.publish.commands import PanelCommandReader
from appliance.store import commands as command_rows
from appliance.store.connection import connect

DEMO = Path(__file__).resolve().parent.parent / "appliance" / "data" / "demo_call.wav"


def fake_engines():
    """Loud customer speech is "angry", the rest neutral; no STT."""
    script = fakes.by_level(
        fakes.result("angry", 0.8, 0.5, 0.2, -0.3), fakes.result("neutral", 0.8, 0.5, 0.2, -0.3)
    )
    return fakes.engines(fakes.FakeEmotion(script))


def _cfg(tmp_path: Path, **extra) -> object:
    data = {
        "box": {"id": "box-t"},
        "paths": {"db": str(tmp_path / "a.db")},
        "stt": {"engine": "none"},
        "positions": [{"id": "pos-1", "device": "fake"}],
        "retention": {"min_free_mb": 0.0},
    }
    data.update(extra)
    return config_from_dict(data, base_dir=tmp_path)


def _opts(**kw) -> DaemonOptions:
    base = dict(
        silence_end_s=4.0,
        retry_s=0.2,
        panel_poll_s=0.05,
        health_interval_s=0.2,
        metrics="127.0.0.1:0",
    )
    base.update(kw)
    return DaemonOptions(**base)


class Running:
    """Start a Daemon in this thread, run its main loop in another; stop on exit."""

    def __init__(self, cfg, factory, opts=None, engines_=None):
        self.d = Daemon(
            cfg,
            engines=engines_ or fake_engines(),
            source_factory=factory,
            options=opts or _opts(),
        )

    def __enter__(self):
        self.d.start()
        self.t = threading.Thread(target=self.d.run, daemon=True)
        self.t.start()
        return self.d

    def __exit__(self, *exc):
        self.d.stop_event.set()
        self.t.join(10)
        self.d.stop()


def _rows(db_path, sql, args=()):
    db = connect(db_path, readonly=True)
    try:
        return [tuple(r) for r in db.execute(sql, args).fetchall()]
    finally:
        db.conn.close()


def _wait(pred, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except Exception:
            pass
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def demo():
    rec = read_wav(DEMO)
    return rec.channels[0], rec.channels[1]


def test_auto_call_opens_on_customer_speech_and_ends_on_silence(tmp_path, demo):
    cfg = _cfg(tmp_path)
    db = cfg.resolve(cfg.paths.db)
    agent, customer = demo
    sources = []

    def factory(pos):
        src = ScriptedSource(agent, customer) if not sources else ScriptedSource()
        sources.append(src)
        return src

    with Running(cfg, factory) as d:
        assert _wait(lambda: _rows(db, "SELECT state FROM calls") == [("ended",)])
        port = d.metrics_server.server_address[1]
        assert _wait(lambda: d.health.last is not None and d.health.last["utterances"] > 0)
        time.sleep(0.3)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "appliance_up 1" in text
    assert 'appliance_stream_connected{position="pos-1"} 1' in text
    assert 'appliance_info{software_version="' in text
    (call_id, position, call_type, state) = _rows(
        db, "SELECT id, position, call_type, state FROM calls"
    )[0]
    assert (position, call_type, state) == ("pos-1", "support", "ended")
    utts = _rows(db, "SELECT speaker, emotion_label, start FROM utterances ORDER BY start")
    customer_utts = [u for u in utts if u[0] == "customer"]
    assert len(customer_utts) >= 8
    assert all(u[1] is not None for u in customer_utts)
    assert all(u[1] is None for u in utts if u[0] == "agent")  # EU AI Act: no agent emotion
    # the customer's first words (6.1 s into the recording) are in the call thanks to the pre-roll
    assert min(u[2] for u in customer_utts) < 1.5
    kinds = dict(_rows(db, "SELECT kind, COUNT(*) FROM outbox GROUP BY kind"))
    assert kinds["utterance"] == len(utts) and kinds["call"] >= 2 and kinds["health"] >= 1
    health = json.loads(_rows(db, "SELECT value FROM settings WHERE key='health'")[0][0])
    assert health["box_id"] == "box-t" and health["streams"][0]["position"] == "pos-1"
    assert health["emotion_model"]["version"] == "0.0.1-test"
    assert health["stt"]["engine"] == "none"


def test_cti_start_update_end_and_adoption(tmp_path):
    cfg = _cfg(tmp_path)
    db = cfg.resolve(cfg.paths.db)
    with Running(cfg, lambda pos: ScriptedSource()) as d:
        d.dispatch({"position": "pos-1", "action": "update", "customer": "CRM-1"})
        d.dispatch({"position": "pos-1", "action": "start", "call_type": "sales"})
        assert _wait(lambda: len(_rows(db, "SELECT id FROM calls")) == 1)
        time.sleep(0.5)  # silence: a managed call does not end after silence_end_s...
        d.dispatch({"position": "pos-1", "action": "update", "segment": "gold"})
        assert _wait(lambda: _rows(db, "SELECT segment FROM calls") == [("gold",)])
        assert _rows(db, "SELECT state FROM calls") == [("live",)]
        d.dispatch({"position": "pos-1", "action": "end"})
        assert _wait(lambda: _rows(db, "SELECT state FROM calls") == [("ended",)])
        with pytest.raises(ValueError, match="unknown position"):
            d.dispatch({"position": "nope", "action": "start"})
    row = _rows(db, "SELECT customer_ref, call_type, segment, state FROM calls")[0]
    assert row == ("CRM-1", "sales", "gold", "ended")


def test_managed_call_survives_silence_that_ends_an_auto_call(tmp_path):
    cfg = _cfg(tmp_path)
    db = cfg.resolve(cfg.paths.db)
    with Running(cfg, lambda pos: ScriptedSource(), _opts(silence_end_s=0.1)) as d:
        d.dispatch({"position": "pos-1", "action": "start"})
        assert _wait(lambda: len(_rows(db, "SELECT id FROM calls")) == 1)
        time.sleep(1.0)  # > 0.1 s of silence in audio time many times over
        assert _rows(db, "SELECT state FROM calls") == [("live",)]
    # stopping the daemon closes the open call
    assert _rows(db, "SELECT state FROM calls") == [("ended",)]


def test_panel_command_row_is_applied_once(tmp_path):
    cfg = _cfg(tmp_path)
    db = cfg.resolve(cfg.paths.db)
    with Running(cfg, lambda pos: ScriptedSource()) as d:
        panel = connect(db)
        try:
            put = lambda cmd: command_rows.enqueue(panel, cmd, user="sup")[0]  # noqa: E731

            put({"position": "pos-1", "action": "start", "customer": "C-9"})
            assert _wait(lambda: _rows(db, "SELECT customer_ref FROM calls") == [("C-9",)])
            time.sleep(0.3)  # polled again: not applied twice
            assert len(_rows(db, "SELECT id FROM calls")) == 1
            put({"position": "pos-1", "action": "end"})
            assert _wait(lambda: _rows(db, "SELECT state FROM calls") == [("ended",)])
            bad = put({"position": "pos-1", "action": "start", "customer": "bad value with spaces"})
            assert _wait(lambda: command_rows.state_of(panel, bad)[0] == "rejected")
            assert len(_rows(db, "SELECT id FROM calls")) == 1  # rejected by the contract
            assert "customer" in (command_rows.state_of(panel, bad)[1] or "")
        finally:
            panel.conn.close()
        assert d.router.applied == 2 and d.router.rejected == 1
    states = _rows(db, "SELECT state FROM commands ORDER BY id")
    assert states == [("applied",), ("applied",), ("rejected",)]


def test_panel_commands_queued_before_start_are_not_applied(tmp_path):
    from appliance.publish.commands import CommandRouter
    from appliance.store.writer import Store

    db = tmp_path / "p.db"
    s = Store(db)
    stale = command_rows.enqueue(s.db, {"position": "pos-1", "action": "start"})[0]
    got: list[dict] = []
    router = CommandRouter({"pos-1": got.append})
    reader = PanelCommandReader(db, router)
    try:
        assert reader.poll() == 0 and got == []
        assert command_rows.state_of(s.db, stale)[0] == "rejected"
        other = command_rows.enqueue(s.db, {"position": "pos-2", "action": "start"})[0]
        fresh = command_rows.enqueue(s.db, {"position": "pos-1", "action": "end"})[0]
        assert reader.poll() == 2
        assert [c["action"] for c in got] == ["end"] and got[0]["_via"] == "panel"
        assert command_rows.state_of(s.db, other) == ("rejected", "unknown position 'pos-2'")
        assert command_rows.state_of(s.db, fresh)[0] == "applied"
    finally:
        reader.close()
        s.close()


def test_device_failure_is_retried_and_does_not_stop_the_daemon(tmp_path):
    cfg = _cfg(tmp_path)
    calls = []

    def factory(pos):
        calls.append(pos.id)
        if len(calls) == 1:
            raise OSError("no such device")
        if len(calls) == 2:
            return ScriptedSource(fail_after=5)
        return ScriptedSource()

    with Running(cfg, factory) as d:
        w = d.workers["pos-1"]
        assert _wait(lambda: len(calls) >= 3 and w.stats.connected, timeout=10)
        assert w.stats.device_errors == 2
        assert d.healthy()


def test_mqtt_cti_command_and_status(tmp_path):
    from appliance.publish.broker import LocalBroker, find_mosquitto

    if find_mosquitto() is None:
        pytest.skip("mosquitto not installed")
    with LocalBroker(persistence=False) as broker:
        cfg = _cfg(tmp_path, mqtt={"url": broker.url})
        db = cfg.resolve(cfg.paths.db)
        with Running(cfg, lambda pos: ScriptedSource()) as d:
            assert d.publisher.connected.wait(10)
            c = cti_client(broker.port)
            try:
                cmd = {
                    "position": "pos-1",
                    "action": "start",
                    "customer": "CRM-7",
                    "segment": "vip",
                }
                c.publish("callcenter/v1/box-t/cmd/call", json.dumps(cmd), qos=1).wait_for_publish(
                    5
                )
                assert _wait(lambda: _rows(db, "SELECT customer_ref FROM calls") == [("CRM-7",)])
                c.publish(
                    "callcenter/v1/box-t/cmd/call",
                    json.dumps({"position": "pos-1", "action": "end"}),
                    qos=1,
                ).wait_for_publish(5)
                assert _wait(lambda: _rows(db, "SELECT state FROM calls") == [("ended",)])
                assert _wait(lambda: d.health.last and d.health.last["broker_connected"])
            finally:
                c.loop_stop()
                c.disconnect()


def test_run_daemon_stops_on_event_and_reports_start_failure(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    rc = run_daemon(
        cfg,
        engines=fake_engines(),
        source_factory=lambda pos: ScriptedSource(),
        options=_opts(),
        stop_event=stop,
    )
    assert rc == 0

    import appliance.ops.engines

    def boom(cfg):
        raise RuntimeError("model card missing")

    monkeypatch.setattr(appliance.ops.engines, "load_engines", boom)
    assert run_daemon(cfg, options=_opts(), stop_event=threading.Event()) == 1


def test_two_positions_are_independent(tmp_path, demo):
    agent, customer = demo
    cfg = _cfg(
        tmp_path,
        positions=[{"id": "pos-1", "device": "a"}, {"id": "pos-2", "device": "b"}],
    )
    db = cfg.resolve(cfg.paths.db)

    def factory(pos):
        return (
            ScriptedSource(agent[: 16000 * 16], customer[: 16000 * 16])
            if pos.id == "pos-2"
            else ScriptedSource()
        )

    with Running(cfg, factory, _opts(silence_end_s=2.0)):
        assert _wait(lambda: _rows(db, "SELECT position, state FROM calls") == [("pos-2", "ended")])


def test_a_click_does_not_open_a_call(tmp_path):
    cfg = _cfg(tmp_path)
    db = cfg.resolve(cfg.paths.db)
    rng = np.random.default_rng(0)
    click = np.zeros(16000 * 2, np.float32)
    click[16000 : 16000 + 800] = rng.uniform(-0.8, 0.8, 800)  # 50 ms burst
    with Running(cfg, lambda pos: ScriptedSource(click * 0, click)) as d:
        assert _wait(lambda: d.workers["pos-1"].stats.audio_s > 4.0, timeout=10)
        assert d.workers["pos-1"].stats.calls == 0
    assert _rows(db, "SELECT COUNT(*) FROM calls") == [(0,)]


# -- CTI commands in bursts and floods (real broker) ---------------------------------------------


def _cti(broker):
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"cti-{time.monotonic_ns()}")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c


def _garbage(n: int) -> list[bytes]:
    """What a broken or hostile client sends: binary, not JSON, wrong shapes, bad values."""
    import random

    rnd = random.Random(22)
    shapes = [
        lambda: rnd.randbytes(rnd.randrange(1, 400)),
        lambda: b"{" * rnd.randrange(1, 200),
        lambda: json.dumps([rnd.random() for _ in range(20)]).encode(),
        lambda: json.dumps({"position": "pos-1", "action": "dance"}).encode(),
        lambda: json.dumps({"position": "pos 1", "action": "start"}).encode(),
        lambda: json.dumps({"position": "pos-1", "customer": "x" * 65}).encode(),
        lambda: json.dumps({"position": "pos-1", "text": "free text"}).encode(),
        lambda: json.dumps({"position": "pos-9", "action": "start"}).encode(),  # unknown position
    ]
    return [shapes[i % len(shapes)]() for i in range(n)]


@pytest.fixture
def mqtt_broker():
    from appliance.publish.broker import LocalBroker, find_mosquitto

    if find_mosquitto() is None:
        pytest.skip("mosquitto not installed")
    with LocalBroker(persistence=False) as broker:
        yield broker


def test_a_burst_of_valid_cti_commands_is_applied_in_full(tmp_path, mqtt_broker):
    """300 `start` commands at once: before, the position's queue of 64 dropped 185 of them."""
    cfg = _cfg(tmp_path, mqtt={"url": mqtt_broker.url})
    with Running(cfg, lambda pos: ScriptedSource()) as d:
        assert d.publisher.connected.wait(10)
        cti = _cti(mqtt_broker)
        try:
            infos = [
                cti.publish(
                    "callcenter/v1/box-t/cmd/call",
                    json.dumps({"position": "pos-1", "action": "start", "customer": f"CRM-{i}"}),
                    qos=1,
                )
                for i in range(300)
            ]
            for info in infos:
                info.wait_for_publish(10)
            w = d.workers["pos-1"]
            assert _wait(lambda: w.stats.calls == 300, 30), w.stats.calls
            assert w.call.meta.customer_ref == "CRM-299"
            assert d.router.applied == 300 and d.router.rejected == 0
        finally:
            cti.loop_stop()
            cti.disconnect()


FLOOD = """
import json, sys, time
import paho.mqtt.client as mqtt
sys.path.insert(0, sys.argv[2])
from test_daemon import _garbage
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="cti-flood")
c.max_inflight_messages_set(1000)
c.max_queued_messages_set(0)
c.connect("127.0.0.1", int(sys.argv[1]))
c.loop_start()
topic = "callcenter/v1/box-t/cmd/call"
garbage = _garbage(int(sys.argv[3]))
for g in garbage:
    c.publish(topic, g, qos=1)
cmd = {"position": "pos-1", "action": "start", "customer": "CRM-FLOOD"}
c.publish(topic, json.dumps(cmd), qos=1).wait_for_publish(60)
print(time.monotonic(), flush=True)  # the broker holds the command
infos = [c.publish(topic, g, qos=1) for g in garbage]  # and the flood goes on
infos[-1].wait_for_publish(60)
c.loop_stop()
c.disconnect()
"""


def _flood(broker, n: int):
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-c", FLOOD, str(broker.port), str(Path(__file__).parent), str(n)],
        stdout=subprocess.PIPE,
        text=True,
    )


def _busy_capture():
    """Speech-like noise read as fast as it goes: the capture thread holds a core."""
    noise = (0.1 * np.random.default_rng(0).standard_normal(16000 * 600)).astype(np.float32)
    return lambda pos: ScriptedSource(noise, noise)


def test_a_valid_command_in_a_flood_of_garbage_is_applied_within_a_second(tmp_path, mqtt_broker):
    """A CTI process sends 5,000 garbage messages, one `start` and 5,000 more, while the
    capture thread is busy: the command is applied within a second of reaching the broker."""
    cfg = _cfg(tmp_path, mqtt={"url": mqtt_broker.url})
    with Running(cfg, _busy_capture()) as d:
        assert d.publisher.connected.wait(10)
        w = d.workers["pos-1"]
        cti = _flood(mqtt_broker, 5000)
        try:
            assert _wait(lambda: w.call is not None and w.call.meta.customer_ref == "CRM-FLOOD", 60)
            applied = time.monotonic()
            at_broker = float(cti.stdout.readline())
        finally:
            cti.wait(60)
        assert _wait(lambda: d.publisher.commands_rejected + d.router.rejected == 10000, 30)
        print(f"applied {applied - at_broker:.2f} s after the broker had it, inside a flood")
        assert applied - at_broker < 1.0 and d.router.applied == 1


def test_a_backlog_of_garbage_delivered_at_connect_loses_no_command(tmp_path, mqtt_broker):
    """The box restarts during a flood: its session holds 5,000 garbage messages and a `start`,
    all delivered the moment it connects. The positions take commands before the publisher
    connects, so the `start` finds its position (MQTT throughput, not the box, sets the time)."""
    cfg = _cfg(tmp_path, mqtt={"url": mqtt_broker.url})
    with Running(cfg, lambda pos: ScriptedSource()) as d:  # the box's session: subscribed
        assert d.publisher.connected.wait(10)
    cti = _flood(mqtt_broker, 5000)
    assert cti.wait(120) == 0
    with Running(cfg, _busy_capture()) as d:
        w = d.workers["pos-1"]
        assert d.publisher.connected.wait(10)
        connected = time.monotonic()
        assert _wait(lambda: w.call is not None and w.call.meta.customer_ref == "CRM-FLOOD", 60)
        took = time.monotonic() - connected
        assert _wait(lambda: d.publisher.commands_rejected + d.router.rejected == 10000, 30)
        print(f"applied {took:.2f} s after connecting, behind 5000 queued garbage messages")
        assert d.router.applied == 1


def test_rejecting_garbage_costs_little_next_to_a_busy_thread(tmp_path):
    """5,000 garbage messages through the publisher's handler and the router while another
    thread holds the GIL: before, each cost a JSON Schema run and a logged warning (2.2 s for
    5,000 here); now a shape check and a count (0.3 s)."""
    import paho.mqtt.client as mqtt

    from appliance.config import MqttConfig
    from appliance.publish.commands import CommandRouter
    from appliance.publish.mqtt import Publisher

    applied: list[dict] = []
    router = CommandRouter({"pos-1": applied.append})
    pub = Publisher(
        tmp_path / "x.db",
        MqttConfig(url="mqtt://127.0.0.1:1"),
        box_id="box-t",
        on_command=lambda c: router.submit(c, "mqtt", checked=True),
    )
    messages = []
    valid = json.dumps({"position": "pos-1", "action": "start"}).encode()
    for payload in [*_garbage(5000), valid]:
        m = mqtt.MQTTMessage(topic=b"callcenter/v1/box-t/cmd/call")
        m.payload = payload
        messages.append(m)
    stop = threading.Event()

    def busy():
        x = 0
        while not stop.is_set():
            for i in range(1000):
                x += i

    hog = threading.Thread(target=busy)
    hog.start()
    try:
        t0 = time.perf_counter()
        for m in messages:
            pub._on_message(None, None, m)
        took = time.perf_counter() - t0
    finally:
        stop.set()
        hog.join()
    print(f"5,000 rejects and one command in {took:.2f} s next to a busy thread")
    assert pub.commands_rejected + router.rejected == 5000
    assert [c["action"] for c in applied] == ["start"]
    assert took < 1.0
