"""Health snapshot pieces, the published subset against the schema, Prometheus text, watchdog."""

from __future__ import annotations

import re
import threading
import time

from appliance.ops.health import CpuMeter, HealthMonitor, read_temperature
from appliance.ops.metrics import prometheus_text
from appliance.publish import contract


def _snap(**over) -> dict:
    snap = {
        "ts": time.time(),
        "box_id": "box-t",
        "uptime_s": 12.5,
        "cpu_percent": 37.5,
        "load1": 0.4,
        "temperature_c": None,
        "rtf": 0.12,
        "queue_depth": 0,
        "overruns": 3,
        "pipeline_overruns": 1,
        "utterances": 9,
        "latency_p95_s": 0.2,
        "outbox_pending": 5,
        "disk_free_mb": 1234.5,
        "broker_connected": False,
        "mqtt_enabled": True,
        "transcripts_suspended": False,
        "active_calls": 1,
        "streams": [
            {"position": "pos-1", "rtf": 0.01, "connected": True, "overruns": 2, "calls": 4},
            {"position": 'we"ird', "rtf": None, "connected": False, "overruns": 0, "calls": 0},
        ],
        "stt": {"engine": "whisper", "model_version": "tiny.en", "sha256": "ab"},
        "emotion_model": {"name": "emo", "version": "1.2 beta/x", "sha256": "cd"},
        "software_version": "0.1.0",
        "alarms": ["broker_down", "overrun"],
    }
    snap.update(over)
    return snap


def test_published_subset_fits_the_schema():
    body = HealthMonitor.message_body(_snap())
    msg = contract.new_message("health", "box-t", body)
    contract.check_payload("health", msg)
    assert body["model_version"] == "1.2_beta_x"  # sanitised to the schema's pattern
    assert body["stt_engine"] == "whisper" and body["alarms"] == ["broker_down", "overrun"]
    odd = HealthMonitor.message_body(_snap(stt={"engine": "something"}, emotion_model={}))
    contract.check_payload("health", contract.new_message("health", "box-t", odd))
    assert odd["stt_engine"] == "none" and "model_version" not in odd


SAMPLE = re.compile(r'^[a-z_0-9]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? -?[0-9.e+-]+$')


def test_prometheus_text_is_well_formed():
    text = prometheus_text(_snap())
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) appliance_[a-z_0-9]+ ", line), line
            continue
        assert SAMPLE.match(line), line
    assert "appliance_outbox_pending 5" in text
    assert 'appliance_stream_rtf{position="pos-1"} 0.01' in text
    assert 'position="we\\"ird"' in text
    assert 'appliance_alarm{alarm="broker_down"} 1' in text
    assert not re.search(r"^appliance_temperature_celsius ", text, flags=re.M)  # None: no sample
    assert "appliance_broker_connected 0" in text
    assert prometheus_text(None).strip().endswith("appliance_up 1")


def test_temperature_is_the_hottest_zone(tmp_path):
    for i, v in enumerate(["45123", "51000", "garbage", "-273000"]):
        d = tmp_path / f"thermal_zone{i}"
        d.mkdir()
        (d / "temp").write_text(v + "\n")
    assert read_temperature(str(tmp_path / "thermal_zone*/temp")) == 51.0
    assert read_temperature(str(tmp_path / "none*/temp")) is None


def test_cpu_meter(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3\n")
    m = CpuMeter(str(stat))
    assert m.percent() is None  # no time passed
    stat.write_text("cpu  150 0 150 900 0 0 0 0 0 0\n")
    assert m.percent() == 50.0
    assert CpuMeter(str(tmp_path / "missing")).percent() is None


def test_watchdog_is_fed_only_while_capture_makes_progress(tmp_path, monkeypatch):
    from test_daemon import _cfg, _opts, fake_engines

    import appliance.ops.daemon as daemon_mod

    class Recorder:
        def __init__(self):
            self.sent: list[tuple[float, str]] = []

        def _add(self, what):
            self.sent.append((time.monotonic(), what))
            return True

        def ready(self, status=""):
            return self._add("READY")

        def status(self, text):
            return True

        def watchdog(self):
            return self._add("WATCHDOG")

        def stopping(self, status=""):
            return self._add("STOPPING")

        def close(self):
            pass

    gate = threading.Event()
    gate.set()

    class Gated:
        sample_rate = 16000
        overruns = 0

        def __init__(self):
            self.closed = False

        def chunks(self):
            import numpy as np

            z = np.zeros(320, np.float32)
            while not self.closed:
                gate.wait()
                time.sleep(0.002)
                yield {"agent": z, "customer": z}

        def close(self):
            self.closed = True
            gate.set()

    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # ping every 0.05 s
    monkeypatch.setattr(daemon_mod, "STALL_S", 0.3)
    rec = Recorder()
    d = daemon_mod.Daemon(
        _cfg(tmp_path),
        engines=fake_engines(),
        source_factory=lambda p: Gated(),
        options=_opts(),
        notifier=rec,
    )
    d.start()
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    try:
        time.sleep(0.5)
        assert [w for w in rec.sent if w[1] == "WATCHDOG"], "no watchdog while healthy"
        gate.clear()  # the device stops delivering: capture thread stalls
        time.sleep(0.6)
        stalled_at = time.monotonic()
        time.sleep(0.5)
        assert not [w for w in rec.sent if w[1] == "WATCHDOG" and w[0] > stalled_at]
        assert not d.healthy()
        gate.set()
        time.sleep(0.4)
        assert [w for w in rec.sent if w[1] == "WATCHDOG" and w[0] > stalled_at + 0.5]
    finally:
        d.stop_event.set()
        gate.set()
        t.join(5)
        d.stop()
    kinds = [w[1] for w in rec.sent]
    assert kinds[0] == "READY" and kinds[-1] == "STOPPING"
