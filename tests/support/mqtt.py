"""MQTT helpers for tests and drills: a raw collector of every message, a de-duplicating
CRM-style subscriber and a TCP proxy that can sever a live connection (a broker that vanishes
without a FIN)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import paho.mqtt.client as mqtt

from appliance.publish.broker import BrokerError, free_port


class DedupSubscriber:
    """A CRM-style subscriber: persistent session, QoS 1, de-duplicates by `msg_id`.

    Subscribes to `<prefix>/v1/+/<kind>` for every outbox kind (and status), re-subscribes on
    every (re)connect (a broker that lost its state also lost our subscription) and reconnects
    with paho's backoff. Used by the fault tests and `scripts/fault_drill.py`; also a working
    example for integrators (docs/mqtt.md).
    """

    def __init__(
        self,
        url: str,
        prefix: str = "callcenter",
        client_id: str = "crm-subscriber",
        clean_session: bool = False,
        tls: dict | None = None,
        username: str = "",
        password: str = "",
    ):
        from urllib.parse import urlparse

        import paho.mqtt.client as mqtt

        u = urlparse(url)
        self.prefix = prefix
        self.by_id: dict[str, dict] = {}
        self.duplicates = 0
        self.received = 0
        self.statuses: list[dict] = []
        self.bad: list[bytes] = []
        self.connects = 0
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
        )
        self.client.reconnect_delay_set(0.2, 2)
        if username:
            self.client.username_pw_set(username, password or None)
        if tls:
            self.client.tls_set(**tls)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.subscribed.clear()
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self._host, self._port = u.hostname, u.port or 1883

    def start(self, timeout: float = 10.0) -> DedupSubscriber:
        self.client.connect_async(self._host, self._port, keepalive=5)
        self.client.loop_start()
        if not self.subscribed.wait(timeout):
            self.stop()
            raise BrokerError("subscriber did not subscribe")
        return self

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            return
        self.connects += 1
        kinds = ("utterance", "call", "relationship", "alert", "health", "status")
        client.subscribe([(f"{self.prefix}/v1/+/{k}", 1) for k in kinds])

    def _on_message(self, client, userdata, message) -> None:
        import json

        try:
            data = json.loads(message.payload)
            msg_id = data["msg_id"]
        except (ValueError, KeyError, TypeError):
            with self._lock:
                self.bad.append(bytes(message.payload[:200]))
            return
        with self._lock:
            if message.topic.endswith("/status"):
                self.statuses.append(data)
                return
            self.received += 1
            if msg_id in self.by_id:
                self.duplicates += 1
            else:
                self.by_id[msg_id] = data

    def ids(self) -> set[str]:
        with self._lock:
            return set(self.by_id)

    def wait_for(self, msg_ids: set[str], timeout: float = 20.0, quiet: float = 0.3) -> bool:
        """Until every id arrived (then `quiet` more seconds for stragglers), or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if msg_ids <= self.ids():
                time.sleep(quiet)
                return True
            time.sleep(0.05)
        return msg_ids <= self.ids()

    def wait_connected(self, timeout: float = 15.0) -> bool:
        return self.subscribed.wait(timeout)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class TcpProxy:
    """A loopback TCP proxy in a thread that can be severed (every connection reset) and
    healed, to cut the publisher's connection without touching the broker."""

    def __init__(self, target_port: int, port: int | None = None):

        self.target_port = target_port
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._open = threading.Event()
        self._open.set()
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._server.settimeout(0.1)
        self._thread = threading.Thread(target=self._serve, name="tcp-proxy", daemon=True)
        self.cuts = 0

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def _serve(self) -> None:

        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            if not self._open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(None)
        try:
            while True:
                data = src.recv(65536)
                if not data or not self._open.is_set():
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            src.close()  # each socket is the source of exactly one pipe

    def sever(self) -> None:
        """Reset every connection now and refuse new ones until `heal()`."""
        import struct

        self._open.clear()
        self.cuts += 1
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def heal(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._stop.set()
        self.sever()
        self._thread.join(2)
        self._server.close()


class Collector:
    """A QoS 1 subscriber that records every message on a topic filter."""

    def __init__(self, url: str, topic: str = "#"):
        from appliance.publish.mqtt import parse_url

        host, port, _ = parse_url(url)
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"collector-{time.monotonic_ns()}"
        )
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscriber did not subscribe"

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def payloads(self, suffix: str | None = None) -> list[dict]:
        with self._lock:
            msgs = list(self.messages)
        return [json.loads(p) for t, p in msgs if suffix is None or t.endswith(suffix)]

    def wait_for(self, n: int, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= n:
                    return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def cti_client(port: int, client_id: str = "cti-test"):
    """A plain MQTT client on the loopback broker, connected and looping: the CTI's side."""
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c
