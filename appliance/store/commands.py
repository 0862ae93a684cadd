"""The `commands` table: call commands the panel queues for the daemon, and their outcome.

The panel (a separate process) inserts a pending row; the daemon takes pending rows in id order,
applies each through the same path as an MQTT command and marks it applied or rejected, with
the reason. Retention purges old rows.
"""

from __future__ import annotations

import json
import time

import sqlite_utils

from appliance.store.connection import immediate


def enqueue(
    db: sqlite_utils.Database, cmd: dict, source: str = "panel", user: str = ""
) -> tuple[int, float]:
    """Queue a validated command; returns (row id, time queued)."""
    now = time.time()
    with immediate(db):
        cur = db.conn.execute(
            "INSERT INTO commands (at, source, user, position, payload, state)"
            " VALUES (?, ?, ?, ?, ?, 'pending')",
            [now, source, user, cmd.get("position", ""), json.dumps(cmd)],
        )
    return int(cur.lastrowid), now


def last_id(db: sqlite_utils.Database) -> int:
    return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM commands").fetchone()[0])


def pending_after(db: sqlite_utils.Database, after_id: int, limit: int = 200) -> list[tuple]:
    """(id, payload JSON) of pending commands newer than `after_id`, oldest first."""
    return db.execute(
        "SELECT id, payload FROM commands WHERE state = 'pending' AND id > ? ORDER BY id LIMIT ?",
        [after_id, limit],
    ).fetchall()


def finish(db: sqlite_utils.Database, command_id: int, applied: bool, reason: str = "") -> None:
    with immediate(db):
        db.conn.execute(
            "UPDATE commands SET state = ?, reason = ?, done_at = ? WHERE id = ?",
            ["applied" if applied else "rejected", reason[:200] or None, time.time(), command_id],
        )


def state_of(db: sqlite_utils.Database, command_id: int) -> tuple[str, str | None] | None:
    row = db.execute("SELECT state, reason FROM commands WHERE id = ?", [command_id]).fetchone()
    return None if row is None else (row[0], row[1])
