"""The panel's server-side sessions (`panel_sessions`): one row per login, keyed by the SHA-256
of the token in the cookie. The panel decides what is expired (`appliance.panel.sessions`);
this module only stores. A session without its row is over."""

from __future__ import annotations

import sqlite_utils

from appliance.store.connection import immediate


def create(db: sqlite_utils.Database, sid_hash: str, user_id: int, now: float, ip: str) -> None:
    with immediate(db):
        db.conn.execute(
            "INSERT INTO panel_sessions (id, user_id, created_at, last_seen_at, ip)"
            " VALUES (?, ?, ?, ?, ?)",
            [sid_hash, user_id, now, now, (ip or "")[:64]],
        )


def get(db: sqlite_utils.Database, sid_hash: str) -> tuple[int, float, float] | None:
    """(user id, created at, last seen at) of a session, or None."""
    return db.execute(
        "SELECT user_id, created_at, last_seen_at FROM panel_sessions WHERE id = ?", [sid_hash]
    ).fetchone()


def touch(db: sqlite_utils.Database, sid_hash: str, now: float) -> None:
    with immediate(db):
        db.conn.execute("UPDATE panel_sessions SET last_seen_at = ? WHERE id = ?", [now, sid_hash])


def delete(db: sqlite_utils.Database, sid_hash: str) -> None:
    with immediate(db):
        db.conn.execute("DELETE FROM panel_sessions WHERE id = ?", [sid_hash])


def end_user_sessions(db: sqlite_utils.Database, user_id: int) -> int:
    """Delete every session of a user inside the caller's transaction; how many ended."""
    return db.conn.execute("DELETE FROM panel_sessions WHERE user_id = ?", [user_id]).rowcount


def end_all(db: sqlite_utils.Database, user_id: int) -> int:
    """Every session of a user, in a transaction of its own."""
    with immediate(db):
        return end_user_sessions(db, user_id)


def count_for_user(db: sqlite_utils.Database, user_id: int) -> int:
    return db.execute(
        "SELECT COUNT(*) FROM panel_sessions WHERE user_id = ?", [user_id]
    ).fetchone()[0]


def purge_expired(db: sqlite_utils.Database, idle_before: float, created_before: float) -> int:
    """Delete sessions idle since `idle_before` or created before `created_before`."""
    with immediate(db):
        return db.conn.execute(
            "DELETE FROM panel_sessions WHERE last_seen_at < ? OR created_at < ?",
            [idle_before, created_before],
        ).rowcount
