"""`appliance demo`: the bundled demo call replayed through the whole live path.

Without `--mqtt` a private mosquitto runs on a free loopback port (the embedded default) and
stops on exit; the panel is served on 127.0.0.1 unless `--no-panel`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from appliance.capture.wav import read_wav
from appliance.config import AppConfig, config_from_dict
from appliance.ops.analysis import Session
from appliance.panel import queries
from appliance.pipeline.call import CallMeta
from appliance.publish.broker import LocalBroker
from appliance.store.connection import connect
from appliance.store.outbox import outbox_status

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoCall:
    wav: Path
    speakers: list[str]
    meta: CallMeta


def demo_calls() -> list[DemoCall]:
    """The bundled demo calls, described by `appliance/data/demo_calls.json`."""
    data = resources.files("appliance.data")
    spec = json.loads(data.joinpath("demo_calls.json").read_text())
    out = []
    for c in spec["calls"]:
        out.append(
            DemoCall(
                wav=Path(str(data.joinpath(c["file"]))),
                speakers=c["channels"],
                meta=CallMeta(
                    position=c["position"],
                    customer_ref=c.get("customer", ""),
                    call_type=c.get("call_type", "support"),
                    segment=c.get("segment", ""),
                ),
            )
        )
    return out


def demo_config(db: Path) -> AppConfig:
    return config_from_dict(
        {"box": {"id": "demo-box", "site": "demo"}, "paths": {"db": str(db)}}, base_dir=db.parent
    )


def summary(db_path: Path) -> dict[str, int]:
    """Calls and utterances stored, messages published and pending."""
    outbox = outbox_status(db_path)
    db = connect(db_path, readonly=True)
    try:
        c = queries.counts(db)
    finally:
        db.conn.close()
    return {
        "calls": c["calls"],
        "utterances": c["utterances"],
        "published": outbox["sent"],
        "pending": outbox["pending"],
    }


def serve_panel(db_path: Path, port: int) -> tuple[object, str]:
    """Serve the panel on loopback in a thread (demo only; production uses gunicorn with TLS)."""
    from werkzeug.serving import make_server

    from appliance.panel import create_app
    from appliance.panel.serving import RedactingRequestHandler as handler

    app = create_app({"DB_PATH": str(db_path), "DEMO": True})
    try:
        server = make_server("127.0.0.1", port, app, threaded=True, request_handler=handler)
    except OSError:  # port taken (another demo, a dev server): any free port will do for a demo
        server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=handler)
    threading.Thread(target=server.serve_forever, name="panel", daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/"


def run_demo(
    once: bool,
    as_json: bool,
    no_panel: bool,
    mqtt_url: str | None,
    db_path: str | None,
    speed: float | None,
    port: int,
    history: bool = True,
) -> dict:
    """Replay the demo calls (after seeding earlier ones when `history`); returns the counts."""
    from appliance.ops.demo_history import seed_history
    from appliance.ops.engines import load_engines

    db = Path(db_path or "demo.db").resolve()
    cfg = demo_config(db)
    broker = None
    if not mqtt_url:
        broker = LocalBroker(persistence=False).start()
        mqtt_url = broker.url
        log.info("embedded mosquitto on %s", mqtt_url)
    server = None
    try:
        engines = load_engines(cfg)
        seeded = 0
        if history:
            _say(as_json, "seeding a few weeks of earlier calls (demo data) ...")
            seeded = seed_history(cfg, db, engines, demo_calls()[0].wav, mqtt_url)
        session = Session(cfg, db, engines, mqtt_url=mqtt_url)
        if not no_panel:
            server, url = serve_panel(db, port)
            _say(as_json, f"panel: {url}")
        pace = speed if speed is not None else (0.0 if once else 1.0)
        try:
            for call in demo_calls():
                _say(
                    as_json,
                    f"replaying {call.wav.name} ({'real time' if pace == 1 else 'fast'}) ...",
                )
                rec = read_wav(call.wav)
                session.replay(rec, call.speakers, call.meta, speed=pace, source="demo")
        finally:
            session.close(flush_timeout=10.0)
        result = {**summary(db), "history": seeded, "db": str(db)}
        if not once and server is not None:
            _say(as_json, f"demo done: {result}. Panel stays up at {url} - Ctrl-C to stop.")
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
        return result
    finally:
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
        if broker is not None:
            broker.close()


def _say(as_json: bool, text: str) -> None:
    if not as_json:
        print(text, flush=True)
