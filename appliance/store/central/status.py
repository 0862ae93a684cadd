"""`appliance bridge status`: what the central database holds, in one read transaction."""

from __future__ import annotations

from appliance.store.central.db import CentralDB, Tx


def status(db: CentralDB, limit: int | None = None) -> dict:
    """Calls, alerts, customers (riskiest first) and the webhook queue, as plain JSON values."""

    def work(tx: Tx) -> dict:
        def scalar(sql: str, params: tuple = ()) -> int:
            row = tx.one(sql, params)
            return int(next(iter(row.values())) or 0) if row else 0

        customers = tx.all(
            "SELECT customer, calls, boxes, health, risk, state FROM customers"
            " WHERE health IS NOT NULL ORDER BY risk DESC, customer"
            + (" LIMIT ?" if limit is not None else ""),
            (limit,) if limit is not None else (),
        )
        counters = {r["name"]: int(r["value"]) for r in tx.all("SELECT name, value FROM counters")}
        return {
            "calls": scalar("SELECT count(*) AS n FROM calls"),
            "alerts": scalar("SELECT count(*) AS n FROM alerts WHERE origin = 'box'"),
            "signals": scalar("SELECT count(*) AS n FROM alerts WHERE origin = 'site'"),
            "messages": scalar("SELECT count(*) AS n FROM messages"),
            "rejected": sum(v for k, v in counters.items() if k.startswith("rejected:")),
            "key_mismatch": counters.get("key_mismatch", 0),
            "customers": [
                {
                    "customer": c["customer"],
                    "calls": int(c["calls"]),
                    "boxes": int(c["boxes"]),
                    "health": float(c["health"]),
                    "risk": float(c["risk"]),
                    "state": c["state"],
                }
                for c in customers
            ],
            "webhook": {
                "delivered": scalar(
                    "SELECT count(*) AS n FROM deliveries WHERE state = 'delivered'"
                ),
                "pending": scalar("SELECT count(*) AS n FROM deliveries WHERE state = 'pending'"),
                "dead": scalar("SELECT count(*) AS n FROM dead_letters"),
            },
        }

    return db.transact(work)
