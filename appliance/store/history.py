"""Dating calls back: the demo's seeded history (`appliance demo` on a new database).

The pipeline stamps every row with the time it ran; a seeded call "from three weeks ago" is
moved back afterwards: the call, its utterances and alerts, and its entry in the customer's
relationship history (the Customers page draws its trend from it). Published payloads keep
the time they were produced.
"""

from __future__ import annotations

import json

import sqlite_utils

from appliance.store.connection import immediate


def backdate_call(db: sqlite_utils.Database, call_id: str, seconds: float) -> None:
    """Move one call and what belongs to it `seconds` into the past, in one transaction."""
    with immediate(db):
        db.execute(
            "UPDATE calls SET started_at = started_at - ?, ended_at = ended_at - ? WHERE id = ?",
            [seconds, seconds, call_id],
        )
        db.execute(
            "UPDATE utterances SET created_at = created_at - ? WHERE call_id = ?",
            [seconds, call_id],
        )
        db.execute(
            "UPDATE alerts SET created_at = created_at - ? WHERE call_id = ?", [seconds, call_id]
        )
        rows = db.execute(
            "SELECT customer_ref, detail FROM relationships WHERE detail LIKE ?",
            [f"%{call_id}%"],
        ).fetchall()
        for ref, detail in rows:
            state = json.loads(detail)
            for h in state.get("history", []):
                if h.get("call_id") == call_id:
                    h["ts"] = round(h["ts"] - seconds, 1)
            db.execute(
                "UPDATE relationships SET detail = ? WHERE customer_ref = ?",
                [json.dumps(state), ref],
            )


def has_source(db: sqlite_utils.Database, source: str) -> bool:
    """Whether any call came from `source` (the demo seeds its history once)."""
    return (
        db.execute("SELECT 1 FROM calls WHERE source = ? LIMIT 1", [source]).fetchone() is not None
    )
