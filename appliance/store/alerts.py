"""Writes to `alerts` besides the writer's: a supervisor's acknowledgement."""

from __future__ import annotations

import time

import sqlite_utils

from appliance.store.connection import immediate


def acknowledge(db: sqlite_utils.Database, alert_id: str, user: str) -> bool:
    """Acknowledge an alert once (a second acknowledgement keeps the first); False when the
    alert does not exist."""
    with immediate(db):
        row = db.execute("SELECT acknowledged_at FROM alerts WHERE id = ?", [alert_id]).fetchone()
        if row is None:
            return False
        if row[0] is None:
            db.execute(
                "UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ? WHERE id = ?",
                [time.time(), user, alert_id],
            )
    return True
