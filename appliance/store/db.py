"""SQLite storage: schema migrations, the single writer, and the outbox.

WAL with `synchronous=FULL`, so a committed score survives a power cut. Scores and the outbox
rows that carry them are written in one transaction (`BEGIN IMMEDIATE`: the writer takes the
write lock up front instead of failing on upgrade when the publisher marks rows sent).
Transcripts live in their own table so retention can drop them long before the scores.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

from appliance.publish import contract

log = logging.getLogger(__name__)

migrations = Migrations("appliance")

OUTBOX_MAX_ROWS = 200_000
LAST_SEQ_KEY = "outbox.last_seq"


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db["calls"].create(
        {
            "id": str,
            "position": str,
            "customer_ref": str,
            "call_type": str,
            "segment": str,
            "source": str,
            "state": str,
            "started_at": float,
            "ended_at": float,
            "duration": float,
            "metrics": str,  # JSON of the call summary (see scoring.CallScorer.summary)
            "alerts": int,
        },
        pk="id",
    )
    db["calls"].create_index(["started_at"])
    db["calls"].create_index(["customer_ref"])
    db["calls"].create_index(["position", "state"])
    db["utterances"].create(
        {
            "id": int,
            "call_id": str,
            "idx": int,
            "speaker": str,
            "start": float,
            "end": float,
            "emotion_label": str,
            "confidence": float,
            "intensity": float,
            "arousal": float,
            "valence": float,
            "uncertain": int,
            "text_sentiment": float,
            "sentiment": float,
            "sentiment_confidence": float,
            "wpm": float,
            "key_phrases": str,
            "created_at": float,
        },
        pk="id",
        foreign_keys=[("call_id", "calls", "id")],
    )
    db["utterances"].create_index(["call_id", "idx"], unique=True)
    db["utterances"].create_index(["created_at"])
    # Redacted text only: the STT stage redacts before anything reaches this table.
    db["transcripts"].create(
        {
            "utterance_id": int,
            "call_id": str,
            "text": str,
            "words": str,
            "engine": str,
            "created_at": float,
        },
        pk="utterance_id",
        foreign_keys=[("utterance_id", "utterances", "id")],
    )
    db["transcripts"].create_index(["created_at"])
    db["alerts"].create(
        {
            "id": str,
            "call_id": str,
            "customer_ref": str,
            "position": str,
            "rule": str,
            "severity": str,
            "action": str,
            "signal": str,
            "value": float,
            "threshold": float,
            "at": float,
            "reason": str,
            "evidence": str,
            "created_at": float,
            "acknowledged_at": float,
            "acknowledged_by": str,
        },
        pk="id",
    )
    db["alerts"].create_index(["created_at"])
    db["alerts"].create_index(["call_id"])
    db["relationships"].create(
        {
            "customer_ref": str,
            "segment": str,
            "calls": int,
            "health": float,
            "trend": float,
            "risk": float,
            "advocacy": float,
            "state": str,
            "detail": str,  # JSON: EWMA/CUSUM state and the per-call history used as evidence
            "last_call_id": str,
            "updated_at": float,
        },
        pk="customer_ref",
    )
    db["outbox"].create(
        {
            "seq": int,
            "msg_id": str,
            "kind": str,
            "payload": str,
            "created_at": float,
            "sent_at": float,
            "attempts": int,
        },
        pk="seq",
    )
    db["outbox"].create_index(["msg_id"], unique=True)
    db["outbox"].create_index(["sent_at", "seq"])
    db["settings"].create({"key": str, "value": str, "updated_at": float}, pk="key")
    db["events"].create({"id": int, "at": float, "kind": str, "detail": str}, pk="id")


def connect(path: str | Path, readonly: bool = False) -> sqlite_utils.Database:
    """Open the database with the pragmas the appliance relies on."""
    path = Path(path)
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=10
        )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 10000")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    return sqlite_utils.Database(conn)


def migrate(db: sqlite_utils.Database) -> None:
    """Bring the schema up to date (idempotent)."""
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


class StorageFull(RuntimeError):
    """The disk is (nearly) full: only the outbox keeps being written."""


class Store:
    """The single writer of a database. Thread-safe: calls are serialised by a lock."""

    def __init__(
        self,
        path: str | Path,
        box_id: str = "box-01",
        min_free_mb: float = 0.0,
        outbox_max_rows: int = OUTBOX_MAX_ROWS,
    ):
        self.path = Path(path)
        self.box_id = box_id
        self.min_free_mb = min_free_mb
        self.outbox_max_rows = max(1, int(outbox_max_rows))
        self.db = connect(self.path)
        migrate(self.db)
        self._lock = threading.Lock()
        self.transcripts_suspended = False
        """Set when free disk fell below `min_free_mb`: transcripts are skipped, scores go on."""
        self.outbox_alarm = False
        """Set while more than `outbox_max_rows` rows wait for the broker (health alarm `outbox_full`)."""
        self.outbox_dropped = 0
        """Superseded low-priority rows (live call updates, health) dropped by the cap since start."""
        self._rows_since_cap_check: int | None = None

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()

    # -- writes -------------------------------------------------------------------------

    def _enqueue(self, messages: list[tuple[str, dict]]) -> list[dict]:
        """Insert outbox rows inside the caller's transaction; returns the stamped payloads.

        `seq` continues from the highest seq ever issued (kept in `settings`, so retention
        pruning every sent row never makes a box reuse a seq). Each payload is checked against
        the contract here too, so a row that could never be published is never queued: the
        caller's whole transaction (scores included) fails loudly instead.
        """
        out: list[dict] = []
        if not messages:
            return out
        seq = _last_seq(self.db)
        now = time.time()
        rows = []
        for kind, payload in messages:
            seq += 1
            payload = {**payload, "seq": seq}
            contract.check_payload(kind, payload)
            rows.append(
                (seq, payload["msg_id"], kind, json.dumps(payload, separators=(",", ":")), now)
            )
            out.append(payload)
        self.db.conn.executemany(
            "INSERT INTO outbox (seq, msg_id, kind, payload, created_at, sent_at, attempts)"
            " VALUES (?, ?, ?, ?, ?, NULL, 0)",
            rows,
        )
        self.db.conn.execute(
            "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            [LAST_SEQ_KEY, str(seq), now],
        )
        self._check_outbox_cap(len(rows))
        return out

    def _check_outbox_cap(self, added: int) -> None:
        """Outbox size cap (inside the writer's transaction), checked every few hundred rows.

        Above the cap the alarm is raised and the oldest pending *superseded* rows are dropped
        (live call updates and health snapshots: a later `call`/`health` message replaces
        them). Utterance scores, ended calls, relationships and alerts are never dropped: if
        they alone exceed the cap the alarm stays raised and they keep being queued.
        """
        cap = self.outbox_max_rows
        every = max(1, min(256, cap // 20))
        if self._rows_since_cap_check is not None:
            self._rows_since_cap_check += added
            if self._rows_since_cap_check < every:
                return
        self._rows_since_cap_check = 0
        pending = self.db.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]
        if pending > cap:
            excess = pending - int(cap * 0.9)
            cur = self.db.conn.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE sent_at IS NULL AND"
                " (kind = 'health' OR (kind = 'call' AND json_extract(payload, '$.state') = 'live'))"
                " ORDER BY seq LIMIT ?)",
                [excess],
            )
            dropped = cur.rowcount or 0
            self.outbox_dropped += dropped
            pending -= dropped
            self.db.conn.execute(
                "INSERT INTO events (at, kind, detail) VALUES (?, 'outbox_full', ?)",
                [time.time(), json.dumps({"pending": pending, "cap": cap, "dropped": dropped})],
            )
        alarm = pending > cap
        if alarm != self.outbox_alarm:
            (log.error if alarm else log.warning)(
                "outbox %s: %d rows pending (cap %d, %d superseded rows dropped so far)",
                "over its cap" if alarm else "back under its cap",
                pending,
                cap,
                self.outbox_dropped,
            )
        elif pending > cap * 0.9 and self.outbox_dropped:
            log.warning("outbox near its cap: %d rows pending (cap %d)", pending, cap)
        self.outbox_alarm = alarm

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
        rows: dict[str, list[dict]] | None = None,
        upserts: dict[str, list[dict]] | None = None,
        messages: list[tuple[str, dict]] | None = None,
    ) -> list[dict]:
        """Insert rows, upsert rows and queue their outbox messages in one transaction."""
        with self._lock, immediate(self.db):
            for table, items in (rows or {}).items():
                if items:
                    self.db[table].insert_all(items)
            for table, items in (upserts or {}).items():
                for item in items:
                    self.db[table].upsert(item, pk=_PKS[table])
            return self._enqueue(messages or [])

    def write_utterance(
        self,
        utterance: dict,
        transcript: dict | None,
        messages: list[tuple[str, dict]],
        upserts: dict[str, list[dict]] | None = None,
    ) -> int:
        """One utterance, its transcript, the updated call row and their outbox rows in one transaction."""
        with self._lock:
            self._check_disk()
            for attempt in (0, 1):
                try:
                    with immediate(self.db):
                        for table, items in (upserts or {}).items():
                            for item in items:
                                self.db[table].upsert(item, pk=_PKS[table])
                        self.db["utterances"].insert(utterance)
                        uid = self.db.execute("SELECT last_insert_rowid()").fetchone()[0]
                        self._enqueue(messages)
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

    # -- reads --------------------------------------------------------------------------

    def outbox_counts(self) -> dict[str, int]:
        row = self.db.execute(
            "SELECT COUNT(*), SUM(sent_at IS NULL), SUM(sent_at IS NOT NULL) FROM outbox"
        ).fetchone()
        return {"rows": row[0] or 0, "pending": row[1] or 0, "sent": row[2] or 0}


_PKS = {"calls": "id", "relationships": "customer_ref", "alerts": "id", "settings": "key"}


def _last_seq(db: sqlite_utils.Database) -> int:
    """The highest outbox seq ever issued (survives retention pruning every row)."""
    row = db.execute(
        "SELECT MAX(COALESCE((SELECT MAX(seq) FROM outbox), 0),"
        " COALESCE((SELECT CAST(value AS INTEGER) FROM settings WHERE key = ?), 0))",
        [LAST_SEQ_KEY],
    ).fetchone()
    return int(row[0] or 0)


def acked_watermark(db: sqlite_utils.Database) -> int:
    """Highest seq such that every outbox row up to it has a sent time."""
    first_pending = db.execute("SELECT MIN(seq) FROM outbox WHERE sent_at IS NULL").fetchone()[0]
    if first_pending is not None:
        return int(first_pending) - 1
    return _last_seq(db)


def outbox_status(path: str | Path, max_rows: int | None = None) -> dict[str, Any]:
    """Counts for `appliance outbox status`."""
    db = connect(path)
    try:
        migrate(db)
        row = db.execute(
            "SELECT COUNT(*), SUM(sent_at IS NULL), SUM(sent_at IS NOT NULL),"
            " MIN(CASE WHEN sent_at IS NULL THEN created_at END), MAX(sent_at),"
            " SUM(CASE WHEN sent_at IS NULL THEN attempts > 0 ELSE 0 END) FROM outbox"
        ).fetchone()
        per_kind = dict(
            db.execute(
                "SELECT kind, COUNT(*) FROM outbox WHERE sent_at IS NULL GROUP BY kind"
            ).fetchall()
        )
        oldest = row[3]
        pending = row[1] or 0
        cap = max_rows or OUTBOX_MAX_ROWS
        return {
            "db": str(path),
            "rows": row[0] or 0,
            "pending": pending,
            "sent": row[2] or 0,
            "pending_by_kind": per_kind,
            "pending_retried": row[5] or 0,
            "oldest_pending_age_s": round(time.time() - oldest, 1) if oldest else None,
            "last_sent_at": round(row[4], 3) if row[4] else None,
            "last_seq": _last_seq(db),
            "acked_seq": acked_watermark(db),
            "max_rows": cap,
            "alarm": pending > cap,
        }
    finally:
        db.conn.close()
