"""The panel's own user, for real: two processes with the uids and the shared group the install
gives the daemon and the panel, on the folder modes install_system.sh sets. The panel reads and
writes the database (also creating its -wal/-shm while the daemon is down) and opens its own
certificate key by name, but cannot read the pseudonym key or list keys/. Needs root (to switch
uids, as systemd does); CI runs as root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")

DAEMON_UID, PANEL_UID, GROUP = 64101, 64102, 64100  # unused ids: no /etc/passwd entry needed


DROP = """
import os
from appliance.panel import users
from appliance.store.writer import Store
os.setgroups([]); os.setgid({gid}); os.setuid({uid}); os.umask({umask})
"""
"""Imports first (the interpreter and venv may live where the test users cannot read, e.g.
under /root), then the uids systemd would start the process with, and the units' umasks."""


def run_as(uid: int, code: str) -> subprocess.CompletedProcess:
    umask = 0o027 if uid == DAEMON_UID else 0o077  # appliance.service / appliance-panel.service
    prelude = DROP.format(gid=GROUP, uid=uid, umask=umask)
    return subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def state():
    top = Path(tempfile.mkdtemp(prefix="appliance-boundary-", dir="/tmp"))
    top.chmod(0o711)  # traversable by the two test users, as /var/lib is
    st = top / "state"
    (st / "keys").mkdir(parents=True)
    for p in (st, st / "keys"):
        os.chown(p, DAEMON_UID, GROUP)
    st.chmod(0o1770)
    (st / "keys").chmod(0o710)
    for name, mode in (("pseudonym.key", 0o600), ("mqtt.password", 0o600), ("panel.key", 0o640)):
        (st / "keys" / name).write_bytes(b"k" * 32)
        os.chown(st / "keys" / name, DAEMON_UID, GROUP)
        (st / "keys" / name).chmod(mode)
    yield st
    shutil.rmtree(top)


DAEMON_WRITES = """
s = Store({db!r}); s.write(upserts={{"calls": [{{"id": {cid!r}, "state": "live", "started_at": 1.0}}]}}); s.close()
"""

PANEL = """
db = users.open_db({db!r})
users.add_user(db, "sup", "supervisor", "a-long-password")
print("calls", db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])
db.conn.close()
print("panel.key", len(open({keys!r} + "/panel.key", "rb").read()))
for name in ("pseudonym.key", "mqtt.password"):
    try:
        open({keys!r} + "/" + name, "rb").read()
        print(name, "READ")
    except PermissionError:
        print(name, "refused")
try:
    os.listdir({keys!r}); print("keys listed")
except PermissionError:
    print("keys unlisted")
for victim in ("keys", "appliance.db"):
    try:
        os.rename({st!r} + "/" + victim, {st!r} + "/moved"); print(victim, "MOVED")
    except PermissionError:
        print(victim, "stays")
"""


def test_panel_user_reads_the_database_not_the_daemons_keys(state):
    db = str(state / "appliance.db")
    d = run_as(DAEMON_UID, DAEMON_WRITES.format(db=db, cid="c-1"))
    assert d.returncode == 0, d.stderr[-2000:]
    assert (state / "appliance.db").stat().st_mode & 0o777 == 0o660  # folder group-writable
    # the daemon is down (no -wal/-shm): the panel creates them and writes users
    p = run_as(PANEL_UID, PANEL.format(db=db, keys=str(state / "keys"), st=str(state)))
    assert p.returncode == 0, p.stderr[-2000:]
    out = p.stdout.splitlines()
    assert "calls 1" in out and "panel.key 32" in out
    assert "pseudonym.key refused" in out and "mqtt.password refused" in out
    assert "keys unlisted" in out and "keys stays" in out and "appliance.db stays" in out
    # and the daemon goes on writing the database the panel opened last
    again = run_as(DAEMON_UID, DAEMON_WRITES.format(db=db, cid="c-2"))
    assert again.returncode == 0, again.stderr[-2000:]
