"""`appliance bridge`: run an instance, print the status, replay dead letters.

An instance runs until SIGTERM/SIGINT: it migrates the database, starts the webhook thread,
connects, and prints `ready` on stderr once the broker granted every subscription. A database
that keeps failing ends it with exit code 3 before the message in hand is acknowledged; its
supervisor (systemd, a container runtime) restarts it and the broker sends the message again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from appliance.config import AppConfig, ConfigError, load_config

log = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2
EXIT_DATABASE = 3


def _error(text: str) -> int:
    print(f"error: {text}", file=sys.stderr, flush=True)
    return EXIT_BAD_INPUT


def _central(dsn: str):
    """The central database, migrated (instances starting together migrate in turn)."""
    from appliance.store.central.db import CentralDB
    from appliance.store.central.schema import migrate

    db = CentralDB(dsn)
    try:
        applied = migrate(db)
    except BaseException:
        db.close()
        raise
    if applied:
        log.info("central database migrated: %s", ", ".join(applied))
    return db


def run(a: argparse.Namespace) -> int:
    from appliance.bridge.consumer import Consumer
    from appliance.bridge.ingest import Ingestor
    from appliance.bridge.routing import Router, RoutingError
    from appliance.bridge.webhook import Deliverer
    from appliance.publish.mqtt import parse_url
    from appliance.publish.pseudonym import PseudonymKeyError, key_id, load_key
    from appliance.store.central.db import CentralError

    missing = [o for o in ("mqtt", "client_id", "db", "customer_key_file") if not getattr(a, o)]
    if missing:
        flags = ", ".join("--" + m.replace("_", "-") for m in missing)
        return _error(f"appliance bridge needs {flags}")
    if a.protocol == "5" and not a.group:
        return _error("--group NAME is required with MQTT 5 (the shared subscription's group)")
    try:
        cfg = load_config(a.config) if a.config else AppConfig()
        bridge = cfg.bridge
        if a.webhook is not None or a.webhook_secret_file is not None:
            bridge = dataclasses.replace(
                bridge,
                webhook=a.webhook if a.webhook is not None else bridge.webhook,
                webhook_secret_file=str(Path(a.webhook_secret_file).resolve())
                if a.webhook_secret_file
                else bridge.webhook_secret_file,
            )
        router = Router(bridge, resolve=cfg.resolve)
        site_key = key_id(load_key(a.customer_key_file))
        mqtt_settings = cfg.mqtt_resolved(a.mqtt)
        parse_url(mqtt_settings.url)
        password = (
            Path(mqtt_settings.password_file).read_text().strip()
            if mqtt_settings.password_file
            else ""
        )
    except (ConfigError, RoutingError, PseudonymKeyError, ValueError, OSError) as exc:
        return _error(str(exc))
    try:
        db = _central(a.db)
    except CentralError as exc:
        return _error(str(exc))
    deliverer = Deliverer(a.db, router, a.client_id, bridge)
    ingestor = Ingestor(db, router, site_key, a.client_id, on_queued=deliverer.wake)
    stop = threading.Event()

    def fatal(exc: BaseException) -> None:
        print(f"error: central database failing, exiting: {exc}", file=sys.stderr, flush=True)
        os._exit(EXIT_DATABASE)  # before the message in hand is acknowledged

    consumer = Consumer(
        mqtt_settings,
        a.client_id,
        a.group,
        ingestor,
        protocol=a.protocol,
        password=password,
        on_ready=lambda: print("ready", file=sys.stderr, flush=True),
        on_fatal=fatal,
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    if router.delivers:
        deliverer.start()
    consumer.start()
    log.info(
        "bridge %s: group %s, site key %s, webhook %s",
        a.client_id,
        a.group or "-",
        site_key,
        "on" if router.delivers else "off",
    )
    retired = None
    try:
        if a.retire:
            retired = consumer.retire()
        else:
            stop.wait()
    finally:
        if retired is not True:
            consumer.stop()
        deliverer.stop()
        db.close()
    if retired is False:
        print("error: the queue did not drain: the instance keeps its session", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "stored": ingestor.stored,
                "duplicates": ingestor.duplicates,
                "rejected": ingestor.rejected,
                "delivered": deliverer.delivered,
            }
        ),
        file=sys.stderr,
    )
    return 0


def status(a: argparse.Namespace) -> int:
    from appliance.store.central.db import CentralError
    from appliance.store.central.status import status as read_status

    try:
        db = _central(a.db)
    except CentralError as exc:
        return _error(str(exc))
    try:
        result = read_status(db, a.limit)
    finally:
        db.close()
    if a.json:
        print(json.dumps(result))
        return 0
    w = result["webhook"]
    print(
        f"calls {result['calls']}, alerts {result['alerts']}, signals {result['signals']},"
        f" rejected {result['rejected']}, key mismatches {result['key_mismatch']};"
        f" webhook delivered {w['delivered']}, pending {w['pending']}, dead {w['dead']}"
    )
    for c in result["customers"]:
        print(
            f"  {c['customer']:24s} {c['state']:9s} health {c['health']:.2f} risk {c['risk']:.2f}"
            f" calls {c['calls']} boxes {c['boxes']}"
        )
    return 0


def replay(a: argparse.Namespace) -> int:
    from appliance.store.central import deliveries
    from appliance.store.central.db import CentralError

    if not a.all and not a.key and not a.list:
        return _error("bridge replay needs --all, --key KEY or --list")
    try:
        db = _central(a.db)
    except CentralError as exc:
        return _error(str(exc))
    try:
        if a.list:
            print(json.dumps(deliveries.dead_letters(db, limit=1000)))
            return 0
        print(json.dumps({"replayed": deliveries.replay(db, None if a.all else a.key)}))
        return 0
    finally:
        db.close()


def add_parser(sub) -> None:
    """`appliance bridge ...` (options of a running instance) and its subcommands."""
    b = sub.add_parser(
        "bridge",
        help="the CRM-side consumer: MQTT -> PostgreSQL/SQLite, relationship health, webhooks",
        description="Run a bridge instance (no subcommand), or: status, replay.",
    )
    b.add_argument("--mqtt", metavar="URL", help="broker (mqtt:// or mqtts://)")
    b.add_argument("--group", metavar="NAME", help="shared subscription group of the instances")
    b.add_argument("--client-id", metavar="ID", help="stable MQTT client id of this instance")
    b.add_argument("--db", metavar="DSN", help="postgresql://... or a SQLite file (one instance)")
    b.add_argument("--customer-key-file", metavar="FILE", help="the site's customer key")
    b.add_argument("--webhook", metavar="URL", help="POST alerts and signals here")
    b.add_argument("--webhook-secret-file", metavar="FILE", help="signing secret of --webhook")
    b.add_argument("--config", metavar="PATH", help="config with [bridge] routes, [mqtt] TLS")
    b.add_argument(
        "--protocol", choices=("5", "3.1.1"), default="5", help="MQTT version (default 5)"
    )
    b.add_argument(
        "--retire",
        action="store_true",
        help="take what is queued for this client id, then leave the group for good and exit",
    )
    bsub = b.add_subparsers(dest="bridge_cmd")
    st = bsub.add_parser("status", help="calls, alerts, customers and the webhook queue")
    st.add_argument("--db", required=True, metavar="DSN")
    st.add_argument("--json", action="store_true")
    st.add_argument("--limit", type=int, help="customers listed at most (riskiest first)")
    rp = bsub.add_parser("replay", help="queue dead-lettered webhook deliveries again")
    rp.add_argument("--db", required=True, metavar="DSN")
    rp.add_argument("--all", action="store_true", help="every dead letter")
    rp.add_argument("--key", action="append", help="the dead letter with this idempotency key")
    rp.add_argument("--list", action="store_true", help="list the dead letters (JSON)")


def main(a: argparse.Namespace) -> int:
    if a.bridge_cmd == "status":
        return status(a)
    if a.bridge_cmd == "replay":
        return replay(a)
    return run(a)
