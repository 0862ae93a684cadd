"""The bridge soak: N messages from simulated boxes (real outbox, real publisher) through a real
mosquitto into bridge instances sharing one subscription group and one PostgreSQL database,
with webhook delivery on. Used by tests/test_bridge_soak.py and scripts/bridge_soak.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from appliance.publish.broker import LocalBroker
from appliance.publish.pseudonym import new_key_file
from support.boxes import SimulatedBox
from support.bridges import BridgeProcess, bridge_args
from support.webhook import WebhookReceiver

SECRET = b"soak-webhook-secret-01"


def _count(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn) as conn:
        return int(conn.execute(sql).fetchone()[0])


def soak(
    tmp: Path,
    dsn: str,
    messages: int = 10_000,
    boxes: int = 4,
    bridges: int = 3,
    customers: int = 40,
    timeout: float = 600.0,
    progress: Callable[[str], None] = lambda s: None,
) -> dict:
    """Run the soak; returns counts and throughput (messages per second through the bridges)."""
    key = new_key_file(tmp / "site.key")
    (tmp / "hook.secret").write_bytes(SECRET)
    hook = WebhookReceiver(SECRET).start()
    refs = [f"CRM-{i:05d}" for i in range(customers)]
    per_box = messages // boxes
    procs: list[BridgeProcess] = []
    sims: list[SimulatedBox] = []
    with LocalBroker(workdir=tmp / "broker") as broker:
        try:
            for i in range(bridges):
                args = bridge_args(
                    broker.url,
                    dsn,
                    tmp / "site.key",
                    f"soak-{i}",
                    group="soak",
                    webhook=hook.url,
                    secret_file=tmp / "hook.secret",
                )
                procs.append(BridgeProcess(args, f"soak-{i}").start())
            for b in range(boxes):
                sim = SimulatedBox(tmp, f"box-{b}", broker.url, key)
                msgs: list[dict] = []
                while len(msgs) < per_box:
                    msgs += sim.factory.history(refs, calls_each=1)
                sim.queue(msgs[:per_box])
                sims.append(sim)
            total = sum(len(s.msg_ids) for s in sims)
            progress(f"{total} messages queued in {boxes} outboxes; {bridges} bridges ready")
            t0 = time.monotonic()
            for s in sims:
                s.start()
            stored, last = 0, -1.0
            deadline = t0 + timeout
            while stored < total and time.monotonic() < deadline:
                time.sleep(0.5)
                stored = _count(dsn, "SELECT count(*) FROM messages")
                if time.monotonic() - last >= 5:
                    last = time.monotonic()
                    progress(f"  {stored}/{total} stored after {last - t0:.0f} s")
            elapsed = time.monotonic() - t0
            flushed = all(s.close(flush_timeout=30) for s in sims)
            alerts = _count(dsn, "SELECT count(*) FROM alerts")
            deadline = time.monotonic() + 120
            while len(hook.keys()) < alerts and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            for p in procs:
                p.stop()
            hook.stop()
    sent = {m for s in sims for m in s.msg_ids}
    with psycopg.connect(dsn) as conn:
        got = {r[0] for r in conn.execute("SELECT msg_id FROM messages")}
        per_instance = dict(
            conn.execute("SELECT received_by, count(*) FROM messages GROUP BY 1 ORDER BY 1")
        )
        customers_rows = conn.execute("SELECT count(*), max(boxes) FROM customers").fetchone()
    return {
        "messages": total,
        "boxes": boxes,
        "bridges": bridges,
        "stored": len(got),
        "lost": len(sent - got),
        "unexpected": len(got - sent),
        "seconds": round(elapsed, 1),
        "throughput_msg_s": round(total / elapsed, 1),
        "per_instance": per_instance,
        "boxes_flushed": flushed,
        "customers": customers_rows[0],
        "max_boxes_per_customer": customers_rows[1],
        "alerts_and_signals": alerts,
        "webhook_delivered": len(hook.keys()),
        "webhook_bad_signatures": hook.bad_signatures,
    }
