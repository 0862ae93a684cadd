"""sd_notify over a real unix datagram socket, as systemd provides it in NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from appliance.ops.sdnotify import Notifier, watchdog_interval


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_ready_watchdog_stopping_reach_the_socket(notify_socket):
    n = Notifier()
    assert n.enabled
    assert n.ready("capturing 2 position(s)")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=capturing 2 position(s)"
    assert n.watchdog()
    assert notify_socket.recv(4096) == b"WATCHDOG=1"
    assert n.status("draining")
    assert notify_socket.recv(4096) == b"STATUS=draining"
    assert n.stopping()
    assert notify_socket.recv(4096) == b"STOPPING=1"
    n.close()
    assert not n.watchdog()  # closed: a no-op, never an exception


def test_abstract_namespace_socket():
    name = f"appliance-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        n = Notifier(address="@" + name)
        assert n.ready()
        assert sock.recv(4096) == b"READY=1"
        n.close()
    finally:
        sock.close()


def test_without_systemd_everything_is_a_quiet_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled
    assert not n.ready() and not n.watchdog() and not n.stopping()


def test_vanished_socket_is_not_fatal(tmp_path):
    n = Notifier(address=str(tmp_path / "gone.sock"))
    assert n.enabled and not n.watchdog()
    n.close()


def test_watchdog_interval(monkeypatch):
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    assert watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "nonsense")
    assert watchdog_interval() is None
