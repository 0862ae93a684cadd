"""The CRM side end to end, through real parts only: a central mosquitto; two boxes
(`appliance analyze --mqtt`, real models, different box ids, one site key, the same customer);
two bridge instances in one shared-subscription group; PostgreSQL in a temporary cluster; a
webhook receiver that checks signatures. One bridge is killed with -9 while the first box
publishes and restarted after the second; a third call makes the customer at risk site-wide.
Every call and alert is stored once and every alert and signal delivered (a second delivery
only ever under the same idempotency key)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time

import psycopg
import pytest
from conftest import ROOT, needs_model
from support.bridges import BridgeProcess, appliance_cmd, bridge_args
from support.webhook import WebhookReceiver

from appliance.publish.broker import LocalBroker
from appliance.publish.pseudonym import key_id, new_key_file, pseudonymise

DEMO = ROOT / "appliance" / "data" / "demo_call.wav"
SECRET = b"crm-webhook-secret-0001"
CUSTOMER = "CRM-000777"

pytestmark = [pytest.mark.slow, needs_model]


def outbox(db_path) -> list[dict]:
    conn = sqlite3.connect(db_path)
    try:
        return [json.loads(r[0]) for r in conn.execute("SELECT payload FROM outbox ORDER BY seq")]
    finally:
        conn.close()


def query(dsn: str, sql: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


def upset_call(tmp_path):
    """The demo call's upset second half (its acted anger): three of these make a customer
    persistently negative."""
    from appliance.capture.wav import read_wav, write_wav

    path = tmp_path / "upset.wav"
    if not path.exists():
        rec = read_wav(DEMO)
        a, b = int(26.3 * rec.sample_rate), int(57.5 * rec.sample_rate)
        write_wav(path, [ch[a:b] for ch in rec.channels], rec.sample_rate)
    return path


def analyze(box: str, tmp_path, url: str, wav=DEMO) -> subprocess.Popen:
    cfg = tmp_path / f"{box}.toml"
    cfg.write_text(f'[box]\nid = "{box}"\n\n[mqtt]\ncustomer_key_file = "site.key"\n')
    cmd = [*appliance_cmd(), "analyze", str(wav), "--mqtt", url]
    cmd += ["--config", str(cfg)]
    cmd += [
        "--customer",
        CUSTOMER,
        "--segment",
        "gold",
        "--no-stt",
        "--db",
        str(tmp_path / f"{box}.db"),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_two_boxes_two_bridges_one_killed(tmp_path, pg_dsn):
    key = new_key_file(tmp_path / "site.key")
    (tmp_path / "hook.secret").write_bytes(SECRET)
    (tmp_path / "bridge.toml").write_text("[bridge]\nlease_s = 2.0\nbackoff_initial = 0.2\n")
    hook = WebhookReceiver(SECRET).start()
    hook.delay_s = 0.05
    bridges = {}
    with LocalBroker(workdir=tmp_path / "broker") as broker:
        try:
            for name in ("crm-a", "crm-b"):
                args = bridge_args(
                    broker.url,
                    pg_dsn,
                    tmp_path / "site.key",
                    name,
                    webhook=hook.url,
                    secret_file=tmp_path / "hook.secret",
                    config=tmp_path / "bridge.toml",
                )
                bridges[name] = BridgeProcess(args, name).start()
            # the customer's calls: upset, the whole demo call (its alert), upset again
            box_a = analyze("box-a", tmp_path, broker.url, upset_call(tmp_path))
            deadline = time.monotonic() + 120
            while query(pg_dsn, "SELECT count(*) FROM messages")[0][0] < 8:
                assert box_a.poll() in (None, 0) and time.monotonic() < deadline
                time.sleep(0.05)
            bridges["crm-a"].kill()  # mid-way through box A's call
            killed_at = time.time()
            assert box_a.wait(120) == 0, box_a.stderr.read()[-2000:]
            box_b = analyze("box-b", tmp_path, broker.url)  # crm-a's share queues for it
            assert box_b.wait(120) == 0, box_b.stderr.read()[-2000:]
            bridges["crm-a"].start()
            # a third call of the same customer, negative like the first: at risk site-wide
            box_b = analyze("box-b", tmp_path, broker.url, upset_call(tmp_path))
            assert box_b.wait(120) == 0, box_b.stderr.read()[-2000:]
            sent = outbox(tmp_path / "box-a.db") + outbox(tmp_path / "box-b.db")
            ids = {m["msg_id"] for m in sent}
            alerts = {m["msg_id"] for m in sent if m["schema"] == "alert/1"}
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                stored = {r[0] for r in query(pg_dsn, "SELECT msg_id FROM messages")}
                if ids <= stored and alerts <= hook.keys():
                    break
                time.sleep(0.2)
            status = json.loads(
                subprocess.run(
                    [*appliance_cmd(), "bridge", "status", "--db", pg_dsn, "--json"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            late = query(
                pg_dsn,
                f"SELECT count(*) FROM messages WHERE received_by = 'crm-a' AND received_at > {killed_at}",
            )[0][0]
        finally:
            for b in bridges.values():
                b.stop()
            hook.stop()
    before = query(
        pg_dsn,
        f"SELECT received_by, count(*) FROM messages WHERE received_at <= {killed_at} GROUP BY 1",
    )
    print(
        json.dumps(
            {
                "messages": len(ids),
                "stored_before_kill": dict(before),
                "crm_a_after_restart": late,
                "alerts": len(alerts),
                "signals": status["signals"],
                "webhook_requests": hook.requests,
                "webhook_duplicates": hook.duplicates(),
            }
        )
    )
    # every message stored exactly once, nothing else
    stored = query(pg_dsn, "SELECT msg_id, count(*) FROM messages GROUP BY msg_id")
    assert {r[0] for r in stored} == ids and all(r[1] == 1 for r in stored)
    assert late > 0, "the restarted instance received what was queued for it"
    # the calls and alerts of both boxes, once each
    assert status["calls"] == 3 and status["alerts"] == len(alerts) >= 1
    calls = query(pg_dsn, "SELECT box_id, state, customer, customer_key FROM calls ORDER BY box_id")
    site_id = pseudonymise(CUSTOMER, key)
    assert (
        calls
        == [("box-a", "ended", site_id, key_id(key))]
        + [("box-b", "ended", site_id, key_id(key))] * 2
    )
    # one customer across both boxes, persistently negative: at risk, one signal
    (customer,) = status["customers"]
    assert customer["customer"] == site_id and (customer["calls"], customer["boxes"]) == (3, 2)
    assert customer["state"] == "at_risk" and status["signals"] >= 1
    # every alert (and every site signal) delivered, signed; duplicates only under one key
    delivered = hook.keys()
    signals = {r[0] for r in query(pg_dsn, "SELECT alert_id FROM alerts WHERE origin = 'site'")}
    assert alerts | signals <= delivered
    assert hook.bad_signatures == 0 and hook.bad_requests == []
    for key_, bodies in hook.received.items():
        assert all(b == bodies[0] for b in bodies), key_
    assert status["webhook"]["pending"] == 0 and status["webhook"]["dead"] == 0
    assert status["webhook"]["delivered"] == len(alerts | signals)
