"""Acoustic feature frontend: log-mel, MFCC, YIN pitch, eGeMAPS-like functionals.

Public API (see docs/features.md)::

    log_mel(x, sr, n_mels=40, preemphasis=0.0) -> float32[frames, n_mels]
    mfcc(x, sr, n_mfcc=13, n_mels=40)          -> float32[frames, n_mfcc]
    yin_pitch(x, sr, fmin=65, fmax=400)        -> float32[frames]   (0 = unvoiced)
    functionals(x, sr)                         -> dict[str, float]  (keys: FUNCTIONAL_NAMES)
    FeatureStream(sr, n_mels=40, preemphasis=0.0).push(chunk) / .flush()
    warm_up(); set_cache_dir(path); FeatureError(ValueError)

All frame-based outputs share one grid: frame ``i`` is centred on sample ``i * hop``
(10 ms), ``1 + len(x) // hop`` frames.
"""

from __future__ import annotations

import numpy as np

from ._common import FeatureError, set_cache_dir
from .functionals import FUNCTIONAL_NAMES, functionals
from .mel import FeatureStream, log_mel, mfcc
from .pitch import yin_pitch

__all__ = [
    "FUNCTIONAL_NAMES",
    "FeatureError",
    "FeatureStream",
    "functionals",
    "log_mel",
    "mfcc",
    "set_cache_dir",
    "warm_up",
    "yin_pitch",
]


def warm_up() -> None:
    """Compile (or load from the numba cache) every kernel at 8 and 16 kHz.

    Call once at daemon start so the first real utterance pays no JIT cost.
    """
    rng = np.random.default_rng(0)
    for sr in (8000, 16000):
        x = (0.1 * rng.standard_normal(sr // 5)).astype(np.float32)
        for arr in (x, x.astype(np.float64)):
            log_mel(arr, sr)
            mfcc(arr, sr)
            yin_pitch(arr, sr)
        functionals(x, sr)
        st = FeatureStream(sr)
        st.push(x[: sr // 50])
        st.push(x[: sr // 50].astype(np.float64))
        st.flush()
