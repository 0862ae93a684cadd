"""Shared constants, input validation and the numba cache-directory switch.

Frame geometry (identical at both supported rates, scaled with ``sr``):

====================  ==========  =========
quantity              16 kHz      8 kHz
====================  ==========  =========
window (Hann, 25 ms)  400         200
hop (10 ms)           160         80
FFT size              512         256
centre padding        256 zeros   128 zeros
====================  ==========  =========
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

SUPPORTED_RATES = (8000, 16000)
# Largest accepted |sample|: beyond ~1e15 the float32 power spectrum overflows; 1e9 leaves a
# wide margin for unnormalised (e.g. int16-valued) floats while catching garbage.
MAX_ABS = 1e9
LOG_FLOOR = 1e-10  # added to mel energies before the natural log (librosa's amin)


class FeatureError(ValueError):
    """Invalid input to the feature frontend (bad dtype, shape, rate or non-finite samples)."""


@dataclass(frozen=True)
class FrameSpec:
    """STFT geometry for one sample rate."""

    sr: int
    win: int  # Hann window length (25 ms)
    hop: int  # 10 ms
    n_fft: int  # 512 at 16 kHz, 256 at 8 kHz

    @property
    def pad(self) -> int:
        """Zero padding on each side for ``center=True`` framing."""
        return self.n_fft // 2

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    def n_frames(self, n_samples: int) -> int:
        """Frames produced by ``center=True`` framing (librosa: ``1 + n // hop``)."""
        return 1 + n_samples // self.hop


def frame_spec(sr: int) -> FrameSpec:
    check_rate(sr)
    scale = sr // 8000
    return FrameSpec(sr=sr, win=200 * scale, hop=80 * scale, n_fft=256 * scale)


def check_rate(sr: object) -> int:
    if (
        isinstance(sr, bool)
        or not isinstance(sr, (int, np.integer))
        or int(sr) not in SUPPORTED_RATES
    ):
        raise FeatureError(f"sample rate must be 8000 or 16000 Hz, got {sr!r}")
    return int(sr)


def check_audio(x: object, sr: object) -> tuple[np.ndarray, int]:
    """Validate ``x``/``sr`` and return a contiguous float32 copy-or-view and the rate.

    Integer PCM is refused rather than silently rescaled: the caller must decide whether
    int16 means full scale 32768 (``x / 32768.0``).
    """
    rate = check_rate(sr)
    if not isinstance(x, np.ndarray):
        raise FeatureError(f"audio must be a numpy ndarray, got {type(x).__name__}")
    if x.dtype not in (np.float32, np.float64):
        raise FeatureError(
            f"audio must be float32 or float64 (got {x.dtype}); convert integer PCM explicitly, "
            "e.g. x.astype(np.float32) / 32768"
        )
    if x.ndim != 1:
        raise FeatureError(f"audio must be 1-D mono, got shape {x.shape}")
    if x.size == 0:
        raise FeatureError("audio is empty")
    peak = float(np.max(np.abs(x)))  # NaN and inf propagate into the peak
    if not np.isfinite(peak):
        raise FeatureError("audio contains NaN or infinite samples")
    if peak > MAX_ABS:
        raise FeatureError(
            f"audio peak {peak:.3g} exceeds {MAX_ABS:.0e}: expected normalised samples "
            "(about -1..1; int16 values as floats also work)"
        )
    return np.ascontiguousarray(x, dtype=np.float32), rate


# Every numba dispatcher created with cache=True registers here so that set_cache_dir can
# re-point its cache (numba binds the cache locator when the decorator runs).
_DISPATCHERS: list = []


def register(dispatcher):  # type: ignore[no-untyped-def]
    _DISPATCHERS.append(dispatcher)
    return dispatcher


def set_cache_dir(path: str | os.PathLike[str]) -> None:
    """Store compiled kernels under ``path`` instead of ``NUMBA_CACHE_DIR``/``__pycache__``.

    Must be called before any kernel is compiled or loaded (i.e. before ``warm_up`` or the
    first feature call in this process); afterwards it raises ``RuntimeError`` because numba
    would keep already-compiled code in memory and never look at the new directory.
    Setting the ``NUMBA_CACHE_DIR`` environment variable before importing this package has
    the same effect.
    """
    import numba

    if any(d.signatures for d in _DISPATCHERS):
        raise RuntimeError("set_cache_dir() must be called before the feature kernels compile")
    p = os.fspath(path)
    os.makedirs(p, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = p
    numba.config.CACHE_DIR = p
    for d in _DISPATCHERS:
        d.enable_caching()
