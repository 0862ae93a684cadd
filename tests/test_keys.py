"""The pseudonym key: refused when empty, short or unreadable (the error names the file), written
atomically, so a full disk leaves no key rather than an empty one anyone could reproduce."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import subprocess
import sys

import pytest
from conftest import ROOT

from appliance.publish.pseudonym import (
    KEY_BYTES,
    KEY_FILE,
    PseudonymKeyError,
    load_or_create_key,
    pseudonymise,
)

DEMO = ROOT / "appliance" / "data" / "demo_call.wav"


@pytest.mark.parametrize("content", [b"", b"short-key"], ids=["empty", "short"])
def test_an_empty_or_short_key_file_is_refused_naming_the_file(tmp_path, content):
    (tmp_path / KEY_FILE).write_bytes(content)
    with pytest.raises(PseudonymKeyError) as err:
        load_or_create_key(tmp_path)
    assert str(tmp_path / KEY_FILE) in str(err.value)
    assert f"holds {len(content)} bytes" in str(err.value)
    assert (tmp_path / KEY_FILE).read_bytes() == content  # never replaced behind the admin's back


def test_an_unreadable_key_file_is_refused_naming_the_file(tmp_path):
    (tmp_path / KEY_FILE).mkdir()  # root reads any file: a directory is unreadable to all
    with pytest.raises(PseudonymKeyError, match=f"{tmp_path / KEY_FILE} cannot be read"):
        load_or_create_key(tmp_path)


def test_a_new_key_is_random_private_and_stable(tmp_path):
    key = load_or_create_key(tmp_path / "state")
    path = tmp_path / "state" / KEY_FILE
    assert len(key) == KEY_BYTES and key != bytes(KEY_BYTES)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(tmp_path / "state") == key
    assert [p.name for p in path.parent.iterdir()] == [KEY_FILE]  # no temporary file left
    assert pseudonymise("CRM-1", key) != pseudonymise("CRM-1", b"")


def test_a_full_disk_leaves_no_key_not_an_empty_one(small_disk):
    small_disk.fill()
    with pytest.raises(PseudonymKeyError, match="cannot be created: No space left on device"):
        load_or_create_key(small_disk.path)
    assert not (small_disk.path / KEY_FILE).exists()
    assert not [p for p in os.listdir(small_disk.path) if p.endswith(".tmp")]
    small_disk.release()
    assert len(load_or_create_key(small_disk.path)) == KEY_BYTES


def test_analyze_refuses_an_empty_key_in_one_line_and_publishes_nothing(tmp_path):
    """An empty key placed in the state directory: before, the run published
    HMAC("", reference), which anyone can compute."""
    (tmp_path / KEY_FILE).write_bytes(b"")
    db = tmp_path / "box.db"
    p = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "analyze", str(DEMO), "--db", str(db)]
        + ["--no-stt", "--customer", "CRM-000123"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 1
    assert "Traceback" not in p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: pseudonym key ") and str(tmp_path / KEY_FILE) in last
    weak = "c-" + hmac.new(b"", b"CRM-000123", hashlib.sha256).hexdigest()[:20]
    if db.exists():
        import sqlite3

        con = sqlite3.connect(db)
        try:
            payloads = [r[0] for r in con.execute("SELECT payload FROM outbox")]
        finally:
            con.close()
        assert payloads == [] and not any(weak in x for x in payloads)
