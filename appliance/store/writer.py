"""The single writer of a database: scores, transcripts and their outbox rows, one transaction.

Transcripts live in their own table so retention can drop them long before the scores. Below
`min_free_mb` of free disk, or when SQLite reports the disk full, transcripts stop being
stored while scores and the outbox go on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from appliance.config import AppConfig
from appliance.store import outbox, recovery, settings
from appliance.store.connection import connect, immediate, migrate, storage_error

log = logging.getLogger(__name__)

_PKS = {"calls": "id", "relationships": "customer_ref", "alerts": "id"}


class StorageFull(RuntimeError):
    """The disk is (nearly) full: only the outbox keeps being written."""


# Statements are built before the write lock is taken: inside it only `execute` runs.


def _param(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # a numpy scalar
        return value.item()
    return value


@cache
def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    return f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" * len(columns))})'


@cache
def _upsert_sql(table: str, columns: tuple[str, ...]) -> str:
    pk = _PKS[table]
    sets = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c != pk)
    action = f"DO UPDATE SET {sets}" if sets else "DO NOTHING"
    return f'{_insert_sql(table, columns)} ON CONFLICT("{pk}") {action}'


def _insert(table: str, row: dict) -> tuple[str, list]:
    return _insert_sql(table, tuple(row)), [_param(v) for v in row.values()]


def _upserts(upserts: Mapping[str, list[dict]] | None) -> list[tuple[str, list]]:
    return [
        (_upsert_sql(table, tuple(item)), [_param(v) for v in item.values()])
        for table, items in (upserts or {}).items()
        for item in items
    ]


class Store:
    """The single writer of a database. Thread-safe: calls are serialised by a lock."""

    def __init__(
        self,
        path: str | Path,
        box_id: str = "box-01",
        min_free_mb: float = 0.0,
        outbox_max_rows: int = outbox.OUTBOX_MAX_ROWS,
    ):
        self.path = Path(path)
        self.box_id = box_id
        self.min_free_mb = min_free_mb
        self.cap = outbox.OutboxCap(max(1, int(outbox_max_rows)))
        self.db = connect(self.path)
        self._writers = recovery.WriterLock(self.path)
        try:
            migrate(self.db)
            self.orphans: list[dict] = recovery.live_calls(self.db) if self._writers.sole else []
            """Calls a dead process left `live` (the pipeline closes them as `aborted`)."""
        except BaseException:
            self._writers.release()
            raise
        self._writers.share()
        self._lock = threading.Lock()
        self.transcripts_suspended = False
        """Set when free disk fell below `min_free_mb`: transcripts are skipped, scores go on."""

    @classmethod
    def for_config(cls, path: str | Path, cfg: AppConfig) -> Store:
        """The writer with the box id, disk guard and outbox cap a config asks for."""
        return cls(
            path,
            box_id=cfg.box.id,
            min_free_mb=cfg.retention.min_free_mb,
            outbox_max_rows=cfg.mqtt.outbox_max_rows,
        )

    @property
    def outbox_alarm(self) -> bool:
        """More than `outbox_max_rows` rows wait for the broker (health alarm `outbox_full`)."""
        return self.cap.alarm

    @property
    def outbox_dropped(self) -> int:
        """Superseded low-priority rows (live call updates, health) dropped by the cap."""
        return self.cap.dropped

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()
            self._writers.release()

    def abort_call(self, call_id: str, ended_at: float) -> None:
        """Close an orphaned call without a message (its row could not make one)."""
        with self._lock, immediate(self.db):
            recovery.mark_aborted(self.db, call_id, ended_at)

    # -- writes -------------------------------------------------------------------------

    def _check_disk(self) -> None:
        if self.min_free_mb <= 0:
            return
        try:
            free_mb = shutil.disk_usage(self.path.parent).free / 1e6
        except OSError:
            return
        suspended = free_mb < self.min_free_mb
        if suspended != self.transcripts_suspended:
            log.warning(
                "disk free %.0f MB: transcripts %s",
                free_mb,
                "suspended" if suspended else "resumed",
            )
        self.transcripts_suspended = suspended

    def write(
        self,
        rows: Mapping[str, list[dict]] | None = None,
        upserts: Mapping[str, list[dict]] | None = None,
        messages: list[tuple[str, dict]] | None = None,
        settings_json: Mapping[str, Any] | None = None,
    ) -> list[dict]:
        """Insert rows, upsert rows, set JSON settings and queue their outbox messages in one
        transaction; returns the stamped payloads. StorageError when the database refuses it."""
        statements = [_insert(t, item) for t, items in (rows or {}).items() for item in items]
        statements += _upserts(upserts)
        now = time.time()
        statements += [
            (settings.UPSERT, [key, json.dumps(value), now])
            for key, value in (settings_json or {}).items()
        ]
        prepared = outbox.prepare(messages or [])
        with self._lock, self._storing("cannot store"), immediate(self.db):
            for sql, params in statements:
                self.db.conn.execute(sql, params)
            return outbox.enqueue(self.db, prepared, self.cap)

    def write_utterance(
        self,
        utterance: dict,
        transcript: dict | None,
        messages: list[tuple[str, dict]],
        upserts: Mapping[str, list[dict]] | None = None,
    ) -> int:
        """One utterance, its transcript, the updated call row and their outbox rows in one
        transaction. A full database drops the transcript and tries once more; StorageError
        when even the scores cannot be stored."""
        statements = _upserts(upserts)
        insert = _insert("utterances", utterance)
        text = None
        if transcript is not None:
            sql, params = _insert("transcripts", {"utterance_id": 0, **transcript})
            text = (sql.replace("INSERT", "INSERT OR REPLACE", 1), params)
        prepared = outbox.prepare(messages)
        with self._lock, self._storing("cannot store an utterance"):
            self._check_disk()
            for attempt in (0, 1):
                try:
                    with immediate(self.db):
                        for sql, params in statements:
                            self.db.conn.execute(sql, params)
                        uid = self.db.conn.execute(*insert).lastrowid
                        outbox.enqueue(self.db, prepared, self.cap)
                        if text is not None and not self.transcripts_suspended:
                            # no savepoint: a full disk fails the transaction, which is tried
                            # again without the transcript (one statement less under the lock)
                            self.db.conn.execute(text[0], [uid, *text[1][1:]])
                    return uid
                except sqlite3.OperationalError as exc:
                    if attempt or "full" not in str(exc).lower():
                        raise
                    log.error("database full (%s): transcripts suspended", exc)
                    self.transcripts_suspended = True
                    text = None
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _storing(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise storage_error(self.path, what, exc) from exc

    def event(self, kind: str, detail: dict | None = None) -> None:
        with self._lock, immediate(self.db):
            self.db["events"].insert(
                {"at": time.time(), "kind": kind, "detail": json.dumps(detail or {})}
            )

    # -- reads the writer needs -----------------------------------------------------------

    def customer_state(self, ref: str) -> dict | None:
        """The running relationship state of a customer (None for a first call)."""
        with self._lock:
            row = self.db.execute(
                "SELECT detail FROM relationships WHERE customer_ref = ?", [ref]
            ).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def segment_state(self, segment: str) -> dict | None:
        """The running relationship state of a customer segment."""
        with self._lock:
            return settings.get_json(self.db, settings.segment_key(segment))

    def outbox_counts(self) -> dict[str, int]:
        with self._lock:
            return outbox.counts(self.db)
