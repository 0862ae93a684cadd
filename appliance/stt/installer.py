"""Installing an English Vosk model (a directory, a .zip or a URL verified by SHA-256), and the
`python -m appliance.stt` command line (`install-vosk-model`, `info`)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

from appliance.config import SttConfig
from appliance.stt.base import SttError
from appliance.stt.engines import create_transcriber, engine_info
from appliance.stt.vosk import INSTALL_META, validate_vosk_model
from appliance.stt.whisper import file_sha256

#: Published SHA-256 of alphacephei's vosk-model-small-en-us-0.15.zip.
VOSK_SMALL_EN_US_015_SHA256 = "30f26242c4eb449f948e42cb302dd7a686cb29a3423a8367f99ff41780942498"
_KNOWN_VOSK_ZIPS = {"vosk-model-small-en-us-0.15.zip": VOSK_SMALL_EN_US_015_SHA256}


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
        (staged / INSTALL_META).write_text(json.dumps(meta, indent=1) + "\n")
        old = None
        if dest_dir.exists():
            old = work / "old"
            dest_dir.rename(old)
        staged.rename(dest_dir)
        return dest_dir.resolve()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m appliance.stt install-vosk-model SRC DEST [--sha256 X]` | `info ...`."""
    ap = argparse.ArgumentParser(
        prog="python -m appliance.stt", description="Speech-to-text model tools."
    )
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
            SttConfig(
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
