"""`install.sh --system` into a temporary root (no systemd needed), idempotence, uninstall, purge;
shellcheck on every shell script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "install.sh"
UNITS = [
    "appliance.service",
    "appliance-panel.service",
    "appliance-retention.service",
    "appliance-retention.timer",
]


def _run(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(INSTALL), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shell_scripts_are_shellcheck_clean():
    scripts = [INSTALL, *sorted((ROOT / "scripts").glob("*.sh"))]
    assert any(p.name == "install_system.sh" for p in scripts)
    out = subprocess.run(
        ["shellcheck", *map(str, scripts)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    "model,board",
    [
        ("Raspberry Pi 4 Model B Rev 1.5", "raspberry-pi-4"),
        ("Raspberry Pi 5 Model B Rev 1.0", "raspberry-pi-5"),
        ("NVIDIA Jetson Orin Nano Developer Kit", "jetson-orin-nano"),
    ],
)
def test_board_detection_from_device_tree(tmp_path, model, board):
    f = tmp_path / "model"
    f.write_bytes(model.encode() + b"\0")
    out = _run("--system", "--print-board", env={"APPLIANCE_DT_MODEL": str(f)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == board
    assert (ROOT / "firmware_config" / board / "appliance.toml").is_file()


def test_unknown_board_is_refused_with_the_choices(tmp_path):
    f = tmp_path / "model"
    f.write_bytes(b"Some x86 PC\0")
    out = _run("--system", "--root", str(tmp_path / "r"), env={"APPLIANCE_DT_MODEL": str(f)})
    assert out.returncode != 0
    assert "--board" in out.stderr and "raspberry-pi-4" in out.stderr


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory):
    """The appliance wheel built from this checkout (offline; dependencies are not installed)."""
    pytest.importorskip("setuptools")
    d = tmp_path_factory.mktemp("wheels")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(d),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if out.returncode != 0:
        pytest.skip(f"cannot build the appliance wheel offline: {out.stderr[-300:]}")
    return d


@pytest.mark.skipif(os.geteuid() != 0, reason="the box install runs as root")
@pytest.mark.skipif(shutil.which("useradd") is None, reason="useradd (passwd package) missing")
def mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def test_system_install_into_a_root_folder(tmp_path, wheelhouse):
    r = tmp_path / "root"
    site_key = tmp_path / "site.key"
    site_key.write_bytes(os.urandom(32))
    args = [
        "--system",
        "--root",
        str(r),
        "--board",
        "raspberry-pi-4",
        "--wheelhouse",
        str(wheelhouse),
        "--no-deps",
        "--customer-key",
        str(site_key),
    ]
    out = _run(*args)
    assert out.returncode == 0, out.stdout + out.stderr
    log = out.stdout + out.stderr

    # service user in group audio
    passwd = (r / "etc/passwd").read_text()
    line = next(x for x in passwd.splitlines() if x.startswith("appliance:"))
    uid = int(line.split(":")[2])
    assert line.endswith(":/var/lib/appliance:/usr/sbin/nologin")
    audio = next(x for x in (r / "etc/group").read_text().splitlines() if x.startswith("audio:"))
    assert "appliance" in audio.split(":")[3].split(",")

    # application copy + venv with the entry point; the installed config validates through it
    app = r / "opt/appliance"
    assert (app / "appliance" / "ops" / "daemon.py").is_file() and not (app / ".git").exists()
    exe = app / "venv/bin/appliance"
    assert exe.is_file() and os.access(exe, os.X_OK)
    conf = r / "etc/appliance/appliance.toml"
    assert conf.read_text() == (ROOT / "firmware_config/raspberry-pi-4/appliance.toml").read_text()
    chk = subprocess.run(
        [str(exe), "check-config", str(conf)], capture_output=True, text=True, timeout=60
    )
    assert chk.returncode == 0, chk.stderr

    # state, keys, certificate with subjectAltName
    state = r / "var/lib/appliance"
    for d in ("", "numba-cache", "keys", "models"):
        assert (state / d).stat().st_uid == uid
    key = state / "keys/panel.key"
    # the panel's own user, in the daemon's group: its files in keys/ are group-readable (and
    # keys/ only traversable), the database group-writable, the folder sticky
    panel = next(
        x for x in (r / "etc/passwd").read_text().splitlines() if x.startswith("appliance-panel:")
    )
    assert panel.split(":")[3] == line.split(":")[3] and panel.split(":")[2] != str(uid)
    assert mode(state) == 0o1770 and mode(state / "keys") == 0o710
    assert mode(key) == 0o640 and mode(state / "keys/metrics.token") == 0o640
    assert mode(state / "keys/mqtt.password") == 0o600  # the local broker's: the daemon's alone
    assert mode(state / "appliance.db") == 0o660 and (state / "appliance.db").stat().st_uid == uid
    assert mode(r / "var/lib/appliance-panel") == 0o700
    assert (r / "var/lib/appliance-panel").stat().st_uid == int(panel.split(":")[2])
    if shutil.which("openssl"):
        san = subprocess.run(
            [
                "openssl",
                "x509",
                "-in",
                str(state / "keys/panel.crt"),
                "-noout",
                "-ext",
                "subjectAltName",
            ],
            capture_output=True,
            text=True,
        ).stdout
        assert "DNS:localhost" in san and "IP Address:127.0.0.1" in san

    # the site's customer key, private to the service user, named in the log by its key id
    from appliance.publish.pseudonym import key_id

    installed = state / "keys/customer.key"
    assert installed.read_bytes() == site_key.read_bytes()
    assert installed.stat().st_uid == uid and installed.stat().st_mode & 0o077 == 0
    assert key_id(site_key.read_bytes()) in log

    # units installed and enabled (offline symlinks), board files in place
    for u in UNITS:
        assert (r / "etc/systemd/system" / u).read_text() == (ROOT / "systemd" / u).read_text()
    if shutil.which("systemctl"):
        wants = r / "etc/systemd/system/multi-user.target.wants"
        assert (wants / "appliance.service").is_symlink() and (
            wants / "appliance-panel.service"
        ).is_symlink()
        assert (r / "etc/systemd/system/timers.target.wants/appliance-retention.timer").is_symlink()
    assert (r / "etc/udev/rules.d/90-appliance-audio.rules").is_file()
    assert (r / "etc/asound.conf").read_text() == (
        ROOT / "firmware_config/raspberry-pi-4/asound.conf"
    ).read_text()
    assert "Storage=volatile" in (r / "etc/systemd/journald.conf.d/90-appliance.conf").read_text()
    # --root never starts services: each systemctl/udevadm step is reported as skipped
    assert "systemd is not running" in log and "skipping" in log

    # idempotent: a second run keeps the admin's config and the certificate; a daemon key made
    # readable by an old umask is the daemon's alone again
    pseudonym = state / "keys/pseudonym.key"
    pseudonym.write_bytes(b"k" * 32)
    pseudonym.chmod(0o644)
    conf.write_text(conf.read_text().replace('id = "pi4-box-01"', 'id = "edited-box"'))
    cert = (state / "keys/panel.crt").read_bytes()
    again = _run(*args)
    assert again.returncode == 0, again.stderr
    assert 'id = "edited-box"' in conf.read_text()
    assert (state / "keys/panel.crt").read_bytes() == cert
    assert mode(pseudonym) == 0o600 and mode(key) == 0o640
    assert passwd.count("appliance:") == (r / "etc/passwd").read_text().count("appliance:")

    # uninstall keeps data and config; --purge removes them and the user
    db = state / "appliance.db"
    db.write_bytes(b"scores")
    un = _run("--uninstall", "--root", str(r))
    assert un.returncode == 0, un.stderr
    assert not app.exists() and not (r / "etc/systemd/system/appliance.service").exists()
    assert not (r / "etc/systemd/system/multi-user.target.wants/appliance.service").exists()
    assert not (r / "etc/udev/rules.d/90-appliance-audio.rules").exists()
    assert not (r / "etc/asound.conf").exists()  # ours, unchanged: removed
    assert db.exists() and conf.exists()
    purge = _run("--uninstall", "--purge", "--root", str(r))
    assert purge.returncode == 0, purge.stderr
    assert not state.exists() and not (r / "etc/appliance").exists()
    assert "appliance:" not in (r / "etc/passwd").read_text()
    assert "appliance-panel:" not in (r / "etc/passwd").read_text()
