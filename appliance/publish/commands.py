"""Call commands: one path for the CTI over MQTT and for the panel.

Both arrive as the same `cmd_call` JSON (start, update or end the call at a position).
`CommandRouter.submit` checks it against the contract, checks that the position is one this
box serves, counts and logs the outcome and hands it to the position's worker. MQTT commands
reach it from the publisher's subscription; the panel, a separate process, queues its commands
in the store's `commands` table, which `PanelCommandReader` polls and submits through the same
router, marking each row applied or rejected.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from appliance.publish import contract
from appliance.store import commands as command_rows
from appliance.store.connection import connect

log = logging.getLogger(__name__)


class CommandRejected(ValueError):
    """A command that is not applied; the message says why."""


class RejectLog:
    """Logs rejected messages without letting a flood of them cost more than counting: the
    first `burst` in each `window` seconds are logged, the rest summed up once the window ends."""

    def __init__(self, logger: logging.Logger, burst: int = 5, window: float = 10.0):
        self.log = logger
        self.burst, self.window = burst, window
        self._lock = threading.Lock()
        self._start = 0.0
        self._n = 0

    def __call__(self, what: str, reason: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._start >= self.window:
                if self._n > self.burst:
                    self.log.warning(
                        "%d more rejected messages in %.0f s (not logged one by one)",
                        self._n - self.burst,
                        now - self._start,
                    )
                self._start, self._n = now, 0
            self._n += 1
            if self._n > self.burst:
                return
        self.log.warning("%s rejected: %s", what, reason[:200])


class CommandRouter:
    """Validates a command and delivers it to its position. Thread-safe (counters are ints)."""

    def __init__(self, deliver: Mapping[str, Callable[[dict], None]]):
        self.deliver = deliver
        """Position id -> the function that queues a command for that position's worker."""
        self.applied = 0
        self.rejected = 0
        self.last_reject_reason = ""
        self._log = RejectLog(log)

    def submit(self, raw: Any, source: str, checked: bool = False) -> dict:
        """Apply a command (bytes, str or a decoded dict; `checked`: a dict the contract already
        passed, as the publisher's are); raises CommandRejected."""
        if checked and isinstance(raw, dict):
            cmd = raw
        else:
            try:
                cmd = contract.parse_command(json.dumps(raw) if isinstance(raw, dict) else raw)
            except (contract.ContractError, TypeError, ValueError) as exc:
                self._reject(str(exc), source)
        target = self.deliver.get(cmd["position"])
        if target is None:
            self._reject(f"unknown position {cmd['position']!r}", source)
        try:
            target({**cmd, "_via": source})
        except RuntimeError as exc:  # the position takes no commands (its queue stays full)
            self._reject(str(exc), source)
        self.applied += 1
        return cmd

    def _reject(self, reason: str, source: str) -> None:
        self.rejected += 1
        self.last_reject_reason = reason[:200]
        self._log(f"{source} command", self.last_reject_reason)
        raise CommandRejected(self.last_reject_reason)


class PanelCommandReader:
    """Takes the panel's pending commands from the `commands` table, oldest first.

    Commands queued before the daemon started are not applied (a call started an hour ago
    from the panel must not start again after a restart); they are marked rejected."""

    def __init__(self, db_path: str | Path, router: CommandRouter):
        self.router = router
        self._db = connect(db_path)
        self._after = 0
        stale = command_rows.pending_after(self._db, 0, limit=1_000_000)
        for cid, _ in stale:
            command_rows.finish(
                self._db, cid, applied=False, reason="queued before the daemon started"
            )
        self._after = command_rows.last_id(self._db)

    def poll(self) -> int:
        """Apply what is pending; returns how many rows were handled."""
        rows = command_rows.pending_after(self._db, self._after)
        for cid, payload in rows:
            self._after = cid
            try:
                self.router.submit(payload, "panel")
            except CommandRejected as exc:
                command_rows.finish(self._db, cid, applied=False, reason=str(exc))
            else:
                command_rows.finish(self._db, cid, applied=True)
        return len(rows)

    def close(self) -> None:
        self._db.conn.close()
