import subprocess
import sys
import wave

import numpy as np
import pytest

from appliance.capture.wav import AudioError, read_wav, to_pipeline_rate, write_wav


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
    with pytest.raises(AudioError, match="not a PCM WAV"):
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
