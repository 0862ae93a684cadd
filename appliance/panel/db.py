"""One database connection per request (the Flask tutorial pattern)."""

from __future__ import annotations

import sqlite_utils
from flask import current_app, g

from appliance.store.connection import connect


def get_db() -> sqlite_utils.Database:
    if "db" not in g:
        g.db = connect(current_app.config["DB_PATH"])
    return g.db


def close_db(exc=None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.conn.close()
