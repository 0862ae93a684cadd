"""Builds the engines a config asks for: one emotion session and one STT model per process."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from appliance.config import AppConfig

log = logging.getLogger(__name__)


@dataclass
class Engines:
    emotion: Any
    transcriber: Any | None
    load_s: float
    """Seconds spent loading models and warming kernels (cold start)."""


def configure_numba(cfg: AppConfig) -> None:
    """numba reads NUMBA_CACHE_DIR when it first compiles: set it before importing the frontend."""
    if cfg.paths.numba_cache and "NUMBA_CACHE_DIR" not in os.environ:
        path = cfg.resolve(cfg.paths.numba_cache)
        path.mkdir(parents=True, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = str(path)


def load_engines(cfg: AppConfig, with_stt: bool = True) -> Engines:
    """Load the emotion model (verified against its card), the STT engine, warm both up."""
    t0 = time.monotonic()
    configure_numba(cfg)
    from appliance import features
    from appliance.emotion.model import EmotionModel

    features.warm_up()
    model = EmotionModel.load(
        cfg.resolve(cfg.emotion.model) if cfg.emotion.model else None,
        variant=cfg.emotion.variant or None,
        providers=cfg.emotion.providers,
        intra_op_num_threads=cfg.emotion.threads,
        prior=cfg.emotion.prior or None,
    )
    if cfg.vad.speech_model == "silero":
        from appliance.segment.vad import SpeechDetector

        SpeechDetector.shared()  # a missing or altered VAD model fails here, not in a call
    transcriber = None
    if with_stt and cfg.stt.engine != "none":
        from appliance.stt.engines import create_transcriber

        stt = cfg.stt
        if stt.vosk_model:  # relative to the config file
            stt = dataclasses.replace(stt, vosk_model=str(cfg.resolve(stt.vosk_model)))
        transcriber = create_transcriber(stt)
    load_s = time.monotonic() - t0
    log.info("engines ready in %.2f s", load_s)
    return Engines(emotion=model, transcriber=transcriber, load_s=load_s)
