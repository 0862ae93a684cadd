"""The bridge's MQTT side: a shared subscription in a persistent session, one message at a time.

MQTT 5 (default): `$share/<group>/<prefix>/v1/+/<kind>` for every score kind, `clean_start =
False` and a session expiry, so the broker spreads messages over the group's instances and
keeps an instance's share queued while it is down (mosquitto does; a restarted instance with
the same client id receives it). MQTT 3.1.1 (`--protocol 3.1.1`, for brokers such as NATS or
RabbitMQ): `clean_session = False`, plain topics unless a group is given; the load is then
shared by the broker's own means, or one instance runs.

A message is acknowledged only after the transaction that stored it committed, so a bridge
killed at any point loses nothing: the broker sends unacknowledged
messages again and `msg_id` makes the second copy a no-op. When the database fails beyond its
retries, the message is not acknowledged and `on_fatal` is called from the network thread (the
CLI exits; its supervisor restarts it and the broker sends the message again).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from appliance.bridge.ingest import Ingestor
from appliance.config import MqttConfig
from appliance.publish import contract
from appliance.publish.mqtt import configure_client, parse_url

log = logging.getLogger(__name__)

PROTOCOLS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}
SESSION_EXPIRY_S = 7 * 86400
"""How long the broker keeps a stopped instance's session and queued messages (MQTT 5)."""


def topics(prefix: str, group: str | None) -> list[str]:
    share = f"$share/{group}/" if group else ""
    return [f"{share}{prefix}/v{contract.SCHEMA_VERSION}/+/{k}" for k in contract.OUTBOX_KINDS]


class Consumer:
    """Subscribes, hands each message to the ingestor, reconnects and re-subscribes."""

    def __init__(
        self,
        settings: MqttConfig,
        client_id: str,
        group: str | None,
        ingestor: Ingestor,
        protocol: str = "5",
        password: str = "",
        on_ready: Callable[[], None] = lambda: None,
        on_fatal: Callable[[BaseException], None] = lambda exc: None,
    ):
        self.settings = settings
        self.ingestor = ingestor
        self.protocol = protocol
        self.topics = topics(settings.prefix, group)
        self.on_ready = on_ready
        self.on_fatal = on_fatal
        self.ready = threading.Event()
        self.connects = 0
        self._last_message = time.monotonic()
        self._host, self._port, _ = parse_url(settings.url)
        if protocol == "5":
            self.client = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
            )
        else:
            self.client = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2,
                client_id=client_id,
                clean_session=False,
                protocol=mqtt.MQTTv311,
            )
        # acknowledged only once stored: a message that could not be stored comes back
        self.client.manual_ack_set(True)
        configure_client(self.client, settings, password)
        self.client.reconnect_delay_set(settings.reconnect_min_delay, settings.reconnect_max_delay)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    def start(self) -> None:
        kwargs: dict = {}
        if self.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            kwargs = {"clean_start": False, "properties": props}
        self.client.connect_async(
            self._host, self._port, keepalive=self.settings.keepalive, **kwargs
        )
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect cleanly: the session (and what is queued for it) stays on the broker."""
        self.client.disconnect()
        self.client.loop_stop()

    def retire(self, idle_s: float = 3.0, timeout: float = 600.0) -> bool:
        """Leave the group for good: take what the broker queued for this instance until
        nothing arrives for `idle_s`, unsubscribe, and end the session (MQTT 5: expiry 0).
        A stopped instance's share otherwise keeps queueing on mosquitto until its session
        expires, and is lost then. False when it did not drain within `timeout`."""
        deadline = time.monotonic() + timeout
        if not self.ready.wait(max(0.0, deadline - time.monotonic())):
            return False
        while time.monotonic() - self._last_message < idle_s:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        done = threading.Event()
        self.client.on_unsubscribe = lambda *args, **kwargs: done.set()
        self.client.unsubscribe(self.topics)
        if not done.wait(30):
            return False
        props = None
        if self.protocol == "5":
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        self.client.disconnect(properties=props)
        self.client.loop_stop()
        return True

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        self.connects += 1
        log.info(
            "connected to %s:%s (session present: %s)",
            self._host,
            self._port,
            flags.session_present,
        )
        # subscribe on every connect: a broker that lost its state lost our subscription too
        client.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("subscription refused (%s): check the broker's ACL", ", ".join(failed))
            return
        if not self.ready.is_set():
            self.ready.set()
            self.on_ready()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        log.warning("disconnected from the broker: %s", reason_code)

    def _on_message(self, client, userdata, message) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "?"  # refused and counted as a bad topic
        self._last_message = time.monotonic()
        try:
            self.ingestor.handle(topic, message.payload)
        except Exception as exc:  # the database failed past its retries: do not acknowledge
            log.exception("storing a message failed")
            self.on_fatal(exc)
            return
        client.ack(message.mid, message.qos)
