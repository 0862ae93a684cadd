"""The one publishing path: outbox rows to MQTT with QoS 1, marked sent only on PUBACK.

paho's own offline queue lives in memory, so we never rely on it: rows stay in SQLite until
the broker acknowledged them, and are published again after a reconnect (subscribers
de-duplicate by `msg_id`). Every payload passes `contract.check_payload` right before
`client.publish`; nothing else in the code base calls `publish`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

from appliance import __version__, contract
from appliance.store import connect, immediate, migrate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how to reach the broker."""

    url: str
    """mqtt://host:port or mqtts://host:port."""
    box_id: str = "box-01"
    """Box id in topics and in the client id."""
    prefix: str = "callcenter"
    """Topic prefix."""
    client_id: str = ""
    """Stable client id (persistent session); empty = appliance-<box id>."""
    username: str = ""
    """Broker user."""
    password: str = ""
    """Broker password (read from mqtt.password_file)."""
    ca_file: str = ""
    """CA bundle for TLS."""
    cert_file: str = ""
    """Client certificate for TLS."""
    key_file: str = ""
    """Client key for TLS."""
    keepalive: int = 30
    """Keep-alive seconds."""
    batch_size: int = 100
    """Rows taken from the outbox per round."""


def parse_url(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) of an mqtt:// or mqtts:// URL."""
    u = urlparse(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise ValueError(
            f"not an MQTT URL: {url!r} (expected mqtt://host:port or mqtts://host:port)"
        )
    tls = u.scheme == "mqtts"
    return u.hostname, u.port or (8883 if tls else 1883), tls


class Publisher:
    """Drains the outbox of one database to one broker in a background thread."""

    def __init__(
        self,
        db_path: str | Path,
        settings: BrokerSettings,
        on_command: Callable[[dict], None] | None = None,
    ):
        self.settings = settings
        self.db_path = Path(db_path)
        self.on_command = on_command
        self.connected = threading.Event()
        self.published = 0
        self.acked = 0
        self.refused = 0
        self.commands_rejected = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._inflight: dict[int, int] = {}  # paho mid -> outbox seq
        self._acked: list[int] = []
        self._thread: threading.Thread | None = None
        self._seq_queued: set[int] = set()
        host, port, tls = parse_url(settings.url)
        self._host, self._port = host, port
        s = settings
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=s.client_id or f"appliance-{s.box_id}",
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        self.client.max_inflight_messages_set(50)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        if s.username:
            self.client.username_pw_set(s.username, s.password or None)
        if tls:
            self.client.tls_set(
                ca_certs=s.ca_file or None,
                certfile=s.cert_file or None,
                keyfile=s.key_file or None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        self.status_topic = contract.topic(s.prefix, s.box_id, "status")
        self.command_topic = contract.topic(s.prefix, s.box_id, "cmd_call")
        self.client.will_set(
            self.status_topic, json.dumps(self._status("offline")), qos=1, retain=True
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message

    # -- the one publishing function -------------------------------------------------

    def publish_payload(
        self, kind: str, payload: dict, retain: bool = False
    ) -> mqtt.MQTTMessageInfo | None:
        """Validate against the contract, then publish with QoS 1. Refusals are logged and counted."""
        try:
            contract.check_payload(kind, payload)
        except contract.ContractError as exc:
            self.refused += 1
            log.error("refused to publish %s: %s", kind, exc)
            return None
        body = json.dumps(payload, separators=(",", ":"))
        return self.client.publish(
            contract.topic(self.settings.prefix, self.settings.box_id, kind),
            body,
            qos=1,
            retain=retain,
        )

    def _status(self, state: str) -> dict:
        return {
            "schema": "status/1",
            "box_id": self.settings.box_id,
            "state": state,
            "ts": round(time.time(), 3),
            "software_version": __version__,
        }

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.client.connect_async(self._host, self._port, keepalive=self.settings.keepalive)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Tell the publisher new rows are waiting (saves a poll interval of latency)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish offline status, drain acknowledgements briefly, disconnect."""
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
        if self.connected.is_set():
            info = self.publish_payload("status", self._status("offline"), retain=True)
            if info is not None:
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(timeout=2)
        self.client.disconnect()
        self.client.loop_stop()

    def pending(self) -> int:
        db = connect(self.db_path)
        try:
            return db.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]
        finally:
            db.conn.close()

    def flush(self, timeout: float) -> bool:
        """Block until no outbox row is pending; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending() == 0:
                return True
            self.wake()
            time.sleep(0.05)
        return self.pending() == 0

    # -- paho callbacks (network thread) -------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            log.warning("broker refused connection: %s", reason_code)
            return
        log.info("connected to %s:%s", self._host, self._port)
        with self._lock:
            self._inflight.clear()
            self._seq_queued.clear()
        self.publish_payload("status", self._status("online"), retain=True)
        client.subscribe(self.command_topic, qos=1)
        self.connected.set()
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if self.connected.is_set():
            log.warning("disconnected from broker: %s", reason_code)
        self.connected.clear()
        with self._lock:
            self._inflight.clear()
            self._seq_queued.clear()

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None) -> None:
        with self._lock:
            seq = self._inflight.pop(mid, None)
            if seq is not None:
                self._acked.append(seq)
        if seq is not None:
            self._wake.set()

    def _on_message(self, client, userdata, message) -> None:
        try:
            cmd = contract.parse_command(message.payload)
        except contract.ContractError as exc:
            self.commands_rejected += 1
            log.warning("rejected command on %s: %s", message.topic, exc)
            return
        if self.on_command is not None:
            try:
                self.on_command(cmd)
            except Exception:  # a bad command must never take the daemon down
                self.commands_rejected += 1
                log.exception("command handler failed")

    # -- worker thread ---------------------------------------------------------------------

    def _run(self) -> None:
        db = connect(self.db_path)
        migrate(db)
        try:
            while not self._stop.is_set():
                self._wake.wait(0.25)
                self._wake.clear()
                self._mark_acked(db)
                if self.connected.is_set():
                    self._send_pending(db)
            self._mark_acked(db)
        finally:
            db.conn.close()

    def _mark_acked(self, db) -> None:
        with self._lock:
            acked, self._acked = self._acked, []
        if not acked:
            return
        now = time.time()
        with immediate(db):
            db.conn.executemany(
                "UPDATE outbox SET sent_at = ? WHERE seq = ? AND sent_at IS NULL",
                [(now, s) for s in acked],
            )
        self.acked += len(acked)
        with self._lock:
            self._seq_queued.difference_update(acked)

    def _send_pending(self, db) -> None:
        rows = db.execute(
            "SELECT seq, kind, payload FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT ?",
            [self.settings.batch_size],
        ).fetchall()
        for seq, kind, payload in rows:
            with self._lock:
                if seq in self._seq_queued:
                    continue
            if not self.connected.is_set():
                return
            info = self.publish_payload(kind, json.loads(payload))
            if info is None:
                continue
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return  # connection dropped mid-batch; the reconnect resends
            with self._lock:
                self._seq_queued.add(seq)
                self._inflight[info.mid] = seq
            # A loopback PUBACK can beat the registration above; paho still flags the info.
            try:
                done = info.is_published()
            except (RuntimeError, ValueError):
                done = False
            if done:
                with self._lock:
                    if self._inflight.pop(info.mid, None) is not None:
                        self._acked.append(seq)
            self.published += 1
        if rows:
            with immediate(db):
                db.conn.executemany(
                    "UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?",
                    [(r[0],) for r in rows],
                )
