#!/usr/bin/env python3
"""Fault drill: does the CRM get every score, and nothing else?

Sequence (each analyser run is a separate `appliance analyze` process on the same database):

  1. a private mosquitto (persistence on, long autosave interval so a SIGKILL really loses
     acknowledged messages) and a CRM-style subscriber (persistent session, QoS 1,
     de-duplicates by msg_id) that stays connected whenever the broker is up;
  2. run 1: broker up;
  3. run 2: broker stopped (SIGTERM) - the run must still succeed, rows stay pending;
  4. broker started again; run 3 killed with `kill -9` in the middle of the call;
  5. broker restart the hard way (SIGKILL, then start);
  6. `appliance outbox flush --db DB --mqtt URL`;
  7. compare every msg_id in the outbox table with what the subscriber received, and run
     `PRAGMA integrity_check`.

Prints one JSON object with the counts; exits 0 when nothing was lost, nothing extra arrived
and the database is intact.

    .venv/bin/python scripts/fault_drill.py            # real model via the `appliance` CLI
    .venv/bin/python scripts/fault_drill.py --fake-model   # CI: same CLI, stub emotion model
    .venv/bin/python scripts/fault_drill.py --crash-loop 14  # 14 analysers killed with -9 mid-call:
                                                  # deliveries per message, re-sends per restart,
                                                  # calls left open (stub model)

`--fake-model` runs the same `appliance analyze` command line in a child process with the
emotion model replaced by a stub (and speech to text off), for machines without the trained
model; the MQTT, outbox and storage code paths are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEMO = ROOT / "appliance" / "data" / "demo_call.wav"
MODEL_CARD = ROOT / "models" / "emotion" / "model_card.json"


# -- the stub analyser (child process) ----------------------------------------------------


def _child_analyze(argv: list[str]) -> int:
    """`appliance analyze` with a stub emotion model (0.1 s per utterance) and no STT."""
    import appliance.ops.engines as runtime
    from appliance.cli import main
    from tests.support.fakes import FakeEmotion, alternating, result

    def stub_model() -> FakeEmotion:
        r = [
            result(label, 0.8, 0.5, 0.2, -0.3 if label == "angry" else 0.3)
            for label in ("angry", "happy", "neutral")
        ]
        return FakeEmotion(alternating(*r), delay_s=float(os.environ.get("DRILL_INFER_S", "0.1")))

    def load_engines(cfg, with_stt=True):
        return runtime.Engines(emotion=stub_model(), transcriber=None, load_s=0.0)

    runtime.load_engines = load_engines
    return main(argv)


# -- helpers ---------------------------------------------------------------------------------


def analyze_cmd(
    fake: bool, db: Path, url: str, extra: list[str] | None = None, stt: bool = False
) -> list[str]:
    args = [
        "analyze",
        str(DEMO),
        "--json",
        "--db",
        str(db),
        "--mqtt",
        url,
        "--customer",
        "CRM-000123",
        "--segment",
        "gold",
        *([] if stt or fake else ["--no-stt"]),
        *(extra or []),
    ]
    if fake:
        return [sys.executable, str(Path(__file__).resolve()), "--child-analyze", "--", *args]
    return [*appliance_cli(), *args]


def appliance_cli() -> list[str]:
    exe = Path(sys.executable).with_name("appliance")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "appliance.cli"]


def outbox_ids(db: Path) -> list[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return [r[0] for r in con.execute("SELECT msg_id FROM outbox ORDER BY seq")]
    finally:
        con.close()


def count_rows(db: Path, after_seq: int | None = None) -> int:
    """Outbox rows; with `after_seq`: rows after it that the broker acknowledged."""
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            if after_seq is None:
                return con.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            return con.execute(
                "SELECT COUNT(*) FROM outbox WHERE seq > ? AND sent_at IS NOT NULL", [after_seq]
            ).fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def run(cmd: list[str], timeout: float, env: dict) -> tuple[int, float, str]:
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return p.returncode, round(time.monotonic() - t0, 2), p.stderr[-2000:]


def run_drill(
    workdir: Path,
    fake: bool = False,
    autosave_interval: int = 3600,
    timeout: float = 120.0,
    log=lambda *a: None,
    stt: bool = False,
) -> dict:
    from appliance.publish.broker import LocalBroker
    from tests.support.mqtt import DedupSubscriber

    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "drill.db"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    broker = LocalBroker(workdir=workdir / "broker", autosave_interval=autosave_interval)
    broker.start()
    url = broker.url
    sub = DedupSubscriber(url, client_id="crm-drill").start()
    result: dict = {
        "analyzer": "appliance-cli+stub-model" if fake else "appliance-cli",
        "stt": stt and not fake,
        "broker": url,
        "autosave_interval": autosave_interval,
    }
    try:
        # 1. broker up
        rc, dt, err = run(analyze_cmd(fake, db, url, stt=stt), timeout, env)
        result["run1_broker_up"] = {"rc": rc, "s": dt, "rows_after": count_rows(db)}
        log("run 1 (broker up)", result["run1_broker_up"], err if rc else "")

        # 2. broker down (SIGTERM: mosquitto saves its state on the way out)
        broker.stop()
        rc, dt, err = run(analyze_cmd(fake, db, url, stt=stt), timeout, env)
        result["run2_broker_down"] = {"rc": rc, "s": dt, "rows_after": count_rows(db)}
        log("run 2 (broker down)", result["run2_broker_down"], err if rc else "")

        # 3. broker back; analyser killed with -9 in the middle of the call
        broker.start()
        sub.wait_connected(15)
        before = count_rows(db)  # seq == row count here: nothing was ever pruned
        proc = subprocess.Popen(
            analyze_cmd(fake, db, url, stt=stt),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            # mid-call, after the broker acknowledged some of this run's own rows
            if count_rows(db, after_seq=before) >= 8:
                break
            time.sleep(0.005)
        killed = proc.poll() is None
        if killed:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        con = sqlite3.connect(db, timeout=10)
        try:
            live = con.execute("SELECT COUNT(*) FROM calls WHERE state = 'live'").fetchone()[0]
        finally:
            con.close()
        result["run3_killed"] = {
            "killed_mid_call": killed and live > 0,
            "rc": proc.returncode,
            "rows_after": count_rows(db),
            "own_rows_acked_before_kill": count_rows(db, after_seq=before),
        }
        log("run 3 (kill -9)", result["run3_killed"])

        # 4. broker restart, the hard way
        time.sleep(0.3)  # let the broker forward what it has (the subscriber is connected)
        broker.restart(kill=True)
        sub.wait_connected(15)

        # 5. outbox flush
        flush = [*appliance_cli(), "outbox", "flush", "--db", str(db), "--mqtt", url]
        rc, dt, err = run([*flush, "--timeout", "30"], timeout, env)
        result["flush"] = {"rc": rc, "s": dt}
        log("outbox flush", result["flush"], err)

        # 6. what reached the subscriber
        ids = outbox_ids(db)
        sub.wait_for(set(ids), timeout=20)
        got = sub.ids()
        con = sqlite3.connect(db, timeout=10)
        try:
            integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
            pending = con.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]
            resends = con.execute(
                "SELECT COALESCE(SUM(json_extract(detail, '$.rows')), 0) FROM events"
                " WHERE kind = 'outbox_resend'"
            ).fetchone()[0]
        finally:
            con.close()
        result.update(
            rows=len(ids),
            unique_rows=len(set(ids)),
            received=sub.received,
            received_unique=len(got & set(ids)),
            duplicates=sub.duplicates,
            extra=len(got - set(ids)),
            lost=len(set(ids) - got),
            pending_after_flush=pending,
            rows_resent_after_broker_loss=resends,
            status_messages=len(sub.statuses),
            integrity_check=integrity,
        )
        result["ok"] = bool(
            result["lost"] == 0
            and result["extra"] == 0
            and integrity == "ok"
            and pending == 0
            and result["run1_broker_up"]["rc"] == 0
            and result["run2_broker_down"]["rc"] == 0
            and result["flush"]["rc"] == 0
            and result["rows"] > 0
        )
        return result
    finally:
        sub.stop()
        broker.close()


def _call_states(db: Path) -> dict[str, str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return dict(con.execute("SELECT id, state FROM calls"))
    finally:
        con.close()


def _count_calls(db: Path) -> int:
    """Calls in the database (0 while it is not there yet)."""
    try:
        return len(_call_states(db)) if db.exists() else 0
    except sqlite3.Error:
        return 0


def _resends(db: Path) -> list[int]:
    """Rows re-sent after each restart's checkpoint probe, in order (events `outbox_resend`)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = con.execute(
            "SELECT json_extract(detail, '$.rows') FROM events WHERE kind = 'outbox_resend'"
            " ORDER BY id"
        )
        return [int(r[0]) for r in rows]
    finally:
        con.close()


def run_crash_loop(
    workdir: Path,
    kills: int = 14,
    seed: int = 22,
    infer_s: float = 0.25,
    timeout: float = 60.0,
    log=lambda *a: None,
) -> dict:
    """`kills` analyser processes killed with -9 mid-call, then one clean run and a flush.

    Each run is the stub-model `appliance analyze` on the same database, killed at a random
    moment (seeded) after the broker acknowledged its first row. A CRM-style subscriber stays
    connected throughout and counts every delivery: `deliveries_per_message` is deliveries over
    distinct outbox rows. `resent_per_restart` is what each restart's checkpoint probe sent
    again (it must stay flat, not grow with the number of crashes). Every call a kill left
    open must end up closed, and the subscriber must have its final `call` message.
    """
    import random

    from appliance.publish.broker import LocalBroker
    from tests.support.mqtt import DedupSubscriber

    rng = random.Random(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "loop.db"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "DRILL_INFER_S": str(infer_s),
    }
    broker = LocalBroker(workdir=workdir / "broker", autosave_interval=3600).start()
    sub = DedupSubscriber(broker.url, client_id="crm-loop").start()
    killed = attempts = 0
    try:
        while killed < kills and attempts < 3 * kills:
            attempts += 1
            before = count_rows(db)
            calls_before = _count_calls(db)
            proc = subprocess.Popen(
                analyze_cmd(True, db, broker.url),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                # mid-call: this run's call is open and the broker acknowledged rows of it (not
                # only the `aborted` message of the call the last kill left open)
                if count_rows(db, after_seq=before) >= 3 and _count_calls(db) > calls_before:
                    break
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 1.5))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                killed += 1
            proc.wait(10)
            log(f"run {attempts}: killed {killed}/{kills}, rows {count_rows(db)}")
        rc, dt, err = run(analyze_cmd(True, db, broker.url), timeout, env)
        flush = [*appliance_cli(), "outbox", "flush", "--db", str(db), "--mqtt", broker.url]
        frc, _, ferr = run([*flush, "--timeout", "30"], timeout, env)
        ids = outbox_ids(db)
        sub.wait_for(set(ids), timeout=20)
        states = _call_states(db)
        with sub._lock:
            finals = {
                d["call_id"]: d["state"]
                for d in sub.by_id.values()
                if d.get("schema") == "call/1" and d["state"] != "live"
            }
        resent = _resends(db)
        return {
            "kills": killed,
            "runs": attempts + 1,
            "final_run_rc": rc,
            "final_run_error": err.strip().splitlines()[-1:] if rc else [],
            "flush_rc": frc,
            "rows": len(ids),
            "received": sub.received,
            "received_unique": len(sub.ids() & set(ids)),
            "lost": len(set(ids) - sub.ids()),
            "deliveries_per_message": round(sub.received / max(1, len(ids)), 3),
            "resent_per_restart": resent,
            "calls": len(states),
            "calls_live_after": sum(1 for s in states.values() if s == "live"),
            "calls_by_state": {s: list(states.values()).count(s) for s in set(states.values())},
            "calls_final_message": sum(1 for c in states if c in finals),
            "flush_error": ferr.strip().splitlines()[-1:] if frc else [],
        }
    finally:
        sub.stop()
        broker.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child-analyze":
        return _child_analyze(argv[2:] if argv[1:2] == ["--"] else argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--fake-model",
        action="store_true",
        help="stub emotion model (no trained model needed); default when models/emotion/ is empty",
    )
    ap.add_argument("--workdir", help="keep the database and broker files here")
    ap.add_argument("--autosave", type=int, default=3600, help="mosquitto autosave_interval (s)")
    ap.add_argument(
        "--stt", action="store_true", help="speech to text on (slow; it does not touch MQTT)"
    )
    ap.add_argument(
        "--crash-loop",
        type=int,
        metavar="N",
        help="instead: N analyser runs killed with -9 mid-call, then a clean run (stub model)",
    )
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    fake = a.fake_model or not MODEL_CARD.exists()
    if fake and not a.fake_model:
        print(f"note: {MODEL_CARD} missing: using the stub emotion model", file=sys.stderr)

    def log(*parts):
        if a.verbose:
            print(*parts, file=sys.stderr)

    from appliance.publish.broker import find_mosquitto

    if find_mosquitto() is None:
        print("error: mosquitto is not installed", file=sys.stderr)
        return 2
    if a.crash_loop:
        with tempfile.TemporaryDirectory(prefix="crash-loop-") as tmp:
            result = run_crash_loop(Path(a.workdir or tmp), a.crash_loop, log=log)
        print(json.dumps(result))
        return 0
    if a.workdir:
        result = run_drill(Path(a.workdir), fake, a.autosave, log=log, stt=a.stt)
    else:
        with tempfile.TemporaryDirectory(prefix="fault-drill-") as tmp:
            result = run_drill(Path(tmp), fake, a.autosave, log=log, stt=a.stt)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
