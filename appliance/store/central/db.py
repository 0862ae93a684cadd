"""The central database's connection: PostgreSQL (shared by bridge instances and the CRM team)
or SQLite (one bridge instance), behind one small interface.

SQL in this package is written once with `?` placeholders and portable statements
(`ON CONFLICT ... DO NOTHING`, `RETURNING`); `Tx` rewrites the placeholders for psycopg and adds
`FOR UPDATE` row locks where PostgreSQL needs them (SQLite's `BEGIN IMMEDIATE` already
serialises writers). `transact` runs a unit of work in one transaction and retries it when
PostgreSQL picks it as a deadlock victim or the connection dropped (the work is idempotent:
it starts by inserting the message id, which a retry finds or not).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRIES = 5


class CentralError(RuntimeError):
    """The central database cannot be opened or keeps failing; the message says why."""


def describe_dsn(dsn: str) -> tuple[str, str]:
    """("postgres", dsn) or ("sqlite", path) for a DSN; CentralError names what is wrong."""
    if dsn.startswith(("postgresql://", "postgres://")) or (
        "=" in dsn and "://" not in dsn and not dsn.endswith(".db")
    ):
        return "postgres", dsn
    if dsn.startswith("sqlite:"):
        path = urlparse(dsn).path if dsn.startswith("sqlite://") else dsn[len("sqlite:") :]
        if not path:
            raise CentralError(f"no file in {dsn!r} (sqlite:///abs/path.db or sqlite:rel.db)")
        return "sqlite", path
    if "://" in dsn:
        raise CentralError(
            f"unsupported database {dsn!r}: postgresql://... (several instances) or a SQLite file"
        )
    return "sqlite", dsn


class Tx:
    """One open transaction: `run`, `all`, `one`, and `lock` for `FOR UPDATE`."""

    def __init__(self, cursor: Any, dialect: str):
        self._cur = cursor
        self.dialect = dialect
        self.lock = " FOR UPDATE" if dialect == "postgres" else ""

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgres" else sql

    def run(self, sql: str, params: tuple | list = ()) -> int:
        """Execute; returns the number of rows changed."""
        self._cur.execute(self._sql(sql), tuple(params))
        return self._cur.rowcount

    def all(self, sql: str, params: tuple | list = ()) -> list[dict]:
        self._cur.execute(self._sql(sql), tuple(params))
        names = [d[0] for d in self._cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in self._cur.fetchall()]

    def one(self, sql: str, params: tuple | list = ()) -> dict | None:
        rows = self.all(sql, params)
        return rows[0] if rows else None


class CentralDB:
    """A connection to the central database; one per thread."""

    def __init__(self, dsn: str):
        self.dialect, self._target = describe_dsn(dsn)
        self.dsn = dsn
        self._conn: Any = None
        self._connect()

    def _connect(self) -> None:
        if self.dialect == "postgres":
            try:
                import psycopg
            except ImportError as exc:  # pragma: no cover - the dev and bridge installs have it
                raise CentralError(
                    "PostgreSQL needs psycopg: pip install 'appliance[bridge]'"
                ) from exc
            try:
                self._conn = psycopg.connect(self._target, autocommit=True, connect_timeout=10)
            except psycopg.Error as exc:
                raise CentralError(f"cannot connect to {self._redacted()}: {exc}") from exc
            return
        path = Path(self._target)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(
                str(path), timeout=30, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise CentralError(f"cannot open {path}: {exc}") from exc
        self._conn = conn

    def _redacted(self) -> str:
        u = urlparse(self.dsn)
        return self.dsn.replace(u.password, "***") if u.password else self.dsn

    @contextmanager
    def tx(self) -> Iterator[Tx]:
        """One transaction (SQLite: `BEGIN IMMEDIATE`, the write lock up front)."""
        if self.dialect == "postgres":
            with self._conn.transaction(), self._conn.cursor() as cur:
                yield Tx(cur, "postgres")
            return
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield Tx(cur, "sqlite")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        else:
            cur.execute("COMMIT")
        finally:
            cur.close()

    def transact(self, work: Callable[[Tx], T]) -> T:
        """`work(tx)` in one transaction, retried on deadlocks and lost connections."""
        for attempt in range(1, RETRIES + 1):
            try:
                with self.tx() as tx:
                    return work(tx)
            except Exception as exc:
                kind = self._transient(exc)
                if kind is None or attempt == RETRIES:
                    raise
                log.warning("central database %s (attempt %d): %s", kind, attempt, exc)
                time.sleep(0.05 * 2**attempt)
                if kind == "connection lost":
                    self._reconnect()
        raise AssertionError("unreachable")  # pragma: no cover

    def _transient(self, exc: Exception) -> str | None:
        if self.dialect == "sqlite":
            locked = isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
            return "busy" if locked else None
        import psycopg
        import psycopg.errors as e

        if isinstance(exc, (e.DeadlockDetected, e.SerializationFailure)):
            return "deadlock"
        if isinstance(exc, psycopg.OperationalError) and self._conn.closed:
            return "connection lost"
        return None

    def _reconnect(self) -> None:
        try:
            self._conn.close()
        except Exception:  # closing a broken connection may fail too
            log.debug("closing the old connection failed", exc_info=True)
        try:
            self._connect()
        except CentralError as exc:
            log.warning("%s", exc)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
