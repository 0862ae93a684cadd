"""How a customer reference leaves the box: a keyed hash, never the reference itself.

The published id is `"c-" + hex(HMAC-SHA256(key, reference as UTF-8))[:20]` (docs/mqtt.md), so
whoever holds the key - the CRM - can compute it for its own records. A site provisions one key
(`mqtt.customer_key_file`, the same file on every box and at the CRM bridge): one customer then
has one id across the site's boxes. Without it, each box creates its own random key in
`pseudonym.key` in its state directory (ids then differ between boxes). A site key file that is
missing is refused rather than replaced by a new key: a box with a key of its own would split
every customer in two without anyone noticing.

A key that is empty, short or unreadable is refused: publishing HMAC("", reference) would let
anyone compute a customer's id. New keys are written atomically (temporary file, fsync, link),
so a full disk cannot leave a truncated key behind. `key_id` names a key without revealing it:
the box publishes it beside pseudonymised ids and the bridge counts messages made under
another key (a box provisioned with the wrong file).
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


def key_id(key: bytes) -> str:
    """`k-` + 12 hex digits naming the key (an HMAC of a fixed label: the key stays secret)."""
    return "k-" + hmac.new(key, b"appliance-customer-key-id", hashlib.sha256).hexdigest()[:12]


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
        path.read_bytes()
    except FileNotFoundError:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                _write_atomically(path, secrets.token_bytes(KEY_BYTES))
        except OSError as exc:  # a full disk leaves no key behind, not an empty one
            raise PseudonymKeyError(
                f"pseudonym key {path} cannot be created: {exc.strerror or exc}"
            ) from exc
    except OSError:
        pass  # load_key names the file and the reason
    return load_key(
        path, fix="remove it to create a new key (customer ids then change) or restore it"
    )


def new_key_file(path: str | Path) -> bytes:
    """Create a site key (32 random bytes, mode 0600); refuses to overwrite an existing file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _write_atomically(path, secrets.token_bytes(KEY_BYTES))
    except FileExistsError as exc:
        raise PseudonymKeyError(f"{path} exists: a site key is never overwritten") from exc
    return load_key(path)


def load_key(path: str | Path, fix: str = "restore the site's key file") -> bytes:
    """A provisioned key file (the site's `mqtt.customer_key_file`); never created here.

    The key is the file's bytes exactly (no newline is stripped)."""
    path = Path(path)
    try:
        key = path.read_bytes()
    except FileNotFoundError as exc:
        raise PseudonymKeyError(
            f"pseudonym key {path} does not exist: copy the site's key file there"
            " (docs/crm.md: provisioning the site key)"
        ) from exc
    except OSError as exc:
        raise PseudonymKeyError(f"pseudonym key {path} cannot be read: {exc.strerror}") from exc
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(
            f"pseudonym key {path} holds {len(key)} bytes (at least {MIN_KEY_BYTES} needed): {fix}"
        )
    return key


def customer_key(key_file: str | Path | None, state_dir: str | Path) -> bytes:
    """The site key when `mqtt.customer_key_file` is set, else the box's own key."""
    return load_key(key_file) if key_file else load_or_create_key(state_dir)


class Pseudonymiser:
    """Customer reference -> the id published for it, under the configured policy."""

    def __init__(self, key: bytes, enabled: bool = True):
        self._key = key
        self.enabled = enabled
        self.key_id = key_id(key) if enabled else ""
        """Published beside pseudonymised ids; "" when references are published in clear."""

    def __call__(self, reference: str) -> str:
        if self.enabled:
            return pseudonymise(reference, self._key)
        return reference[:64]
