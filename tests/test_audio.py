import struct
import subprocess
import sys
import wave

import numpy as np
import pytest

from appliance.capture.wav import AudioError, open_wav, read_wav, to_pipeline_rate, write_wav


@pytest.mark.parametrize("sr", [8000, 16000, 44100, 48000])
@pytest.mark.parametrize("n_channels", [1, 2])
def test_round_trip(tmp_path, sr, n_channels):
    t = np.arange(sr // 2) / sr
    chans = [
        0.5 * np.sin(2 * np.pi * 440 * (i + 1) * t).astype(np.float32) for i in range(n_channels)
    ]
    p = tmp_path / "x.wav"
    write_wav(p, chans, sr)
    rec = read_wav(p)
    assert rec.sample_rate == sr and len(rec.channels) == n_channels
    for a, b in zip(rec.channels, chans, strict=True):
        assert np.max(np.abs(a - b)) < 1e-3
    x, out_sr = to_pipeline_rate(rec.channels[0], sr)
    assert out_sr in (8000, 16000)
    assert abs(len(x) / out_sr - 0.5) < 0.01


def test_corrupt_and_unsupported_files_are_refused(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    with pytest.raises(AudioError, match="corrupt: chunk 'fmt' at byte 12 runs past the end"):
        read_wav(junk)
    with wave.open(str(tmp_path / "rate.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(11025)
        w.writeframes(b"\x00\x00" * 1000)
    with pytest.raises(AudioError, match="sample rate 11025"):
        read_wav(tmp_path / "rate.wav")
    good = tmp_path / "good.wav"
    write_wav(good, [np.zeros(16000, np.float32)], 16000)
    truncated = tmp_path / "trunc.wav"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(AudioError, match="truncated"):
        read_wav(truncated)
    with pytest.raises(AudioError, match="no such file"):
        read_wav(tmp_path / "none.wav")


def test_analyze_refuses_corrupt_file_and_writes_nothing(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all")
    db = tmp_path / "out.db"
    r = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "analyze", str(junk), "--db", str(db), "--json"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "junk.wav" in r.stderr
    assert not db.exists()


# -- WAV variants through libsndfile ------------------------------------------------------------


def _tone(sr: int, seconds: float = 0.5, n_channels: int = 2) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return np.stack(
        [0.5 * np.sin(2 * np.pi * 300 * (i + 1) * t) for i in range(n_channels)], axis=1
    ).astype(np.float32)


@pytest.mark.parametrize(
    ("fmt", "subtype", "tolerance"),
    [
        ("WAVEX", "PCM_16", 1e-4),  # WAVE_FORMAT_EXTENSIBLE: `wave` said "unknown format: 65534"
        ("WAVEX", "PCM_24", 1e-6),
        ("WAV", "PCM_24", 1e-6),
        ("WAV", "PCM_32", 1e-6),
        ("WAV", "FLOAT", 1e-7),
        ("WAV", "PCM_U8", 1e-2),
        ("WAV", "ULAW", 3e-2),  # G.711 recordings from a telephone system
    ],
)
def test_wav_encodings_decode(tmp_path, fmt, subtype, tolerance):
    import soundfile as sf

    x = _tone(16000)
    p = tmp_path / "x.wav"
    sf.write(p, x, 16000, format=fmt, subtype=subtype)
    wav = open_wav(p)
    assert (wav.n_channels, wav.sample_rate, wav.frames) == (2, 16000, len(x))
    rec = read_wav(p)
    for i in range(2):
        assert np.max(np.abs(rec.channels[i] - x[:, i])) < tolerance


def test_sox_24_bit_output_is_read(tmp_path):
    """sox writes 24-bit WAV as WAVE_FORMAT_EXTENSIBLE (the README has always promised 24-bit)."""
    import shutil

    if shutil.which("sox") is None:
        pytest.skip("sox is not installed")
    p = tmp_path / "sox24.wav"
    subprocess.run(
        ["sox", "-n", "-b", "24", "-r", "48000", "-c", "2", str(p), "synth", "1", "sine", "440"],
        check=True,
    )
    assert p.read_bytes()[20:22] == b"\xfe\xff"  # format tag 0xFFFE: extensible
    rec = read_wav(p)
    assert rec.sample_rate == 48000 and len(rec.channels) == 2
    assert abs(len(rec.channels[0]) - 48000) <= 1
    assert 0.5 < float(np.max(np.abs(rec.channels[0]))) <= 1.0


def _pcm16(p, n_frames: int, declared: int | None = None, sr: int = 16000) -> bytes:
    data = b"\x01\x00" * n_frames
    size = len(data) if declared is None else declared
    hdr = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    hdr += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sr, sr * 2, 2, 16)
    p.write_bytes(hdr + b"data" + struct.pack("<I", size) + data)
    return data


def test_refusals_give_the_exact_reason(tmp_path):
    p = tmp_path / "x.wav"
    _pcm16(p, 1000, declared=0xFFFFFFF0)  # "4 GB" of audio in a 2 kB file
    with pytest.raises(
        AudioError,
        match="truncated: the data chunk declares 4294967280 bytes of audio, the file holds 2000",
    ):
        open_wav(p)
    _pcm16(p, 1000, declared=4000)
    with pytest.raises(AudioError, match="declares 4000 bytes of audio, the file holds 2000"):
        open_wav(p)
    p.write_bytes(b"fLaC" + b"\0" * 100)
    with pytest.raises(AudioError, match="not a WAV file \\(no RIFF/WAVE header\\)"):
        open_wav(p)
    p.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(AudioError, match="no data chunk"):
        open_wav(p)
    _pcm16(p, 0)
    with pytest.raises(AudioError, match="contains no audio frames"):
        open_wav(p)
    import soundfile as sf

    sf.write(p, np.zeros((100, 3), np.float32), 16000, subtype="PCM_16")
    with pytest.raises(AudioError, match="3 channels; only mono or stereo"):
        open_wav(p)
    sf.write(p, np.zeros(100, np.float32), 22050, subtype="PCM_16")
    with pytest.raises(AudioError, match="unsupported sample rate 22050 Hz"):
        open_wav(p)
    d = tmp_path / "dir.wav"
    d.mkdir()
    with pytest.raises(AudioError, match="not a file"):
        open_wav(d)


def test_a_stream_written_wav_with_an_open_length_is_read_to_its_end(tmp_path):
    """sox and ffmpeg writing to a pipe leave the data size at 0xFFFFFFFF: not truncation."""
    p = tmp_path / "x.wav"
    _pcm16(p, 1600, declared=0xFFFFFFFF)
    assert open_wav(p).frames == 1600
    assert len(read_wav(p).channels[0]) == 1600


def test_too_long_a_file_is_refused_before_decoding(tmp_path):
    p = tmp_path / "x.wav"
    _pcm16(p, 16000 * 3)
    with pytest.raises(AudioError, match="lasts 0.00 h, longer than the 0.00 h allowed"):
        open_wav(p, max_duration_s=2.0)
    assert open_wav(p, max_duration_s=3.0).duration == 3.0
    conf = tmp_path / "c.toml"
    conf.write_text("[analyze]\nmax_duration_s = 2.0\n")
    r = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "analyze", str(p), "--config", str(conf)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"error: {p}: lasts 0.00 h, longer than the 0.00 h allowed (analyze.max_duration_s)"
    ]


@pytest.mark.parametrize("sr", [8000, 16000, 44100, 48000])
def test_streamed_replay_equals_the_whole_file(tmp_path, sr):
    """Decoding and resampling in blocks gives exactly the chunks of the whole-file replay."""
    from appliance.capture.sources import WavReplaySource, WavStreamSource

    rng = np.random.default_rng(sr)
    n = int(sr * 23.3)
    chans = [rng.normal(0, 0.2, n).astype(np.float32) for _ in range(2)]
    p = tmp_path / "x.wav"
    write_wav(p, chans, sr)
    whole = list(WavReplaySource(read_wav(p), ["agent", "customer"]).chunks())
    streamed = list(WavStreamSource(open_wav(p), ["agent", "customer"]).chunks())
    assert len(whole) == len(streamed)
    for a, b in zip(whole, streamed, strict=True):
        for sp in ("agent", "customer"):
            np.testing.assert_array_equal(a[sp], b[sp])


# -- memory: a long file costs no more than a short one -----------------------------------------

PEAK_RSS = """
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stderr.write(r.stderr)
print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
"""


def _sparse_wav(p, mib: float, sr: int, n_channels: int) -> float:
    """A silent 16-bit WAV of `mib` MiB whose data is a hole in the file (no disk used)."""
    data = int(mib * (1 << 20)) - 44
    data -= data % (2 * n_channels)
    hdr = b"RIFF" + struct.pack("<I", 36 + data) + b"WAVE"
    hdr += b"fmt " + struct.pack(
        "<IHHIIHH", 16, 1, n_channels, sr, sr * 2 * n_channels, 2 * n_channels, 16
    )
    with open(p, "wb") as f:
        f.write(hdr + b"data" + struct.pack("<I", data))
        f.truncate(44 + data)
    return data / (2 * n_channels * sr)


def _analyze_peak_mb(*args: str) -> tuple[int, int, str]:
    cmd = [sys.executable, "-m", "appliance.cli", "analyze", *args, "--no-stt", "--json"]
    r = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *cmd], capture_output=True, text=True, timeout=600
    )
    rc, mb = r.stdout.split()
    return int(rc), int(mb), r.stderr


def test_a_1_gib_file_beyond_the_length_limit_is_refused_cheaply(tmp_path):
    p = tmp_path / "long.wav"
    hours = _sparse_wav(p, 1024, 16000, 2) / 3600
    rc, mb, err = _analyze_peak_mb(str(p))
    assert rc == 2
    assert err.strip().splitlines() == [
        f"error: {p}: lasts {hours:.2f} h, longer than the 4.00 h allowed (analyze.max_duration_s)"
    ]
    assert mb < 300, mb  # nothing was decoded


@pytest.mark.slow
def test_memory_does_not_grow_with_the_file(tmp_path):
    """A 1 GiB recording (48 kHz stereo, 93 minutes of silence) through the real model: before,
    memory was about 7x the file (a 440 MiB file peaked at 3.6 GB); now it peaks where a
    one-second file does."""
    short, long_ = tmp_path / "short.wav", tmp_path / "long.wav"
    _sparse_wav(short, 0.2, 48000, 2)
    minutes = _sparse_wav(long_, 1024, 48000, 2) / 60
    rc, base, err = _analyze_peak_mb(str(short))
    assert rc == 0, err[-2000:]
    rc, peak, err = _analyze_peak_mb(str(long_))
    assert rc == 0, err[-2000:]
    print(f"peak RSS: {base} MB for 1 s, {peak} MB for {minutes:.0f} min (1 GiB)")
    assert peak < base + 100 and peak < 2048
