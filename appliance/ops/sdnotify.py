"""sd_notify(3) in a few lines: READY=1, WATCHDOG=1, STOPPING=1, STATUS=... to systemd.

systemd passes the notification socket in `NOTIFY_SOCKET` (a path, or `@name` for the abstract
namespace) to `Type=notify` services, and `WATCHDOG_USEC` when `WatchdogSec=` is set. Outside
systemd (no `NOTIFY_SOCKET`) every call is a cheap no-op, so the daemon calls it unconditionally.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    """Sends datagrams to systemd's notification socket; silent when there is none."""

    def __init__(self, address: str | None = None):
        addr = os.environ.get("NOTIFY_SOCKET", "") if address is None else address
        if addr.startswith("@"):
            addr = "\0" + addr[1:]  # abstract namespace
        self.address = addr or None
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *fields: str) -> bool:
        """Send `KEY=value` lines in one datagram; False when not under systemd or on error."""
        if self._sock is None or not fields:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode("utf-8"), self.address)
            return True
        except OSError:
            return False  # systemd gone (shutdown) or socket full: never fatal

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str = "") -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings: half of `WATCHDOG_USEC`, None when no watchdog is set.

    `WATCHDOG_PID`, when present, must be our pid (systemd sets it for the main process only).
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 2e6
