"""The central database's tables, for PostgreSQL and SQLite, applied in order and recorded.

A migration is never edited once shipped; a change is a new one. Instances that start at the
same moment migrate one after the other (an advisory lock on PostgreSQL, `BEGIN IMMEDIATE` on
SQLite). The CRM team reads these tables directly: `payload` columns hold the message JSON
exactly as received (`payload::jsonb` in PostgreSQL queries).
"""

from __future__ import annotations

import time

from appliance.store.central.db import CentralDB, Tx

TYPES = {
    "postgres": {"float": "DOUBLE PRECISION", "serial": "BIGSERIAL PRIMARY KEY"},
    "sqlite": {"float": "REAL", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT"},
}

M005A_CENTRAL = [
    # every valid message, once (the bridge's exactly-once key is msg_id)
    """CREATE TABLE messages (
        msg_id TEXT PRIMARY KEY, box_id TEXT NOT NULL, seq BIGINT NOT NULL, kind TEXT NOT NULL,
        ts {float} NOT NULL, payload TEXT NOT NULL, received_at {float} NOT NULL,
        received_by TEXT NOT NULL)""",
    "CREATE INDEX messages_box_seq ON messages (box_id, seq)",
    "CREATE INDEX messages_kind_ts ON messages (kind, ts)",
    # the latest state of each call (highest seq wins)
    """CREATE TABLE calls (
        call_id TEXT PRIMARY KEY, box_id TEXT NOT NULL, seq BIGINT NOT NULL, msg_id TEXT NOT NULL,
        state TEXT NOT NULL, customer TEXT, customer_key TEXT, segment TEXT, call_type TEXT,
        position TEXT, started_at {float}, ended_at {float}, duration {float},
        sentiment_mean {float}, enthusiasm {float}, health {float}, alerts INTEGER)""",
    "CREATE INDEX calls_customer ON calls (customer, state, ended_at)",
    # alerts from the boxes (origin 'box') and the bridge's site-wide signals (origin 'site')
    """CREATE TABLE alerts (
        alert_id TEXT PRIMARY KEY, msg_id TEXT NOT NULL UNIQUE, origin TEXT NOT NULL,
        box_id TEXT, call_id TEXT, customer TEXT, segment TEXT, rule TEXT NOT NULL,
        severity TEXT NOT NULL, action TEXT NOT NULL, signal TEXT NOT NULL, value {float},
        at {float}, ts {float} NOT NULL, reason TEXT)""",
    "CREATE INDEX alerts_customer ON alerts (customer, ts)",
    # site-wide relationship health, recomputed from the customer's calls on every boxes
    """CREATE TABLE customers (
        customer TEXT PRIMARY KEY, calls INTEGER NOT NULL DEFAULT 0,
        boxes INTEGER NOT NULL DEFAULT 0, segment TEXT, health {float}, trend {float},
        risk {float}, advocacy {float}, state TEXT NOT NULL DEFAULT 'new', detail TEXT,
        last_call_id TEXT, updated_at {float})""",
    "CREATE TABLE segments (segment TEXT PRIMARY KEY, detail TEXT, updated_at {float})",
    # messages refused by the contract, and other things worth counting, by reason
    """CREATE TABLE counters (
        name TEXT PRIMARY KEY, value BIGINT NOT NULL, detail TEXT, updated_at {float})""",
    # webhook deliveries: pending (due at next_at, leased while being sent) or delivered
    """CREATE TABLE deliveries (
        id {serial}, key TEXT NOT NULL UNIQUE, event TEXT NOT NULL, route TEXT NOT NULL,
        url TEXT NOT NULL, body TEXT NOT NULL, state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, next_at {float} NOT NULL, lease_owner TEXT,
        lease_until {float}, last_error TEXT, created_at {float} NOT NULL,
        delivered_at {float})""",
    "CREATE INDEX deliveries_due ON deliveries (state, next_at)",
    # deliveries that failed max_attempts times (or were refused with a 4xx): `bridge replay`
    """CREATE TABLE dead_letters (
        key TEXT PRIMARY KEY, event TEXT NOT NULL, route TEXT NOT NULL, url TEXT NOT NULL,
        body TEXT NOT NULL, attempts INTEGER NOT NULL, last_error TEXT,
        created_at {float} NOT NULL, died_at {float} NOT NULL)""",
]

MIGRATIONS: list[tuple[str, list[str]]] = [("m005a_central", M005A_CENTRAL)]


def migrate(db: CentralDB) -> list[str]:
    """Apply what is missing; returns the names applied now."""

    def work(tx: Tx) -> list[str]:
        if tx.dialect == "postgres":
            tx.run("SELECT pg_advisory_xact_lock(?)", (0x0A99_11A2,))
        tx.run(
            "CREATE TABLE IF NOT EXISTS central_migrations (name TEXT PRIMARY KEY, applied_at "
            + TYPES[tx.dialect]["float"]
            + " NOT NULL)"
        )
        done = {r["name"] for r in tx.all("SELECT name FROM central_migrations")}
        applied = []
        for name, statements in MIGRATIONS:
            if name in done:
                continue
            for statement in statements:
                tx.run(statement.format(**TYPES[tx.dialect]))
            tx.run(
                "INSERT INTO central_migrations (name, applied_at) VALUES (?, ?)",
                (name, time.time()),
            )
            applied.append(name)
        return applied

    return db.transact(work)
