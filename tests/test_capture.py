"""SoundDeviceSource against a fake PortAudio: stereo/two-mono mapping, int16 scaling, overflow
counting, 48 kHz -> 16 kHz resampling equal to whole-signal resampling."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from appliance.capture.resample import resample
from appliance.capture.sources import SoundDeviceSource, _ChunkResampler


class FakeStream:
    def __init__(self, data: np.ndarray, overflow_every: int = 0, **kw):
        self.kw = kw
        self.data = data
        self.pos = 0
        self.reads = 0
        self.overflow_every = overflow_every
        self.started = self.closed = False
        self.device = kw.get("device")

    def start(self):
        self.started = True

    def read(self, n):
        self.reads += 1
        block = self.data[self.pos : self.pos + n]
        self.pos += n
        if len(block) < n:
            block = np.zeros((n, self.data.shape[1]), self.data.dtype)
        return block, bool(self.overflow_every and self.reads % self.overflow_every == 0)

    def stop(self):
        pass

    def close(self):
        self.closed = True


@pytest.fixture
def fake_sd(monkeypatch):
    mod = types.ModuleType("sounddevice")
    mod.streams = []
    mod.feeds = {}

    def InputStream(**kw):  # noqa: N802 (sounddevice's name)
        s = FakeStream(mod.feeds[kw["device"]], overflow_every=mod.feeds.get("overflow", 0), **kw)
        mod.streams.append(s)
        return s

    mod.InputStream = InputStream
    monkeypatch.setitem(sys.modules, "sounddevice", mod)
    return mod


def _take(src, n):
    it = src.chunks()
    return [next(it) for _ in range(n)]


def test_stereo_device_is_split_and_scaled(fake_sd):
    x = np.zeros((3200, 2), np.int16)
    x[:, 0] = 1000
    x[:, 1] = -16384
    fake_sd.feeds["tap"] = x
    src = SoundDeviceSource("tap", 16000, 0, 1)
    (stream,) = fake_sd.streams
    assert stream.kw["dtype"] == "int16" and stream.kw["channels"] == 2
    assert stream.kw["blocksize"] == 320 and stream.started
    chunks = _take(src, 5)
    assert all(c["agent"].dtype == np.float32 and len(c["agent"]) == 320 for c in chunks)
    assert np.allclose(chunks[0]["agent"], 1000 / 32768) and np.allclose(
        chunks[0]["customer"], -0.5
    )
    src.close()
    assert stream.closed


def test_swapped_channels_and_numeric_device(fake_sd):
    x = np.stack([np.full(640, 1, np.int16), np.full(640, 2, np.int16)], axis=1)
    fake_sd.feeds[3] = x
    src = SoundDeviceSource("3", 16000, agent_channel=1, customer_channel=0)
    c = _take(src, 1)[0]
    assert np.allclose(c["agent"], 2 / 32768) and np.allclose(c["customer"], 1 / 32768)
    src.close()


def test_two_mono_devices(fake_sd):
    fake_sd.feeds["agent-mic"] = np.full((640, 1), 100, np.int16)
    fake_sd.feeds["line-tap"] = np.full((640, 1), -100, np.int16)
    src = SoundDeviceSource("agent-mic", 16000, 0, 0, customer_device="line-tap")
    assert [s.kw["device"] for s in fake_sd.streams] == ["agent-mic", "line-tap"]
    assert all(s.kw["channels"] == 1 for s in fake_sd.streams)
    c = _take(src, 2)[1]
    assert np.allclose(c["agent"], 100 / 32768) and np.allclose(c["customer"], -100 / 32768)
    src.close()
    assert all(s.closed for s in fake_sd.streams)


def test_overflows_are_counted(fake_sd):
    fake_sd.feeds["tap"] = np.zeros((32000, 2), np.int16)
    fake_sd.feeds["overflow"] = 4
    src = SoundDeviceSource("tap", 16000, 0, 1)
    _take(src, 20)
    assert src.overruns == 5
    src.close()


def test_48k_capture_is_resampled_like_the_whole_signal(fake_sd):
    sr = 48000
    t = np.arange(sr) / sr
    sig = 0.25 * np.sin(2 * np.pi * 300 * t) + 0.1 * np.sin(2 * np.pi * 3100 * t)
    x = np.round(np.stack([sig, -sig], axis=1) * 32767).astype(np.int16)
    fake_sd.feeds["usb"] = x
    src = SoundDeviceSource("usb", 48000, 0, 1)
    assert src.sample_rate == 16000 and fake_sd.streams[0].kw["blocksize"] == 960
    chunks = _take(src, 40)  # the first block comes out with the second (one block of delay)
    got = np.concatenate([c["customer"] for c in chunks])
    ref = resample(x[:, 1].astype(np.float32) / 32768, sr, 16000)
    assert len(got) == 40 * 320
    assert np.allclose(got, ref[: len(got)], atol=1e-6)
    src.close()


@pytest.mark.parametrize("sr_in,n_in", [(48000, 960), (44100, 882), (8000, 160)])
def test_chunk_resampler_equals_batch(sr_in, n_in):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(n_in * 50).astype(np.float32) * 0.1
    r = _ChunkResampler(sr_in, 16000, n_in)
    out = np.concatenate([r.push(x[i : i + n_in]) for i in range(0, len(x), n_in)])
    ref = resample(x, sr_in, 16000)
    assert len(out) == 49 * r.n_out
    assert np.allclose(out, ref[: len(out)], atol=1e-6)
