#!/usr/bin/env python3
"""Write-lock drill: how long is SQLite's write lock held while the CPU is saturated?

One process like the daemon: calls replayed as fast as the pipeline takes them on several
positions (stub emotion model and recogniser, real VAD, scoring, store and outbox), the real
publisher sending to a private mosquitto, health snapshots written every 0.5 s (as the daemon's
health loop does, through the same store), and `--hogs` threads of pure-Python work holding the
GIL (what capture and analysis threads do to a writer on a small box). Prints one JSON object:
the longest write-lock hold per thread (`appliance.store.connection.LOCK_STATS`), how long the
health writes took and how many failed.

    .venv/bin/python scripts/write_lock_drill.py --seconds 20 --hogs 6
    .venv/bin/python scripts/write_lock_drill.py --seconds 20 --hogs 6 --switch-interval 0.001
                                                  # the daemon's GIL switch interval
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def run(workdir: Path, seconds: float, hogs: int, positions: int) -> dict:
    from support.fakes import FakeEmotion, FakeTranscriber, alternating, result

    from appliance.capture.wav import read_wav
    from appliance.config import config_from_dict
    from appliance.ops.analysis import Session, start_publisher
    from appliance.ops.engines import Engines
    from appliance.pipeline.call import CallMeta
    from appliance.publish import contract
    from appliance.publish.broker import LocalBroker
    from appliance.store import settings
    from appliance.store.connection import LOCK_STATS

    rec = read_wav(ROOT / "appliance" / "data" / "demo_call.wav")
    model = FakeEmotion(alternating(result("angry"), result("happy")), delay_s=0.01)
    stt = FakeTranscriber("thank you for waiting i am not happy with this", delay_s=0.02)
    broker = LocalBroker(workdir=workdir / "broker").start()
    cfg = config_from_dict({"box": {"id": "box-01"}})
    db = workdir / "drill.db"
    session = Session(cfg, db, Engines(model, stt, 0.0), block_when_full=True)
    session.publisher = start_publisher(cfg, db, broker.url)
    session.pipeline.on_stored = session.publisher.wake
    stop = threading.Event()
    calls = [0]
    health_s: list[float] = []
    health_failed: list[str] = []

    def replay(pos: str) -> None:
        while not stop.is_set():
            session.replay(rec, ["agent", "customer"], CallMeta(position=pos), speed=0.0)
            calls[0] += 1

    def hog() -> None:
        x = 0
        while not stop.is_set():
            for i in range(10000):
                x += i * i

    def health() -> None:
        body = {"uptime_s": 1.0, "outbox_pending": 0, "broker_connected": True}
        while not stop.is_set():
            t = time.monotonic()
            try:
                session.store.write(
                    settings_json={settings.HEALTH: {"ts": time.time()}},
                    messages=[("health", contract.new_message("health", "box-01", body))],
                )
            except Exception as exc:  # counted: the drill reports every failure
                health_failed.append(f"{type(exc).__name__}: {exc}"[:200])
            health_s.append(time.monotonic() - t)
            stop.wait(0.5)

    threads = [threading.Thread(target=replay, args=(f"pos-{i + 1}",)) for i in range(positions)]
    threads += [threading.Thread(target=hog, daemon=True) for _ in range(hogs)]
    threads.append(threading.Thread(target=health, name="health"))
    t0 = time.monotonic()
    for t in threads:
        t.start()
    try:
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)
            print(
                f"{time.monotonic() - t0:5.0f} s: calls {calls[0]}, utterances"
                f" {session.pipeline.stats.utterances}, lock max {LOCK_STATS.max_s:.2f} s",
                file=sys.stderr,
            )
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        session.close()
        broker.close()
    holds: dict[str, list[float]] = {}
    for name, held in LOCK_STATS.recent:
        holds.setdefault(name, []).append(held)

    def pct(values: list[float], q: float) -> float:
        values = sorted(values)
        return round(values[min(len(values) - 1, int(q * len(values)))], 3)

    return {
        "seconds": round(time.monotonic() - t0, 1),
        "hogs": hogs,
        "positions": positions,
        "calls": calls[0],
        "utterances": session.pipeline.stats.utterances,
        "write_transactions": LOCK_STATS.transactions,
        "write_lock_max_s": round(LOCK_STATS.max_s, 3),
        "write_lock_max_s_by_thread": {k: round(v, 3) for k, v in LOCK_STATS.by_thread.items()},
        "write_lock_p50_p95_s_by_thread": {
            k: [pct(v, 0.5), pct(v, 0.95)] for k, v in sorted(holds.items())
        },
        "write_lock_over_1s": LOCK_STATS.slow,
        "health_writes": len(health_s),
        "health_write_max_s": round(max(health_s), 3) if health_s else None,
        "health_failed": len(health_failed),
        "health_errors": sorted(set(health_failed))[:3],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--hogs", type=int, default=6, help="GIL-holding busy threads")
    ap.add_argument("--positions", type=int, default=2, help="calls replayed at once")
    ap.add_argument("--switch-interval", type=float, help="sys.setswitchinterval (s) for this run")
    a = ap.parse_args(argv)
    if a.switch_interval:
        sys.setswitchinterval(a.switch_interval)
    with tempfile.TemporaryDirectory(prefix="write-lock-") as tmp:
        result = run(Path(tmp), a.seconds, a.hogs, a.positions)
    print(json.dumps(result))
    return 0 if result["health_failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
