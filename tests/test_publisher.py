"""Publisher against a real mosquitto: QoS 1, sent only on PUBACK, seq order, status and last
will, inbound garbage through a real broker, the outbox CLI, and the outbox itself."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from support.mqtt import DedupSubscriber

from appliance.config import MqttConfig
from appliance.publish import contract
from appliance.publish.broker import LocalBroker, find_mosquitto, free_port
from appliance.publish.mqtt import Publisher
from appliance.store.connection import connect
from appliance.store.outbox import outbox_status
from appliance.store.writer import Store

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")

BOX = "box-01"


def health(n: int = 1) -> list[tuple[str, dict]]:
    body = {"uptime_s": 1.0, "outbox_pending": 0, "broker_connected": True}
    return [("health", contract.new_message("health", BOX, body)) for _ in range(n)]


def live_call(call_id: str = "c-1") -> tuple[str, dict]:
    body = {
        "call_id": call_id,
        "position": "pos-1",
        "state": "live",
        "call_type": "support",
        "started_at": 1.0,
        "duration": 1.0,
    }
    return ("call", contract.new_message("call", BOX, body))


def settings(url: str, **kw) -> MqttConfig:
    base = dict(url=url, reconnect_min_delay=0.1, reconnect_max_delay=0.5)
    return MqttConfig(**{**base, **kw})


def ids_in(store: Store) -> set[str]:
    return {r[0] for r in store.db.execute("SELECT msg_id FROM outbox").fetchall()}


@pytest.fixture
def mq(tmp_path):
    b = LocalBroker(workdir=tmp_path / "broker").start()
    sub = DedupSubscriber(b.url, client_id="crm-test").start()
    store = Store(tmp_path / "box.db", box_id=BOX)
    yield b, sub, store
    sub.stop()
    store.close()
    b.close()


def test_rows_flow_in_seq_order_and_are_kept_with_a_sent_time(mq):
    b, sub, store = mq
    store.write(messages=health(30))
    pub = Publisher(store.path, settings(b.url), box_id=BOX)
    pub.start()
    try:
        assert pub.flush(10)
        store.write(messages=health(10))
        pub.wake()
        assert pub.flush(10)
    finally:
        pub.stop()
    assert sub.wait_for(ids_in(store), 10)
    seqs = [m["seq"] for m in sorted(sub.by_id.values(), key=lambda m: m["ts"])]
    assert sorted(seqs) == list(range(1, 41))
    rows = store.db.execute("SELECT seq, sent_at, attempts FROM outbox ORDER BY seq").fetchall()
    assert len(rows) == 40 and all(sent is not None and att >= 1 for _, sent, att in rows)
    # retained status: online while connected, offline (with the final checkpoint) after stop
    retained = _retained_status(b.url)
    assert retained["state"] == "offline" and retained["acked_seq"] == 40
    assert retained["seq"] == 40
    contract.check_payload("status", retained)
    assert any(s["state"] == "online" for s in sub.statuses)


def _retained_status(url: str) -> dict:
    got: list[dict] = []
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"peek-{time.monotonic_ns()}")
    c.on_connect = lambda c_, u, f, rc, p=None: c_.subscribe(f"callcenter/v1/{BOX}/status", 1)

    def on_message(c_, u, m):
        if m.retain:
            got.append(json.loads(m.payload))
            done.set()

    c.on_message = on_message
    port = int(url.rsplit(":", 1)[1])
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        assert done.wait(5), "no retained status"
        return got[-1]
    finally:
        c.disconnect()
        c.loop_stop()


class BlackHole:
    """An 'MQTT broker' that accepts the connection (CONNACK, SUBACK) but never sends a PUBACK."""

    def __init__(self):
        self.port = free_port()
        self.server = socket.create_server(("127.0.0.1", self.port))
        self.server.settimeout(0.1)
        self.publishes = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        with conn:
            conn.settimeout(0.1)
            buf = b""
            while not self.stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                buf += data
                while len(buf) >= 2:
                    n, mult, i = 0, 1, 1
                    while buf[i] & 0x80:
                        n += (buf[i] & 0x7F) * mult
                        mult *= 128
                        i += 1
                    n += (buf[i] & 0x7F) * mult
                    if len(buf) < i + 1 + n:
                        break
                    ptype, body, buf = buf[0] >> 4, buf[i + 1 : i + 1 + n], buf[i + 1 + n :]
                    if ptype == 1:  # CONNECT -> CONNACK
                        conn.sendall(b"\x20\x02\x00\x00")
                    elif ptype == 8:  # SUBSCRIBE -> SUBACK
                        conn.sendall(b"\x90\x04" + body[:2] + b"\x01\x01")
                    elif ptype == 3:
                        self.publishes += 1

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.server.close()


def test_a_row_is_marked_sent_only_on_puback(tmp_path):
    hole = BlackHole()
    store = Store(tmp_path / "box.db", box_id=BOX)
    store.write(messages=health(5))
    pub = Publisher(
        store.path, settings(f"mqtt://127.0.0.1:{hole.port}", sync_timeout=0.3), box_id=BOX
    )
    pub.start()
    try:
        assert not pub.flush(1.0)
        assert hole.publishes >= 5  # published, never acknowledged
        assert store.outbox_counts()["pending"] == 5
        assert pub.acked == 0
    finally:
        pub.stop(timeout=2)
        hole.close()
        store.close()


def test_inbound_garbage_through_a_real_broker_never_hurts(mq):
    b, sub, store = mq
    commands: list[dict] = []
    pub = Publisher(store.path, settings(b.url), box_id=BOX, on_command=commands.append)
    pub.start()
    attacker = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="attacker")
    attacker.connect("127.0.0.1", b.port)
    attacker.loop_start()
    try:
        assert pub.flush(5)
        topic = f"callcenter/v1/{BOX}/cmd/call"
        garbage = [
            b"",
            b"\x00\xff" * 100,
            b"{",
            b"[]",
            b'{"position": "pos 1"}',
            b'{"position": "p", "transcript": "hello"}',
            b'{"position":"' + b"a" * 100_000 + b'"}',
            json.dumps({"position": "p", "customer": "x" * 65}).encode(),
            b"[" * 5000,
        ]
        rnd = random.Random(7)  # deterministic random garbage, binary and JSON-shaped
        garbage += [rnd.randbytes(rnd.randrange(0, 3000)) for _ in range(100)]
        keys = ["position", "action", "customer", "call_type", "segment", "msg_id", "text"]
        for _ in range(100):
            obj = {
                rnd.choice(keys): rnd.choice(
                    [None, 1, 1e308, -1, "pos 1", "x" * rnd.randrange(65, 80), [], {}, True]
                )
                for _ in range(rnd.randrange(1, 5))
            }
            garbage.append(json.dumps(obj).encode())
        infos = [attacker.publish(topic, g, qos=1) for g in garbage]
        infos.append(attacker.publish(topic, b'{"position": "pos-1", "customer": "CRM-9"}', qos=1))
        for i in infos:
            i.wait_for_publish(5)
        deadline = time.monotonic() + 5
        while pub.commands_rejected + pub.commands_accepted < len(infos):
            assert time.monotonic() < deadline, (pub.commands_rejected, pub.commands_accepted)
            time.sleep(0.05)
        assert pub.commands_rejected == len(garbage)
        assert commands == [{"position": "pos-1", "customer": "CRM-9"}]
        # still healthy: new rows still flow
        store.write(messages=health(3))
        pub.wake()
        assert pub.flush(5) and pub.connected.is_set()
    finally:
        attacker.disconnect()
        attacker.loop_stop()
        pub.stop()


def test_outbox_cli_status_and_flush(tmp_path):
    store = Store(tmp_path / "box.db", box_id=BOX)
    store.write(messages=health(4))
    store.close()
    cli = [sys.executable, "-m", "appliance.cli", "outbox"]
    st = subprocess.run([*cli, "status", "--db", str(store.path)], capture_output=True, text=True)
    assert st.returncode == 0, st.stderr
    assert json.loads(st.stdout)["pending"] == 4
    # broker down: timeout -> non-zero
    down = f"mqtt://127.0.0.1:{free_port()}"
    fl = subprocess.run(
        [*cli, "flush", "--db", str(store.path), "--mqtt", down, "--timeout", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert fl.returncode != 0 and json.loads(fl.stdout)["pending"] == 4
    with LocalBroker(workdir=tmp_path / "b") as b:
        fl = subprocess.run(
            [*cli, "flush", "--db", str(store.path), "--mqtt", b.url, "--timeout", "10"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert fl.returncode == 0, fl.stderr
    out = json.loads(fl.stdout)
    assert out["flushed"] and out["pending"] == 0 and out["sent"] == 4 and out["acked_seq"] == 4


# -- the outbox (store side) --------------------------------------------------------------------


def test_seq_never_reused_after_retention_prunes_everything(tmp_path):
    store = Store(tmp_path / "box.db", box_id=BOX)
    try:
        store.write(messages=health(3))
        with store._lock:
            store.db.conn.execute("DELETE FROM outbox")
        out = store.write(messages=health(1))
        assert out[0]["seq"] == 4
        assert outbox_status(store.path)["last_seq"] == 4
    finally:
        store.close()


def test_outbox_cap_raises_the_alarm_and_drops_only_superseded_rows(tmp_path):
    store = Store(tmp_path / "box.db", box_id=BOX, outbox_max_rows=20)
    try:
        for _ in range(10):
            store.write(messages=[live_call(), *health(1)])
        assert not store.outbox_alarm
        utterance_like = [
            ("alert", {**contract.new_message("alert", BOX, _alert_body())}) for _ in range(15)
        ]
        store.write(messages=utterance_like)
        store.write(messages=health(1))
        kinds = dict(store.db.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind").fetchall())
        assert kinds["alert"] == 15  # never dropped
        assert store.outbox_dropped > 0
        assert sum(kinds.values()) <= 20
        events = store.db.execute("SELECT detail FROM events WHERE kind = 'outbox_full'").fetchall()
        assert events
        # alerts alone above the cap: alarm stays, alerts still queued
        store.write(
            messages=[
                ("alert", contract.new_message("alert", BOX, _alert_body())) for _ in range(30)
            ]
        )
        assert store.outbox_alarm
        assert (
            store.db.execute("SELECT COUNT(*) FROM outbox WHERE kind='alert'").fetchone()[0] == 45
        )
        assert outbox_status(store.path, max_rows=20)["alarm"] is True
    finally:
        store.close()


def _alert_body() -> dict:
    return {
        "alert_id": "a-1",
        "rule": "r",
        "severity": "warning",
        "action": "coach",
        "signal": "sentiment",
        "at": 1.0,
    }


def test_disk_low_stops_transcripts_before_the_outbox(tmp_path):
    store = Store(tmp_path / "box.db", box_id=BOX, min_free_mb=1e12)  # "disk full"
    try:
        store.write(upserts={"calls": [{"id": "c-1", "position": "p", "state": "live"}]})
        utt = {"call_id": "c-1", "idx": 0, "speaker": "customer", "start": 0.0, "end": 1.0}
        tr = {"call_id": "c-1", "text": "hello", "words": "[]", "engine": "x", "created_at": 0.0}
        store.write_utterance(utt, tr, health(1))
        assert store.transcripts_suspended
        assert store.db.execute("SELECT COUNT(*) FROM transcripts").fetchone()[0] == 0
        assert store.outbox_counts()["rows"] == 1
    finally:
        store.close()


def test_outbox_rows_commit_with_the_scores_or_not_at_all(tmp_path):
    store = Store(tmp_path / "box.db", box_id=BOX)
    try:
        bad = ("health", {**health(1)[0][1], "text": "free text"})
        with pytest.raises(contract.ContractError):
            store.write(
                upserts={"calls": [{"id": "c-1", "position": "p", "state": "live"}]},
                messages=[*health(1), bad],
            )
        assert store.db.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 0
        assert store.outbox_counts()["rows"] == 0
    finally:
        store.close()
    db = connect(store.path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.conn.close()
