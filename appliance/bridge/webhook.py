"""Webhook delivery: every alert and relationship signal POSTed as JSON, signed, retried.

Each request carries `Idempotency-Key: <msg_id>` (the same on every retry and from every
instance) and `X-Appliance-Signature: sha256=<hex HMAC-SHA256 of the raw body>` under the
route's secret. A 2xx is delivered; a network error, a timeout, a 5xx, 408, 409, 425 or 429 is
retried after `backoff_initial * 2^(attempt-1)` seconds (capped at `BACKOFF_MAX`, ±20 %
jitter) until `max_attempts`; any other 4xx means the receiver refuses the event itself (bad
signature, unknown route) and it goes to the dead-letter table at once. Redirects are not
followed (a POST body must not turn into a GET). `appliance bridge replay` queues dead letters
again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import threading
import urllib.error
import urllib.request
from typing import Any

from appliance import __version__
from appliance.bridge.routing import Router
from appliance.config import BridgeConfig
from appliance.store.central import deliveries
from appliance.store.central.db import CentralDB

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0
BACKOFF_MAX = 600.0
BATCH = 16
RETRYABLE = frozenset({408, 409, 425, 429})


def _js_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _js_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_js_numbers(v) for v in value]
    return value


def encode(body: dict) -> str:
    """The request body: compact UTF-8 JSON written the way JavaScript's `JSON.stringify` writes
    it (no spaces, integral numbers without `.0`), so a receiver that only has the parsed
    object (Node-RED's `http in`) can re-create the signed bytes. Numbers in events are rounded
    to at most 4 decimals, which keeps them out of the exponent forms where the two differ."""
    return json.dumps(_js_numbers(body), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sign(secret: bytes, body: bytes) -> str:
    """The `X-Appliance-Signature` header value of `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def backoff(settings: BridgeConfig, attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones."""
    base = min(BACKOFF_MAX, settings.backoff_initial * 2 ** max(0, attempts - 1))
    return base * random.uniform(0.8, 1.2)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # the 3xx surfaces as an HTTPError: retried, then dead-lettered


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = TIMEOUT_S) -> int:
    """POST `body`; the HTTP status (HTTPError statuses included). Network errors raise OSError."""
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            resp.read(65536)
            return resp.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


class Deliverer:
    """One thread per bridge instance that drains the shared delivery table."""

    def __init__(self, dsn: str, router: Router, owner: str, settings: BridgeConfig):
        self.dsn = dsn
        self.router = router
        self.owner = owner
        self.settings = settings
        self.delivered = 0
        self.failed = 0
        self.dead = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = TIMEOUT_S + 2) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        db = CentralDB(self.dsn)
        try:
            while not self._stop.is_set():
                try:
                    rows = deliveries.claim(db, self.owner, self.settings.lease_s, BATCH)
                except Exception:  # a database hiccup: the next round retries
                    log.exception("claiming webhook deliveries failed")
                    rows = []
                    self._stop.wait(2.0)
                for row in rows:
                    if self._stop.is_set():
                        break  # the lease expires and an instance sends it
                    self._send(db, row)
                if len(rows) < BATCH:
                    self._wake.wait(0.5)
                    self._wake.clear()
        finally:
            db.close()

    def _send(self, db: CentralDB, row: dict) -> None:
        body = row["body"].encode("utf-8")
        secret = self.router.secret(row["route"])
        attempts = row["attempts"] + 1
        if secret is None:
            status, error = None, f"no signing secret for route {row['route']!r}"
        else:
            headers = {
                "Content-Type": "application/json",
                "Idempotency-Key": row["key"],
                "X-Appliance-Signature": sign(secret, body),
                "X-Appliance-Event": row["event"],
                "User-Agent": f"appliance-bridge/{__version__}",
            }
            try:
                status = post(row["url"], body, headers)
                error = f"HTTP {status}"
            except (OSError, ValueError) as exc:  # refused, reset, timeout, bad URL
                status, error = None, f"{type(exc).__name__}: {exc}"
        if status is not None and 200 <= status < 300:
            deliveries.delivered(db, row["id"], self.owner)
            self.delivered += 1
            return
        permanent = secret is None or (
            status is not None and 400 <= status < 500 and status not in RETRYABLE
        )
        if permanent or attempts >= self.settings.max_attempts:
            log.error(
                "webhook %s for %s dead-lettered after %d attempt(s): %s",
                row["event"],
                row["key"],
                attempts,
                error,
            )
            deliveries.failed(db, row["id"], self.owner, error, None)
            self.dead += 1
            return
        wait = backoff(self.settings, attempts)
        log.warning("webhook %s: %s; retry %d in %.1f s", row["key"], error, attempts, wait)
        deliveries.failed(db, row["id"], self.owner, error, wait)
        self.failed += 1
