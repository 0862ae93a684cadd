"""Opening the database with the pragmas the appliance relies on, migrating it, and the one
kind of write transaction (`immediate`).

WAL with `synchronous=FULL`, so a committed score survives a power cut. `BEGIN IMMEDIATE`
takes the write lock up front instead of failing on upgrade when another connection writes.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from appliance.store.schema import migrations


def connect(path: str | Path, readonly: bool = False) -> sqlite_utils.Database:
    """Open the database with the pragmas the appliance relies on."""
    path = Path(path)
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=10
        )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        _create_shared(path)
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 10000")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    return sqlite_utils.Database(conn)


def _create_shared(path: Path) -> None:
    """A new database in a group-writable folder (the box's /var/lib/appliance, shared by the
    daemon and the panel, two users of one group) is created group-writable; SQLite gives its
    -wal and -shm files the database's mode. Elsewhere the umask decides, as usual."""
    try:
        if path.exists() or not path.parent.stat().st_mode & stat.S_IWGRP:
            return
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:  # exists (another process won) or not ours to create: connect decides
        return
    try:
        os.fchmod(fd, 0o660)
    finally:
        os.close(fd)


def migrate(db: sqlite_utils.Database) -> None:
    """Bring the appliance's schema up to date (idempotent)."""
    migrations.apply(db)


@contextmanager
def immediate(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """A write transaction that takes the write lock at BEGIN."""
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.conn.execute("ROLLBACK")
        raise
    else:
        db.conn.execute("COMMIT")
