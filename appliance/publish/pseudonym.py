"""How a customer reference leaves the box: a keyed hash, never the reference itself.

The key lives in `pseudonym.key` in the state directory (or the database's folder), created
once with 32 random bytes. A key that is empty, short or unreadable is refused: publishing
HMAC("", reference) would let anyone compute a customer's id. New keys are written atomically
(temporary file, fsync, rename), so a full disk cannot leave a truncated key behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_FILE = "pseudonym.key"
KEY_BYTES = 32
MIN_KEY_BYTES = 16
"""A key shorter than this is refused (HMAC-SHA256 wants at least 128 bits)."""


class PseudonymKeyError(RuntimeError):
    """The pseudonym key file cannot be used; the message names the file and why."""


def pseudonymise(reference: str, key: bytes) -> str:
    """Keyed hash of a customer reference: stable per key, not reversible without it."""
    digest = hmac.new(key, reference.encode("utf-8"), hashlib.sha256).hexdigest()
    return "c-" + digest[:20]


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # link, not rename: a key another process created meanwhile is never overwritten
        os.link(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def load_or_create_key(state_dir: str | Path) -> bytes:
    """The box's pseudonym key, created on first use; refuses an unusable key file."""
    path = Path(state_dir) / KEY_FILE
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                _write_atomically(path, secrets.token_bytes(KEY_BYTES))
            key = path.read_bytes()
        except OSError as exc:  # a full disk leaves no key behind, not an empty one
            raise PseudonymKeyError(
                f"pseudonym key {path} cannot be created: {exc.strerror or exc}"
            ) from exc
    except OSError as exc:
        raise PseudonymKeyError(f"pseudonym key {path} cannot be read: {exc.strerror}") from exc
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(
            f"pseudonym key {path} holds {len(key)} bytes (at least {MIN_KEY_BYTES} needed):"
            " remove it to create a new key (customer ids then change) or restore it"
        )
    return key


class Pseudonymiser:
    """Customer reference -> the id published for it, under the configured policy."""

    def __init__(self, key: bytes, enabled: bool = True):
        self._key = key
        self.enabled = enabled

    def __call__(self, reference: str) -> str:
        if self.enabled:
            return pseudonymise(reference, self._key)
        return reference[:64]
