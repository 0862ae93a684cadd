"""Panel users and the panel's audit log: the panel's own migration set and every query that
writes them. Hashing and validation live in `appliance.panel.users`; this module stores."""

from __future__ import annotations

import json
import time
from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

from appliance.store import sessions
from appliance.store.connection import connect, immediate
from appliance.store.connection import migrate as migrate_appliance

migrations = Migrations("panel")


@migrations()
def m001_users_audit(db: sqlite_utils.Database) -> None:
    db["panel_users"].create(
        {
            "id": int,
            "name": str,
            "role": str,
            "password_hash": str,
            "created_at": float,
            "updated_at": float,
            "last_login_at": float,
            "disabled": int,
        },
        pk="id",
        not_null={"name", "role", "password_hash"},
    )
    db["panel_users"].create_index(["name"], unique=True)
    db["panel_audit"].create(
        {
            "id": int,
            "at": float,
            "user": str,
            "action": str,  # login_ok, login_failed, logout, user_add, setting_change, alert_ack
            "ok": int,
            "ip": str,
            "detail": str,  # JSON
        },
        pk="id",
    )
    db["panel_audit"].create_index(["at"])


def open_db(path: str | Path) -> sqlite_utils.Database:
    """Open the database and bring both the appliance's and the panel's schema up to date."""
    db = connect(path)
    migrate_appliance(db)
    migrations.apply(db)
    return db


def exists(db: sqlite_utils.Database, name: str) -> bool:
    return db.execute("SELECT 1 FROM panel_users WHERE name = ?", [name]).fetchone() is not None


def insert(db: sqlite_utils.Database, name: str, role: str, password_hash: str) -> int:
    now = time.time()
    with immediate(db):
        db["panel_users"].insert(
            {
                "name": name,
                "role": role,
                "password_hash": password_hash,
                "created_at": now,
                "updated_at": now,
                "last_login_at": None,
                "disabled": 0,
            }
        )
        return int(db.execute("SELECT last_insert_rowid()").fetchone()[0])


def set_password_hash(db: sqlite_utils.Database, name: str, password_hash: str) -> bool:
    """New password; the user's sessions end in the same transaction. False: no such user."""
    with immediate(db):
        cur = db.conn.execute(
            "UPDATE panel_users SET password_hash = ?, updated_at = ? WHERE name = ?",
            [password_hash, time.time(), name],
        )
        _end_sessions(db, name)
    return cur.rowcount == 1


def set_disabled(db: sqlite_utils.Database, name: str, disabled: bool) -> bool:
    """Disable (ending the user's sessions at once) or enable a user. False: no such user."""
    with immediate(db):
        cur = db.conn.execute(
            "UPDATE panel_users SET disabled = ?, updated_at = ? WHERE name = ?",
            [int(disabled), time.time(), name],
        )
        if disabled:
            _end_sessions(db, name)
    return cur.rowcount == 1


def delete(db: sqlite_utils.Database, name: str) -> bool:
    """Delete a user and its sessions (audit lines keep the name). False: no such user."""
    with immediate(db):
        _end_sessions(db, name)
        cur = db.conn.execute("DELETE FROM panel_users WHERE name = ?", [name])
    return cur.rowcount == 1


def _end_sessions(db: sqlite_utils.Database, name: str) -> None:
    row = db.execute("SELECT id FROM panel_users WHERE name = ?", [name]).fetchone()
    if row is not None:
        sessions.end_user_sessions(db, row[0])


def enabled_admins(db: sqlite_utils.Database) -> list[str]:
    return [
        r[0]
        for r in db.execute(
            "SELECT name FROM panel_users WHERE role = 'admin' AND NOT disabled ORDER BY name"
        )
    ]


def credentials(db: sqlite_utils.Database, name: str) -> tuple | None:
    """(id, name, role, password_hash, disabled) of a user name."""
    return db.execute(
        "SELECT id, name, role, password_hash, disabled FROM panel_users WHERE name = ?",
        [name or ""],
    ).fetchone()


def record_login(db: sqlite_utils.Database, uid: int, new_hash: str | None = None) -> None:
    """Stamp a successful login; replace the hash when it was made with outdated parameters."""
    now = time.time()
    with immediate(db):
        if new_hash is not None:
            db.execute(
                "UPDATE panel_users SET password_hash = ?, updated_at = ? WHERE id = ?",
                [new_hash, now, uid],
            )
        db.execute("UPDATE panel_users SET last_login_at = ? WHERE id = ?", [now, uid])


def by_id(db: sqlite_utils.Database, uid: int) -> tuple | None:
    """(id, name, role, disabled) of a user id."""
    return db.execute(
        "SELECT id, name, role, disabled FROM panel_users WHERE id = ?", [uid]
    ).fetchone()


def all_users(db: sqlite_utils.Database) -> list[dict]:
    return [
        dict(r)
        for r in db.query(
            "SELECT id, name, role, created_at, last_login_at, disabled FROM panel_users ORDER BY name"
        )
    ]


def add_audit(
    db: sqlite_utils.Database,
    action: str,
    user: str | None,
    ok: bool = True,
    ip: str | None = None,
    detail: dict | None = None,
) -> None:
    with immediate(db):
        db["panel_audit"].insert(
            {
                "at": time.time(),
                "user": (user or "")[:64],
                "action": action,
                "ok": int(ok),
                "ip": ip,
                "detail": json.dumps(detail or {}, separators=(",", ":")),
            }
        )


def recent_audit(db: sqlite_utils.Database, limit: int = 200) -> list[dict]:
    rows = [
        dict(r) for r in db.query("SELECT * FROM panel_audit ORDER BY id DESC LIMIT ?", [limit])
    ]
    for r in rows:
        r["detail"] = json.loads(r["detail"] or "{}")
    return rows
