"""Fault tests with a real mosquitto (persistence on): broker SIGTERM/SIGKILL/restart during
calls, the connection severed by a TCP proxy, a broker that loses acknowledged messages, the
analyser killed with -9 mid-call (scripts/fault_drill.py). A de-duplicating subscriber must
end with every outbox row and nothing else; the database must pass integrity_check."""

from __future__ import annotations

import importlib.util
import sqlite3
import threading
import time

import pytest
from conftest import MODEL_CARD, ROOT
from support.fakes import FakeEmotion, alternating, result
from support.mqtt import DedupSubscriber, TcpProxy

from appliance.capture.wav import read_wav
from appliance.config import MqttConfig, config_from_dict
from appliance.ops.analysis import Session
from appliance.ops.engines import Engines
from appliance.pipeline.call import CallMeta
from appliance.publish import contract
from appliance.publish.broker import LocalBroker, find_mosquitto
from appliance.publish.mqtt import Publisher
from appliance.store.writer import Store

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")


DEMO = ROOT / "appliance" / "data" / "demo_call.wav"
BOX = "box-01"


def StubModel() -> FakeEmotion:  # noqa: N802
    return FakeEmotion(
        alternating(result("angry", 0.8, 0.6, 0.4, -0.5), result("neutral", 0.8, 0.6, 0.4, -0.5))
    )


def outbox_ids(db_path) -> list[str]:
    con = sqlite3.connect(db_path, timeout=10)
    try:
        return [r[0] for r in con.execute("SELECT msg_id FROM outbox ORDER BY seq")]
    finally:
        con.close()


def integrity(db_path) -> str:
    con = sqlite3.connect(db_path, timeout=10)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def fast(url: str, **kw) -> MqttConfig:
    base = dict(url=url, reconnect_min_delay=0.1, reconnect_max_delay=0.5)
    return MqttConfig(**{**base, **kw})


def test_broker_stopped_killed_restarted_and_link_cut_during_calls(tmp_path):
    """Two calls through the real pipeline while the link is cut (TCP proxy), the broker is
    stopped (SIGTERM) and killed (SIGKILL) and restarted; then a flush."""
    broker = LocalBroker(workdir=tmp_path / "broker", autosave_interval=3600).start()
    proxy = TcpProxy(broker.port).start()
    sub = DedupSubscriber(broker.url, client_id="crm-faults").start()
    db = tmp_path / "box.db"
    cfg = config_from_dict({"box": {"id": BOX}})
    session = Session(cfg, db, Engines(StubModel(), None, 0.0), mqtt_url=None)
    session.publisher = Publisher(db, fast(proxy.url), box_id=BOX)
    session.publisher.start()
    session.pipeline.on_stored = session.publisher.wake
    rec = read_wav(DEMO)
    faults: list[str] = []

    def calls():
        for i in range(2):
            meta = CallMeta(position="pos-1", customer_ref=f"CRM-{i}", call_type="support")
            session.replay(rec, ["agent", "customer"], meta, speed=25.0)

    worker = threading.Thread(target=calls)
    try:
        assert session.publisher.connected.wait(10)
        worker.start()
        time.sleep(0.6)
        proxy.sever()  # link cut: the publisher's connection is reset
        faults.append("proxy severed")
        time.sleep(0.5)
        proxy.heal()
        time.sleep(0.6)
        broker.stop()  # SIGTERM
        faults.append("broker SIGTERM")
        time.sleep(0.5)
        broker.start()
        time.sleep(0.8)
        broker.stop(kill=True)  # SIGKILL: anything since the last save is gone
        faults.append("broker SIGKILL")
        time.sleep(0.3)
        broker.start()
        worker.join(30)
        assert not worker.is_alive()
        assert sub.wait_connected(10)
        assert session.publisher.flush(20), "outbox not drained"
    finally:
        session.close()
        proxy.close()
    try:
        ids = outbox_ids(db)
        assert len(ids) > 40
        assert sub.wait_for(set(ids), 20), f"lost {len(set(ids) - sub.ids())} of {len(ids)}"
        assert sub.ids() == set(ids), "the subscriber got something that is not an outbox row"
        assert sub.bad == []
        assert integrity(db) == "ok"
        con = sqlite3.connect(db)
        assert con.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0] == 0
        assert con.execute("SELECT COUNT(*) FROM calls WHERE state = 'ended'").fetchone()[0] == 2
        con.close()
        print(
            f"faults={faults} rows={len(ids)} received={sub.received} "
            f"unique={len(sub.ids())} duplicates={sub.duplicates}"
        )
    finally:
        sub.stop()
        broker.close()


def test_rows_a_killed_broker_lost_after_puback_are_sent_again(tmp_path):
    """The subscriber is offline; the broker acknowledges, then dies before its autosave.
    The retained status checkpoint tells the publisher what the broker kept."""
    broker = LocalBroker(workdir=tmp_path / "broker", autosave_interval=3600).start()
    sub = DedupSubscriber(broker.url, client_id="crm-offline").start()
    sub.stop()  # persistent session: the broker queues for it while it is away
    store = Store(tmp_path / "box.db", box_id=BOX)
    body = {"uptime_s": 1.0, "outbox_pending": 0, "broker_connected": True}

    def rows(n):
        store.write(
            messages=[("health", contract.new_message("health", BOX, body)) for _ in range(n)]
        )

    try:
        rows(10)
        pub = Publisher(store.path, fast(broker.url), box_id=BOX)
        pub.start()
        assert pub.flush(10)
        pub.stop()
        broker.restart()  # SIGTERM: saved (session, queue 1-10, checkpoint acked_seq=10)
        rows(20)
        pub = Publisher(store.path, fast(broker.url), box_id=BOX)
        pub.start()
        assert pub.flush(10)
        pub.stop()
        assert store.outbox_counts()["pending"] == 0  # all 30 acknowledged...
        broker.restart(kill=True)  # ...but rows 11-30 were only in the broker's memory
        pub = Publisher(store.path, fast(broker.url), box_id=BOX)
        pub.start()
        assert pub.flush(10)
        pub.stop()
        assert pub.resent == 20
        sub = DedupSubscriber(broker.url, client_id="crm-offline").start()
        ids = {r[0] for r in store.db.execute("SELECT msg_id FROM outbox").fetchall()}
        assert sub.wait_for(ids, 10), f"lost {len(ids - sub.ids())}"
        assert sub.ids() == ids
        sub.stop()
        events = store.db.execute("SELECT detail FROM events WHERE kind='outbox_resend'").fetchall()
        assert events
    finally:
        store.close()
        broker.close()


def test_a_broker_restart_while_connected_resends_only_after_the_checkpoint(tmp_path):
    """A clean broker restart (SIGTERM saves everything): nothing needs re-sending."""
    with LocalBroker(workdir=tmp_path / "broker", autosave_interval=3600) as broker:
        store = Store(tmp_path / "box.db", box_id=BOX)
        body = {"uptime_s": 1.0, "outbox_pending": 0, "broker_connected": True}
        store.write(messages=[("health", contract.new_message("health", BOX, body))] * 1)
        pub = Publisher(store.path, fast(broker.url, checkpoint_interval=0.0), box_id=BOX)
        pub.start()
        try:
            assert pub.flush(10)
            time.sleep(0.3)  # a checkpoint after the last PUBACK
            broker.restart()
            assert pub.connected.wait(10)
            assert pub.flush(10)
            assert pub.resent == 0
        finally:
            pub.stop()
            store.close()


def _drill():
    spec = importlib.util.spec_from_file_location(
        "fault_drill", ROOT / "scripts" / "fault_drill.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fault_drill_stub_model(tmp_path):
    """scripts/fault_drill.py end to end (analyze processes with a stub emotion model):
    broker up, broker down, kill -9 mid-call, broker SIGKILL restart, `outbox flush`."""
    result = _drill().run_drill(tmp_path, fake=True)
    print(result)
    assert result["run1_broker_up"]["rc"] == 0
    assert result["run2_broker_down"]["rc"] == 0
    assert result["run3_killed"]["killed_mid_call"]
    assert result["flush"]["rc"] == 0
    assert result["lost"] == 0 and result["extra"] == 0
    assert result["received_unique"] == result["rows"] > 60
    assert result["integrity_check"] == "ok" and result["ok"]


@pytest.mark.slow
def test_crash_loop_resends_only_what_was_in_flight(tmp_path):
    """14 `appliance analyze` processes killed with -9 mid-call against a real broker, then a
    clean run: each message reaches the CRM at most 1.5 times on average, each restart re-sends
    no more than one call's rows (before the checkpoint followed the PUBACKs, restart k re-sent
    everything since the first: 29, 52, ... 362 rows, 7.6 deliveries per message), and every
    call a kill left open is closed and its final message delivered."""
    r = _drill().run_crash_loop(tmp_path, kills=14)
    print(r)
    assert r["kills"] == 14 and r["final_run_rc"] == 0 and r["flush_rc"] == 0
    assert r["lost"] == 0 and r["received_unique"] == r["rows"] > 14 * 10
    assert r["deliveries_per_message"] <= 1.5
    per_call = r["rows"] / r["calls"]
    resent = r["resent_per_restart"]  # restarts that re-sent nothing log no event
    assert max(resent, default=0) <= per_call  # flat, not growing with the crashes
    assert sum(resent) <= r["rows"] / 4
    assert r["calls_live_after"] == 0
    states = r["calls_by_state"]
    assert set(states) <= {"aborted", "ended"} and states.get("aborted", 0) >= 10
    assert r["calls_final_message"] == r["calls"] == 15


@pytest.mark.skipif(not MODEL_CARD.exists(), reason=f"no trained emotion model ({MODEL_CARD})")
def test_fault_drill_real_cli_and_model(tmp_path):
    """The same drill through the real `appliance analyze` CLI and the trained model."""
    result = _drill().run_drill(tmp_path, fake=False)
    print(result)
    assert result["run1_broker_up"]["rc"] == 0 and result["run2_broker_down"]["rc"] == 0
    assert result["flush"]["rc"] == 0
    assert result["lost"] == 0 and result["extra"] == 0
    assert result["integrity_check"] == "ok" and result["ok"]


def test_broker_settings_from_config_are_used(tmp_path):
    cfg = config_from_dict({"box": {"id": "box-9"}, "mqtt": {"prefix": "acme"}})
    pub = Publisher(
        tmp_path / "x.db", cfg.mqtt_resolved("mqtt://127.0.0.1:1883"), box_id=cfg.box.id
    )
    assert pub.status_topic == "acme/v1/box-9/status"
    assert pub.command_topic == "acme/v1/box-9/cmd/call"
