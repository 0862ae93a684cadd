"""The box's local broker for real: mosquitto started from firmware_config/mosquitto/bridge.conf
and local.acl (ports and paths rewritten), bridged over TLS with the box's client certificate to
a central broker started from mosquitto.conf and its ACL. Only the box's own client gets in;
its scores reach the CRM and the CRM's commands reach it; nothing a local process sends does."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from conftest import ROOT
from test_mqtt_tls import crm, make_pki, pytestmark, rows  # noqa: F401  (same needs)

from appliance.config import MqttConfig
from appliance.publish.broker import LocalBroker, free_port
from appliance.publish.mqtt import Publisher
from appliance.store.writer import Store

FW = ROOT / "firmware_config" / "mosquitto"
BOX = "box-01"
PASSWORD = "local-box-secret"


@pytest.fixture(scope="module")
def brokers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bridge")
    pki = tmp / "pki"
    make_pki(pki)
    passwd = ["mosquitto_passwd", "-b", "-c", str(tmp / "central.passwd"), "crm", "crm-secret"]
    subprocess.run(passwd, check=True, capture_output=True)
    p_cert, p_pass = free_port(), free_port()
    conf = (FW / "mosquitto.conf").read_text()
    conf = conf.replace("listener 8883", f"listener {p_cert} 127.0.0.1")
    conf = conf.replace("listener 8884", f"listener {p_pass} 127.0.0.1")
    conf = conf.replace("/etc/mosquitto/certs/", f"{pki}/").replace(
        "/etc/mosquitto/acl", str(FW / "acl")
    )
    conf = conf.replace("/etc/mosquitto/passwd", str(tmp / "central.passwd"))
    conf = conf.replace("/var/lib/mosquitto/", f"{tmp}/central-")
    central = LocalBroker(port=p_cert, workdir=tmp / "central", config=conf).start()

    # the box: the password file the daemon reads, hashed into the broker's password file
    (tmp / "mqtt.password").write_text(PASSWORD + "\n")
    local_pw = [
        "mosquitto_passwd",
        "-b",
        "-c",
        str(tmp / "appliance.passwd"),
        "appliance",
        PASSWORD,
    ]
    subprocess.run(local_pw, check=True, capture_output=True)
    p_local = free_port()
    bridge = (FW / "bridge.conf").read_text()
    bridge = bridge.replace("listener 1883 127.0.0.1", f"listener {p_local} 127.0.0.1")
    bridge = bridge.replace("/etc/mosquitto/appliance.passwd", str(tmp / "appliance.passwd"))
    bridge = bridge.replace("/etc/mosquitto/appliance.acl", str(FW / "local.acl"))
    bridge = bridge.replace("/var/lib/mosquitto/", f"{tmp}/local-")
    bridge = bridge.replace("central.example.net:8883", f"127.0.0.1:{p_cert}")
    bridge = bridge.replace("/etc/appliance/mqtt/ca.crt", str(pki / "ca.crt"))
    bridge = bridge.replace(f"/etc/appliance/mqtt/{BOX}.", f"{pki}/{BOX}.")
    local = LocalBroker(port=p_local, workdir=tmp / "local", config=bridge).start()
    yield central, local, pki, p_pass, tmp
    local.close()
    central.close()


def connect_result(port: int, username: str | None = None, password: str | None = None):
    """The CONNACK reason a local client gets (paho's reason code, 0 = accepted)."""
    got: list = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:8]}")
    if username:
        c.username_pw_set(username, password)
    c.on_connect = lambda cl, ud, fl, rc, pr=None: got.append(rc)
    c.connect("127.0.0.1", port)
    c.loop_start()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.02)
    c.loop_stop()
    c.disconnect()
    return got[0] if got else None


def box_settings(local: LocalBroker, tmp) -> MqttConfig:
    return MqttConfig(
        url=local.url, username="appliance", password_file=str(tmp / "mqtt.password"),
        reconnect_min_delay=0.1, reconnect_max_delay=0.5, sync_timeout=3.0,
    )  # fmt: skip


def test_only_the_box_client_gets_in(brokers):
    central, local, pki, p_pass, tmp = brokers
    anonymous = connect_result(local.port)
    assert anonymous is not None and anonymous.is_failure, "anonymous clients must be refused"
    assert connect_result(local.port, "appliance", "guessed").is_failure
    assert connect_result(local.port, "crm", "crm-secret").is_failure  # central users are not ours
    assert not connect_result(local.port, "appliance", PASSWORD).is_failure


def test_scores_reach_the_crm_and_commands_reach_the_box(brokers, tmp_path):
    central, local, pki, p_pass, tmp = brokers
    sub = crm(pki, p_pass)
    store = Store(tmp_path / "box.db", box_id=BOX)
    ids = rows(store, BOX, 6)
    commands: list[dict] = []
    pub = Publisher(store.path, box_settings(local, tmp), box_id=BOX, on_command=commands.append)
    pub.start()
    try:
        assert pub.flush(20), "the box's rows were not acknowledged by its local broker"
        assert pub.checkpoints_read >= 1, "the ACL must let the box read its checkpoint"
        assert sub.wait_for(ids, 20), "the bridge did not forward the box's scores"
        cmd = b'{"position": "pos-1", "action": "start", "customer": "CRM-7"}'
        deadline = time.monotonic() + 20
        while not commands and time.monotonic() < deadline:
            sub.client.publish(f"callcenter/v1/{BOX}/cmd/call", cmd, qos=1)  # the CRM's command
            time.sleep(1.0)
        assert commands and commands[0]["customer"] == "CRM-7"
    finally:
        pub.stop()
        sub.stop()
        store.close()


def central_tap(pki, port: int) -> tuple[mqtt.Client, list[tuple[str, bytes]]]:
    """The CRM reading everything under callcenter/v1/# on the central broker."""
    seen: list[tuple[str, bytes]] = []
    ready = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"tap-{uuid.uuid4().hex[:8]}")
    c.username_pw_set("crm", "crm-secret")
    c.tls_set(ca_certs=str(pki / "ca.crt"))
    c.on_connect = lambda cl, ud, fl, rc, pr=None: cl.subscribe("callcenter/v1/#", qos=1)
    c.on_subscribe = lambda *a: ready.set()
    c.on_message = lambda cl, ud, m: seen.append((m.topic, bytes(m.payload)))
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert ready.wait(10)
    return c, seen


def test_a_local_process_cannot_inject_scores_or_commands(brokers):
    """Anonymous: refused at CONNECT. Even with the box's password, the ACL keeps a command or
    another box's topic out of what the bridge forwards; an allowed topic gets through (so the
    tap would have seen the others)."""
    central, local, pki, p_pass, tmp = brokers
    tap, seen = central_tap(pki, p_pass)
    marker = uuid.uuid4().hex
    anonymous = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="anon-injector")
    anonymous.connect("127.0.0.1", local.port)
    anonymous.loop_start()
    anonymous.publish(f"callcenter/v1/{BOX}/utterance", f'"{marker}-anon"', qos=1)
    inject = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="local-injector")
    inject.username_pw_set("appliance", PASSWORD)
    inject.connect("127.0.0.1", local.port)
    inject.loop_start()
    try:
        for topic in (f"callcenter/v1/{BOX}/cmd/call", "callcenter/v1/box-02/utterance",
                      f"callcenter/v1/{BOX}/health"):  # fmt: skip
            inject.publish(topic, f'"{marker}"', qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 15
        while not any(t.endswith("/health") for t, p in seen if marker.encode() in p):
            assert time.monotonic() < deadline, "the allowed topic never arrived: tap broken?"
            time.sleep(0.1)
        time.sleep(1.0)
        leaked = sorted({t for t, p in seen if marker.encode() in p})
        assert leaked == [f"callcenter/v1/{BOX}/health"], leaked
    finally:
        for c in (inject, anonymous, tap):
            c.loop_stop()
            c.disconnect()
