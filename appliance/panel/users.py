"""Panel users and the audit log: validation and argon2id hashes (`appliance.store.users` stores).

Passwords are hashed with argon2-cffi's `PasswordHasher` (argon2id, the library's current
parameters). A stored hash made with older parameters is replaced at the next successful login
(`check_needs_rehash`). Unknown user names are verified against a dummy hash so a failed login
takes the same time whether or not the name exists.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from pathlib import Path

import sqlite_utils
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from appliance.store import users as user_rows

ROLES = ("supervisor", "admin")
NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserError(ValueError):
    """A user could not be created (bad name, role or password, or it exists)."""


class UserExists(UserError):
    """The user name is taken."""


class NoSuchUser(UserError):
    """No user has this name."""


class LastAdmin(UserError):
    """The change would leave no enabled admin."""


open_db = user_rows.open_db
recent_audit = user_rows.recent_audit


def validate(name: str, role: str, password: str) -> None:
    if not NAME_RE.fullmatch(name or ""):
        raise UserError("user name: 1-64 letters, digits or . _ @ -")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    validate_password(password)


def add_user(db: sqlite_utils.Database, name: str, role: str, password: str) -> int:
    validate(name, role, password)
    if user_rows.exists(db, name):
        raise UserExists(f"user {name!r} already exists")
    return user_rows.insert(db, name, role, _hasher.hash(password))


def validate_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"password must have at most {MAX_PASSWORD} characters")


def set_password(db: sqlite_utils.Database, name: str, password: str) -> None:
    """A new password; every session of the user ends."""
    validate_password(password)
    if not user_rows.set_password_hash(db, name, _hasher.hash(password)):
        raise NoSuchUser(f"no user {name!r}")


def _keep_an_admin(db: sqlite_utils.Database, name: str) -> None:
    if user_rows.enabled_admins(db) == [name]:
        raise LastAdmin(f"{name!r} is the only enabled admin: add or enable another admin first")


def disable_user(db: sqlite_utils.Database, name: str) -> None:
    """Disable a user; its sessions end at once (also an open Live stream)."""
    _keep_an_admin(db, name)
    if not user_rows.set_disabled(db, name, True):
        raise NoSuchUser(f"no user {name!r}")


def enable_user(db: sqlite_utils.Database, name: str) -> None:
    if not user_rows.set_disabled(db, name, False):
        raise NoSuchUser(f"no user {name!r}")


def delete_user(db: sqlite_utils.Database, name: str) -> None:
    """Delete a user and its sessions; the audit log keeps its name."""
    _keep_an_admin(db, name)
    if not user_rows.delete(db, name):
        raise NoSuchUser(f"no user {name!r}")


def authenticate(db: sqlite_utils.Database, name: str, password: str) -> dict | None:
    """The user row when name and password match an enabled user; rehashes outdated hashes."""
    row = user_rows.credentials(db, name)
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
    rehash = _hasher.hash(password) if _hasher.check_needs_rehash(phash) else None
    user_rows.record_login(db, uid, rehash)
    return {"id": uid, "name": uname, "role": role}


def get_user(db: sqlite_utils.Database, uid: int) -> dict | None:
    row = user_rows.by_id(db, uid)
    if row is None or row[3]:
        return None
    return {"id": row[0], "name": row[1], "role": row[2]}


def list_users(db: sqlite_utils.Database) -> list[dict]:
    return user_rows.all_users(db)


audit = user_rows.add_audit
"""One audit-log line: who did what, from where."""


def ensure_demo_user(db_path: str | Path, name: str = "demo") -> tuple[str, str]:
    """Create (or reset the password of) a `demo` supervisor; returns (name, new random password)."""
    password = secrets.token_urlsafe(12)
    db = open_db(db_path)
    try:
        if user_rows.exists(db, name):
            set_password(db, name, password)
        else:
            add_user(db, name, "supervisor", password)
        audit(db, "demo_user", name, detail={"role": "supervisor"})
    finally:
        db.conn.close()
    return name, password
