"""Webhook delivery through a real HTTP receiver that checks signatures: headers, retries with
back-off, the dead-letter table and `appliance bridge replay`, leases of a dead instance."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from support.boxes import MessageFactory
from support.webhook import WebhookReceiver

from appliance.bridge.ingest import Ingestor
from appliance.bridge.routing import Router
from appliance.bridge.webhook import Deliverer, backoff, sign
from appliance.config import config_from_dict
from appliance.publish.pseudonym import key_id
from appliance.store.central import deliveries
from appliance.store.central.db import CentralDB
from appliance.store.central.schema import migrate
from appliance.store.central.status import status

KEY = b"s" * 32
SECRET = b"hook-secret-0123456789"


@pytest.fixture
def receiver():
    r = WebhookReceiver(SECRET).start()
    yield r
    r.stop()


def setup(dsn: str, tmp_path, url: str, **bridge):
    (tmp_path / "hook.secret").write_bytes(SECRET + b"\n")
    cfg = config_from_dict(
        {
            "bridge": {
                "webhook": url,
                "webhook_secret_file": str(tmp_path / "hook.secret"),
                "backoff_initial": 0.05,
                **bridge,
            }
        }
    )
    db = CentralDB(dsn)
    migrate(db)
    router = Router(cfg.bridge)
    return db, router, cfg.bridge


def alerts(db, router, n: int) -> list[dict]:
    ing = Ingestor(db, router, key_id(KEY), "bridge-t")
    box = MessageFactory("box-a", KEY)
    msgs = [box.alert(f"call-{i}", "CRM-1") for i in range(n)]
    for m in msgs:
        assert ing.handle("callcenter/v1/box-a/alert", json.dumps(m).encode()) == "stored"
    return msgs


def wait_status(db, pred, timeout=20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        s = status(db)["webhook"]
        if pred(s) or time.monotonic() > deadline:
            return s
        time.sleep(0.05)


def test_signed_idempotent_posts_retried_until_delivered(central_dsn, tmp_path, receiver):
    db, router, settings = setup(central_dsn, tmp_path, receiver.url)
    msgs = alerts(db, router, 3)
    receiver.fail["*"] = [500, 503, 429]  # the first three requests fail, whatever the key
    d = Deliverer(central_dsn, router, "bridge-t", settings)
    d.start()
    try:
        assert receiver.wait_for({m["msg_id"] for m in msgs}, timeout=20)
        s = wait_status(db, lambda s: s["delivered"] == 3)
    finally:
        d.stop()
    assert s == {"delivered": 3, "pending": 0, "dead": 0}
    assert receiver.bad_signatures == 0 and receiver.bad_requests == []
    assert receiver.duplicates() == 0 and d.failed == 3
    body = receiver.received[msgs[0]["msg_id"]][0]
    assert body["event"] == "alert" and body["rule"] == "negative_sentiment"
    db.close()


def test_refused_and_exhausted_deliveries_are_dead_lettered_then_replayed(
    central_dsn, tmp_path, receiver
):
    db, router, settings = setup(central_dsn, tmp_path, receiver.url, max_attempts=3)
    m1, m2 = alerts(db, router, 2)
    receiver.fail[m1["msg_id"]] = [400]  # the receiver refuses it: no retry
    receiver.fail[m2["msg_id"]] = [500, 500, 500]  # fails max_attempts times
    d = Deliverer(central_dsn, router, "bridge-t", settings)
    d.start()
    try:
        s = wait_status(db, lambda s: s["dead"] == 2)
        assert s == {"delivered": 0, "pending": 0, "dead": 2}
        dead = {r["key"]: r for r in deliveries.dead_letters(db)}
        assert (
            dead[m1["msg_id"]]["attempts"] == 1 and "HTTP 400" in dead[m1["msg_id"]]["last_error"]
        )
        assert dead[m2["msg_id"]]["attempts"] == 3
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "appliance.cli",
                "bridge",
                "replay",
                "--db",
                central_dsn,
                "--all",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(out.stdout) == {"replayed": 2}
        d.wake()
        assert receiver.wait_for({m1["msg_id"], m2["msg_id"]}, timeout=20)
        s = wait_status(db, lambda s: s["delivered"] == 2)
    finally:
        d.stop()
    assert s == {"delivered": 2, "pending": 0, "dead": 0}
    db.close()


def test_a_dead_instances_lease_expires_and_another_delivers(central_dsn, tmp_path, receiver):
    db, router, settings = setup(central_dsn, tmp_path, receiver.url, lease_s=1.0)
    (m,) = alerts(db, router, 1)
    assert len(deliveries.claim(db, "dead-instance", settings.lease_s, 10)) == 1
    assert deliveries.claim(db, "other", settings.lease_s, 10) == []  # leased
    d = Deliverer(central_dsn, router, "other", settings)
    d.start()
    try:
        assert receiver.wait_for({m["msg_id"]}, timeout=10)
    finally:
        d.stop()
    deliveries.delivered(db, 1, "dead-instance")  # a late answer of the dead one changes nothing
    assert wait_status(db, lambda s: s["delivered"] == 1)["delivered"] == 1
    db.close()


def test_signature_and_backoff():
    assert sign(b"k" * 16, b'{"a":1}') == (
        "sha256=" + __import__("hmac").new(b"k" * 16, b'{"a":1}', "sha256").hexdigest()
    )
    settings = config_from_dict({"bridge": {"backoff_initial": 2.0}}).bridge
    waits = [backoff(settings, n) for n in (1, 2, 3, 20)]
    assert 1.6 <= waits[0] <= 2.4 and 3.2 <= waits[1] <= 4.8 and 6.4 <= waits[2] <= 9.6
    assert waits[3] <= 600 * 1.2
