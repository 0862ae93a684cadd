"""systemd units: hardening score (systemd-analyze security --offline), syntax, and the known traps."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "systemd"
SERVICES = sorted(UNITS.glob("*.service"))
MAX_EXPOSURE = 2.0  # the issue asks <= 3.0, with 2.0 as the goal

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (apt-get install systemd)",
)


def _unit(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str  # keys are case-sensitive
    # systemd allows repeated keys (SystemCallFilter=...): keep the last for these checks
    cp.read_string(path.read_text())
    return cp


def _values(path: Path, key: str) -> list[str]:
    return re.findall(rf"^{re.escape(key)}=(.*)$", path.read_text(), flags=re.M)


def test_the_units_exist():
    names = {p.name for p in UNITS.iterdir()}
    assert {
        "appliance.service",
        "appliance-panel.service",
        "appliance-retention.service",
        "appliance-retention.timer",
    } <= names


@needs_analyze
@pytest.mark.parametrize("unit", SERVICES, ids=lambda p: p.name)
def test_exposure_score(unit):
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout + out.stderr)
    assert m, out.stdout + out.stderr
    score = float(m.group(1))
    assert score <= MAX_EXPOSURE, f"{unit.name}: exposure {score}\n{out.stdout}"


@needs_analyze
def test_units_verify_cleanly(tmp_path):
    """`systemd-analyze verify`: no unknown keys or bad values (ExecStart paths redirected)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for exe in ("appliance", "gunicorn"):
        (bindir / exe).write_text("#!/bin/sh\n")
        (bindir / exe).chmod(0o755)
    units = []
    for src in sorted(UNITS.iterdir()):
        dst = tmp_path / src.name
        dst.write_text(src.read_text().replace("/opt/appliance/venv/bin/", f"{bindir}/"))
        units.append(str(dst))
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [
        line
        for line in (out.stdout + out.stderr).splitlines()
        if line.strip() and "sysinit.target" not in line
    ]
    assert out.returncode == 0 and not problems, "\n".join(problems)


def test_daemon_unit_is_notify_with_watchdog_and_sound_access():
    u = _unit(UNITS / "appliance.service")
    s = u["Service"]
    assert s["Type"] == "notify" and s["NotifyAccess"] == "main"
    assert int(s["WatchdogSec"]) >= 10
    assert s["Restart"] == "on-failure"
    assert s["ExecStart"].endswith("appliance -v run --config /etc/appliance/appliance.toml")
    assert s["User"] == "appliance" and "audio" in s["SupplementaryGroups"].split()
    # the traps: PrivateDevices hides /dev/snd, MemoryDenyWriteExecute breaks numba's JIT
    assert s.get("PrivateDevices", "no") == "no"
    assert "char-alsa rw" in _values(UNITS / "appliance.service", "DeviceAllow")
    assert s.get("MemoryDenyWriteExecute", "no") == "no"
    assert "NUMBA_CACHE_DIR=/var/lib/appliance/" in s["Environment"]
    assert s["StateDirectory"] == "appliance"


def test_panel_unit_runs_as_its_own_user_with_host_and_port_from_the_config(tmp_path):
    s = _unit(UNITS / "appliance-panel.service")["Service"]
    cmd = s["ExecStart"]
    assert "gunicorn -c python:appliance.panel.gunicorn_conf" in cmd
    assert "'appliance.panel.wsgi:app'" in cmd and " -b " not in cmd and "0.0.0.0" not in cmd
    env = " ".join(_values(UNITS / "appliance-panel.service", "Environment"))
    assert "APPLIANCE_CONFIG=/etc/appliance/appliance.toml" in env
    assert "APPLIANCE_PANEL_SECRET_FILE=/var/lib/appliance-panel/" in env
    # not the daemon's user; never StateDirectory=appliance (systemd would chown it to the panel)
    assert s["User"] == "appliance-panel" and s["Group"] == "appliance"
    assert s["StateDirectory"] == "appliance-panel" and s["ReadWritePaths"] == "/var/lib/appliance"
    for unit in ("appliance.service", "appliance-retention.service"):
        assert _unit(UNITS / unit)["Service"]["StateDirectoryMode"] == "1770"
    # what gunicorn makes of the unit's command line with a config: bind, TLS, threads
    from appliance.panel.tls import make_self_signed

    make_self_signed(tmp_path / "c.pem", tmp_path / "k.pem")
    conf = tmp_path / "a.toml"
    conf.write_text(
        f'[paths]\ndb = "{tmp_path}/a.db"\n[panel]\nhost = "10.9.8.7"\nport = 9443\n'
        'cert_file = "c.pem"\nkey_file = "k.pem"\nmax_streams = 20\n'
    )
    import os
    import sys

    args = cmd.split("gunicorn", 1)[1].replace("'", "").split()
    out = subprocess.run(
        [sys.executable, "-m", "gunicorn", *args[:-1], "--print-config", args[-1]],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**os.environ, "APPLIANCE_CONFIG": str(conf)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    printed = dict(re.findall(r"^(\w+)\s+= (.*)$", out.stdout, flags=re.M))
    assert printed["bind"] == "['10.9.8.7:9443']" and printed["threads"] == "28"
    assert printed["certfile"] == str(tmp_path / "c.pem") and printed["workers"] == "1"
    assert printed["worker_class"] == "gthread"
    assert printed["logger_class"] == "appliance.panel.serving.RedactingLogger"


def test_retention_timer_starts_the_retention_service():
    t = _unit(UNITS / "appliance-retention.timer")
    assert t["Timer"]["OnCalendar"] and t["Timer"]["Persistent"] == "true"
    assert t["Install"]["WantedBy"] == "timers.target"
    s = _unit(UNITS / "appliance-retention.service")["Service"]
    assert s["Type"] == "oneshot" and "appliance retention --config" in s["ExecStart"]
    assert s["PrivateNetwork"] == "yes"


_MDWE = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN (Linux >= 6.3)
    sys.exit(77)
"""


def _under_mdwe(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """What systemd's MemoryDenyWriteExecute=yes enforces, via the kernel's own MDWE prctl."""
    import os
    import sys

    return subprocess.run(
        [sys.executable, "-c", _MDWE + code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_memory_deny_write_execute_matches_each_process(tmp_path):
    """Panel and retention run with W^X memory; the daemon's numba cannot (hence =no there)."""
    probe = _under_mdwe("pass")
    if probe.returncode == 77:
        pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3)")
    from appliance.store.writer import Store

    db = tmp_path / "a.db"
    Store(db).close()
    panel = _under_mdwe(
        "import appliance.panel.wsgi as w\n"
        "c = w.app.test_client(); assert c.get('/healthz').status_code == 200\n"
        "from argon2 import PasswordHasher; h = PasswordHasher(); assert h.verify(h.hash('pw'), 'pw')\n",
        env={"APPLIANCE_DB": str(db)},
    )
    assert panel.returncode == 0, panel.stderr[-2000:]
    assert "MemoryDenyWriteExecute=yes" in (UNITS / "appliance-panel.service").read_text()
    retention = _under_mdwe(
        f"from appliance.cli import main; sys.exit(main(['retention', '--db', {str(db)!r}]))"
    )
    assert retention.returncode == 0, retention.stderr[-2000:]
    assert "MemoryDenyWriteExecute=yes" in (UNITS / "appliance-retention.service").read_text()
    jit = _under_mdwe(
        "import numba\n@numba.njit\ndef f(x):\n    return x + 1\nf(1)\n",
        env={"NUMBA_CACHE_DIR": str(tmp_path / "nb")},
    )
    assert jit.returncode != 0 and "executable memory" in jit.stderr
    assert "MemoryDenyWriteExecute=no" in (UNITS / "appliance.service").read_text()


def test_tap_unit_grants_only_cap_net_raw_and_siprec_none():
    tap = _unit(UNITS / "appliance-tap.service")["Service"]
    assert tap["CapabilityBoundingSet"] == "CAP_NET_RAW" == tap["AmbientCapabilities"]
    assert tap["User"] == "appliance" and tap["NoNewPrivileges"] == "yes"
    assert "AF_PACKET" in tap["RestrictAddressFamilies"].split()
    assert " tap --interface ${TAP_INTERFACE} " in tap["ExecStart"]
    rec = _unit(UNITS / "appliance-siprec.service")["Service"]
    assert rec["CapabilityBoundingSet"] == "" and rec["AmbientCapabilities"] == ""
    assert "AF_PACKET" not in rec["RestrictAddressFamilies"]
    for name in ("appliance-tap.service", "appliance-siprec.service"):
        assert "appliance.service" in _unit(UNITS / name)["Unit"]["Conflicts"].split()


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) not installed")
def test_the_tap_captures_with_cap_net_raw_alone_and_is_refused_without():
    """What the unit grants, as an unprivileged user: CAP_NET_RAW opens the packet socket on
    `lo` (promiscuous membership included for other interfaces), nothing else is needed."""
    import os
    import sys

    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user with one capability")
    code = (
        "from appliance.voip.sniff import Sniffer, SniffError\n"
        "try:\n    Sniffer('lo').close(); print('captured')\n"
        "except SniffError as e:\n    print('refused', e)\n"
    )
    out = {}
    for caps in ("+net_raw", "-all"):
        r = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             f"--inh-caps=-all,{caps}", f"--ambient-caps=-all,{caps}",
             "--bounding-set=-all,+net_raw", sys.executable, "-c", code],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        out[caps] = r.stdout + r.stderr
    assert "captured" in out["+net_raw"], out
    assert "refused capturing needs CAP_NET_RAW" in out["-all"], out
