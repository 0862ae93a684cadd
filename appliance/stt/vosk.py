"""Kaldi/Vosk: streaming recognition with partial results, for boxes with an English Vosk model
(it cannot ship in our package: it is downloaded or copied from a USB stick at install time)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from appliance.capture.resample import resample
from appliance.stt.base import SttError, TranscriberStream, _check_audio, _finalise
from appliance.stt.redact import redact
from appliance.types import Transcript, Word

#: Written by the installer next to an installed model: name, source and SHA-256.
INSTALL_META = ".appliance-model.json"
_VOSK_MODELS: dict[str, Any] = {}
_VOSK_LOCK = threading.Lock()


def validate_vosk_model(path: str | Path) -> Path:
    """Check a Vosk model folder layout; return its resolved path or raise SttError naming the gap."""
    p = Path(path)
    if not p.is_dir():
        raise SttError(f"Vosk model directory {p} does not exist")
    missing = []
    if not (p / "am" / "final.mdl").is_file():
        missing.append("am/final.mdl")
    if not (p / "conf").is_dir() or not any((p / "conf").glob("*.conf")):
        missing.append("conf/*.conf")
    g = p / "graph"
    if not (
        (g / "HCLG.fst").is_file() or ((g / "HCLr.fst").is_file() and (g / "Gr.fst").is_file())
    ):
        missing.append("graph/HCLG.fst (or graph/HCLr.fst + graph/Gr.fst)")
    if missing:
        raise SttError(f"{p} is not a Vosk model: missing {', '.join(missing)}")
    return p.resolve()


def _load_vosk(path: str | Path) -> Any:
    """One vosk.Model per model directory per process (~hundreds of MB; recognizers share it)."""
    key = str(validate_vosk_model(path))
    with _VOSK_LOCK:
        model = _VOSK_MODELS.get(key)
        if model is None:
            import vosk

            vosk.SetLogLevel(-1)  # Kaldi logs every model load to stderr otherwise
            model = vosk.Model(key)
            _VOSK_MODELS[key] = model
        return model


def _to_pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class _VoskStream:
    def __init__(self, model: Any, sr: int, partials: bool):
        import vosk

        self._rec = vosk.KaldiRecognizer(model, float(sr))
        self._rec.SetWords(True)
        self._sr = sr
        self._partials = partials
        self._texts: list[str] = []
        self._words: list[Word] = []
        self._samples = 0
        self._last_partial = ""
        self._done = False

    def _collect(self, result_json: str) -> None:
        res = json.loads(result_json)
        text = res.get("text", "").strip()
        if text:
            self._texts.append(text)
        for w in res.get("result", ()):
            self._words.append(
                Word(
                    text=str(w.get("word", "")),
                    start=float(w.get("start", 0.0)),
                    end=float(w.get("end", 0.0)),
                    confidence=float(w.get("conf", 1.0)),
                )
            )

    def accept(self, chunk: np.ndarray) -> str | None:
        if self._done:
            raise RuntimeError("stream already finished")
        x = _check_audio(chunk, self._sr)
        if x.size == 0:
            return None
        self._samples += x.size
        if self._rec.AcceptWaveform(_to_pcm16(x)):
            self._collect(self._rec.Result())
            current = " ".join(self._texts)
        else:
            if not self._partials:
                return None
            partial = json.loads(self._rec.PartialResult()).get("partial", "").strip()
            current = " ".join([*self._texts, partial]).strip()
        if not self._partials or not current or current == self._last_partial:
            return None
        self._last_partial = current
        return redact(current, partial=True).text

    def finish(self) -> Transcript:
        if not self._done:
            self._collect(self._rec.FinalResult())
            self._done = True
        return _finalise(" ".join(self._texts), self._words, "vosk", self._samples / self._sr)


class VoskTranscriber:
    """Kaldi/Vosk: streaming, partial results, word timings; 8 and 16 kHz fed natively."""

    name = "vosk"

    def __init__(self, model_path: str | Path, partials: bool = True):
        self.model_path = validate_vosk_model(model_path)
        self._model = _load_vosk(self.model_path)
        self.partials = partials

    @property
    def streams_partials(self) -> bool:
        """True when `stream()` returns partial results (`stt.partials`)."""
        return self.partials

    def stream(self, sr: int) -> TranscriberStream:
        if sr not in (8000, 16000):
            raise ValueError(f"Vosk streams take 8000 or 16000 Hz, got {sr}")
        return _VoskStream(self._model, sr, self.partials)

    def transcribe(self, audio: np.ndarray, sr: int) -> Transcript:
        x = _check_audio(audio, sr)
        if sr not in (8000, 16000):
            x, sr = resample(x, sr, 16000), 16000
        s = _VoskStream(self._model, sr, partials=False)
        s.accept(x)
        return s.finish()
