"""`appliance bridge` as a process against a real mosquitto: ready on stderr, the MQTT 3.1.1
option, garbage on the score topics refused and counted, bad arguments named, status JSON."""

from __future__ import annotations

import json
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest
from support.boxes import SimulatedBox
from support.bridges import BridgeProcess, appliance_cmd, bridge_args

from appliance.publish.pseudonym import new_key_file


def bridge_status(dsn: str) -> dict:
    out = subprocess.run(
        [*appliance_cmd(), "bridge", "status", "--db", dsn, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def wait_messages(dsn: str, n: int, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        s = bridge_status(dsn)
        if s["messages"] >= n or time.monotonic() > deadline:
            return s
        time.sleep(0.3)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_single_instance_stores_what_a_box_publishes(tmp_path, broker, protocol):
    key = new_key_file(tmp_path / "site.key")
    dsn = str(tmp_path / "central.db")
    group = None if protocol == "3.1.1" else "crm"  # 3.1.1: plain topics, one instance
    b = BridgeProcess(
        bridge_args(broker.url, dsn, tmp_path / "site.key", "crm-1", group, protocol=protocol),
        "crm-1",
    ).start()
    box = SimulatedBox(tmp_path, "box-a", broker.url, key).start()
    try:
        box.queue(box.factory.history(["CRM-1", "CRM-2"], calls_each=3))
        assert box.close()
        # garbage on a score topic: refused, counted, the bridge goes on
        raw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="junk")
        raw.connect("127.0.0.1", broker.port)
        raw.loop_start()
        raw.publish("callcenter/v1/box-a/call", b"{not json", qos=1).wait_for_publish(5)
        raw.publish("callcenter/v1/box-a/alert", json.dumps({"text": "x"}), qos=1).wait_for_publish(
            5
        )
        raw.disconnect()
        raw.loop_stop()
        s = wait_messages(dsn, len(box.msg_ids))
        deadline = time.monotonic() + 10
        while s["rejected"] < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            s = bridge_status(dsn)
    finally:
        rc = b.stop()
    assert rc == 0, b.log[-5:]
    assert s["messages"] == len(box.msg_ids) and s["rejected"] == 2
    assert s["calls"] == 6 and {c["calls"] for c in s["customers"]} == {3}
    summary = json.loads(b.log[-1])
    assert summary["stored"] == len(box.msg_ids) and summary["rejected"] == 2


def test_bad_arguments_are_named(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*appliance_cmd(), "bridge", *args], capture_output=True, text=True, timeout=60
        )

    r = run("--db", str(tmp_path / "c.db"))
    assert r.returncode == 2 and "--mqtt, --client-id, --customer-key-file" in r.stderr
    base = ["--mqtt", "mqtt://127.0.0.1:1", "--group", "g", "--client-id", "c"]
    base += ["--db", str(tmp_path / "c.db")]
    r = run(*base, "--customer-key-file", str(tmp_path / "none.key"))
    assert r.returncode == 2 and "none.key does not exist" in r.stderr
    new_key_file(tmp_path / "site.key")
    keyed = [*base, "--customer-key-file", str(tmp_path / "site.key")]
    r = run(*keyed, "--webhook", "http://127.0.0.1:1/h")
    assert r.returncode == 2 and "signing secret" in r.stderr
    r = run(*keyed[:2], *keyed[4:])  # no group with MQTT 5
    assert r.returncode == 2 and "--group" in r.stderr
    r = run(*keyed, "--db", "mysql://x/y")
    assert r.returncode == 2 and "unsupported database" in r.stderr
    (tmp_path / "bad.toml").write_text('[bridge]\nwebhook = "ftp://x"\n')
    r = run(*keyed, "--config", str(tmp_path / "bad.toml"))
    assert r.returncode == 2 and "bridge.webhook" in r.stderr


def test_a_retired_instance_drains_its_queue_and_leaves_the_group(tmp_path, broker, pg_dsn):
    """mosquitto keeps queueing a stopped member's share of a shared subscription; `--retire`
    takes that share and ends the session, after which the others get everything."""
    key = new_key_file(tmp_path / "site.key")
    args = {n: bridge_args(broker.url, pg_dsn, tmp_path / "site.key", n) for n in ("a", "b")}
    a = BridgeProcess(args["a"], "a").start()
    b = BridgeProcess(args["b"], "b").start()
    box = SimulatedBox(tmp_path, "box-a", broker.url, key).start()
    try:
        assert b.stop() == 0  # clean stop: its session and share stay on the broker
        box.queue(box.factory.history(["CRM-1"], calls_each=4))
        assert box.publisher.flush(20)
        first = len(box.msg_ids)
        s = wait_messages(pg_dsn, first, timeout=5)
        assert s["messages"] < first  # b's share waits for b
        r = subprocess.run(
            [*appliance_cmd(), "bridge", *args["b"], "--retire"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr[-1000:]
        assert wait_messages(pg_dsn, first)["messages"] == first
        box.queue(box.factory.history(["CRM-2"], calls_each=4))  # now all of it goes to a
        assert box.close()
        s = wait_messages(pg_dsn, len(box.msg_ids), timeout=20)
    finally:
        a.stop()
    assert s["messages"] == len(box.msg_ids)


def test_a_database_outage_stops_the_instance_before_it_acknowledges(tmp_path, broker):
    """PostgreSQL goes down under a running bridge: the instance exits with code 3 without
    acknowledging the message in hand; restarted once the database is back, it stores all."""
    pytest.importorskip("psycopg")
    from support.postgres import TempCluster, find_bindir

    if find_bindir() is None:
        pytest.skip("PostgreSQL server binaries not installed")
    cluster = TempCluster(find_bindir()).start()
    try:
        dsn = cluster.new_database()
        key = new_key_file(tmp_path / "site.key")
        b = BridgeProcess(bridge_args(broker.url, dsn, tmp_path / "site.key", "crm-1"), "crm-1")
        b.start()
        box = SimulatedBox(tmp_path, "box-a", broker.url, key).start()
        box.queue(box.factory.history(["CRM-1"], calls_each=2))
        first = len(box.msg_ids)
        assert wait_messages(dsn, first)["messages"] == first
        cluster.stop(remove=False)  # the database crashes
        box.queue(box.factory.history(["CRM-2"], calls_each=2))
        assert b.proc.wait(60) == 3
        assert any("central database failing" in line for line in b.log)
        cluster.start()
        b.start()
        assert box.close()
        s = wait_messages(dsn, len(box.msg_ids))
        b.stop()
        assert s["messages"] == len(box.msg_ids) and s["calls"] == 4
    finally:
        cluster.stop()
