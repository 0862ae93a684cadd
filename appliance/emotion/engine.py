"""What the pipeline needs from an emotion engine (the ONNX `EmotionModel` or a test's fake)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from appliance.types import EmotionResult


@runtime_checkable
class EmotionEngine(Protocol):
    info: dict
    """name, version, sha256, providers: reported by health."""

    def new_state(self) -> Any:
        """Fresh per-call-channel state (the causal normalisation)."""

    def infer(self, audio: np.ndarray, sr: int, state: Any) -> EmotionResult:
        """Score one utterance with what came before it in `state`, then add it to `state`."""
