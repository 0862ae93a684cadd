"""What the bridge writes for a message, one statement per step, inside the caller's transaction.

The bridge (`appliance.bridge.ingest`) decides what a message means; these functions only
store and read it. `insert_message` is the exactly-once gate: it returns False for a `msg_id`
already stored, and the caller then does nothing else.
"""

from __future__ import annotations

import json
import time

from appliance.store.central.db import Tx


def insert_message(tx: Tx, kind: str, payload: dict, raw: str, received_by: str) -> bool:
    """Store a valid message once; False when its msg_id is already stored."""
    row = tx.one(
        "INSERT INTO messages (msg_id, box_id, seq, kind, ts, payload, received_at, received_by)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (msg_id) DO NOTHING RETURNING msg_id",
        (
            payload["msg_id"],
            payload["box_id"],
            payload["seq"],
            kind,
            payload["ts"],
            raw,
            time.time(),
            received_by,
        ),
    )
    return row is not None


def upsert_call(tx: Tx, p: dict) -> None:
    """The call's latest state: a message with a higher seq replaces a lower one, never back."""
    cols = {
        "call_id": p["call_id"],
        "box_id": p["box_id"],
        "seq": p["seq"],
        "msg_id": p["msg_id"],
        "state": p["state"],
        "customer": p.get("customer"),
        "customer_key": p.get("customer_key"),
        "segment": p.get("segment"),
        "call_type": p.get("call_type"),
        "position": p.get("position"),
        "started_at": p.get("started_at"),
        "ended_at": p.get("ended_at"),
        "duration": p.get("duration"),
        "sentiment_mean": p.get("sentiment_mean"),
        "enthusiasm": p.get("enthusiasm"),
        "health": p.get("health"),
        "alerts": p.get("alerts"),
    }
    names = list(cols)
    updates = ", ".join(f"{n} = excluded.{n}" for n in names if n != "call_id")
    tx.run(
        f"INSERT INTO calls ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        f" ON CONFLICT (call_id) DO UPDATE SET {updates} WHERE excluded.seq > calls.seq",
        list(cols.values()),
    )


def insert_alert(tx: Tx, origin: str, alert: dict) -> bool:
    """An alert once (by alert_id); False when it was stored before."""
    names = [
        "alert_id",
        "msg_id",
        "box_id",
        "call_id",
        "customer",
        "segment",
        "rule",
        "severity",
        "action",
        "signal",
        "value",
        "at",
        "ts",
        "reason",
    ]
    row = tx.one(
        f"INSERT INTO alerts (origin, {', '.join(names)}) VALUES (?, {', '.join('?' * len(names))})"
        " ON CONFLICT DO NOTHING RETURNING alert_id",
        [origin, *(alert.get(n) for n in names)],
    )
    return row is not None


def call_segment(tx: Tx, call_id: str) -> str | None:
    row = tx.one("SELECT segment FROM calls WHERE call_id = ?", (call_id,))
    return row["segment"] if row else None


def lock_customer(tx: Tx, customer: str) -> dict:
    """The customer's row, locked until the transaction ends (created when new)."""
    tx.run("INSERT INTO customers (customer) VALUES (?) ON CONFLICT DO NOTHING", (customer,))
    row = tx.one(f"SELECT * FROM customers WHERE customer = ?{tx.lock}", (customer,))
    assert row is not None
    row["detail"] = json.loads(row["detail"]) if row["detail"] else None
    return row


def customer_calls(tx: Tx, customer: str, key: str, limit: int) -> tuple[int, int, list[dict]]:
    """(ended calls, boxes, the last `limit` scored calls in time order) of a customer, counting
    the calls made under the site key `key` or in clear."""
    mine = "customer = ? AND state = 'ended' AND (customer_key IS NULL OR customer_key = ?)"
    counts = tx.one(
        f"SELECT count(*) AS calls, count(DISTINCT box_id) AS boxes FROM calls WHERE {mine}",
        (customer, key),
    )
    rows = tx.all(
        "SELECT call_id, box_id, sentiment_mean, enthusiasm, ended_at FROM calls"
        f" WHERE {mine} AND sentiment_mean IS NOT NULL ORDER BY ended_at DESC, call_id DESC"
        " LIMIT ?",
        (customer, key, limit),
    )
    assert counts is not None
    return int(counts["calls"]), int(counts["boxes"]), rows[::-1]


def save_customer(tx: Tx, customer: str, fields: dict) -> None:
    fields = {**fields, "updated_at": time.time()}
    if "detail" in fields:
        fields["detail"] = json.dumps(fields["detail"], separators=(",", ":"))
    sets = ", ".join(f"{k} = ?" for k in fields)
    tx.run(f"UPDATE customers SET {sets} WHERE customer = ?", [*fields.values(), customer])


def lock_segment(tx: Tx, segment: str) -> dict | None:
    """The segment's stored state (None when new), locked until the transaction ends."""
    tx.run("INSERT INTO segments (segment) VALUES (?) ON CONFLICT DO NOTHING", (segment,))
    row = tx.one(f"SELECT detail FROM segments WHERE segment = ?{tx.lock}", (segment,))
    return json.loads(row["detail"]) if row and row["detail"] else None


def save_segment(tx: Tx, segment: str, detail: dict) -> None:
    tx.run(
        "UPDATE segments SET detail = ?, updated_at = ? WHERE segment = ?",
        (json.dumps(detail, separators=(",", ":")), time.time(), segment),
    )


def count(tx: Tx, name: str, detail: str = "", by: int = 1) -> None:
    """Add to a named counter (rejected messages by reason, key mismatches)."""
    tx.run(
        "INSERT INTO counters (name, value, detail, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value,"
        " detail = excluded.detail, updated_at = excluded.updated_at",
        (name, by, detail[:500], time.time()),
    )
