"""Audio sources behind one interface: chunks of agent and customer audio, time-aligned.

`WavReplaySource` replays a recording at real-time pace or as fast as possible;
`SoundDeviceSource` captures a position's headset/handset tap through PortAudio (stereo split
into agent/customer, or two mono devices). The pipeline does not know which one it reads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Protocol

import numpy as np

from appliance.capture.resample import StreamResampler
from appliance.capture.wav import PIPELINE_RATES, Recording, WavFile, to_pipeline_rate
from appliance.types import Speaker

log = logging.getLogger(__name__)

CHUNK_S = 0.02


class Source(Protocol):
    sample_rate: int
    """Rate of the chunks yielded (8000 or 16000)."""

    def chunks(self) -> Iterator[dict[Speaker, np.ndarray]]:
        """Yield {speaker: float32 chunk} for consecutive 20 ms spans until the source ends."""
        ...

    def close(self) -> None: ...


def _paced(
    chunks: Iterator[dict[Speaker, np.ndarray]], speed: float, closed: threading.Event
) -> Iterator[dict[Speaker, np.ndarray]]:
    """`chunks` at `speed` times real time (0 = as fast as they are taken) until `closed`."""
    t0 = time.monotonic()
    for i, chunk in enumerate(chunks):
        if closed.is_set():
            return
        if speed > 0:
            delay = t0 + i * CHUNK_S / speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield chunk


class WavReplaySource:
    """Replays a decoded recording; `speakers[i]` names channel i."""

    def __init__(self, recording: Recording, speakers: list[Speaker], speed: float = 0.0):
        if len(speakers) != len(recording.channels):
            raise ValueError(
                f"{len(recording.channels)} channel(s) but {len(speakers)} speaker name(s)"
            )
        chans = [to_pipeline_rate(c, recording.sample_rate) for c in recording.channels]
        self.sample_rate = chans[0][1]
        self._channels = {sp: c for sp, (c, _) in zip(speakers, chans, strict=True)}
        self.speed = speed
        """1.0 = real time, 0 = as fast as the pipeline takes it."""
        self._closed = threading.Event()

    @property
    def duration(self) -> float:
        return len(next(iter(self._channels.values()))) / self.sample_rate

    def chunks(self) -> Iterator[dict[Speaker, np.ndarray]]:
        hop = int(self.sample_rate * CHUNK_S)
        n = len(next(iter(self._channels.values())))
        split = ({sp: c[s : s + hop] for sp, c in self._channels.items()} for s in range(0, n, hop))
        return _paced(split, self.speed, self._closed)

    def close(self) -> None:
        self._closed.set()


class WavStreamSource:
    """Replays a WAV file decoded a block at a time (`WavFile.blocks`), resampled as it goes:
    what it holds does not grow with the file. `speakers[i]` names channel i."""

    def __init__(self, wav: WavFile, speakers: list[Speaker], speed: float = 0.0):
        if len(speakers) != wav.n_channels:
            raise ValueError(f"{wav.n_channels} channel(s) but {len(speakers)} speaker name(s)")
        self.wav = wav
        self.speakers = list(speakers)
        self.sample_rate = wav.sample_rate if wav.sample_rate in PIPELINE_RATES else 16000
        self.speed = speed
        self._closed = threading.Event()

    @property
    def duration(self) -> float:
        return self.wav.duration

    def _split(self) -> Iterator[dict[Speaker, np.ndarray]]:
        hop = int(self.sample_rate * CHUNK_S)
        rs = {}
        if self.sample_rate != self.wav.sample_rate:
            rs = {
                sp: StreamResampler(self.wav.sample_rate, self.sample_rate) for sp in self.speakers
            }
        held = {sp: np.zeros(0, np.float32) for sp in self.speakers}

        def take(final: bool) -> Iterator[dict[Speaker, np.ndarray]]:
            n = min(len(x) for x in held.values())
            end = n if final else n - n % hop
            for s in range(0, end, hop):
                yield {sp: x[s : min(s + hop, end)] for sp, x in held.items()}
            for sp in held:
                held[sp] = held[sp][end:]

        for block in self.wav.blocks():
            for i, sp in enumerate(self.speakers):
                x = np.ascontiguousarray(block[:, i])
                held[sp] = np.concatenate([held[sp], rs[sp].push(x) if rs else x])
            yield from take(final=False)
            if self._closed.is_set():
                return
        for sp, r in rs.items():
            held[sp] = np.concatenate([held[sp], r.flush()])
        yield from take(final=True)

    def chunks(self) -> Iterator[dict[Speaker, np.ndarray]]:
        return _paced(self._split(), self.speed, self._closed)

    def close(self) -> None:
        self._closed.set()


class SoundDeviceSource:
    """Live capture of one position through PortAudio (sounddevice).

    One stereo device (agent and customer on two channels of a USB headset adapter or handset
    tap) or two mono devices (`customer_device`). Blocking reads of 20 ms from the thread that
    iterates `chunks()`: the device paces the loop, and when the consumer falls behind PortAudio
    reports an input overflow, which is counted in `overruns` (the stream goes on). Samples are
    read as int16, the native format of USB audio class devices, so no float conversion plugin
    sits between the application and ALSA; they are scaled to float32 here.
    """

    def __init__(
        self,
        device: str | int,
        samplerate: int,
        agent_channel: int,
        customer_channel: int,
        customer_device: str | int | None = None,
        max_backlog_s: float = 0.5,
        dtype: str = "int16",
    ):
        import sounddevice as sd  # imported here: PortAudio is needed only for live capture

        self._sd = sd
        self.capture_rate = samplerate
        self.sample_rate = samplerate if samplerate in (8000, 16000) else 16000
        self.overruns = 0
        """Input overflows reported by PortAudio (the reader fell behind the device)."""
        self.frames_read = 0
        """Frames read per device since the source opened."""
        self.dtype = dtype
        self._closed = threading.Event()
        self._blocksize = int(samplerate * CHUNK_S)
        dev = _device(device)
        self._streams: list = []
        try:
            if customer_device in (None, ""):
                channels = max(agent_channel, customer_channel) + 1
                self._map = {"agent": (0, agent_channel), "customer": (0, customer_channel)}
                self._streams.append(self._open(sd, dev, channels, max_backlog_s))
            else:
                self._map = {"agent": (0, agent_channel), "customer": (1, customer_channel)}
                self._streams.append(self._open(sd, dev, agent_channel + 1, max_backlog_s))
                self._streams.append(
                    self._open(sd, _device(customer_device), customer_channel + 1, max_backlog_s)
                )
            for s in self._streams:
                s.start()
        except BaseException:
            self.close()
            raise
        self.device_names = [str(s.device) for s in self._streams]

    def _open(self, sd, device, channels: int, latency: float):
        return sd.InputStream(
            device=device,
            channels=channels,
            samplerate=self.capture_rate,
            blocksize=self._blocksize,
            dtype=self.dtype,
            latency=latency,
        )

    def _to_float(self, x: np.ndarray) -> np.ndarray:
        if x.dtype == np.int16:
            return x.astype(np.float32) * np.float32(1.0 / 32768.0)
        if x.dtype == np.int32:
            return (x.astype(np.float64) * (1.0 / 2147483648.0)).astype(np.float32)
        return np.ascontiguousarray(x, dtype=np.float32)

    def chunks(self) -> Iterator[dict[Speaker, np.ndarray]]:
        resamplers: dict[str, _ChunkResampler] = {}
        if self.capture_rate != self.sample_rate:
            resamplers = {
                sp: _ChunkResampler(self.capture_rate, self.sample_rate, self._blocksize)
                for sp in self._map
            }
        while not self._closed.is_set():
            blocks = []
            for s in self._streams:
                data, overflowed = s.read(self._blocksize)
                if overflowed:
                    self.overruns += 1
                blocks.append(data)
            self.frames_read += self._blocksize
            out: dict[Speaker, np.ndarray] = {}
            for speaker, (slot, ch) in self._map.items():
                x = self._to_float(np.ascontiguousarray(blocks[slot][:, ch]))
                if resamplers:
                    x = resamplers[speaker].push(x)
                out[speaker] = x  # type: ignore[index]
            if all(len(x) for x in out.values()):
                yield out

    def close(self) -> None:
        """Stop and close the streams. Call it from the thread that iterates `chunks()`."""
        self._closed.set()
        streams, self._streams = self._streams, []
        for s in streams:
            try:
                s.stop()
                s.close()
            except Exception:  # PortAudio errors on a vanished device must not block shutdown
                log.exception("closing capture stream")


class _ChunkResampler:
    """Resamples consecutive equal chunks without clicks at their edges.

    Each chunk is filtered together with its two neighbours and only its own span is kept, so
    the result equals resampling the whole stream; the price is one chunk (20 ms) of delay.
    """

    def __init__(self, sr_in: int, sr_out: int, n_in: int):
        self.sr_in, self.sr_out = sr_in, sr_out
        self.n_in = n_in
        self.n_out = -(-n_in * sr_out // sr_in)
        self._prev = np.zeros(n_in, np.float32)
        self._cur: np.ndarray | None = None

    def push(self, x: np.ndarray) -> np.ndarray:
        """Take the next chunk, return the resampled previous one (empty on the first call)."""
        from appliance.capture.resample import resample

        if self._cur is None:
            self._cur = x
            return np.zeros(0, np.float32)
        y = resample(np.concatenate([self._prev, self._cur, x]), self.sr_in, self.sr_out)
        a = -(-self.n_in * self.sr_out // self.sr_in)
        out = y[a : a + self.n_out]
        self._prev, self._cur = self._cur, x
        return out


def _device(device: str | int | None) -> str | int | None:
    if device in (None, "", "default"):
        return None
    if isinstance(device, str) and device.isdigit():
        return int(device)
    return device


def list_devices() -> list[dict]:
    """Input devices PortAudio sees (empty on a machine without sound cards)."""
    import sounddevice as sd

    out = []
    for i, d in enumerate(sd.query_devices()):
        if d["max_input_channels"] > 0:
            out.append(
                {
                    "index": i,
                    "name": d["name"],
                    "inputs": d["max_input_channels"],
                    "default_samplerate": d["default_samplerate"],
                }
            )
    return out
