"""Server-side sessions: the signed cookie carries a random token, `panel_sessions` its SHA-256.

Every request looks the row up (`user_for_request`): no row, a session idle longer than
SESSION_IDLE_S or older than SESSION_MAX_S (absolute, from the login) means logged out, so
logout, a password change, disabling or deleting a user end sessions at once, also for a copied
cookie and across panel restarts. `last_seen_at` is written at most every TOUCH_S so a page
view is not a write every time.
"""

from __future__ import annotations

import hashlib
import secrets
import time

import sqlite_utils
from flask import current_app, session

from appliance.panel import users
from appliance.store import sessions as rows

SID = "sid"
TOUCH_S = 30.0


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def limits() -> tuple[float, float]:
    """(idle timeout, absolute lifetime) in seconds."""
    cfg = current_app.config
    return float(cfg["SESSION_IDLE_S"]), float(cfg["SESSION_MAX_S"])


def start(db: sqlite_utils.Database, user_id: int, ip: str | None) -> None:
    """A fresh session for a user who just logged in (no fixation: the old cookie is dropped)."""
    idle_s, max_s = limits()
    now = time.time()
    rows.purge_expired(db, now - idle_s, now - max_s)
    token = secrets.token_urlsafe(32)
    rows.create(db, _hash(token), user_id, now, ip or "")
    session.clear()
    session.permanent = True
    session[SID] = token


def check(db: sqlite_utils.Database, token: str | None, idle_s: float, max_s: float) -> dict | None:
    """The user of a live session, or None (the expired row is deleted). Marks it in use."""
    if not token or not isinstance(token, str):
        return None
    sid = _hash(token)
    row = rows.get(db, sid)
    if row is None:
        return None
    user_id, created, seen = row
    now = time.time()
    if now - seen > idle_s or now - created > max_s:
        rows.delete(db, sid)
        return None
    user = users.get_user(db, user_id)
    if user is None:  # disabled or deleted (their sessions are deleted too; belt and braces)
        rows.delete(db, sid)
        return None
    if now - seen >= min(TOUCH_S, idle_s / 4):
        rows.touch(db, sid, now)
    return user


def user_for_request(db: sqlite_utils.Database) -> dict | None:
    token = session.get(SID)
    if token is None:
        return None  # anonymous (the login form's CSRF token lives in the cookie too)
    idle_s, max_s = limits()
    user = check(db, token, idle_s, max_s)
    if user is None:
        session.clear()  # ended on the server: the cookie goes as well
    return user


def end(db: sqlite_utils.Database, everywhere: bool = False) -> int:
    """Logout: this session (or every session of its user); the cookie is cleared."""
    token = session.get(SID)
    ended = 0
    if isinstance(token, str):
        row = rows.get(db, _hash(token))
        if row is not None and everywhere:
            ended = rows.end_all(db, row[0])
        elif row is not None:
            rows.delete(db, _hash(token))
            ended = 1
    session.clear()
    return ended
