"""The Live page's server-sent events, and the slots that keep streams from starving the panel.

A stream holds one server thread for as long as it is open. gunicorn runs MAX_STREAMS threads
for streams on top of PAGE_THREADS for pages and the API (`serving.gunicorn_options`), and
`StreamSlots` never lets more than MAX_STREAMS streams (STREAMS_PER_USER per user) be open at
once: one more gets 429 at once, so pages, /login and /healthz always have threads of their own.
A keep-alive every SSE_KEEPALIVE_S makes a write fail soon after the client went away (the
second write after the peer closed raises), which frees the thread and the slot; the session is
checked at the same pace, so a logout, a disabled user or an expired session ends the stream.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

from appliance.panel import queries, sessions
from appliance.store.connection import connect

PAGE_THREADS = 8
"""gunicorn threads for everything but live streams."""


class StreamSlots:
    """Open streams per user and in all, for one process (gunicorn runs one worker)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._per_user: dict[int, int] = {}
        self.total = 0

    def acquire(self, user_id: int, per_user: int, total: int) -> str | None:
        """None when a slot was taken, else why not."""
        with self._lock:
            if self._per_user.get(user_id, 0) >= per_user:
                return f"at most {per_user} live streams per user"
            if self.total >= total:
                return f"the panel serves at most {total} live streams"
            self._per_user[user_id] = self._per_user.get(user_id, 0) + 1
            self.total += 1
        return None

    def release(self, user_id: int) -> None:
        with self._lock:
            n = self._per_user.get(user_id, 0) - 1
            if n > 0:
                self._per_user[user_id] = n
            else:
                self._per_user.pop(user_id, None)
            self.total = max(0, self.total - 1)

    def open_for(self, user_id: int) -> int:
        with self._lock:
            return self._per_user.get(user_id, 0)


def events(
    db_path: str,
    positions: list[str],
    token: str,
    poll_s: float,
    max_s: float,
    keepalive_s: float,
    session_limits: tuple[float, float],
) -> Iterator[str]:
    """`live` events with the Live snapshot when scores or alerts change; `logout` when the
    session ended. Polls `PRAGMA data_version` (did anyone commit?) then a change signature."""
    db = connect(db_path)
    try:
        last_sig = last_ver = None
        last_beat = t0 = time.monotonic()
        yield "retry: 2000\n\n"
        while time.monotonic() - t0 < max_s:
            ver = queries.data_version(db)
            if ver != last_ver:
                last_ver = ver
                sig = queries.change_signature(db)
                if sig != last_sig:
                    last_sig = sig
                    data = json.dumps(queries.live_snapshot(db, positions), separators=(",", ":"))
                    yield f"event: live\nid: {sig[0]}\ndata: {data}\n\n"
            if time.monotonic() - last_beat >= keepalive_s:
                if sessions.check(db, token, *session_limits) is None:
                    yield "event: logout\ndata: {}\n\n"
                    return
                yield ": keep-alive\n\n"
                last_beat = time.monotonic()
            time.sleep(poll_s)
    finally:
        db.conn.close()
