"""The demo's earlier calls: a few weeks of history for several customers on a new database.

Parts of the bundled, licensed demo recording (`appliance/data/demo_history.json` says which
part, for which customer, how many days ago) go through the real pipeline with the real emotion
model - speech to text is skipped, which keeps the first run quick - and are then dated back.
Every seeded call is marked `source = demo-history` (the call page shows it). The Customers
page and the published relationship payloads then show trends, risk and advocacy on the first
run; a second run on the same database seeds nothing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from appliance.capture.wav import Recording, read_wav
from appliance.config import AppConfig
from appliance.ops.analysis import Session
from appliance.pipeline.call import CallMeta
from appliance.store.connection import connect, migrate
from appliance.store.history import backdate_call, has_source

log = logging.getLogger(__name__)

SOURCE = "demo-history"
DAY = 86400.0


@dataclass(frozen=True)
class HistoryCall:
    """One seeded call."""

    meta: CallMeta
    part: tuple[float, float]
    """Start and end (s) of the part of the demo recording replayed."""
    days_ago: float


def history_plan() -> list[HistoryCall]:
    """The seeded calls, oldest first."""
    spec = json.loads(resources.files("appliance.data").joinpath("demo_history.json").read_text())
    calls = [
        HistoryCall(
            meta=CallMeta(
                position=c["position"],
                customer_ref=c["customer"],
                call_type=c["call_type"],
                segment=c["segment"],
            ),
            part=tuple(spec["parts"][c["part"]]),
            days_ago=float(c["days_ago"]),
        )
        for c in spec["calls"]
    ]
    return sorted(calls, key=lambda c: -c.days_ago)


def _part(rec: Recording, start: float, end: float) -> Recording:
    a, b = int(start * rec.sample_rate), int(end * rec.sample_rate)
    return Recording(tuple(ch[a:b] for ch in rec.channels), rec.sample_rate)


def seed_history(
    cfg: AppConfig, db_path: Path, engines: Any, wav: Path, mqtt_url: str | None
) -> int:
    """Seed the history once per database; returns the number of calls seeded now."""
    db = connect(db_path)
    try:
        migrate(db)
        if has_source(db, SOURCE):
            return 0
    finally:
        db.conn.close()
    rec = read_wav(wav)
    plan = history_plan()
    quick = dataclasses.replace(engines, transcriber=None)
    session = Session(cfg, db_path, quick, mqtt_url=mqtt_url)
    done: list[tuple[str, float]] = []
    try:
        for c in plan:
            call = session.replay(
                _part(rec, *c.part), ["agent", "customer"], c.meta, speed=0.0, source=SOURCE
            )
            done.append((call.id, c.days_ago))
    finally:
        session.close(flush_timeout=10.0)
    db = connect(db_path)
    try:
        for call_id, days in done:
            backdate_call(db, call_id, days * DAY)
    finally:
        db.conn.close()
    log.info("seeded %d earlier demo calls", len(done))
    return len(done)
