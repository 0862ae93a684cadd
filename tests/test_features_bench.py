"""Smoke tests for the feature benchmark helpers (the full run takes minutes)."""

from __future__ import annotations

import numpy as np

from appliance.tools import bench_features


def test_synthetic_speech_is_speech_like() -> None:
    from appliance.features import yin_pitch

    x = bench_features.synthetic_speech(3.0)
    assert x.dtype == np.float32 and x.size == 48000 and np.isfinite(x).all()
    voiced = np.mean(yin_pitch(x, 16000) > 0)
    assert 0.2 < voiced < 0.8


def test_cpu_medians_runs_every_job() -> None:
    calls = {"a": 0, "b": 0}

    def job(k: str):  # type: ignore[no-untyped-def]
        def run() -> None:
            calls[k] += 1

        return run

    out = bench_features.cpu_medians({"a": job("a"), "b": job("b")}, runs=5)
    assert set(out) == {"a", "b"} and all(v >= 0 for v in out.values())
    assert calls == {"a": 6, "b": 6}  # warm-up + 5 rounds


def test_speech_signal_length() -> None:
    x, source = bench_features.speech_signal(2.0)
    assert x.size == 32000 and x.dtype == np.float32 and source
