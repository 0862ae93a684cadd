"""Benchmark of the feature frontend against librosa and openSMILE (dev tool).

``python -m appliance.tools.bench_features [--json]`` (wired as ``appliance bench features``).
Single-threaded, CPU time (``time.process_time``), each figure the median of >= 5 runs after
a warm-up call, on 60 s of 16 kHz speech (shared RAVDESS/LibriVox clips when ``../shared``
exists, otherwise a synthetic speech-like signal). librosa and opensmile are imported lazily
and only here: neither is a runtime dependency.
"""

from __future__ import annotations

import os

# Single thread for every numeric library; must happen before numpy/numba load.
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from appliance.tools import SHARED_DATA  # noqa: E402

SR = 16000
DURATION_S = 60.0
RUNS = 7
SHARED = SHARED_DATA


def speech_signal(duration_s: float = DURATION_S, sr: int = SR) -> tuple[np.ndarray, str]:
    """60 s of speech: shared clips concatenated, else a synthetic voiced/unvoiced signal."""
    n = int(duration_s * sr)
    files = sorted((SHARED / "speech" / "librivox").glob("*.wav")) if SHARED.exists() else []
    files += sorted((SHARED / "ravdess").glob("Actor_*/*.flac"))[::7] if SHARED.exists() else []
    if files:
        import soundfile as sf

        parts, total = [], 0
        for f in files:
            y, fsr = sf.read(str(f), dtype="float32", always_2d=True)
            if fsr != sr:
                continue
            parts.append(y[:, 0])
            total += y.shape[0]
            if total >= n:
                break
        if total >= n:
            return np.concatenate(parts)[:n].copy(), f"{len(parts)} shared speech clips"
    return synthetic_speech(duration_s, sr), "synthetic speech-like signal"


def synthetic_speech(duration_s: float = DURATION_S, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Glottal pulse trains with wandering f0 through two formant resonators, noise bursts, pauses."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * sr)
    out = np.zeros(n, dtype=np.float64)
    pos = 0
    while pos < n:
        seg = int(sr * rng.uniform(0.08, 0.35))
        kind = rng.choice(["voiced", "voiced", "noise", "pause"])
        if kind == "voiced":
            f0 = rng.uniform(90, 250) * (1 + 0.1 * np.sin(np.linspace(0, rng.uniform(1, 4), seg)))
            phase = np.cumsum(f0 / sr)
            src = (np.diff(np.floor(phase), prepend=0.0) > 0).astype(np.float64)
            for fc, bw in ((rng.uniform(300, 900), 80.0), (rng.uniform(900, 2500), 120.0)):
                r = np.exp(-np.pi * bw / sr)
                a1, a2 = 2 * r * np.cos(2 * np.pi * fc / sr), -r * r
                y = np.zeros(seg)
                for i in range(seg):  # tiny 2-pole resonator; speed irrelevant here
                    y[i] = src[i] + a1 * (y[i - 1] if i else 0) + a2 * (y[i - 2] if i > 1 else 0)
                src = y
            x = src / (np.abs(src).max() + 1e-9) * rng.uniform(0.1, 0.5)
        elif kind == "noise":
            x = rng.standard_normal(seg) * rng.uniform(0.01, 0.05)
        else:
            x = rng.standard_normal(seg) * 1e-4
        m = min(seg, n - pos)
        out[pos : pos + m] = x[:m]
        pos += m
    return out.astype(np.float32)


def cpu_medians(jobs: dict[str, Callable[[], object]], runs: int = RUNS) -> dict[str, float]:
    """Median CPU seconds per job over ``runs`` rounds, after one warm-up call each.

    Rounds are interleaved (every job once per round) so that load from other processes on a
    shared machine hits ours and the peers alike; the ratios are then fair within one run.
    """
    for fn in jobs.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in jobs}
    for _ in range(runs):
        for k, fn in jobs.items():
            t0 = time.process_time()
            fn()
            times[k].append(time.process_time() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _cold_start(cache_dir: str) -> float:
    code = (
        "import time; t=time.perf_counter();"
        "from appliance.features import set_cache_dir, warm_up;"
        f"set_cache_dir({cache_dir!r}); warm_up(); print(time.perf_counter()-t)"
    )
    env = dict(os.environ)
    env.pop("NUMBA_CACHE_DIR", None)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=root
    )
    return float(res.stdout.strip().splitlines()[-1])


def cold_start() -> dict[str, float]:
    """Wall seconds for import + warm_up() in a fresh process: empty vs populated cache."""
    with tempfile.TemporaryDirectory() as d:
        cold = _cold_start(d)
        warm = statistics.median(_cold_start(d) for _ in range(3))
    return {"cold_empty_cache_s": cold, "cold_warm_cache_s": warm}


def run(as_json: bool = False) -> dict:
    """Run every measurement; print a table (or JSON) and return the figures."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    from appliance.features import FeatureStream, functionals, log_mel, warm_up, yin_pitch

    warm_up()
    x, source = speech_signal()
    dur = x.size / SR
    res: dict = {"audio": source, "duration_s": dur, "sr": SR, "runs": RUNS}

    def stream() -> None:
        st = FeatureStream(SR)
        step = SR // 50  # 20 ms chunks
        for i in range(0, x.size, step):
            st.push(x[i : i + step])
        st.flush()

    chunks = [x[i : i + 4 * SR] for i in range(0, x.size, 4 * SR)]  # utterance-sized
    jobs: dict[str, Callable[[], object]] = {
        "ours_log_mel": lambda: log_mel(x, SR),
        "ours_log_mel_stream_20ms": stream,
        "ours_yin": lambda: yin_pitch(x, SR),
        "ours_functionals": lambda: [functionals(c, SR) for c in chunks],
    }
    try:
        import librosa

        kw = {"n_fft": 512, "hop_length": 160, "win_length": 400}
        jobs["librosa_melspectrogram"] = lambda: librosa.feature.melspectrogram(
            y=x, sr=SR, n_mels=40, power=2.0, **kw
        )
        yin_kw = {"fmin": 65, "fmax": 400, "sr": SR, "frame_length": 512, "hop_length": 160}
        jobs["librosa_yin"] = lambda: librosa.yin(x, **yin_kw)
        ref = librosa.yin(x, **yin_kw)
        f0 = yin_pitch(x, SR)
        v = f0 > 0
        agree = float(np.mean(np.abs(f0[v] / ref[v] - 1.0) < 0.05)) if v.any() else 0.0
        res["yin_agreement_5pct"] = agree
        res["yin_voiced_fraction"] = float(v.mean())
    except ImportError:
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import opensmile

            smile = opensmile.Smile(
                feature_set=opensmile.FeatureSet.eGeMAPSv02,
                feature_level=opensmile.FeatureLevel.Functionals,
            )

        def egemaps() -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for c in chunks:
                    smile.process_signal(c, SR)

        jobs["opensmile_egemaps"] = egemaps
    except ImportError:
        pass
    rate = {k: dur / v for k, v in cpu_medians(jobs).items()}
    res["audio_s_per_cpu_s"] = rate
    ratios = {}
    for ours, peer in (
        ("ours_log_mel", "librosa_melspectrogram"),
        ("ours_log_mel_stream_20ms", "librosa_melspectrogram"),
        ("ours_yin", "librosa_yin"),
        ("ours_functionals", "opensmile_egemaps"),
    ):
        if peer in rate:
            ratios[f"{ours}/{peer}"] = rate[ours] / rate[peer]
    res["ratios"] = ratios
    res["numba_start"] = cold_start()
    if as_json:
        print(json.dumps(res, indent=2))
    else:
        print(f"audio: {source}, {dur:.0f} s at {SR} Hz; CPU time, median of {RUNS}, 1 thread")
        print(f"{'workload':34s} {'audio-s per CPU-s':>18s}")
        for k, v in rate.items():
            print(f"{k:34s} {v:18.0f}")
        for k, v in ratios.items():
            print(f"ratio {k:44s} {v:6.2f}x")
        if "yin_agreement_5pct" in res:
            print(
                f"YIN: {100 * res['yin_agreement_5pct']:.1f} % of our voiced frames within 5 % "
                f"of librosa.yin ({100 * res['yin_voiced_fraction']:.0f} % frames voiced)"
            )
        ns = res["numba_start"]
        print(
            f"numba start (import + warm_up, fresh process): empty cache {ns['cold_empty_cache_s']:.2f} s, "
            f"warm cache {ns['cold_warm_cache_s']:.2f} s"
        )
    return res


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: ``appliance bench features [--json]``."""
    p = argparse.ArgumentParser(prog="appliance bench features", description=__doc__)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    run(as_json=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
