"""Calls a crash left open: found when a store opens, closed by the pipeline.

A call stays `live` in the database while its process scores it. A process killed with -9 (or
a power cut) leaves it `live` forever, and the CRM never hears that it is over. Every `Store`
holds a shared `flock` on `<db>.writers` while it is open; a store that can take that lock
exclusively when it opens is the only writer alive, so every `live` call then belongs to a
dead process. It notes those calls (before any call of its own exists) and the pipeline closes
them as `aborted` with the summary they had. When another writer is alive (the daemon while an
`analyze` runs on its database) nothing is noted: its calls are live.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from pathlib import Path

import sqlite_utils

log = logging.getLogger(__name__)

ABORTED = "aborted"
"""State of a call its process never ended (crash, kill, power cut)."""


class WriterLock:
    """The shared lock every open store holds; `sole` says whether it was alone at open."""

    def __init__(self, db_path: str | Path):
        self.path = Path(f"{db_path}.writers")
        self.sole = False
        # read-only is enough for flock: a lock file another user created (root running
        # `analyze` on the box's database) stays usable by the daemon's user
        try:
            self._fd: int | None = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o664)
        except OSError as exc:
            log.warning("%s: %s; calls left open by a crash are not closed", self.path, exc)
            self._fd = None
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.sole = True
        except BlockingIOError:
            fcntl.flock(self._fd, fcntl.LOCK_SH)

    def share(self) -> None:
        """From exclusive (while the orphans were noted) to shared, like every other store."""
        if self._fd is not None and self.sole:
            fcntl.flock(self._fd, fcntl.LOCK_SH)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def live_calls(db: sqlite_utils.Database) -> list[dict]:
    """The `live` calls with what their last committed utterance left in the row."""
    cur = db.execute(
        "SELECT id, position, customer_ref, call_type, segment, source, started_at, metrics,"
        " alerts FROM calls WHERE state = 'live' ORDER BY started_at"
    )
    names = [d[0] for d in cur.description]
    out = []
    for values in cur.fetchall():
        row = dict(zip(names, values, strict=True))
        try:
            row["metrics"] = json.loads(row["metrics"]) if row["metrics"] else {}
        except ValueError:
            log.warning("call %s: unreadable metrics, closed without them", row["id"])
            row["metrics"] = {}
        out.append(row)
    return out


def mark_aborted(db: sqlite_utils.Database, call_id: str, ended_at: float) -> None:
    """Close a call whose summary could not be published (inside the caller's transaction)."""
    db.execute(
        "UPDATE calls SET state = ?, ended_at = ? WHERE id = ? AND state = 'live'",
        [ABORTED, ended_at, call_id],
    )
