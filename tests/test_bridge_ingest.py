"""The bridge's ingest against real databases (SQLite and a temporary PostgreSQL): the contract
gate, exactly-once storage, site-wide relationship health across boxes with its fixes, segment
shifts that name their segment, key mismatches, and the routing of deliveries."""

from __future__ import annotations

import json

import pytest
from support.boxes import MessageFactory

from appliance.bridge.ingest import Ingestor
from appliance.bridge.routing import Router, RoutingError
from appliance.config import config_from_dict
from appliance.publish.pseudonym import key_id
from appliance.store.central.db import CentralDB, Tx
from appliance.store.central.schema import migrate
from appliance.store.central.status import status

KEY = b"s" * 32
PREFIX = "callcenter/v1"


@pytest.fixture
def db(central_dsn):
    d = CentralDB(central_dsn)
    migrate(d)
    yield d
    d.close()


def router(tmp_path, bridge: dict | None = None) -> Router:
    secret = tmp_path / "hook.secret"
    secret.write_text("0123456789abcdef0123\n")
    cfg = config_from_dict(
        {
            "bridge": {
                "webhook": "http://127.0.0.1:9/default",
                "webhook_secret_file": str(secret),
                **(bridge or {}),
            }
        }
    )
    return Router(cfg.bridge)


def send(ing: Ingestor, msg: dict) -> str:
    kind = msg["schema"].split("/")[0]
    return ing.handle(f"{PREFIX}/{msg['box_id']}/{kind}", json.dumps(msg).encode())


def rows(db: CentralDB, sql: str) -> list[dict]:
    return db.transact(lambda tx: tx.all(sql))


def test_refused_messages_are_counted_and_never_stored(db, tmp_path):
    ing = Ingestor(db, router(tmp_path), key_id(KEY), "bridge-1")
    box = MessageFactory("box-a", KEY)
    ok = box.call("c1", "CRM-1", 0.2)
    assert ing.handle(f"{PREFIX}/box-a/call", b"\xff not json") == "rejected"
    assert ing.handle(f"{PREFIX}/box-a/call", json.dumps({**ok, "text": "hi"}).encode()) == (
        "rejected"
    )
    assert ing.handle(f"{PREFIX}/box-b/call", json.dumps(ok).encode()) == "rejected"  # box
    assert ing.handle("elsewhere/box-a/call", json.dumps(ok).encode()) == "rejected"
    assert ing.handle(f"{PREFIX}/box-a/transcript", json.dumps(ok).encode()) == "rejected"
    s = status(db)
    assert s["rejected"] == 5 and s["messages"] == 0 and s["calls"] == 0
    counters = {r["name"]: r["value"] for r in rows(db, "SELECT name, value FROM counters")}
    assert counters == {
        "rejected:json": 1,
        "rejected:contract": 1,
        "rejected:box_id": 1,
        "rejected:topic": 2,
    }


def test_each_message_is_stored_once_and_the_latest_call_state_wins(db, tmp_path):
    ing = Ingestor(db, router(tmp_path), key_id(KEY), "bridge-1")
    box = MessageFactory("box-a", KEY)
    live = box.call("c1", "CRM-1", 0.1, state="live")
    ended = box.call("c1", "CRM-1", 0.3)
    alert = box.alert("c1", "CRM-1")
    assert [send(ing, m) for m in (ended, live, ended, alert, alert)] == [
        "stored",
        "stored",
        "duplicate",
        "stored",
        "duplicate",
    ]
    (call,) = rows(db, "SELECT state, seq, sentiment_mean FROM calls")
    assert call == {"state": "ended", "seq": ended["seq"], "sentiment_mean": 0.3}  # live came late
    s = status(db)
    assert (s["messages"], s["calls"], s["alerts"]) == (3, 1, 1)
    (delivery,) = rows(db, "SELECT key, event, route, url, body FROM deliveries")
    assert delivery["key"] == alert["msg_id"] and delivery["route"] == "default"
    body = json.loads(delivery["body"])
    assert body["event"] == "alert" and body["id"] == alert["msg_id"]
    assert body["alert_id"] == alert["alert_id"] and body["customer"] == alert["customer"]


def test_relationship_is_site_wide_across_boxes(db, tmp_path):
    """One customer on two boxes is one customer: calls interleave by time, not by box, and a
    customer who is negative on every call is at risk although nothing shifts."""
    ing = Ingestor(db, router(tmp_path), key_id(KEY), "bridge-1")
    a, b = MessageFactory("box-a", KEY), MessageFactory("box-b", KEY)
    t0 = 1_790_000_000.0
    msgs = []
    for i in range(6):
        box = a if i % 2 else b
        msgs.append(box.call(f"neg-{i}", "CRM-7", -0.35, ended_at=t0 + 3600 * i))
    msgs.append(a.call("blank", "CRM-7", None, ended_at=t0 + 3600 * 7))  # no scores: skipped
    for m in reversed(msgs):  # arrival order must not matter
        send(ing, m)
    (c,) = status(db)["customers"]
    assert c["customer"] == a.customer("CRM-7") == b.customer("CRM-7")
    assert (c["calls"], c["boxes"], c["state"]) == (7, 2, "at_risk")
    assert c["risk"] > 0.7
    detail = json.loads(rows(db, "SELECT detail FROM customers")[0]["detail"])
    assert detail["calls"] == 6 and detail["slow"] == pytest.approx(-0.35)  # 6 scored calls
    signals = rows(db, "SELECT rule, severity, customer FROM alerts WHERE origin = 'site'")
    assert signals == [
        {"rule": "relationship_negative", "severity": "critical", "customer": c["customer"]}
    ]
    body = json.loads(rows(db, "SELECT body FROM deliveries")[0]["body"])
    assert body["event"] == "relationship_signal" and body["relationship"]["boxes"] == 2


def test_segment_shift_names_its_segment(db, tmp_path):
    ing = Ingestor(db, router(tmp_path), key_id(KEY), "bridge-1")
    box = MessageFactory("box-a", KEY)
    values = [0.4, 0.35, 0.45, 0.4, 0.42, 0.38, -0.2, -0.3, -0.25, -0.3]
    for i, v in enumerate(values):
        send(ing, box.call(f"s{i}", f"CRM-{i}", v, segment="gold", ended_at=1e9 + i))
    shifts = rows(db, "SELECT rule, segment, customer FROM alerts WHERE rule = 'segment_shift'")
    assert shifts and all(s["segment"] == "gold" and s["customer"] is None for s in shifts)
    bodies = [json.loads(r["body"]) for r in rows(db, "SELECT body FROM deliveries")]
    assert any(b["rule"] == "segment_shift" and b["segment"] == "gold" for b in bodies)


def test_a_box_with_another_key_is_counted_not_merged(db, tmp_path):
    ing = Ingestor(db, router(tmp_path), key_id(KEY), "bridge-1")
    good, stray = MessageFactory("box-a", KEY), MessageFactory("box-x", b"x" * 32)
    send(ing, good.call("c1", "CRM-1", 0.3))
    send(ing, stray.call("c2", "CRM-1", 0.3))
    s = status(db)
    assert s["key_mismatch"] == 1 and s["calls"] == 2  # stored: nothing is lost
    assert [c["customer"] for c in s["customers"]] == [good.customer("CRM-1")]


def test_routes_by_rule_severity_and_segment(tmp_path):
    secret = tmp_path / "esc.secret"
    secret.write_bytes(b"e" * 20)
    r = router(
        tmp_path,
        {
            "routes": [
                {"name": "quiet", "rules": ["likely_advocate"], "deliver": False},
                {"name": "site-only", "events": ["alert"], "rules": ["r1"], "deliver": False},
                {
                    "name": "escalate",
                    "severities": ["critical"],
                    "segments": ["gold"],
                    "webhook": "https://crm.example/escalations",
                    "secret_file": str(secret),
                },
            ]
        },
    )
    gold_critical = {"rule": "x", "severity": "critical", "segment": "gold"}
    assert r.route(gold_critical).route == "escalate"
    assert r.route(gold_critical).url == "https://crm.example/escalations"
    assert r.secret("escalate") == b"e" * 20
    assert r.route({**gold_critical, "segment": "retail"}).route == "default"
    assert r.route({"rule": "likely_advocate", "severity": "info"}) is None
    # the box's own view of a rule dropped, the bridge's site-wide signal of it delivered
    assert r.route({"event": "alert", "rule": "r1", "severity": "info"}) is None
    assert r.route({"event": "relationship_signal", "rule": "r1"}).route == "default"
    assert r.secret("gone") == b"0123456789abcdef0123"  # a route since removed: the default
    with pytest.raises(RoutingError, match="signing secret"):
        Router(config_from_dict({"bridge": {"webhook": "http://x/"}}).bridge)
    short = tmp_path / "short"
    short.write_text("abc")
    with pytest.raises(RoutingError, match="holds 3 bytes"):
        router(tmp_path, {"webhook_secret_file": str(short)})


def test_instances_queue_up_on_one_customer(pg_dsn, tmp_path):
    """Two instances storing one customer's calls at once: every call counted, one signal."""
    import threading

    central_dsn = pg_dsn

    box = MessageFactory("box-a", KEY)
    msgs = [box.call(f"c{i}", "CRM-9", -0.4, ended_at=1e9 + i) for i in range(30)]
    dbs = [CentralDB(central_dsn) for _ in range(2)]
    migrate(dbs[0])
    ings = [Ingestor(d, router(tmp_path), key_id(KEY), f"b{i}") for i, d in enumerate(dbs)]
    threads = [
        threading.Thread(target=lambda i=i: [send(ings[i], m) for m in msgs[i::2]])
        for i in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (c,) = status(dbs[0])["customers"]
    assert c["calls"] == 30 and c["state"] == "at_risk"
    n = dbs[0].transact(lambda tx: tx.one("SELECT count(*) AS n FROM alerts WHERE origin = 'site'"))
    assert n["n"] == 1
    for d in dbs:
        d.close()


def test_tx_placeholders_and_locks_per_dialect(db):
    def work(tx: Tx):
        assert tx.lock == (" FOR UPDATE" if db.dialect == "postgres" else "")
        return tx.one("SELECT ? AS a, ? AS b", ("x", 2))

    assert db.transact(work) == {"a": "x", "b": 2}
