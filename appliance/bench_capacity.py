"""`appliance bench capacity`: how many concurrent calls this machine analyses, and how fast.

Replays N stereo calls at once through the daemon's pipeline (one shared STT model and ONNX
session, the worker pools the daemon uses) and reports:
- load factor: wall time to analyse N calls fed as fast as possible, divided by the call length
  (<= 1.0 means N calls are kept in real time); the largest N with a factor <= 1.0;
- a real-time run: N calls fed at real-time pace, latency from utterance end to committed score
  (p50/p95) and to broker PUBACK when a broker is available;
- CPU seconds per stage for one call (features+emotion vs STT, measured stage by stage), resident memory;
- cold start to first score in a fresh process, with an empty and with a warm numba cache.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from appliance.audio import Recording, read_wav
from appliance.capture import WavReplaySource
from appliance.config import AppConfig, config_from_dict
from appliance.pipeline import CallMeta, Pipeline
from appliance.store import Store

CALL_SECONDS = 70.0
STAGGER_S = 1.7
"""Start offset between the calls of the real-time run."""


def bench_call(seconds: float = CALL_SECONDS) -> Recording:
    """The bundled demo call looped to `seconds` (a realistic mix of both speakers)."""
    from appliance.demo import demo_calls

    rec = read_wav(demo_calls()[0].wav)
    n = int(seconds * rec.sample_rate)
    chans = tuple(np.resize(c, n).astype(np.float32) for c in rec.channels)
    return Recording(chans, rec.sample_rate)


def run_calls(
    cfg: AppConfig,
    engines,
    n_calls: int,
    speed: float,
    rec: Recording,
    workdir: Path,
    mqtt_url: str | None = None,
) -> dict:
    """Analyse `n_calls` copies of `rec` concurrently; returns timings and stage costs."""
    db = workdir / f"bench-{n_calls}-{speed}-{time.monotonic_ns()}.db"
    store = Store(db, box_id="bench")
    publisher = None
    if mqtt_url:
        from appliance.analysis import start_publisher

        publisher = start_publisher(cfg, db, mqtt_url)
        publisher.connected.wait(10)
    pipe = Pipeline(
        cfg,
        store,
        engines.emotion,
        engines.transcriber,
        on_stored=publisher.wake if publisher else None,
    )
    cpu0 = time.process_time()
    t0 = time.monotonic()

    def one(i: int) -> None:
        if speed > 0:
            # real calls do not start in the same second: stagger them so utterance ends are not
            # artificially synchronised across calls (the same looped recording plays at every position)
            time.sleep(i * STAGGER_S)
        src = WavReplaySource(rec, ["agent", "customer"], speed=speed)
        call = pipe.open_call(CallMeta(position=f"pos-{i + 1}"), src.sample_rate, source="bench")
        for chunk in src.chunks():
            pipe.feed(call, chunk)
        pipe.close_call(call)
        pipe.wait(call)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n_calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    result = {
        "calls": n_calls,
        "speed": speed,
        "call_seconds": round(rec.duration, 1),
        "wall_s": round(wall, 2),
        "load_factor": round(wall / rec.duration, 3),
        "cpu_s": round(cpu, 2),
        "utterances": pipe.stats.utterances,
        "overruns": pipe.stats.overruns,
        "latency_commit_ms": _percentiles(pipe.stats.latencies),
        "latency_commit_less_stt_ms": _percentiles(pipe.stats.latencies_ex_stt),
        "customer_latency_commit_ms": _percentiles(pipe.stats.customer_latencies),
        "customer_latency_commit_less_stt_ms": _percentiles(pipe.stats.customer_latencies_ex_stt),
    }
    pipe.stop()
    if publisher is not None:
        publisher.flush(15)
        result["published"] = publisher.acked
        publisher.stop()
    store.close()
    return result


def stage_costs(engines, rec: Recording) -> dict:
    """CPU seconds per stage for one call, each stage measured alone in this process.

    CTranslate2 decodes in its own threads, so per-thread CPU clocks inside the live run would
    miss most of the recogniser's work; measuring the stages one after the other is honest."""
    from appliance.vad import Segmenter

    segments = {}
    for name, chan in zip(("agent", "customer"), rec.channels, strict=True):
        seg = Segmenter(rec.sample_rate)
        segments[name] = seg.push(chan) + seg.flush()
    t = time.process_time()
    state = engines.emotion.new_state()
    for s in segments["customer"]:
        engines.emotion.infer(s.audio, rec.sample_rate, state)
    emotion_s = time.process_time() - t
    t = time.process_time()
    for name in ("agent", "customer"):
        for s in segments[name]:
            engines.transcriber.transcribe(s.audio, rec.sample_rate)
    stt_s = time.process_time() - t
    return {
        "call_seconds": round(rec.duration, 1),
        "utterances": {k: len(v) for k, v in segments.items()},
        "features_emotion_cpu_s": round(emotion_s, 3),
        "stt_cpu_s": round(stt_s, 2),
        "features_emotion_share_of_stt": round(emotion_s / stt_s, 4) if stt_s else None,
    }


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None}
    arr = np.asarray(values) * 1000
    return {
        "p50": round(float(np.percentile(arr, 50)), 1),
        "p95": round(float(np.percentile(arr, 95)), 1),
        "max": round(float(arr.max()), 1),
    }


_COLD = r"""
import time, json, numpy as np
t0 = time.monotonic()
from appliance.config import AppConfig
from appliance.runtime import load_engines
eng = load_engines(AppConfig(), with_stt=False)
x = (0.1 * np.sin(2 * np.pi * 180 * np.arange(16000) / 16000)).astype(np.float32)
eng.emotion.infer(x, 16000, eng.emotion.new_state())
print(json.dumps({"first_score_s": time.monotonic() - t0}))
"""


def cold_start() -> dict:
    """Seconds from process start (imports included) to the first emotion score."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        for label in ("empty_numba_cache", "warm_numba_cache"):
            env = {**os.environ, "NUMBA_CACHE_DIR": cache}
            t0 = time.monotonic()
            r = subprocess.run(
                [sys.executable, "-c", _COLD], capture_output=True, text=True, env=env, check=True
            )
            inner = json.loads(r.stdout.strip().splitlines()[-1])["first_score_s"]
            out[label] = {
                "process_s": round(time.monotonic() - t0, 2),
                "in_process_s": round(inner, 2),
            }
    return out


def run(n_calls: int | None = None, as_json: bool = False, realtime: bool = True) -> dict:
    from appliance.broker import LocalBroker, find_mosquitto
    from appliance.runtime import load_engines

    cfg = config_from_dict({"box": {"id": "bench"}})
    engines = load_engines(cfg)
    rec = bench_call()
    report: dict = {"machine": _machine(), "call_seconds": round(rec.duration, 1), "runs": []}
    with tempfile.TemporaryDirectory(prefix="appliance-bench-") as d:
        workdir = Path(d)
        counts = [n_calls] if n_calls else [1, 2, 4, 6, 8]
        largest = 0
        for n in counts:
            r = run_calls(cfg, engines, n, 0.0, rec, workdir)
            report["runs"].append(r)
            _progress(
                as_json,
                f"{n} call(s) as fast as possible: {r['wall_s']} s for {r['call_seconds']} s calls (factor {r['load_factor']})",
            )
            if r["load_factor"] <= 1.0:
                largest = n
            else:
                break
        report["largest_realtime_calls"] = largest
        if realtime:
            n_rt = n_calls or max(1, largest)
            broker = LocalBroker(persistence=False).start() if find_mosquitto() else None
            try:
                rt = run_calls(
                    cfg, engines, n_rt, 1.0, rec, workdir, mqtt_url=broker.url if broker else None
                )
            finally:
                if broker:
                    broker.close()
            report["realtime"] = rt
            _progress(
                as_json, f"{n_rt} call(s) in real time: commit latency {rt['latency_commit_ms']}"
            )
    report["stage_costs_per_call"] = stage_costs(engines, rec)
    report["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    report["engines_load_s"] = round(engines.load_s, 2)
    report["cold_start"] = cold_start()
    return report


def _machine() -> dict:
    import platform

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def _progress(as_json: bool, text: str) -> None:
    print(text, file=sys.stderr if as_json else sys.stdout, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="appliance bench capacity")
    ap.add_argument("--calls", type=int, help="concurrent calls (default: search 1, 2, 4, 6, 8)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-realtime", action="store_true", help="skip the real-time latency run")
    a = ap.parse_args(argv)
    report = run(a.calls, a.json, realtime=not a.no_realtime)
    if a.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
