"""TLS for real: a CA, a server and client certificates made with openssl, mosquitto started
from firmware_config/mosquitto/mosquitto.conf and its ACL (ports and paths rewritten), the box
publishing with its client certificate, the CRM reading with user name and password."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ROOT
from support.mqtt import DedupSubscriber

from appliance.config import MqttConfig
from appliance.publish import contract
from appliance.publish.broker import LocalBroker, find_mosquitto, free_port
from appliance.publish.mqtt import Publisher
from appliance.store.writer import Store

FW = ROOT / "firmware_config" / "mosquitto"

pytestmark = pytest.mark.skipif(
    find_mosquitto() is None
    or shutil.which("openssl") is None
    or not shutil.which("mosquitto_passwd"),
    reason="mosquitto, mosquitto_passwd or openssl is not installed",
)


def _ssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    """CA, server certificate for 127.0.0.1/localhost, client certificates box-01 and box-02."""
    d.mkdir(parents=True, exist_ok=True)
    _ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
         "-days", "2", "-subj", "/CN=test-ca", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ext in (("server", True), ("box-01", False), ("box-02", False)):
        _ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
             f"{name}.csr", "-subj", f"/CN={name}", cwd=d)  # fmt: skip
        _ssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
             *(["-extfile", "san.ext"] if ext else []), cwd=d)  # fmt: skip
    # an unrelated CA: a box that trusts it must refuse our server
    _ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out",
         "other.crt", "-days", "2", "-subj", "/CN=other-ca", cwd=d)  # fmt: skip


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    pki = tmp / "pki"
    make_pki(pki)
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(tmp / "passwd"), "crm", "crm-secret"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["mosquitto_passwd", "-b", str(tmp / "passwd"), "box-03", "box-03-secret"],
        check=True,
        capture_output=True,
    )
    p_cert, p_pass = free_port(), free_port()
    conf = (FW / "mosquitto.conf").read_text()
    conf = conf.replace("listener 8883", f"listener {p_cert} 127.0.0.1")
    conf = conf.replace("listener 8884", f"listener {p_pass} 127.0.0.1")
    conf = conf.replace("/etc/mosquitto/certs/", f"{pki}/")
    conf = conf.replace("/etc/mosquitto/acl", str(FW / "acl"))
    conf = conf.replace("/etc/mosquitto/passwd", str(tmp / "passwd"))
    conf = conf.replace("/var/lib/mosquitto/", f"{tmp}/")
    broker = LocalBroker(port=p_cert, workdir=tmp / "broker", config=conf).start()
    yield broker, pki, p_cert, p_pass
    broker.close()


def crm(pki: Path, port: int) -> DedupSubscriber:
    return DedupSubscriber(
        f"mqtts://127.0.0.1:{port}",
        client_id=f"crm-{time.monotonic_ns()}",
        tls={"ca_certs": str(pki / "ca.crt"), "tls_version": ssl.PROTOCOL_TLS_CLIENT},
        username="crm",
        password="crm-secret",
    ).start()


def box_settings(pki: Path, port: int, box: str, cert: str | None = None, **kw) -> MqttConfig:
    cert = cert or box
    base = dict(
        url=f"mqtts://127.0.0.1:{port}",
        ca_file=str(pki / "ca.crt"),
        cert_file=str(pki / f"{cert}.crt"),
        key_file=str(pki / f"{cert}.key"),
        reconnect_min_delay=0.1,
        reconnect_max_delay=0.5,
        sync_timeout=3.0,
    )
    return MqttConfig(**{**base, **kw})


def rows(store: Store, box: str, n: int) -> set[str]:
    body = {"uptime_s": 1.0, "outbox_pending": 0, "broker_connected": True}
    out = store.write(
        messages=[("health", contract.new_message("health", box, body)) for _ in range(n)]
    )
    return {m["msg_id"] for m in out}


def test_box_publishes_with_its_client_certificate(tls_broker, tmp_path):
    broker, pki, p_cert, p_pass = tls_broker
    sub = crm(pki, p_pass)
    store = Store(tmp_path / "box.db", box_id="box-01")
    ids = rows(store, "box-01", 12)
    pub = Publisher(store.path, box_settings(pki, p_cert, "box-01"), box_id="box-01")
    pub.start()
    try:
        assert pub.flush(15), "nothing delivered over TLS"
        assert pub.checkpoints_read >= 1, "the ACL must let the box read its checkpoint"
        assert sub.wait_for(ids, 10)
        assert sub.ids() == ids
        assert any(s["box_id"] == "box-01" and s["state"] == "online" for s in sub.statuses)
    finally:
        pub.stop()
        sub.stop()
        store.close()


def test_acl_pins_a_box_to_its_own_topics(tls_broker, tmp_path):
    """box-02's certificate publishing as box-01: the broker drops it, the CRM sees nothing."""
    broker, pki, p_cert, p_pass = tls_broker
    sub = crm(pki, p_pass)
    store = Store(tmp_path / "imp.db", box_id="box-01")
    ids = rows(store, "box-01", 5)
    pub = Publisher(
        store.path,
        box_settings(pki, p_cert, "box-01", cert="box-02", sync_timeout=0.5),
        box_id="box-01",
    )
    pub.start()
    try:
        assert pub.connected.wait(10)
        pub.flush(5)  # mosquitto acknowledges denied QoS 1 publishes without delivering them
        time.sleep(0.5)
        assert not (sub.ids() & ids)
        assert pub.checkpoints_read == 0  # box-02 may not read box-01's checkpoint either
    finally:
        pub.stop()
        sub.stop()
        store.close()


def test_box_with_user_name_and_password(tls_broker, tmp_path):
    broker, pki, p_cert, p_pass = tls_broker
    sub = crm(pki, p_pass)
    store = Store(tmp_path / "b3.db", box_id="box-03")
    ids = rows(store, "box-03", 4)
    secret = tmp_path / "box-03.password"
    secret.write_text("box-03-secret\n")  # the password lives in a file, never in the config
    s = MqttConfig(
        url=f"mqtts://127.0.0.1:{p_pass}",
        username="box-03",
        password_file=str(secret),
        ca_file=str(pki / "ca.crt"),
        reconnect_min_delay=0.1,
        reconnect_max_delay=0.5,
    )
    pub = Publisher(store.path, s, box_id="box-03")
    pub.start()
    try:
        assert pub.flush(15)
        assert sub.wait_for(ids, 10)
    finally:
        pub.stop()
        sub.stop()
        store.close()


@pytest.mark.parametrize("case", ["no client certificate", "untrusted server", "wrong password"])
def test_refused_connections_keep_rows_pending(tls_broker, tmp_path, case):
    broker, pki, p_cert, p_pass = tls_broker
    store = Store(tmp_path / "x.db", box_id="box-01")
    rows(store, "box-01", 3)
    if case == "no client certificate":
        s = box_settings(pki, p_cert, "box-01", cert_file="", key_file="")
    elif case == "untrusted server":
        s = box_settings(pki, p_cert, "box-01", ca_file=str(pki / "other.crt"))
    else:
        s = MqttConfig(
            url=f"mqtts://127.0.0.1:{p_pass}",
            username="crm",
            ca_file=str(pki / "ca.crt"),
            reconnect_min_delay=0.1,
            reconnect_max_delay=0.5,
        )
    pub = Publisher(store.path, s, box_id="box-01", password="wrong" if s.username else None)
    pub.start()
    try:
        assert not pub.flush(1.5)
        assert not pub.connected.is_set()
        assert store.outbox_counts()["pending"] == 3
    finally:
        pub.stop(timeout=2)
        store.close()


def test_crm_bridge_over_tls_with_the_firmware_acl(tls_broker, tmp_path):
    """The bridge logs in as the CRM user over TLS ([mqtt] of its --config), its MQTT 5 shared
    subscription passes the firmware ACL, and a box's scores arrive in its database."""
    import json

    from support.bridges import BridgeProcess, appliance_cmd, bridge_args

    from appliance.publish.pseudonym import new_key_file

    broker, pki, p_cert, p_pass = tls_broker
    new_key_file(tmp_path / "site.key")
    (tmp_path / "crm.password").write_text("crm-secret\n")
    (tmp_path / "bridge.toml").write_text(
        f'[mqtt]\nusername = "crm"\npassword_file = "crm.password"\nca_file = "{pki}/ca.crt"\n'
    )
    dsn = str(tmp_path / "central.db")
    url = f"mqtts://127.0.0.1:{p_pass}"
    args = bridge_args(url, dsn, tmp_path / "site.key", "crm-tls", config=tmp_path / "bridge.toml")
    bridge = BridgeProcess(args, "crm-tls").start(timeout=30)
    store = Store(tmp_path / "box.db", box_id="box-01")
    ids = rows(store, "box-01", 10)
    pub = Publisher(store.path, box_settings(pki, p_cert, "box-01"), box_id="box-01")
    pub.start()
    try:
        assert pub.flush(15)
        deadline = time.monotonic() + 15
        while True:
            out = subprocess.run(
                [*appliance_cmd(), "bridge", "status", "--db", dsn, "--json"],
                capture_output=True,
                text=True,
                check=True,
            )
            if json.loads(out.stdout)["messages"] >= len(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    finally:
        pub.stop()
        store.close()
        bridge.stop()
    assert json.loads(out.stdout)["messages"] == len(ids)
