"""Panel users and the audit log: the panel's own migration set, argon2id hashes.

Passwords are hashed with argon2-cffi's `PasswordHasher` (argon2id, the library's current
parameters). A stored hash made with older parameters is replaced at the next successful login
(`check_needs_rehash`). Unknown user names are verified against a dummy hash so a failed login
takes the same time whether or not the name exists.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import time
from pathlib import Path

import sqlite_utils
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlite_utils.migrations import Migrations

from appliance.store import db as store

ROLES = ("supervisor", "admin")
NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024

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


_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserError(ValueError):
    """A user could not be created (bad name, role or password, or it exists)."""


class UserExists(UserError):
    """The user name is taken."""


def open_db(path: str | Path) -> sqlite_utils.Database:
    """Open the database and bring both the appliance's and the panel's schema up to date."""
    db = store.connect(path)
    store.migrate(db)
    migrations.apply(db)
    return db


def validate(name: str, role: str, password: str) -> None:
    if not NAME_RE.fullmatch(name or ""):
        raise UserError("user name: 1-64 letters, digits or . _ @ -")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"password must have at most {MAX_PASSWORD} characters")


def add_user(db: sqlite_utils.Database, name: str, role: str, password: str) -> int:
    validate(name, role, password)
    if db.execute("SELECT 1 FROM panel_users WHERE name = ?", [name]).fetchone():
        raise UserExists(f"user {name!r} already exists")
    now = time.time()
    with store.immediate(db):
        db["panel_users"].insert(
            {
                "name": name,
                "role": role,
                "password_hash": _hasher.hash(password),
                "created_at": now,
                "updated_at": now,
                "last_login_at": None,
                "disabled": 0,
            }
        )
        return int(db.execute("SELECT last_insert_rowid()").fetchone()[0])


def set_password(db: sqlite_utils.Database, name: str, password: str) -> None:
    with store.immediate(db):
        db.execute(
            "UPDATE panel_users SET password_hash = ?, updated_at = ? WHERE name = ?",
            [_hasher.hash(password), time.time(), name],
        )


def authenticate(db: sqlite_utils.Database, name: str, password: str) -> dict | None:
    """The user row when name and password match an enabled user; rehashes outdated hashes."""
    row = db.execute(
        "SELECT id, name, role, password_hash, disabled FROM panel_users WHERE name = ?",
        [name or ""],
    ).fetchone()
    if row is None or len(password or "") > MAX_PASSWORD:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_DUMMY_HASH, password[:MAX_PASSWORD] if password else "x")
        return None
    uid, uname, role, phash, disabled = row
    try:
        _hasher.verify(phash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if disabled:
        return None
    now = time.time()
    with store.immediate(db):
        if _hasher.check_needs_rehash(phash):
            db.execute(
                "UPDATE panel_users SET password_hash = ?, updated_at = ? WHERE id = ?",
                [_hasher.hash(password), now, uid],
            )
        db.execute("UPDATE panel_users SET last_login_at = ? WHERE id = ?", [now, uid])
    return {"id": uid, "name": uname, "role": role}


def get_user(db: sqlite_utils.Database, uid: int) -> dict | None:
    row = db.execute(
        "SELECT id, name, role, disabled FROM panel_users WHERE id = ?", [uid]
    ).fetchone()
    if row is None or row[3]:
        return None
    return {"id": row[0], "name": row[1], "role": row[2]}


def list_users(db: sqlite_utils.Database) -> list[dict]:
    return [
        dict(r)
        for r in db.query(
            "SELECT id, name, role, created_at, last_login_at, disabled FROM panel_users ORDER BY name"
        )
    ]


def audit(
    db: sqlite_utils.Database,
    action: str,
    user: str | None,
    ok: bool = True,
    ip: str | None = None,
    detail: dict | None = None,
) -> None:
    with store.immediate(db):
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


def ensure_demo_user(db_path: str | Path, name: str = "demo") -> tuple[str, str]:
    """Create (or reset the password of) a `demo` supervisor; returns (name, new random password)."""
    password = secrets.token_urlsafe(12)
    db = open_db(db_path)
    try:
        if db.execute("SELECT 1 FROM panel_users WHERE name = ?", [name]).fetchone():
            set_password(db, name, password)
        else:
            add_user(db, name, "supervisor", password)
        audit(db, "demo_user", name, detail={"role": "supervisor"})
    finally:
        db.conn.close()
    return name, password
