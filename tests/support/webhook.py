"""A local webhook receiver for the bridge tests: checks every request's signature, records
what arrived by idempotency key, and can answer with failures or slowly on demand."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    """`url`, `received` (key -> list of bodies), `bad_signatures`; `fail` maps a key (or "*") to
    a list of statuses to answer before accepting; `delay_s` slows every answer."""

    def __init__(self, secret: bytes, path: str = "/hooks/appliance"):
        self.secret = secret
        self.path = path
        self.received: dict[str, list[dict]] = {}
        self.requests = 0
        self.bad_signatures = 0
        self.bad_requests: list[str] = []
        self.fail: dict[str, list[int]] = {}
        self.delay_s = 0.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                receiver._handle(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{self.path}"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length", 0)))
        key = h.headers.get("Idempotency-Key", "")
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        status = 200
        with self._lock:
            self.requests += 1
            if not hmac.compare_digest(h.headers.get("X-Appliance-Signature", ""), expected):
                self.bad_signatures += 1
                status = 401
            elif h.path != self.path or h.headers.get("Content-Type") != "application/json":
                self.bad_requests.append(h.path)
                status = 404
            else:
                plan = self.fail.get(key) or self.fail.get("*")
                if plan:
                    status = plan.pop(0)
                else:
                    data = json.loads(body)
                    if data.get("id") != key:
                        self.bad_requests.append(f"id {data.get('id')} != key {key}")
                    self.received.setdefault(key, []).append(data)
        if self.delay_s:
            time.sleep(self.delay_s)
        h.send_response(status)
        h.send_header("Content-Length", "0")
        h.end_headers()

    def keys(self) -> set[str]:
        with self._lock:
            return set(self.received)

    def duplicates(self) -> int:
        with self._lock:
            return sum(len(v) - 1 for v in self.received.values())

    def wait_for(self, keys: set[str], timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if keys <= self.keys():
                return True
            time.sleep(0.05)
        return keys <= self.keys()
