"""A temporary PostgreSQL cluster for the tests: initdb into a fresh folder, pg_ctl start on a
free loopback port (its unix socket in the same folder), stop and remove at the end.

Debian's `postgresql` package (installed by `install.sh --dev`) puts the server binaries in
/usr/lib/postgresql/<version>/bin. initdb refuses to run as root: as root the cluster runs as
the `postgres` user the package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from appliance.publish.broker import free_port


def find_bindir() -> Path | None:
    """The newest installed server's bin folder (None: PostgreSQL is not installed)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class TempCluster:
    """`start()`, `dsn(dbname)`, `new_database()`, `stop()`."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="appliance-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.user = None if os.geteuid() != 0 else "postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def start(self) -> TempCluster:
        """initdb (the first time) and start the server."""
        if not self.data.exists():
            if self.user:
                pw = pwd.getpwnam(self.user)
                os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            r = self._run(
                "initdb", "-D", str(self.data), "-A", "trust", "-U", "appliance", "-E", "UTF8"
            )
            if r.returncode:
                raise RuntimeError(f"initdb failed: {r.stderr[-500:]}")
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir}"
            " -c max_connections=60 -c shared_buffers=32MB"
        )
        r = self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-o", opts, "-w", "start"
        )
        if r.returncode:
            log = (self.dir / "log").read_text()[-800:] if (self.dir / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {r.stderr[-300:]} {log}")
        return self

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://appliance@127.0.0.1:{self.port}/{dbname}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its DSN."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def stop(self, remove: bool = True) -> None:
        """Stop the server the hard way (a crash); `remove=False` keeps the cluster to start again."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)
