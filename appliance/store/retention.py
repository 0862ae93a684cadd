"""Retention: delete what is past its time, per table (`appliance retention`, the daily timer).

  transcripts    older than retention.transcripts_days (redacted text goes first)
  utterances     older than retention.scores_days (with their transcripts)
  calls          ended or aborted, and started before retention.scores_days (with their utterances)
  alerts         older than retention.alerts_days
  relationships  not updated within retention.scores_days
  events         older than retention.alerts_days
  outbox         only rows the broker acknowledged (`sent_at` set) more than
                 retention.outbox_sent_days ago; an unsent row is never deleted
  panel_audit    older than retention.audit_days
  commands       the panel's call commands, queued more than retention.audit_days ago
  settings       `segment:*` state not updated within retention.scores_days, and keys this
                 version no longer writes (`cmd:*` of older versions)
  panel_sessions past the longest session lifetime (the panel also drops them at each login)

Deletes run in small batches, each its own `BEGIN IMMEDIATE` transaction, so the daemon (the
usual single writer) waits at most one batch (busy_timeout is 10 s). No VACUUM: freed pages are
reused by new rows, and rewriting the whole file would cost the SD card more than it saves.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from appliance.store import outbox, settings
from appliance.store.connection import connect, immediate, migrate

log = logging.getLogger(__name__)

DAY = 86400.0
BATCH = 2000
LEGACY_COMMAND_KEYS = "cmd:%"
"""Settings keys older versions wrote per call command; nothing reads them any more."""
SESSION_MAX_S = 168 * 3600.0
"""The longest session lifetime the config allows (panel.session_max_hours)."""


def _cutoff(now: float, days: float) -> float:
    return now - float(days) * DAY


def _batched(db, select_sql: str, args: list, delete_sqls: list[str]) -> int:
    """Delete the keys `select_sql` returns, BATCH at a time; returns how many keys went."""
    total = 0
    while True:
        with immediate(db):
            keys = [r[0] for r in db.execute(select_sql + f" LIMIT {BATCH}", args).fetchall()]
            if not keys:
                return total
            marks = ",".join("?" * len(keys))
            for sql in delete_sqls:
                db.execute(sql.format(marks=marks), keys)
        total += len(keys)


def purge(db_path: str | Path, retention_cfg: Any, now: float | None = None) -> dict[str, int]:
    """Apply the retention settings (`RetentionConfig`) to a database; rows deleted per table."""
    now = time.time() if now is None else now
    r = retention_cfg
    db = connect(db_path)
    try:
        migrate(db)
        counts: dict[str, int] = {}
        scores_cut = _cutoff(now, r.scores_days)
        # calls past retention take their utterances and transcripts along (foreign keys)
        before = _count(db)
        counts["calls"] = _batched(
            db,
            "SELECT id FROM calls WHERE state IN ('ended', 'aborted')"
            " AND COALESCE(ended_at, started_at) < ?",
            [scores_cut],
            [
                "DELETE FROM transcripts WHERE utterance_id IN "
                "(SELECT id FROM utterances WHERE call_id IN ({marks}))",
                "DELETE FROM utterances WHERE call_id IN ({marks})",
                "DELETE FROM calls WHERE id IN ({marks})",
            ],
        )
        # utterances past retention whose call is still kept (a call that never ended)
        _batched(
            db,
            "SELECT id FROM utterances WHERE created_at < ?",
            [scores_cut],
            [
                "DELETE FROM transcripts WHERE utterance_id IN ({marks})",
                "DELETE FROM utterances WHERE id IN ({marks})",
            ],
        )
        _batched(
            db,
            "SELECT utterance_id FROM transcripts WHERE created_at < ?",
            [_cutoff(now, r.transcripts_days)],
            ["DELETE FROM transcripts WHERE utterance_id IN ({marks})"],
        )
        after = _count(db)
        counts["utterances"] = before["utterances"] - after["utterances"]
        counts["transcripts"] = before["transcripts"] - after["transcripts"]
        counts["alerts"] = _batched(
            db,
            "SELECT id FROM alerts WHERE created_at < ?",
            [_cutoff(now, r.alerts_days)],
            ["DELETE FROM alerts WHERE id IN ({marks})"],
        )
        counts["relationships"] = _batched(
            db,
            "SELECT customer_ref FROM relationships WHERE updated_at < ?",
            [scores_cut],
            ["DELETE FROM relationships WHERE customer_ref IN ({marks})"],
        )
        counts["events"] = _batched(
            db,
            "SELECT id FROM events WHERE at < ?",
            [_cutoff(now, r.alerts_days)],
            ["DELETE FROM events WHERE id IN ({marks})"],
        )
        _remember_last_seq(db)
        counts["outbox"] = _batched(
            db,
            "SELECT seq FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?",
            [_cutoff(now, r.outbox_sent_days)],
            ["DELETE FROM outbox WHERE seq IN ({marks}) AND sent_at IS NOT NULL"],
        )
        counts.update(_purge_panel(db, now, r))
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        db.execute("PRAGMA optimize")
        log.info("retention purge: %s", counts)
        return counts
    finally:
        db.conn.close()


def _purge_panel(db, now: float, r: Any) -> dict[str, int]:
    """The panel's audit log and command rows, stale settings rows and dead sessions."""
    audit_cut = _cutoff(now, r.audit_days)
    counts = {"commands": _batched(
        db, "SELECT id FROM commands WHERE at < ?", [audit_cut],
        ["DELETE FROM commands WHERE id IN ({marks})"],
    )}  # fmt: skip
    if db["panel_audit"].exists():  # created by the panel's migrations, maybe never run here
        counts["panel_audit"] = _batched(
            db, "SELECT id FROM panel_audit WHERE at < ?", [audit_cut],
            ["DELETE FROM panel_audit WHERE id IN ({marks})"],
        )  # fmt: skip
    counts["settings"] = _batched(
        db,
        "SELECT key FROM settings WHERE (key LIKE ? AND updated_at < ?) OR key LIKE ?",
        [settings.SEGMENT_PREFIX + "%", _cutoff(now, r.scores_days), LEGACY_COMMAND_KEYS],
        ["DELETE FROM settings WHERE key IN ({marks})"],
    )
    counts["panel_sessions"] = _batched(
        db, "SELECT id FROM panel_sessions WHERE created_at < ?", [now - SESSION_MAX_S],
        ["DELETE FROM panel_sessions WHERE id IN ({marks})"],
    )  # fmt: skip
    return counts


def _remember_last_seq(db) -> None:
    """Keep the highest seq ever issued in settings, so pruning every row never restarts seq."""
    with immediate(db):
        outbox.remember_last_seq(db)


def _count(db) -> dict[str, int]:
    return {
        t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
        for t in ("utterances", "transcripts")
    }
