"""Reading recordings: WAV files decoded by libsndfile (soundfile), validated, read in blocks.

`open_wav` checks a file before anything is analysed or written anywhere: its RIFF chunks (a
data chunk that declares more than the file holds is truncated, and said so), its encoding
(integer PCM of 8 to 32 bits, float, mu-law or A-law, WAVE_FORMAT_EXTENSIBLE included, which
Python's `wave` refuses), rate, channels and length. A file it refuses raises `AudioError` with
a one-line reason; the CLI turns it into exit code 2. `WavFile.blocks()` then decodes it a block
at a time, so memory does not grow with the file; `read_wav` decodes a whole short file (tests,
benchmarks, the demo).
"""

from __future__ import annotations

import struct
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SUPPORTED_RATES = (8000, 16000, 44100, 48000)
PIPELINE_RATES = (8000, 16000)
BLOCK_S = 10.0
"""Seconds decoded at a time by `WavFile.blocks()`."""
_UNKNOWN_LENGTHS = (0, 0xFFFFFFFF)
"""Data sizes a streaming writer leaves when it cannot seek back (sox, ffmpeg to a pipe):
the audio runs to the end of the file."""
_MAX_CHUNKS = 1000


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


@dataclass(frozen=True)
class WavFile:
    """A validated WAV file, not yet decoded."""

    path: Path
    sample_rate: int
    n_channels: int
    frames: int
    subtype: str
    """libsndfile's name of the encoding: PCM_16, PCM_24, PCM_32, PCM_U8, FLOAT, ULAW, ..."""

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    def blocks(self, seconds: float = BLOCK_S) -> Iterator[np.ndarray]:
        """float32 blocks of shape (frames, channels), in order, `seconds` long (the last
        shorter)."""
        import soundfile as sf

        n = max(1, int(seconds * self.sample_rate))
        try:
            with sf.SoundFile(str(self.path)) as f:
                while True:
                    block = f.read(n, dtype="float32", always_2d=True)
                    if not len(block):
                        return
                    yield block
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise AudioError(f"{self.path}: cannot decode: {exc}") from exc


def _riff_data_chunk(path: Path, size: int) -> None:
    """Walk the RIFF chunks up to `data`; AudioError with the exact reason when they are wrong."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            raise AudioError(f"{path}: not a WAV file (no RIFF/WAVE header)")
        if head[:4] == b"RF64":
            return  # 64-bit sizes live in the ds64 chunk: libsndfile checks them
        pos = 12
        for _ in range(_MAX_CHUNKS):
            hdr = f.read(8)
            if len(hdr) < 8:
                raise AudioError(f"{path}: not a WAV file (no data chunk)")
            cid, length = hdr[:4], struct.unpack("<I", hdr[4:])[0]
            body = pos + 8
            if cid == b"data":
                held = size - body
                if length in _UNKNOWN_LENGTHS or length <= held:
                    return
                raise AudioError(
                    f"{path}: truncated: the data chunk declares {length} bytes of audio,"
                    f" the file holds {held}"
                )
            if body + length > size:
                name = cid.decode("latin-1").strip() or "?"
                raise AudioError(
                    f"{path}: corrupt: chunk {name!r} at byte {pos} runs past the end of the file"
                )
            pos = body + length + (length & 1)
            f.seek(pos)
        raise AudioError(f"{path}: not a WAV file (no data chunk in the first {_MAX_CHUNKS})")


def open_wav(path: str | Path, max_duration_s: float | None = None) -> WavFile:
    """Validate a WAV file (8/16/44.1/48 kHz, mono or stereo, any encoding libsndfile decodes)."""
    import soundfile as sf

    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file") from None
    except OSError as exc:
        raise AudioError(f"{path}: cannot read ({exc.strerror})") from exc
    if not path.is_file():
        raise AudioError(f"{path}: not a file")
    try:
        _riff_data_chunk(path, size)
    except OSError as exc:
        raise AudioError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{path}: not a WAV file libsndfile can decode ({exc})") from exc
    if info.format not in ("WAV", "WAVEX", "RF64"):
        raise AudioError(f"{path}: {info.format_info} file; only WAV is supported")
    if info.samplerate not in SUPPORTED_RATES:
        raise AudioError(
            f"{path}: unsupported sample rate {info.samplerate} Hz"
            " (supported: 8000, 16000, 44100, 48000)"
        )
    if info.channels not in (1, 2):
        raise AudioError(f"{path}: {info.channels} channels; only mono or stereo is supported")
    if info.frames <= 0:
        raise AudioError(f"{path}: contains no audio frames")
    wav = WavFile(path, info.samplerate, info.channels, info.frames, info.subtype)
    if max_duration_s is not None and wav.duration > max_duration_s:
        raise AudioError(
            f"{path}: lasts {wav.duration / 3600:.2f} h, longer than the"
            f" {max_duration_s / 3600:.2f} h allowed (analyze.max_duration_s)"
        )
    return wav


def read_wav(path: str | Path, max_duration_s: float | None = None) -> Recording:
    """Decode a whole WAV file (for short files: `open_wav(...).blocks()` streams long ones)."""
    wav = open_wav(path, max_duration_s)
    blocks = list(wav.blocks())
    data = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    channels = tuple(np.ascontiguousarray(data[:, i]) for i in range(wav.n_channels))
    return Recording(channels=channels, sample_rate=wav.sample_rate)


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
