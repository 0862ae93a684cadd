"""The key-value `settings` table: the one owner of its keys and of its upsert.

Keys in use (nothing else writes this table):

* `health`            the daemon's last health snapshot (JSON), read by the panel;
* `outbox.last_seq`   the highest outbox seq ever issued, so pruning never restarts seq;
* `mqtt.checkpoint`   the last checkpoint the broker confirmed (publisher);
* `segment:<name>`    a customer segment's running relationship state (JSON);
* `retention`, `mqtt` an admin's overrides of those config sections from the panel (JSON).

Functions take a connection and run inside the caller's transaction (they never BEGIN).
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlite_utils

HEALTH = "health"
LAST_SEQ = "outbox.last_seq"
MQTT_CHECKPOINT = "mqtt.checkpoint"
SEGMENT_PREFIX = "segment:"
OVERRIDE_SECTIONS = ("retention", "mqtt")

UPSERT = (
    "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
)


def segment_key(segment: str) -> str:
    return SEGMENT_PREFIX + segment


def override_key(section: str) -> str:
    if section not in OVERRIDE_SECTIONS:
        raise ValueError(f"no panel override for config section {section!r}")
    return section


def get(db: sqlite_utils.Database, key: str) -> str | None:
    row = db.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
    return None if row is None else row[0]


def get_with_time(db: sqlite_utils.Database, key: str) -> tuple[str, float] | None:
    """(value, updated_at) of a key, or None."""
    row = db.execute("SELECT value, updated_at FROM settings WHERE key = ?", [key]).fetchone()
    return None if row is None else (row[0], float(row[1] or 0.0))


def get_json(db: sqlite_utils.Database, key: str) -> Any:
    """The JSON value of a key; None when absent or unreadable."""
    raw = get(db, key)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def put(db: sqlite_utils.Database, key: str, value: str, now: float | None = None) -> None:
    db.conn.execute(UPSERT, [key, value, time.time() if now is None else now])


def put_json(db: sqlite_utils.Database, key: str, value: Any, now: float | None = None) -> None:
    put(db, key, json.dumps(value), now)


def delete(db: sqlite_utils.Database, key: str) -> None:
    db.conn.execute("DELETE FROM settings WHERE key = ?", [key])
