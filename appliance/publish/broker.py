"""A private mosquitto on a free loopback port: the demo's embedded default and the tests' broker."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class BrokerError(RuntimeError):
    """mosquitto is missing or did not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


class LocalBroker:
    """Start with `start()`, stop with `stop()` (or use as a context manager)."""

    def __init__(
        self,
        port: int | None = None,
        persistence: bool = True,
        workdir: str | Path | None = None,
        autosave_interval: int = 1,
        listener_lines: list[str] | None = None,
        extra_lines: list[str] | None = None,
        scheme: str = "mqtt",
        config: str | None = None,
    ):
        """`listener_lines` replace the default plain loopback listener (e.g. a TLS listener
        with its cafile/certfile/keyfile/require_certificate lines); `extra_lines` are appended
        (ACL file, password file...). `autosave_interval` is mosquitto's: seconds between
        snapshots of the in-memory state to disk (what a SIGKILL loses)."""
        self.port = port or free_port()
        self.persistence = persistence
        self.autosave_interval = autosave_interval
        self.listener_lines = listener_lines
        self.extra_lines = list(extra_lines or [])
        self.scheme = scheme
        self.config = config
        """A complete mosquitto.conf to use instead of the generated one (`port` must be the
        port of one of its listeners: readiness is checked there)."""
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="appliance-broker-")
        self.workdir = Path(workdir or self._tmp.name)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> LocalBroker:
        exe = find_mosquitto()
        if exe is None:
            raise BrokerError(
                "mosquitto not found: install it (apt-get install mosquitto) or pass --mqtt URL"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        if self.config is not None:
            lines = [self.config, f"user {pwd.getpwuid(os.geteuid()).pw_name}"]
            conf.write_text("\n".join(lines) + "\n")
            return self._launch(exe, conf, timeout)
        lines = self.listener_lines or [f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
        lines = [*lines, "max_queued_messages 100000", "max_inflight_messages 100"]
        # mosquitto started as root drops to the `mosquitto` user, which cannot write our
        # private directory: persistence would silently fail ("Error saving in-memory database").
        lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        if self.persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.workdir}/",
                f"autosave_interval {self.autosave_interval}",
            ]
        lines += self.extra_lines
        conf.write_text("\n".join(lines) + "\n")
        return self._launch(exe, conf, timeout)

    def _launch(self, exe: str, conf: Path, timeout: float) -> LocalBroker:
        with open(self.workdir / "mosquitto.log", "ab") as log_file:
            self.proc = subprocess.Popen(
                [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=log_file
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(
                    f"mosquitto exited with {self.proc.returncode}: {(self.workdir / 'mosquitto.log').read_text()[-500:]}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on port {self.port} within {timeout}s")

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self, kill: bool = False, down_for: float = 0.0) -> LocalBroker:
        """Stop (SIGTERM saves the state; SIGKILL loses what the last autosave missed), start again
        on the same port with the same persistence directory."""
        self.stop(kill=kill)
        if down_for:
            time.sleep(down_for)
        return self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
