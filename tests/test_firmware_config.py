"""firmware_config/: every board's example config validates; broken variants are refused by key;
asound.conf, udev rules and appliance.toml agree with each other."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FW = ROOT / "firmware_config"
BOARDS = sorted(p for p in FW.iterdir() if p.is_dir() and p.name != "mosquitto")
BOARD_IDS = [p.name for p in BOARDS]


def _check_config(path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", "check-config", str(path), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _toml_value(v) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def _dump(data: dict, prefix: str = "") -> str:
    """A small TOML writer for the config's shape (tables, arrays of tables, scalars, lists)."""
    lines, tables = [], []
    for k, v in data.items():
        if isinstance(v, dict) or isinstance(v, list) and v and isinstance(v[0], dict):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    out = "\n".join(lines) + "\n"
    for k, v in tables:
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out += f"\n[{name}]\n" + _dump(v, name + ".")
        else:
            for item in v:
                out += f"\n[[{name}]]\n" + _dump(item, name + ".")
    return out


def test_at_least_three_boards():
    assert {"raspberry-pi-4", "raspberry-pi-5", "jetson-orin-nano"} <= set(BOARD_IDS)
    for board in BOARDS:
        for f in ("appliance.toml", "asound.conf", "90-appliance-audio.rules", "README.md"):
            assert (board / f).is_file(), f"{board.name}/{f} missing"


@pytest.mark.parametrize("board", BOARDS, ids=BOARD_IDS)
def test_example_config_passes_check_config(board):
    out = _check_config(board / "appliance.toml")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok:")
    # the files it points to exist only on an installed box: warnings here, errors under --strict
    strict = _check_config(board / "appliance.toml", "--strict")
    assert strict.returncode != 0 and "panel.cert_file" in strict.stderr


def test_dumper_round_trips_the_examples():
    for board in BOARDS:
        data = tomllib.loads((board / "appliance.toml").read_text())
        assert tomllib.loads(_dump(data)) == data


BROKEN = [
    # (description, mutation, key named in the error)
    ("unknown key", lambda d: d["box"].update(colour="blue"), "box.colour"),
    ("unknown section", lambda d: d.update(gpu={"on": True}), "gpu"),
    ("wrong type", lambda d: d["mqtt"].update(keepalive="thirty"), "mqtt.keepalive"),
    ("wrong type bool", lambda d: d["policy"].update(agent_emotion="no"), "policy.agent_emotion"),
    ("wrong type list", lambda d: d.update(positions={"id": "x"}), "positions"),
    ("bad value", lambda d: d["positions"][0].update(samplerate=22050), "positions[0].samplerate"),
    ("out of range", lambda d: d["retention"].update(scores_days=0.0), "retention.scores_days"),
    ("bad pattern", lambda d: d["box"].update(id="box one"), "box.id"),
    (
        "same channel twice",
        lambda d: d["positions"][0]["channels"].update(
            customer=d["positions"][0]["channels"]["agent"]
        ),
        "positions[0].channels.customer",
    ),
    (
        "duplicate position",
        lambda d: d["positions"].append(copy.deepcopy(d["positions"][0])),
        "positions[{n}].id",
    ),
    ("bad url", lambda d: d["mqtt"].update(url="http://broker"), "mqtt.url"),
    ("bad provider", lambda d: d["emotion"].update(providers=["CUDA"]), "emotion.providers[0]"),
]


@pytest.mark.parametrize("board", BOARDS, ids=BOARD_IDS)
@pytest.mark.parametrize("case", BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_variant_is_refused_naming_the_key(board, case, tmp_path):
    _, mutate, key = case
    data = tomllib.loads((board / "appliance.toml").read_text())
    key = key.format(n=len(data["positions"]))
    mutate(data)
    path = tmp_path / "appliance.toml"
    path.write_text(_dump(data))
    out = _check_config(path)
    assert out.returncode != 0
    assert f"{key}:" in out.stderr, out.stderr


def test_toml_syntax_error_is_refused(tmp_path):
    path = tmp_path / "appliance.toml"
    path.write_text((BOARDS[0] / "appliance.toml").read_text() + "\n[box\n")
    out = _check_config(path)
    assert out.returncode != 0 and "(syntax)" in out.stderr


def _pcms(asound: str) -> set[str]:
    return set(re.findall(r"^pcm\.([A-Za-z0-9_]+)\s*\{", asound, flags=re.M))


RULE = re.compile(
    r'^SUBSYSTEMS=="usb", KERNELS=="([0-9.-]+)", ATTRS\{idVendor\}=="([0-9a-f|]+)", ATTR\{id\}="([A-Za-z0-9_]+)"$'
)


@pytest.mark.parametrize("board", BOARDS, ids=BOARD_IDS)
def test_devices_pcms_and_udev_ids_agree(board):
    cfg = tomllib.loads((board / "appliance.toml").read_text())
    asound = (board / "asound.conf").read_text()
    pcms = _pcms(asound)
    for pos in cfg["positions"]:
        for dev in (pos["device"], pos.get("customer_device", "")):
            if dev:
                assert dev in pcms, (
                    f"{board.name}: position {pos['id']} device {dev!r} not in asound.conf"
                )
    cards = set(re.findall(r'pcm "hw:CARD=([A-Za-z0-9_]+),DEV=0"', asound))
    rules = [
        line
        for line in (board / "90-appliance-audio.rules").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    named = {}
    for line in rules:
        if line.startswith(("SUBSYSTEM!=", "ACTION!=", "KERNEL!=", "LABEL=")):
            continue
        m = RULE.match(line)
        assert m, f"{board.name}: unexpected udev rule {line!r}"
        port, vendors, cid = m.groups()
        assert len(cid) <= 15 and cid not in named.values(), cid
        assert port not in named, f"two rules for port {port}"
        assert all(re.fullmatch(r"[0-9a-f]{4}", v) for v in vendors.split("|"))
        named[port] = cid
    assert cards == set(named.values()), f"{board.name}: asound.conf cards {cards} vs udev ids"
    text = (board / "90-appliance-audio.rules").read_text()
    assert 'LABEL="appliance_audio_end"' in text and 'GOTO="appliance_audio_end"' in text


@pytest.mark.skipif(shutil.which("arecord") is None, reason="alsa-utils not installed")
@pytest.mark.parametrize("board", BOARDS, ids=BOARD_IDS)
def test_alsa_parses_asound_conf(board, tmp_path):
    conf = tmp_path / "asound.conf"
    conf.write_text(f"</usr/share/alsa/alsa.conf>\n<{board / 'asound.conf'}>\n")
    out = subprocess.run(
        ["arecord", "-L"],
        env={**os.environ, "ALSA_CONFIG_PATH": str(conf)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    listed = set(out.stdout.split())
    cfg = tomllib.loads((board / "appliance.toml").read_text())
    for pos in cfg["positions"]:
        assert pos["device"] in listed, out.stdout
    assert "error" not in out.stderr.lower(), out.stderr


@pytest.mark.parametrize("board", BOARDS, ids=BOARD_IDS)
def test_journald_dropin_is_volatile(board):
    text = (board / "journald.conf.d" / "90-appliance.conf").read_text()
    assert "Storage=volatile" in text
