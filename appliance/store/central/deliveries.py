"""Webhook deliveries: queued in the transaction that stored the event, claimed with a lease,
delivered or retried with a back-off, dead-lettered after the last attempt, replayed on demand.

Any number of bridge instances drain the same table: a claim takes due rows no one holds
(`FOR UPDATE SKIP LOCKED` on PostgreSQL) and leases them to the claiming instance for
`lease_s`. An instance killed mid-delivery leaves its lease to expire; another instance then
sends the event again under the same idempotency key (a duplicate the receiver recognises,
never a loss).
"""

from __future__ import annotations

import time

from appliance.store.central.db import CentralDB, Tx


def enqueue(tx: Tx, key: str, event: str, route: str, url: str, body: str) -> bool:
    """Queue one delivery (once per idempotency key); False when it was queued before."""
    row = tx.one(
        "INSERT INTO deliveries (key, event, route, url, body, state, next_at, created_at)"
        " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT (key) DO NOTHING RETURNING key",
        (key, event, route, url, body, time.time(), time.time()),
    )
    return row is not None


def claim(db: CentralDB, owner: str, lease_s: float, limit: int) -> list[dict]:
    """Lease up to `limit` due deliveries to `owner`."""

    def work(tx: Tx) -> list[dict]:
        now = time.time()
        skip = " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgres" else ""
        return tx.all(
            "UPDATE deliveries SET lease_owner = ?, lease_until = ? WHERE id IN ("
            "SELECT id FROM deliveries WHERE state = 'pending' AND next_at <= ?"
            " AND (lease_until IS NULL OR lease_until < ?)"
            f" ORDER BY id LIMIT ?{skip})"
            " RETURNING id, key, event, route, url, body, attempts",
            (owner, now + lease_s, now, now, limit),
        )

    return db.transact(work)


def delivered(db: CentralDB, delivery_id: int, owner: str) -> None:
    db.transact(
        lambda tx: tx.run(
            "UPDATE deliveries SET state = 'delivered', delivered_at = ?, attempts = attempts + 1,"
            " lease_owner = NULL, lease_until = NULL, last_error = NULL"
            " WHERE id = ? AND lease_owner = ?",
            (time.time(), delivery_id, owner),
        )
    )


def failed(db: CentralDB, delivery_id: int, owner: str, error: str, retry_in: float | None) -> None:
    """A failed attempt: retried after `retry_in` seconds, or dead-lettered when None."""

    def work(tx: Tx) -> None:
        row = tx.one(
            "SELECT key, event, route, url, body, attempts, created_at FROM deliveries"
            f" WHERE id = ? AND lease_owner = ?{tx.lock}",
            (delivery_id, owner),
        )
        if row is None:  # our lease expired and another instance took it over
            return
        if retry_in is not None:
            tx.run(
                "UPDATE deliveries SET attempts = attempts + 1, next_at = ?, last_error = ?,"
                " lease_owner = NULL, lease_until = NULL WHERE id = ?",
                (time.time() + retry_in, error[:500], delivery_id),
            )
            return
        tx.run(
            "INSERT INTO dead_letters (key, event, route, url, body, attempts, last_error,"
            " created_at, died_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (key) DO NOTHING",
            (
                row["key"],
                row["event"],
                row["route"],
                row["url"],
                row["body"],
                row["attempts"] + 1,
                error[:500],
                row["created_at"],
                time.time(),
            ),
        )
        tx.run("DELETE FROM deliveries WHERE id = ?", (delivery_id,))

    db.transact(work)


def replay(db: CentralDB, keys: list[str] | None = None) -> int:
    """Move dead letters (all, or those with the given keys) back to the queue; returns how many."""

    def work(tx: Tx) -> int:
        where, params = (
            ("", [])
            if keys is None
            else (
                f" WHERE key IN ({', '.join('?' * len(keys))})",
                list(keys),
            )
        )
        rows = tx.all(
            f"SELECT key, event, route, url, body, created_at FROM dead_letters{where}", params
        )
        now = time.time()
        for r in rows:
            tx.run(
                "INSERT INTO deliveries (key, event, route, url, body, state, next_at, created_at)"
                " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT (key) DO UPDATE SET"
                " state = 'pending', attempts = 0, next_at = excluded.next_at,"
                " lease_owner = NULL, lease_until = NULL",
                (r["key"], r["event"], r["route"], r["url"], r["body"], now, r["created_at"]),
            )
            tx.run("DELETE FROM dead_letters WHERE key = ?", (r["key"],))
        return len(rows)

    return db.transact(work)


def dead_letters(db: CentralDB, limit: int = 100) -> list[dict]:
    return db.transact(
        lambda tx: tx.all(
            "SELECT key, event, route, url, attempts, last_error, died_at FROM dead_letters"
            " ORDER BY died_at LIMIT ?",
            (limit,),
        )
    )
