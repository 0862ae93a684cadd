"""`appliance bench capacity`: how many concurrent calls this machine analyses, and how fast.

Replays N stereo calls at once through the daemon's pipeline (one shared STT model and ONNX
session, the worker pools the daemon uses) and reports:
- load factor: wall time to analyse N calls fed as fast as possible, divided by the call length,
  for N = 1, 2, 4, 8 ... 64 until it exceeds 1.0 (the throughput bound);
- real-time runs (4 calls, the issue's case, and the largest N of the search): N calls fed at
  real-time pace; latency from utterance end to committed score and to the score received by a
  subscriber on a real mosquitto, as a CRM receives it (p50/p95/max, with and without the
  utterance's own STT time); "kept in real time" = every call finished within 2 s of its audio
  ending, no utterance overran a queue or lost its text, and the p95 latency less STT stayed
  within 300 ms. The largest N kept in real time is reported;
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

from appliance.capture.sources import WavReplaySource
from appliance.capture.wav import Recording, read_wav
from appliance.config import AppConfig, config_from_dict
from appliance.pipeline.call import CallMeta
from appliance.pipeline.orchestrator import Pipeline
from appliance.store.writer import Store

CALL_SECONDS = 70.0
STAGGER_S = 1.7
"""Start offset between the calls of the real-time run (less with many calls: all start within
`STAGGER_SPAN_S`)."""
STAGGER_SPAN_S = 20.0
SEARCH = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)
"""Concurrent calls tried, as fast as possible, until the load factor passes 1.0."""
KEEP_UP_SLACK_S = 2.0
"""A real-time call is kept up with when its last score lands within this of its audio end."""
LATENCY_FLOOR_MS = 300.0
"""The issue's floor: utterance end -> published score, p95, less the utterance's own STT."""
FLOOR_CALLS = 4
"""The issue's case: four concurrent calls."""


class ScoreReceiver:
    """A QoS 1 subscriber on the box's utterance topic: when did each score reach the CRM side."""

    def __init__(self, url: str, topic: str):
        import paho.mqtt.client as mqtt

        from appliance.publish.mqtt import parse_url

        host, port, _tls = parse_url(url)
        self.received: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-receiver")
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError(f"bench receiver could not subscribe to {topic} on {url}")

    def _on_message(self, client, userdata, msg) -> None:
        now = time.monotonic()
        body = json.loads(msg.payload)
        with self._lock:
            self.received.setdefault((body["call_id"], int(body["index"])), now)

    def latencies(self, ends: dict) -> dict:
        """Percentiles of utterance end -> received, all and customer, with and without STT."""
        with self._lock:
            got = dict(self.received)
        rows = [
            (spk, got[k] - end, got[k] - end - stt)
            for k, (spk, end, stt) in ends.items()
            if k in got
        ]
        cust = [r for r in rows if r[0] == "customer"]
        return {
            "received": len(rows),
            "scored": len(ends),
            "latency_published_ms": _percentiles([r[1] for r in rows]),
            "latency_published_less_stt_ms": _percentiles([r[2] for r in rows]),
            "customer_latency_published_ms": _percentiles([r[1] for r in cust]),
            "customer_latency_published_less_stt_ms": _percentiles([r[2] for r in cust]),
        }

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def bench_call(seconds: float = CALL_SECONDS) -> Recording:
    """The bundled demo call looped to `seconds` (a realistic mix of both speakers)."""
    from appliance.ops.demo import demo_calls

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
    publisher = receiver = None
    if mqtt_url:
        from appliance.ops.analysis import start_publisher
        from appliance.publish import contract

        receiver = ScoreReceiver(mqtt_url, contract.topic(cfg.mqtt.prefix, cfg.box.id, "utterance"))
        publisher = start_publisher(cfg, db, mqtt_url)
        publisher.connected.wait(10)
    pipe = Pipeline(
        cfg,
        store,
        engines.emotion,
        engines.transcriber,
        on_stored=publisher.wake if publisher else None,
    )
    ends: dict[tuple[str, int], tuple[str, float, float]] = {}
    pipe.listeners.append(
        lambda c: ends.__setitem__((c.call_id, c.index), (c.speaker, c.ended_at, c.stt_s))
    )
    cpu0 = time.process_time()
    t0 = time.monotonic()
    stagger = min(STAGGER_S, STAGGER_SPAN_S / n_calls)
    behind: list[float] = []  # seconds each call's last score landed after its audio ended

    def one(i: int) -> None:
        if speed > 0:
            # real calls do not start in the same second: stagger them so utterance ends are not
            # artificially synchronised across calls (the same looped recording plays at every position)
            time.sleep(i * stagger)
        started = time.monotonic()
        src = WavReplaySource(rec, ["agent", "customer"], speed=speed)
        call = pipe.open_call(CallMeta(position=f"pos-{i + 1}"), src.sample_rate, source="bench")
        for chunk in src.chunks():
            pipe.feed(call, chunk)
        pipe.close_call(call)
        pipe.wait(call)
        if speed > 0:
            behind.append(time.monotonic() - started - rec.duration / speed)

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
    if receiver is not None:
        time.sleep(0.5)  # the last PUBACKed messages are still on their way to the subscriber
        result.update(receiver.latencies(ends))
        receiver.close()
    if speed > 0:
        less_stt = (
            result.get("latency_published_less_stt_ms") or result["latency_commit_less_stt_ms"]
        )
        result["stagger_s"] = round(stagger, 2)
        result["max_behind_s"] = round(max(behind), 2)
        result["kept_in_real_time"] = (
            max(behind) <= KEEP_UP_SLACK_S
            and pipe.stats.overruns == 0
            and not pipe.stats.stt_skipped
            and (less_stt["p95"] or 0.0) <= LATENCY_FLOOR_MS
        )
    store.close()
    return result


def stage_costs(engines, rec: Recording) -> dict:
    """CPU seconds per stage for one call, each stage measured alone in this process.

    CTranslate2 decodes in its own threads, so per-thread CPU clocks inside the live run would
    miss most of the recogniser's work; measuring the stages one after the other is honest."""
    from appliance.segment.vad import Segmenter

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
from appliance.ops.engines import load_engines
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


def run(
    n_calls: int | None = None,
    as_json: bool = False,
    realtime: bool = True,
    seconds: float = CALL_SECONDS,
    cold: bool = True,
    model: str = "tiny.en",
) -> dict:
    from appliance.ops.engines import load_engines
    from appliance.publish.broker import LocalBroker, find_mosquitto

    cfg = config_from_dict({"box": {"id": "bench"}, "stt": {"model": model}})
    engines = load_engines(cfg)
    rec = bench_call(seconds)
    report: dict = {
        "machine": _machine(),
        "stt_model": model,
        "call_seconds": round(rec.duration, 1),
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="appliance-bench-") as d:
        workdir = Path(d)
        counts = [n_calls] if n_calls else list(SEARCH)
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
        report["largest_throughput_calls"] = largest
        if realtime:
            report["realtime_runs"] = []
            # The floor's case first, then the throughput bound, stepping down until one keeps up.
            if n_calls:
                rt_counts = [n_calls]
            else:
                rt_counts = [FLOOR_CALLS] + sorted(
                    (n for n in SEARCH if FLOOR_CALLS < n <= largest), reverse=True
                )
            for i, n_rt in enumerate(rt_counts):
                # a fresh broker per run: a retained checkpoint of the previous run's database
                # would otherwise meet this run's new database under the same box id
                broker = LocalBroker(persistence=False).start() if find_mosquitto() else None
                try:
                    rt = run_calls(
                        cfg, engines, n_rt, 1.0, rec, workdir, broker.url if broker else None
                    )
                finally:
                    if broker:
                        broker.close()
                report["realtime_runs"].append(rt)
                _progress(
                    as_json,
                    f"{n_rt} call(s) in real time: kept up {rt['kept_in_real_time']}, "
                    f"published latency {rt.get('latency_published_ms')}, "
                    f"less STT {rt.get('latency_published_less_stt_ms')}",
                )
                if i > 0 and rt["kept_in_real_time"]:
                    break
            kept = [r["calls"] for r in report["realtime_runs"] if r["kept_in_real_time"]]
            report["largest_realtime_calls"] = max(kept, default=0)
    report["stage_costs_per_call"] = stage_costs(engines, rec)
    report["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    report["engines_load_s"] = round(engines.load_s, 2)
    if cold:
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
    ap.add_argument(
        "--calls", type=int, help="concurrent calls (default: search 1, 2, 4, 8 ... 64)"
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-realtime", action="store_true", help="skip the real-time latency run")
    ap.add_argument(
        "--seconds", type=float, default=CALL_SECONDS, help="call length (the demo call, looped)"
    )
    ap.add_argument("--no-cold-start", action="store_true", help="skip the cold-start runs")
    ap.add_argument(
        "--model",
        action="append",
        choices=("tiny.en", "base"),
        help="Whisper model (repeat to compare models in one run; default tiny.en)",
    )
    a = ap.parse_args(argv)
    reports = [
        run(
            a.calls,
            a.json,
            realtime=not a.no_realtime,
            seconds=a.seconds,
            cold=not a.no_cold_start,
            model=m,
        )
        for m in a.model or ["tiny.en"]
    ]
    report = reports[0] if len(reports) == 1 else {"models": reports}
    if a.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
