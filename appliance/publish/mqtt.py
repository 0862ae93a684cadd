"""The one publishing path: outbox rows to MQTT with QoS 1, marked sent only on PUBACK.

Durability rules (see docs/mqtt.md):

* Rows are written by the store in the same SQLite transaction as the scores. They are never
  deleted on send: a row gets a `sent_at` when the broker acknowledged it (PUBACK) and stays
  until retention prunes it.
* paho's own offline queue lives in memory, so we never rely on it: rows stay pending in SQLite
  until acknowledged and are published again after a restart of this process (subscribers
  de-duplicate by `msg_id`). Rows go out in `seq` order, at most `max_inflight` unacknowledged.
* mosquitto acknowledges a PUBLISH before it writes it to disk (`autosave_interval`), so a
  hard-killed broker can lose rows we already marked sent. The retained message on
  `<prefix>/v1/<box>/checkpoint` is our checkpoint: it carries `acked_seq` (every row up to it
  was acknowledged before the checkpoint was published), and mosquitto saves retained and
  queued messages in one snapshot, so the checkpoint a restarted broker still has tells what
  else it still has. After each (re)connect, before any row goes out, a short-lived
  clean-session probe client (`<client id>-probe`) subscribes to the checkpoint topic,
  publishes a *non-retained* probe and waits for its echo: a retained checkpoint that arrives
  before the echo is what the broker kept. Rows acknowledged after it are marked pending and
  sent again (duplicates, never losses); a broker that kept no checkpoint gets every sent row
  again. Only then is a new retained checkpoint published. After that the checkpoint follows
  the PUBACKs: a new one goes out as soon as the previous one was acknowledged and more rows
  were (at most one in flight, at least `checkpoint_interval` apart), so a restart of this
  process re-sends only what was in flight or acknowledged in the last moments, not everything
  since a checkpoint seconds old (a crash loop would otherwise multiply the duplicates). The
  checkpoint lives apart from `status` because the last will (retained, `offline`) overwrites
  `status` whenever a connection dies.
* Every payload passes `contract.check_payload` right before `client.publish`; nothing else in
  the code base calls `publish`. Refusals are logged and counted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

from appliance import __version__
from appliance.config import MqttConfig
from appliance.publish import contract
from appliance.publish.commands import CommandRejected, RejectLog
from appliance.store.outbox import OutboxCursor

log = logging.getLogger(__name__)

_NO_CHECKPOINT = -1
SAVE_CHECKPOINT_S = 5.0
"""The confirmed checkpoint is kept in the database at most this often (and on stop): it only
seeds the last will and the probe after a restart, so it need not cost an fsync per PUBACK."""


def parse_url(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) of an mqtt:// or mqtts:// URL."""
    u = urlparse(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise ValueError(
            f"not an MQTT URL: {url!r} (expected mqtt://host:port or mqtts://host:port)"
        )
    tls = u.scheme == "mqtts"
    return u.hostname, u.port or (8883 if tls else 1883), tls


def configure_client(client: mqtt.Client, settings: MqttConfig, password: str = "") -> None:
    """Credentials and TLS (CA, client certificate and key) of `settings` for a paho client
    (the box's publisher and probe, the CRM bridge)."""
    s = settings
    if s.username:
        client.username_pw_set(s.username, password or None)
    if parse_url(s.url)[2]:
        client.tls_set(
            ca_certs=s.ca_file or None,
            certfile=s.cert_file or None,
            keyfile=s.key_file or None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )


def _acked(info: mqtt.MQTTMessageInfo) -> bool:
    """Whether paho saw the PUBACK of `info` (also for messages first queued while offline)."""
    try:
        return info.is_published()
    except ValueError:  # never queued (queue full)
        return False
    except RuntimeError:  # published while disconnected: paho still sends it after reconnect
        return bool(getattr(info, "_published", False))


class Publisher:
    """Drains the outbox of one database to one broker in a background thread."""

    def __init__(
        self,
        db_path: str | Path,
        settings: MqttConfig,
        box_id: str = "box-01",
        password: str | None = None,
        on_command: Callable[[dict], None] | None = None,
    ):
        """`settings` is the `[mqtt]` section with absolute file paths (`AppConfig.mqtt_resolved`);
        `password` defaults to the content of its `password_file`."""
        self.settings = settings
        self.box_id = box_id
        if password is None and settings.password_file:
            password = Path(settings.password_file).read_text().strip()
        self.password = password or ""
        self.db_path = Path(db_path)
        self.on_command = on_command
        self.connected = threading.Event()
        """Set while a connection to the broker is up."""
        self.synced = threading.Event()
        """Set once the broker's checkpoint was checked on the current connection (rows flow)."""
        # counters (read by health and tests)
        self.published = 0
        self.acked = 0
        self.refused = 0
        self.resent = 0
        self.connects = 0
        self.checkpoints_read = 0
        """Successful checkpoint probes (0 while the ACL hides the checkpoint topic)."""
        self.commands_accepted = 0
        self.commands_rejected = 0
        """Inbound messages refused by the contract (size, JSON, schema) or on a wrong topic."""
        self.commands_failed = 0
        """Valid commands the handler raised on (e.g. an unknown position)."""
        self.last_reject_reason = ""
        self._reject_log = RejectLog(log)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # worker-thread state: seq -> (paho info, monotonic time published)
        self._infos: dict[int, tuple[mqtt.MQTTMessageInfo, float]] = {}
        self._skip: set[int] = set()  # stored rows the contract refuses (logged once)
        # sync state (network thread writes, worker reads; under _lock)
        self._sync_started = 0.0
        self._watermark = 0
        self._last_seq = 0
        self._last_checkpoint = (-1, 0.0)  # (acked_seq, monotonic) of the last retained status
        self._cp_info: mqtt.MQTTMessageInfo | None = None  # the checkpoint awaiting its PUBACK
        self._cp = 0  # last checkpoint confirmed retained on the broker (persisted in settings)
        self._cp_saved = 0
        self._cp_saved_at = 0.0
        host, port, _ = parse_url(settings.url)
        self._host, self._port = host, port
        s = settings
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=s.client_id or f"appliance-{self.box_id}",
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        self.client.max_inflight_messages_set(max(1, s.max_inflight))
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(
            min_delay=s.reconnect_min_delay, max_delay=s.reconnect_max_delay
        )
        self._configure(self.client)
        self.status_topic = contract.topic(s.prefix, self.box_id, "status")
        self.checkpoint_topic = contract.topic(s.prefix, self.box_id, "checkpoint")
        self.command_topic = contract.topic(s.prefix, self.box_id, "cmd_call")
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message

    def _configure(self, client: mqtt.Client) -> None:
        configure_client(client, self.settings, self.password)

    # -- the one publishing function -------------------------------------------------

    def publish_payload(
        self, kind: str, payload: Any, retain: bool = False, client: mqtt.Client | None = None
    ) -> mqtt.MQTTMessageInfo | None:
        """Validate against the contract, then publish with QoS 1. Refusals are logged and counted.

        `client` is the checkpoint probe's connection; everything else uses the main one."""
        try:
            contract.check_payload(kind, payload)
            body = json.dumps(payload, separators=(",", ":"), allow_nan=False)
        except (contract.ContractError, ValueError, TypeError) as exc:
            self.refused += 1
            log.error("refused to publish %s: %s", kind, exc)
            return None
        return (client or self.client).publish(
            contract.topic(self.settings.prefix, self.box_id, kind),
            body,
            qos=1,
            retain=retain,
        )

    def _status(self, state: str, acked: int | None = None) -> dict:
        with self._lock:
            seq = self._last_seq
            acked = self._watermark if acked is None else acked
        return contract.status_message(self.box_id, state, seq, acked, __version__)

    def _checkpoint_message(self, acked: int) -> dict:
        with self._lock:
            seq = self._last_seq
        return contract.checkpoint_message(self.box_id, seq, acked)

    def _set_will(self) -> None:
        """The last will: offline, with the last checkpoint confirmed on the broker."""
        with self._lock:
            cp = self._cp
        will = self._status("offline", acked=cp)
        contract.check_payload("status", will)
        self.client.will_set(self.status_topic, json.dumps(will), qos=1, retain=True)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        db = OutboxCursor(self.db_path)
        try:
            self._refresh_marks(db)
            saved = db.saved_checkpoint()
            if saved is not None:
                self._cp = self._cp_saved = min(saved, self._watermark)
        finally:
            db.close()
        self._set_will()
        self.client.connect_async(self._host, self._port, keepalive=self.settings.keepalive)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Tell the publisher new rows are waiting (saves a poll interval of latency)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Mark what was acknowledged, publish offline status (final checkpoint), disconnect."""
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
        if self.connected.is_set() and self.synced.is_set():
            with self._lock:
                wm = self._watermark
            infos = [
                self._publish_checkpoint(wm),
                self.publish_payload("status", self._status("offline", acked=wm), retain=True),
            ]
            deadline = time.monotonic() + 2.0
            for info in infos:
                if info is not None:
                    with contextlib.suppress(RuntimeError, ValueError):
                        info.wait_for_publish(timeout=max(0.01, deadline - time.monotonic()))
        self.client.disconnect()
        self.client.loop_stop()
        try:
            self._save_checkpoint()
        except Exception as exc:  # a full disk: the broker keeps the checkpoint anyway
            log.warning("checkpoint %d not saved in the database: %s", self._cp, exc)

    def _save_checkpoint(self, db: OutboxCursor | None = None) -> None:
        with self._lock:
            cp = self._cp
        if cp == self._cp_saved:
            return
        if db is not None and time.monotonic() - self._cp_saved_at < SAVE_CHECKPOINT_S:
            return
        self._cp_saved_at = time.monotonic()
        own = db is None
        db = db or OutboxCursor(self.db_path)
        try:
            db.save_checkpoint(cp)
            self._cp_saved = cp
        finally:
            if own:
                db.close()

    def pending(self) -> int:
        db = OutboxCursor(self.db_path)
        try:
            return db.pending_count()
        finally:
            db.close()

    def flush(self, timeout: float) -> bool:
        """Block until the broker's checkpoint was handled and no outbox row is pending.

        False on timeout (including when the broker could not be reached at all).
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.synced.is_set() and self.connected.is_set() and self.pending() == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            self.wake()
            time.sleep(0.05)

    # -- paho callbacks (network thread) -------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            log.warning("broker refused connection: %s", reason_code)
            return
        self.connects += 1
        log.info("connected to %s:%s", self._host, self._port)
        with self._lock:
            self._sync_started = time.monotonic()
        self.synced.clear()
        client.subscribe(self.command_topic, qos=1)
        self.connected.set()
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if self.connected.is_set():
            log.warning("disconnected from broker: %s", reason_code)
        self.connected.clear()
        self.synced.clear()
        with contextlib.suppress(Exception):
            self._set_will()  # the next connection's last will carries the current checkpoint

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None) -> None:
        self._wake.set()

    def _on_message(self, client, userdata, message) -> None:
        """Inbound messages: our own status (checkpoint) and call commands. Never raises."""
        try:
            try:
                topic = message.topic
            except (UnicodeDecodeError, AttributeError) as exc:
                self._reject(f"undecodable topic: {exc}", "?")
                return
            if topic in (self.status_topic, self.checkpoint_topic):
                return  # our own messages (a subscription left in an old persistent session)
            if topic != self.command_topic:
                self._reject("unexpected topic", topic)
                return
            try:
                cmd = contract.parse_command(message.payload)
            except contract.ContractError as exc:
                self._reject(str(exc), topic)
                return
            if self.on_command is not None:
                try:
                    self.on_command(cmd)
                except Exception as exc:  # a bad command must never take the daemon down
                    # valid by the contract, refused by the handler (which counts it itself)
                    self.commands_failed += 1
                    self.last_reject_reason = f"{type(exc).__name__}: {exc}"[:200]
                    if not isinstance(exc, CommandRejected):  # the router logged it
                        log.warning("command on %s not applied: %s", topic, self.last_reject_reason)
                    return
            self.commands_accepted += 1
        except Exception:  # pragma: no cover - last line of defence for the network thread
            self.commands_rejected += 1
            log.exception("inbound message handling failed")

    def _reject(self, reason: str, topic: str) -> None:
        self.commands_rejected += 1
        self.last_reject_reason = reason[:200]
        self._reject_log(f"message on {topic[:200]}", reason)

    def _read_checkpoint(self) -> int | None:
        """The `acked_seq` of the retained status the broker kept (`_NO_CHECKPOINT` if it kept
        none); None when the probe failed (no connection, or the ACL hides the status topic)."""
        s = self.settings
        probe = self._checkpoint_message(self._cp)
        found: list[int] = []
        echo = threading.Event()
        ready = threading.Event()
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"{s.client_id or 'appliance-' + self.box_id}-probe",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        self._configure(c)

        def on_connect(client, userdata, flags, reason_code, properties=None):
            if not reason_code.is_failure:
                client.subscribe(self.checkpoint_topic, qos=1)

        def on_subscribe(client, userdata, mid, reason_codes, properties=None):
            # The broker sends the retained checkpoint right after the SUBACK, before it
            # routes the probe published now back to us.
            if all(not rc.is_failure for rc in reason_codes):
                ready.set()
                self.publish_payload("checkpoint", probe, retain=False, client=client)

        def on_message(client, userdata, message):
            try:
                data = json.loads(bytes(message.payload).decode("utf-8"))
                contract.check_payload("checkpoint", data)
            except (ValueError, TypeError, RecursionError, contract.ContractError):
                return  # not a status (or an empty retained message clearing the topic)
            if data.get("box_id") != self.box_id:
                return
            if data["msg_id"] == probe["msg_id"]:
                echo.set()
            elif message.retain and not echo.is_set():
                found.append(int(data["acked_seq"]))

        c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
        try:
            c.connect(self._host, self._port, keepalive=max(5, s.keepalive))
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.warning("checkpoint probe could not connect: %s", exc)
            return None
        c.loop_start()
        try:
            if not echo.wait(s.sync_timeout):
                if ready.is_set():
                    log.warning(
                        "no echo of our probe on %s within %.0f s (does the ACL let the box"
                        " read it?): sending without the broker-restart check",
                        self.checkpoint_topic,
                        s.sync_timeout,
                    )
                return None
            self.checkpoints_read += 1
            return found[-1] if found else _NO_CHECKPOINT
        finally:
            c.disconnect()
            c.loop_stop()

    # -- worker thread ---------------------------------------------------------------------

    def _run(self) -> None:
        db = OutboxCursor(self.db_path)
        try:
            while not self._stop.is_set():
                # rows in flight, or acknowledged ones the checkpoint does not cover yet: the
                # next round comes soon (a checkpoint left waiting is what a crash re-sends)
                with self._lock:
                    behind = self._watermark > self._last_checkpoint[0] and self.synced.is_set()
                self._wake.wait(0.02 if self._infos or behind else 0.25)
                self._wake.clear()
                try:
                    self._collect_acks(db)
                    if self.connected.is_set() and not self.synced.is_set():
                        self._try_sync(db)
                    if self.connected.is_set() and self.synced.is_set():
                        self._send_pending(db)
                        self._maybe_checkpoint(db)
                except Exception:  # keep the thread alive: the next round retries
                    log.exception("publisher round failed")
                    time.sleep(0.5)
            self._collect_acks(db)
        finally:
            db.close()

    def _refresh_marks(self, db) -> None:
        wm, last = db.marks()
        with self._lock:
            self._watermark, self._last_seq = wm, last

    def _collect_acks(self, db) -> None:
        now = time.monotonic()
        acked = [seq for seq, (info, _) in self._infos.items() if _acked(info)]
        stale = [
            seq
            for seq, (info, t) in self._infos.items()
            if seq not in acked and now - t > self.settings.resend_after and self.synced.is_set()
        ]
        for seq in stale:  # paho may still deliver it: a duplicate, never a loss
            log.warning(
                "row %d unacknowledged for %.0f s: publishing it again",
                seq,
                now - self._infos[seq][1],
            )
            del self._infos[seq]
        if acked:
            ts = time.time()
            db.mark_sent(acked, ts)
            for seq in acked:
                del self._infos[seq]
            self.acked += len(acked)
        self._refresh_marks(db)

    def _try_sync(self, db) -> None:
        with self._lock:
            started = self._sync_started
        checkpoint = self._read_checkpoint()
        if checkpoint is not None:
            self._resend_after_checkpoint(db, checkpoint)
            with self._lock:
                wm = self._watermark
            self.synced.set()
            self._publish_checkpoint(wm)
            self.publish_payload("status", self._status("online", acked=wm), retain=True)
        elif time.monotonic() - started > self.settings.sync_timeout:
            self.synced.set()  # the probe keeps failing: never block delivery on it

    def _resend_after_checkpoint(self, db, checkpoint: int) -> None:
        """Rows acknowledged after the broker's kept checkpoint may be lost: send them again."""
        with self._lock:
            last = self._last_seq
        if checkpoint > last:
            log.warning(
                "broker checkpoint seq %d is ahead of this database (%d): another database"
                " publishes as box %s?",
                checkpoint,
                last,
                self.box_id,
            )
            return
        floor = max(checkpoint, 0)
        n = db.unmark_after(floor, checkpoint)
        if n:
            self.resent += n
            log.warning(
                "broker kept checkpoint %s: re-sending %d acknowledged row(s) after it",
                "none" if checkpoint == _NO_CHECKPOINT else f"seq {checkpoint}",
                n,
            )
            self._refresh_marks(db)

    def _send_pending(self, db) -> None:
        room = max(0, 2 * self.settings.max_inflight - len(self._infos))
        if room == 0:
            return
        rows = db.pending(min(self.settings.batch_size, room) + len(self._infos) + len(self._skip))
        sent = []
        for seq, kind, payload in rows:
            if seq in self._infos or seq in self._skip:
                continue
            if len(sent) >= room or not self.connected.is_set():
                break
            try:
                data = json.loads(payload)
            except ValueError:
                data = None
            info = self.publish_payload(kind, data)
            if info is None:
                self._skip.add(seq)
                log.error("outbox row %d is refused by the contract: it stays pending", seq)
                continue
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                break
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.warning("publish of row %d failed: %s", seq, mqtt.error_string(info.rc))
                break
            self._infos[seq] = (info, time.monotonic())
            sent.append(seq)
            self.published += 1
        if sent:
            db.count_attempt(sent)

    def _maybe_checkpoint(self, db) -> None:
        """A new checkpoint once the previous one was acknowledged and more rows were."""
        with self._lock:
            wm = self._watermark
        last_wm, last_t = self._last_checkpoint
        # one that never comes back (a connection lost meanwhile) holds nothing up for long
        in_flight = (
            self._cp_info is not None
            and not _acked(self._cp_info)
            and time.monotonic() - last_t < self.settings.resend_after
        )
        if (
            wm > last_wm
            and not in_flight
            and time.monotonic() - last_t >= self.settings.checkpoint_interval
        ):
            self._publish_checkpoint(wm)
        self._save_checkpoint(db)

    def _publish_checkpoint(self, wm: int) -> mqtt.MQTTMessageInfo | None:
        """Retained checkpoint: the broker now holds every row up to `wm`."""
        info = self.publish_payload("checkpoint", self._checkpoint_message(wm), retain=True)
        if info is not None:
            self._last_checkpoint = (wm, time.monotonic())
            self._cp_info = info
            with self._lock:
                self._cp = wm
        return info
