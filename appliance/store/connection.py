"""Opening the database with the pragmas the appliance relies on, migrating it, and the one
kind of write transaction (`immediate`).

WAL with `synchronous=FULL`, so a committed score survives a power cut. `BEGIN IMMEDIATE`
takes the write lock up front instead of failing on upgrade when another connection writes.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import stat
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from appliance.store.schema import migrations

log = logging.getLogger(__name__)


class StorageError(RuntimeError):
    """The database cannot be opened or written (full disk, I/O error, permissions). The
    message names the file, what failed and the free space: the CLI prints it as one line."""


def free_mb(path: str | Path) -> float | None:
    """Free space on the disk holding `path` (MB), None when it cannot be read."""
    try:
        return round(shutil.disk_usage(Path(path).parent).free / 1e6, 1)
    except OSError:
        return None


def storage_error(path: str | Path, what: str, exc: BaseException) -> StorageError:
    free = free_mb(path)
    room = f"; {free} MB free on its disk" if free is not None else ""
    return StorageError(f"{path}: {what}: {exc}{room}")


def connect(path: str | Path, readonly: bool = False) -> sqlite_utils.Database:
    """Open the database with the pragmas the appliance relies on (StorageError if it cannot)."""
    path = Path(path)
    conn = None
    try:
        if readonly:
            conn = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=10
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            _create_shared(path)
            conn = sqlite3.connect(
                str(path), check_same_thread=False, timeout=10, isolation_level=None
            )
        conn.execute("PRAGMA busy_timeout = 10000")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
    except (sqlite3.Error, OSError) as exc:
        if conn is not None:
            conn.close()
        raise storage_error(path, "cannot open the database", exc) from exc
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
    """Bring the appliance's schema up to date (idempotent; StorageError if it cannot)."""
    try:
        migrations.apply(db)
    except sqlite3.OperationalError as exc:
        path = db.execute("PRAGMA database_list").fetchone()[2]
        raise storage_error(path, "cannot update the schema", exc) from exc


@dataclass
class LockStats:
    """How long this process held SQLite's write lock (`immediate` transactions): health shows
    it, and a transaction held longer than `SLOW_LOCK_S` is logged with its thread."""

    transactions: int = 0
    max_s: float = 0.0
    slow: int = 0
    """Transactions that held the lock longer than SLOW_LOCK_S."""
    by_thread: dict[str, float] = field(default_factory=dict)
    """The longest hold per thread name."""
    recent: deque[tuple[str, float]] = field(default_factory=lambda: deque(maxlen=2000))
    """(thread name, seconds) of the newest transactions."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, held: float) -> None:
        name = threading.current_thread().name
        with self._lock:
            self.transactions += 1
            self.max_s = max(self.max_s, held)
            self.by_thread[name] = max(self.by_thread.get(name, 0.0), held)
            self.recent.append((name, held))
            if held > SLOW_LOCK_S:
                self.slow += 1
        if held > SLOW_LOCK_S:
            log.warning(
                "write lock held %.2f s by thread %s", held, threading.current_thread().name
            )


SLOW_LOCK_S = 1.0
LOCK_STATS = LockStats()


@contextmanager
def immediate(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """A write transaction that takes the write lock at BEGIN (its hold time is measured)."""
    db.conn.execute("BEGIN IMMEDIATE")
    t0 = time.monotonic()
    try:
        yield db
    except BaseException:
        db.conn.execute("ROLLBACK")
        LOCK_STATS.add(time.monotonic() - t0)
        raise
    else:
        db.conn.execute("COMMIT")
        LOCK_STATS.add(time.monotonic() - t0)
