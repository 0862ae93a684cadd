"""The single writer of a database: scores, transcripts and their outbox rows, one transaction.

Transcripts live in their own table so retention can drop them long before the scores. Below
`min_free_mb` of free disk, or when SQLite reports the disk full, transcripts stop being
stored while scores and the outbox go on.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from appliance.config import AppConfig
from appliance.store import outbox, settings
from appliance.store.connection import connect, immediate, migrate

log = logging.getLogger(__name__)

_PKS = {"calls": "id", "relationships": "customer_ref", "alerts": "id"}


class StorageFull(RuntimeError):
    """The disk is (nearly) full: only the outbox keeps being written."""


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
        migrate(self.db)
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

    def _upsert(self, upserts: Mapping[str, list[dict]] | None) -> None:
        for table, items in (upserts or {}).items():
            for item in items:
                self.db[table].upsert(item, pk=_PKS[table])

    def write(
        self,
        rows: Mapping[str, list[dict]] | None = None,
        upserts: Mapping[str, list[dict]] | None = None,
        messages: list[tuple[str, dict]] | None = None,
        settings_json: Mapping[str, Any] | None = None,
    ) -> list[dict]:
        """Insert rows, upsert rows, set JSON settings and queue their outbox messages in one
        transaction; returns the stamped payloads."""
        with self._lock, immediate(self.db):
            for table, items in (rows or {}).items():
                if items:
                    self.db[table].insert_all(items)
            self._upsert(upserts)
            for key, value in (settings_json or {}).items():
                settings.put_json(self.db, key, value)
            return outbox.enqueue(self.db, messages or [], self.cap)

    def write_utterance(
        self,
        utterance: dict,
        transcript: dict | None,
        messages: list[tuple[str, dict]],
        upserts: Mapping[str, list[dict]] | None = None,
    ) -> int:
        """One utterance, its transcript, the updated call row and their outbox rows in one
        transaction."""
        with self._lock:
            self._check_disk()
            for attempt in (0, 1):
                try:
                    with immediate(self.db):
                        self._upsert(upserts)
                        self.db["utterances"].insert(utterance)
                        uid = self.db.execute("SELECT last_insert_rowid()").fetchone()[0]
                        outbox.enqueue(self.db, messages, self.cap)
                        if transcript is not None and not self.transcripts_suspended:
                            self._insert_transcript({**transcript, "utterance_id": uid})
                    return uid
                except sqlite3.OperationalError as exc:
                    if attempt or "full" not in str(exc).lower():
                        raise
                    log.error("database full (%s): transcripts suspended", exc)
                    self.transcripts_suspended = True
                    transcript = None
        raise AssertionError("unreachable")

    def _insert_transcript(self, transcript: dict) -> None:
        self.db.conn.execute("SAVEPOINT transcript")
        try:
            self.db["transcripts"].insert(transcript, replace=True)
        except sqlite3.OperationalError as exc:
            self.db.conn.execute("ROLLBACK TO SAVEPOINT transcript")
            log.error("transcript not stored: %s", exc)
            self.transcripts_suspended = True
        self.db.conn.execute("RELEASE SAVEPOINT transcript")

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
