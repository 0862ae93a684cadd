"""Bridge instances as real processes (`appliance bridge ...`): started, waited for until they
print `ready`, stopped with SIGTERM or killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def appliance_cmd() -> list[str]:
    """The CLI of this checkout (its venv's entry point, else the module)."""
    exe = Path(sys.executable).parent / "appliance"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "appliance.cli"]


class BridgeProcess:
    """One `appliance bridge` instance; `log` keeps its stderr lines."""

    def __init__(self, args: list[str], name: str):
        self.args = args
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.log: list[str] = []
        self._ready = threading.Event()

    def start(self, timeout: float = 60.0) -> BridgeProcess:
        self._ready.clear()
        self.proc = subprocess.Popen(
            [*appliance_cmd(), "bridge", *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bridge {self.name} did not get ready: {self.log[-10:]}")
        return self

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.log.append(line.rstrip())
            if line.strip() == "ready":
                self._ready.set()

    def kill(self) -> None:
        """SIGKILL: no clean disconnect, no flush, whatever was in hand is lost by the process."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def bridge_args(
    url: str,
    dsn: str,
    key_file: Path,
    client_id: str,
    group: str | None = "crm",
    webhook: str | None = None,
    secret_file: Path | None = None,
    config: Path | None = None,
    protocol: str = "5",
) -> list[str]:
    args = ["--mqtt", url, "--client-id", client_id, "--db", dsn]
    args += ["--customer-key-file", str(key_file), "--protocol", protocol]
    if group:
        args += ["--group", group]
    if webhook:
        args += ["--webhook", webhook, "--webhook-secret-file", str(secret_file)]
    if config:
        args += ["--config", str(config)]
    return args
