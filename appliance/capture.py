"""Audio sources behind one interface: chunks of agent and customer audio, time-aligned.

`WavReplaySource` replays a recording at real-time pace or as fast as possible;
`SoundDeviceSource` captures a position's headset/handset tap through PortAudio (stereo split
into agent/customer, or two mono devices). The pipeline does not know which one it reads.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Protocol

import numpy as np

from appliance.audio import Recording, to_pipeline_rate
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
        t0 = time.monotonic()
        for i, start in enumerate(range(0, n, hop)):
            if self._closed.is_set():
                return
            if self.speed > 0:
                due = t0 + i * CHUNK_S / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield {sp: c[start : start + hop] for sp, c in self._channels.items()}

    def close(self) -> None:
        self._closed.set()


class SoundDeviceSource:
    """Live capture of one position through PortAudio (sounddevice)."""

    def __init__(
        self,
        device: str | int,
        samplerate: int,
        agent_channel: int,
        customer_channel: int,
        customer_device: str | int | None = None,
        max_backlog_s: float = 5.0,
    ):
        import sounddevice as sd  # imported here: PortAudio is needed only for live capture

        self._sd = sd
        self.capture_rate = samplerate
        self.sample_rate = samplerate if samplerate in (8000, 16000) else 16000
        self.overruns = 0
        """Chunks dropped because the pipeline fell behind (or PortAudio reported an overflow)."""
        self._q: queue.Queue = queue.Queue(maxsize=max(4, int(max_backlog_s / CHUNK_S)))
        self._closed = threading.Event()
        blocksize = int(samplerate * CHUNK_S)
        dev = _device(device)
        self._streams = []
        if customer_device in (None, ""):
            channels = max(agent_channel, customer_channel) + 1
            self._map = {"agent": (0, agent_channel), "customer": (0, customer_channel)}
            self._streams.append(self._open(sd, dev, channels, blocksize, 0))
        else:
            self._map = {"agent": (0, agent_channel), "customer": (1, customer_channel)}
            self._parts: dict[int, np.ndarray] = {}
            self._streams.append(self._open(sd, dev, agent_channel + 1, blocksize, 0))
            self._streams.append(
                self._open(sd, _device(customer_device), customer_channel + 1, blocksize, 1)
            )
        self._pending: dict[int, list[np.ndarray]] = {0: [], 1: []}
        for s in self._streams:
            s.start()

    def _open(self, sd, device, channels: int, blocksize: int, slot: int):
        def callback(indata, frames, time_info, status) -> None:
            if status.input_overflow:
                self.overruns += 1
            try:
                self._q.put_nowait((slot, indata.copy()))
            except queue.Full:
                self.overruns += 1

        return sd.InputStream(
            device=device,
            channels=channels,
            samplerate=self.capture_rate,
            blocksize=blocksize,
            dtype="float32",
            callback=callback,
        )

    def chunks(self) -> Iterator[dict[Speaker, np.ndarray]]:
        from appliance.resample import resample

        while not self._closed.is_set():
            try:
                slot, block = self._q.get(timeout=0.5)
            except queue.Empty:
                if not any(s.active for s in self._streams):
                    return
                continue
            self._pending[slot].append(block)
            slots_needed = {s for s, _ in self._map.values()}
            if not all(self._pending[s] for s in slots_needed):
                continue
            blocks = {s: self._pending[s].pop(0) for s in slots_needed}
            out: dict[Speaker, np.ndarray] = {}
            for speaker, (s, ch) in self._map.items():
                x = np.ascontiguousarray(blocks[s][:, ch])
                if self.capture_rate != self.sample_rate:
                    x = resample(x, self.capture_rate, self.sample_rate)
                out[speaker] = x  # type: ignore[index]
            yield out

    def close(self) -> None:
        self._closed.set()
        for s in self._streams:
            try:
                s.stop()
                s.close()
            except Exception:  # PortAudio errors on a vanished device must not block shutdown
                log.exception("closing capture stream")


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
