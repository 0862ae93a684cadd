"""Reading recordings: PCM WAV only, validated, converted to float32 per channel.

A corrupt or unsupported file raises `AudioError` with a one-line reason before anything
is written anywhere; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SUPPORTED_RATES = (8000, 16000, 44100, 48000)
PIPELINE_RATES = (8000, 16000)


class AudioError(ValueError):
    """The file is not audio we can analyse."""


@dataclass(frozen=True)
class Recording:
    """A decoded recording: `channels[i]` is float32 mono in [-1, 1]."""

    channels: tuple[np.ndarray, ...]
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.channels[0]) / self.sample_rate if self.channels else 0.0


def read_wav(path: str | Path) -> Recording:
    """Decode a PCM WAV (8/16/24/32-bit int, mono or stereo, 8/16/44.1/48 kHz)."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        with wave.open(str(path), "rb") as w:
            n_channels = w.getnchannels()
            width = w.getsampwidth()
            rate = w.getframerate()
            n_frames = w.getnframes()
            raw = w.readframes(n_frames)
    except (wave.Error, EOFError) as exc:
        raise AudioError(f"{path}: not a PCM WAV file ({exc})") from exc
    except OSError as exc:
        raise AudioError(f"{path}: cannot read ({exc})") from exc
    if rate not in SUPPORTED_RATES:
        raise AudioError(
            f"{path}: unsupported sample rate {rate} Hz (supported: 8000, 16000, 44100, 48000)"
        )
    if n_channels not in (1, 2):
        raise AudioError(f"{path}: {n_channels} channels; only mono or stereo is supported")
    if width not in (1, 2, 3, 4):
        raise AudioError(f"{path}: unsupported sample width {width} bytes")
    usable = len(raw) - len(raw) % (width * n_channels)
    if usable == 0:
        raise AudioError(f"{path}: contains no audio frames")
    if len(raw) < n_frames * width * n_channels:
        raise AudioError(
            f"{path}: truncated (header says {n_frames} frames, file holds {usable // (width * n_channels)})"
        )
    data = _pcm_to_float(raw[:usable], width).reshape(-1, n_channels)
    channels = tuple(np.ascontiguousarray(data[:, i]) for i in range(n_channels))
    return Recording(channels=channels, sample_rate=rate)


def _pcm_to_float(raw: bytes, width: int) -> np.ndarray:
    if width == 1:  # unsigned 8-bit
        return (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    if width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v & 0x800000, v - 0x1000000, v)
        return v.astype(np.float32) / 8388608.0
    return (np.frombuffer(raw, "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)


def write_wav(
    path: str | Path, channels: list[np.ndarray] | tuple[np.ndarray, ...], sample_rate: int
) -> None:
    """Write float channels as 16-bit PCM (used for demo/test material, never for call audio)."""
    data = np.stack([np.clip(c, -1, 1) for c in channels], axis=1)
    pcm = (data * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def to_pipeline_rate(x: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    """Bring audio to a rate the models take: 8 and 16 kHz pass through, 44.1/48 kHz go to 16 kHz."""
    if sr in PIPELINE_RATES:
        return x.astype(np.float32, copy=False), sr
    from appliance.capture.resample import resample

    return resample(x, sr, 16000), 16000
