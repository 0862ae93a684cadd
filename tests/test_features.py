"""Feature frontend: numpy/librosa references, streaming == batch, validation, warm-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from appliance.features import (
    FUNCTIONAL_NAMES,
    FeatureError,
    FeatureStream,
    functionals,
    log_mel,
    mfcc,
    set_cache_dir,
    warm_up,
    yin_pitch,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RAVDESS = sorted((SHARED / "ravdess").glob("Actor_*/*.flac")) if SHARED.exists() else []
needs_shared = pytest.mark.skipif(not RAVDESS, reason="needs ../shared/data/ravdess")


def tone(f0: float, sr: int, dur: float = 1.0, harmonics: int = 3) -> np.ndarray:
    t = np.arange(int(sr * dur)) / sr
    x = sum(0.3 / h * np.sin(2 * np.pi * h * f0 * t + h) for h in range(1, harmonics + 1))
    return np.asarray(x, dtype=np.float32)


def speech(i: int = 5) -> np.ndarray:
    import soundfile as sf

    x, sr = sf.read(str(RAVDESS[i]), dtype="float32")
    assert sr == 16000
    return x


def noise(n: int, seed: int = 0, scale: float = 0.1) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


# --------------------------------------------------------------------- numpy references
def ref_mel_filterbank(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney mel filterbank written from the definition (librosa htk=False, norm='slaney')."""

    def hz2mel(f):
        f = np.asarray(f, float)
        lin = 3.0 * f / 200.0
        return np.where(
            f >= 1000, 15.0 + 27.0 * np.log(np.maximum(f, 1e-9) / 1000) / np.log(6.4), lin
        )

    def mel2hz(m):
        m = np.asarray(m, float)
        return np.where(m >= 15.0, 1000 * np.exp((m - 15.0) * np.log(6.4) / 27.0), 200.0 * m / 3.0)

    edges = mel2hz(np.linspace(hz2mel(0), hz2mel(sr / 2), n_mels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    fb = np.zeros((n_mels, freqs.size))
    for i in range(n_mels):
        lo, c, hi = edges[i : i + 3]
        fb[i] = np.maximum(0, np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)))
        fb[i] *= 2.0 / (hi - lo)
    return fb


def ref_log_mel(x: np.ndarray, sr: int, n_mels: int = 40) -> np.ndarray:
    n_fft, hop, win = sr // 8000 * 256, sr // 100, sr // 40
    w = np.zeros(n_fft)
    w[(n_fft - win) // 2 : (n_fft - win) // 2 + win] = 0.5 - 0.5 * np.cos(
        2 * np.pi * np.arange(win) / win
    )
    xp = np.pad(x.astype(float), n_fft // 2)
    frames = np.stack([xp[i * hop : i * hop + n_fft] for i in range(1 + x.size // hop)])
    p = np.abs(np.fft.rfft(frames * w, axis=1)) ** 2
    return np.log(p @ ref_mel_filterbank(sr, n_fft, n_mels).T + 1e-10)


def ref_yin_period(x: np.ndarray, sr: int, fmin: float = 65, fmax: float = 400) -> np.ndarray:
    """Direct-form YIN with the module's geometry (window 2 hops, centred span), in float64."""
    hop = sr // 100
    w = 2 * hop
    tmin, tmax = int(np.floor(sr / fmax)), int(np.ceil(sr / fmin))
    left = (w + tmax) // 2
    xp = np.zeros(left + x.size + w + tmax + 1)
    xp[left : left + x.size] = x
    out = np.zeros(1 + x.size // hop)
    for i in range(out.size):
        s = i * hop
        seg = xp[s : s + w]
        d = np.array([np.sum((seg - xp[s + t : s + t + w]) ** 2) for t in range(tmax + 1)])
        if np.sum(seg**2) <= 1e-10:
            continue
        cm = np.ones(tmax + 1)
        acc = np.cumsum(d[1:])
        cm[1:] = np.where(acc > 0, d[1:] * np.arange(1, tmax + 1) / np.maximum(acc, 1e-300), 1.0)
        best = -1
        for t in range(tmin, tmax + 1):
            left_ok = t == tmin or cm[t] < cm[t - 1]
            right_ok = t == tmax or cm[t] <= cm[t + 1]
            if cm[t] < 0.1 and left_ok and right_ok:
                best = t
                break
        if best < 0:  # no dip below 0.1: first local minimum within 0.05 of the global one
            g = tmin + int(np.argmin(cm[tmin:]))
            best = g
            for t in range(tmin, g):
                if (t == tmin or cm[t] < cm[t - 1]) and cm[t] <= cm[t + 1] and cm[t] < cm[g] + 0.05:
                    best = t
                    break
        shift = 0.0
        if 1 < best < tmax:
            a = cm[best + 1] + cm[best - 1] - 2 * cm[best]
            b = (cm[best + 1] - cm[best - 1]) / 2
            if abs(b) < abs(a):
                shift = -b / a
        out[i] = best + shift
    return out


# ------------------------------------------------------------------------------ log-mel
def assert_log_close(ours: np.ndarray, ref: np.ndarray, atol: float = 1e-3) -> None:
    """Tight where a band is within 65 dB (15 nepers) of its frame's peak, loose below.

    float32 FFT round-off (ours and librosa's) is relative to the frame energy, so bands
    far below the frame peak carry a relative error that float64 references do not have.
    """
    assert ours.shape == ref.shape
    strong = ref > ref.max(axis=1, keepdims=True) - 15.0
    np.testing.assert_allclose(ours[strong], ref[strong], atol=atol, rtol=0)
    np.testing.assert_allclose(ours, ref, atol=0.05, rtol=0)


@pytest.mark.parametrize("sr", [8000, 16000])
def test_log_mel_matches_numpy_reference(sr: int) -> None:
    x = np.concatenate([tone(180, sr, 0.5), noise(sr // 2, scale=0.05)])
    ours = log_mel(x, sr)
    ref = ref_log_mel(x, sr)
    assert ours.dtype == np.float32 and ours.shape == ref.shape == (1 + x.size // (sr // 100), 40)
    assert_log_close(ours, ref)


@pytest.mark.parametrize("sr", [8000, 16000])
@pytest.mark.parametrize("n_mels", [40, 64])
def test_log_mel_and_mfcc_match_librosa(sr: int, n_mels: int) -> None:
    librosa = pytest.importorskip("librosa")
    x = np.concatenate([tone(140, sr, 0.4), noise(sr // 3, 1, 0.02), tone(260, sr, 0.3)])
    n_fft = 512 if sr == 16000 else 256
    mel = librosa.feature.melspectrogram(
        y=x, sr=sr, n_fft=n_fft, hop_length=sr // 100, win_length=sr // 40, n_mels=n_mels, power=2.0
    )
    ref = np.log(mel + 1e-10).T
    ours = log_mel(x, sr, n_mels=n_mels)
    assert_log_close(ours, ref)
    ref_mfcc = librosa.feature.mfcc(S=np.log(mel + 1e-10), n_mfcc=13, dct_type=2, norm="ortho").T
    np.testing.assert_allclose(mfcc(x, sr, n_mels=n_mels), ref_mfcc, atol=5e-3)


def test_preemphasis_is_first_difference() -> None:
    x = noise(4000, 3)
    y = x.copy()
    y[1:] = x[1:] - np.float32(0.97) * x[:-1]
    np.testing.assert_allclose(log_mel(x, 16000, preemphasis=0.97), log_mel(y, 16000), atol=1e-5)


# ---------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("sr", [8000, 16000])
@pytest.mark.parametrize("preemphasis", [0.0, 0.97])
def test_stream_equals_batch(sr: int, preemphasis: float) -> None:
    rng = np.random.default_rng(sr)
    x = np.concatenate([tone(120, sr, 0.7), noise(sr // 2, 2), np.zeros(123, np.float32)])
    batch = log_mel(x, sr, preemphasis=preemphasis)
    for sizes in ([sr // 50], [sr // 100], [1, 7, 333], [5000]):  # 20 ms, 10 ms, odd, long
        st = FeatureStream(sr, preemphasis=preemphasis)
        parts, i, j = [], 0, 0
        while i < x.size:
            n = sizes[j % len(sizes)] if len(sizes) < 3 else int(rng.integers(1, 700))
            parts.append(st.push(x[i : i + n].astype(np.float64 if j % 2 else np.float32)))
            i += n
            j += 1
        parts.append(st.flush())
        got = np.concatenate(parts)
        assert got.shape == batch.shape
        np.testing.assert_allclose(got, batch, atol=1e-4, rtol=0)


def test_stream_latency_reset_and_errors() -> None:
    sr = 16000
    st = FeatureStream(sr)
    assert st.push(np.zeros(0, np.float32)).shape == (0, 40)
    # frame t needs samples up to t*hop + n_fft//2: 256 samples give frame 0 only
    assert st.push(noise(255)).shape[0] == 0
    assert st.push(noise(1)).shape[0] == 1
    with pytest.raises(FeatureError, match="NaN"):
        st.push(np.array([0.0, np.nan], np.float32))
    with pytest.raises(FeatureError, match="NaN"):
        st.push(np.array([1e12]))
    with pytest.raises(FeatureError, match="float32 or float64"):
        st.push(np.zeros(10, np.int16))
    st.flush()  # resets: a new signal gives the batch result again
    x = noise(3000, 4)
    got = np.concatenate([st.push(x), st.flush()])
    np.testing.assert_allclose(got, log_mel(x, sr), atol=1e-4)
    assert FeatureStream(8000).flush().shape == (0, 40)


# ---------------------------------------------------------------------------------- YIN
@pytest.mark.parametrize("sr", [8000, 16000])
@pytest.mark.parametrize("f0", [70.0, 110.0, 165.0, 247.0, 330.0, 395.0])
def test_yin_tones(sr: int, f0: float) -> None:
    est = yin_pitch(tone(f0, sr), sr)
    assert est.dtype == np.float32 and est.shape == (1 + sr // (sr // 100),)
    inner = est[3:-3]
    assert np.all(inner > 0), "steady tone must be voiced"
    assert np.all(np.abs(inner / f0 - 1) < 0.01)


@pytest.mark.parametrize("sr", [8000, 16000])
def test_yin_matches_direct_numpy_reference(sr: int) -> None:
    x = np.concatenate([tone(150, sr, 0.3), noise(sr // 5, 5, 0.05), tone(220, sr, 0.3) * 0.1])
    ours = yin_pitch(x, sr)
    period = ref_yin_period(x, sr)
    v = ours > 0
    assert v.sum() > 40
    np.testing.assert_allclose(ours[v], sr / period[v], rtol=2e-3)


def test_yin_voicing_noise_and_silence() -> None:
    for sr in (8000, 16000):
        assert np.all(yin_pitch(np.zeros(sr, np.float32), sr) == 0)
        assert np.mean(yin_pitch(noise(sr, 6), sr) > 0) < 0.1
        quiet = tone(200, sr) * np.float32(1e-5)  # -100 dBFS: below the silence floor
        assert np.all(yin_pitch(quiet, sr) == 0)


@needs_shared
def test_yin_agrees_with_librosa_on_speech() -> None:
    librosa = pytest.importorskip("librosa")
    agree, voiced = [], []
    for i in range(0, len(RAVDESS), 120):
        x = speech(i)
        ours = yin_pitch(x, 16000)
        ref = librosa.yin(x, fmin=65, fmax=400, sr=16000, frame_length=512, hop_length=160)
        v = ours > 0
        agree.append(np.abs(ours[v] / ref[v] - 1) < 0.05)
        voiced.append(v.mean())
    assert np.mean(np.concatenate(agree)) > 0.93  # measured 0.96-0.97
    assert 0.15 < np.mean(voiced) < 0.6


@needs_shared
def test_yin_telephone_band_matches_wideband() -> None:
    """G.711-like channel: 300-3400 Hz band-pass at 8 kHz; pitch must survive the lost fundamental."""
    scipy_signal = pytest.importorskip("scipy.signal")
    agree, kept = [], []
    for i in range(3, len(RAVDESS), 150):
        x = speech(i)
        wide = yin_pitch(x, 16000)
        sos = scipy_signal.butter(6, [300, 3400], btype="bandpass", fs=16000, output="sos")
        tel = scipy_signal.sosfiltfilt(sos, x)[::2].astype(
            np.float32
        )  # band-limited: safe decimation
        narrow = yin_pitch(tel, 8000)
        n = min(wide.size, narrow.size)
        both = (wide[:n] > 0) & (narrow[:n] > 0)
        agree.append(np.abs(narrow[:n][both] / wide[:n][both] - 1) < 0.05)
        kept.append(both.sum() / max(1, (wide > 0).sum()))
    assert np.mean(np.concatenate(agree)) > 0.85  # measured 0.88-0.90
    assert np.mean(kept) > 0.7


# -------------------------------------------------------------------------- functionals
@pytest.mark.parametrize(
    "x",
    [
        np.zeros(16000, np.float32),
        np.zeros(1, np.float32),
        noise(7, 7),
        noise(16000, 8),
        np.full(8000, 0.5, np.float32),
        np.clip(tone(200, 16000) * 10, -1, 1),
        tone(200, 16000, 0.02),
    ],
    ids=["silence", "one-sample", "7-samples", "noise", "dc", "clipped", "20ms"],
)
@pytest.mark.parametrize("sr", [8000, 16000])
def test_functionals_finite_and_named(x: np.ndarray, sr: int) -> None:
    f = functionals(x, sr)
    assert list(f) == list(FUNCTIONAL_NAMES)
    assert all(isinstance(v, float) and np.isfinite(v) for v in f.values())


def test_functionals_values() -> None:
    sr = 16000
    silence = functionals(np.zeros(sr, np.float32), sr)
    assert silence["f0_st_mean"] == 0.0 and silence["voiced_segments_per_sec"] == 0.0
    assert silence["equivalent_sound_level_db"] == -100.0
    f = functionals(tone(220, sr, 2.0), sr)
    assert f["f0_st_mean"] == pytest.approx(12 * np.log2(220 / 27.5), abs=0.1)
    assert f["f0_st_range_20_80"] < 0.1 and f["hnr_db"] > 20
    assert f["voiced_segments_per_sec"] == pytest.approx(0.5)
    loud = functionals(tone(220, sr, 2.0) * 2, sr)
    assert loud["equivalent_sound_level_db"] - f["equivalent_sound_level_db"] == pytest.approx(
        6.02, abs=0.01
    )
    assert loud["loudness_mean"] > f["loudness_mean"]
    assert len(set(FUNCTIONAL_NAMES)) == len(FUNCTIONAL_NAMES)


# openSMILE eGeMAPSv02 functional <- ours, and the Pearson r we require (measured on 80
# RAVDESS clips: see docs/features.md; thresholds leave ~0.05-0.1 of margin).
EGEMAPS = {
    "f0_st_mean": ("F0semitoneFrom27.5Hz_sma3nz_amean", 0.95),
    "f0_st_p20": ("F0semitoneFrom27.5Hz_sma3nz_percentile20.0", 0.93),
    "f0_st_p50": ("F0semitoneFrom27.5Hz_sma3nz_percentile50.0", 0.95),
    "f0_st_p80": ("F0semitoneFrom27.5Hz_sma3nz_percentile80.0", 0.95),
    "f0_st_range_20_80": ("F0semitoneFrom27.5Hz_sma3nz_pctlrange0-2", 0.8),
    "loudness_mean": ("loudness_sma3_amean", 0.95),
    "loudness_p20": ("loudness_sma3_percentile20.0", 0.9),
    "loudness_p50": ("loudness_sma3_percentile50.0", 0.93),
    "loudness_p80": ("loudness_sma3_percentile80.0", 0.95),
    "loudness_range_20_80": ("loudness_sma3_pctlrange0-2", 0.95),
    "loudness_rising_slope_mean": ("loudness_sma3_meanRisingSlope", 0.75),
    "loudness_falling_slope_mean": ("loudness_sma3_meanFallingSlope", 0.75),
    "jitter_local": ("jitterLocal_sma3nz_amean", 0.2),
    "shimmer_local_db": ("shimmerLocaldB_sma3nz_amean", 0.35),
    "hnr_db": ("HNRdBACF_sma3nz_amean", 0.7),
    "spectral_slope_0_500": ("slopeV0-500_sma3nz_amean", 0.9),
    "spectral_slope_500_1500": ("slopeV500-1500_sma3nz_amean", 0.7),
    "alpha_ratio_db": ("alphaRatioV_sma3nz_amean", -0.9),  # opposite sign convention
    "hammarberg_db": ("hammarbergIndexV_sma3nz_amean", 0.9),
    "spectral_flux_mean": ("spectralFlux_sma3_amean", 0.95),
    "mfcc1_mean": ("mfcc1_sma3_amean", 0.95),
    "mfcc2_mean": ("mfcc2_sma3_amean", 0.95),
    "mfcc3_mean": ("mfcc3_sma3_amean", 0.93),
    "mfcc4_mean": ("mfcc4_sma3_amean", 0.93),
    "voiced_segments_per_sec": ("VoicedSegmentsPerSec", 0.6),
    "voiced_segment_mean_s": ("MeanVoicedSegmentLengthSec", 0.75),
    "unvoiced_segment_mean_s": ("MeanUnvoicedSegmentLength", 0.6),
    "loudness_peaks_per_sec": ("loudnessPeaksPerSec", 0.65),
    "equivalent_sound_level_db": ("equivalentSoundLevel_dBp", 0.99),
}


@needs_shared
@pytest.mark.slow
def test_functionals_correlate_with_opensmile() -> None:
    import warnings

    with warnings.catch_warnings():  # opensmile/audinterface emit third-party warnings
        warnings.simplefilter("ignore")
        opensmile = pytest.importorskip("opensmile")
        smile = opensmile.Smile(
            feature_set=opensmile.FeatureSet.eGeMAPSv02,
            feature_level=opensmile.FeatureLevel.Functionals,
        )
        ours, theirs = [], []
        for path in RAVDESS[::15][:80]:
            x = speech(RAVDESS.index(path))
            ours.append(functionals(x, 16000))
            theirs.append(smile.process_signal(x, 16000).iloc[0].to_dict())
    failures = []
    for name, (ref, want) in EGEMAPS.items():
        r = np.corrcoef([o[name] for o in ours], [t[ref] for t in theirs])[0, 1]
        if (want > 0 and r < want) or (want < 0 and r > want):
            failures.append(f"{name} vs {ref}: r={r:.3f}, want {'>' if want > 0 else '<'} {want}")
    assert not failures, "\n".join(failures)


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("x", "sr", "match"),
    [
        (np.array([0.0, np.nan], np.float32), 16000, "NaN"),
        (np.array([0.0, np.inf]), 16000, "NaN or infinite"),
        (np.array([0.0, 1e12], np.float32), 16000, "exceeds"),
        (np.zeros(0, np.float32), 16000, "empty"),
        (np.zeros((2, 100), np.float32), 16000, "1-D"),
        (np.zeros(100, np.int16), 16000, "float32 or float64"),
        (np.zeros(100, np.float16), 16000, "float32 or float64"),
        ([0.0] * 100, 16000, "ndarray"),
        (np.zeros(100, np.float32), 44100, "8000 or 16000"),
        (np.zeros(100, np.float32), 16000.0, "8000 or 16000"),
        (np.zeros(100, np.float32), True, "8000 or 16000"),
    ],
)
def test_validation(x: object, sr: object, match: str) -> None:
    for fn in (log_mel, mfcc, yin_pitch, functionals):
        with pytest.raises(FeatureError, match=match):
            fn(x, sr)  # type: ignore[arg-type]
    assert issubclass(FeatureError, ValueError)


def test_parameter_validation() -> None:
    x = noise(1000)
    with pytest.raises(FeatureError):
        log_mel(x, 16000, n_mels=0)
    with pytest.raises(FeatureError):
        log_mel(x, 16000, preemphasis=1.5)
    with pytest.raises(FeatureError):
        mfcc(x, 16000, n_mfcc=41)
    with pytest.raises(FeatureError):
        yin_pitch(x, 8000, fmin=65, fmax=5000)
    with pytest.raises(FeatureError):
        FeatureStream(22050)


# --------------------------------------------------------------------- warm-up and cache
def test_warm_up_compiles_everything() -> None:
    from appliance.features import _common

    warm_up()
    before = {id(d): len(d.signatures) for d in _common._DISPATCHERS}
    for sr in (8000, 16000):
        for dt in (np.float32, np.float64):
            x = noise(sr, 9).astype(dt)
            log_mel(x, sr, n_mels=40)
            mfcc(x, sr)
            yin_pitch(x, sr)
            functionals(x, sr)
            st = FeatureStream(sr)
            st.push(x[: sr // 50])
            st.push(x)
            st.flush()
    after = {id(d): len(d.signatures) for d in _common._DISPATCHERS}
    assert before == after, "a public call compiled a new kernel specialisation after warm_up()"
    with pytest.raises(RuntimeError):
        set_cache_dir("/tmp/unused")


def test_set_cache_dir_in_fresh_process(tmp_path: Path) -> None:
    code = (
        "import sys, numpy as np\n"
        "from appliance.features import set_cache_dir\n"
        "from appliance.features import _fft\n"
        "set_cache_dir(sys.argv[1])\n"
        "rev, twr, twi, pwr, pwi = _fft.rfft_tables(16)\n"
        "re = np.zeros(8); im = np.zeros(8); p = np.zeros(9)\n"
        "_fft.rfft_power_1(re, im, pwr, pwi, p)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, cwd=ROOT, timeout=120)
    assert list(tmp_path.rglob("*.nbi")), "numba index file not written to the configured cache dir"


# --------------------------------------------------------------------- property-based
hypothesis = pytest.importorskip("hypothesis")
st_ = pytest.importorskip("hypothesis.strategies")


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(
    sizes=st_.lists(st_.integers(min_value=0, max_value=900), min_size=1, max_size=12),
    sr=st_.sampled_from([8000, 16000]),
    seed=st_.integers(0, 2**16),
)
def test_stream_any_partition(sizes: list[int], sr: int, seed: int) -> None:
    x = noise(sum(sizes) + 1, seed)
    st = FeatureStream(sr, preemphasis=0.5)
    parts, i = [], 0
    for n in sizes + [1]:
        parts.append(st.push(x[i : i + n]))
        i += n
    parts.append(st.flush())
    np.testing.assert_allclose(
        np.concatenate(parts), log_mel(x, sr, preemphasis=0.5), atol=1e-4, rtol=0
    )


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(
    n=st_.integers(1, 24000),
    log_scale=st_.floats(-12, 6),
    kind=st_.sampled_from(["noise", "tone", "impulses", "square"]),
    sr=st_.sampled_from([8000, 16000]),
    seed=st_.integers(0, 2**16),
)
def test_functionals_finite_property(
    n: int, log_scale: float, kind: str, sr: int, seed: int
) -> None:
    """Finite, warning-free (pytest turns RuntimeWarnings into errors) for arbitrary input."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    if kind == "noise":
        x = rng.standard_normal(n)
    elif kind == "tone":
        x = np.sin(2 * np.pi * rng.uniform(60, 500) * t)
    elif kind == "impulses":
        x = (rng.random(n) < 0.01).astype(float)
    else:
        x = np.sign(np.sin(2 * np.pi * rng.uniform(60, 500) * t))
    x = (x * 10.0**log_scale).astype(np.float32)
    f = functionals(x, sr)
    assert all(np.isfinite(v) for v in f.values())
    assert np.isfinite(log_mel(x, sr)).all() and np.isfinite(yin_pitch(x, sr)).all()
