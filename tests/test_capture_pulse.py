"""Real-time capture through a real sound server: `appliance run` captures two positions at once.

A private PulseAudio (no session, no D-Bus: `-n` and a unix socket in the test's folder) holds
one null sink per leg (pos1_agent, pos1_customer, pos2_agent, pos2_customer). An ALSA
configuration names each sink's monitor as a PCM of type `pulse` (the libasound2-plugins
bridge), so PortAudio lists `pos1_agent` and the others as devices, exactly like udev-named
USB adapters. `paplay` plays each leg's recording into its sink in real time: the daemon reads
the audio as it is played, at the pace of the sound server's clock (unlike ALSA's file plugin,
which returns data as fast as it is read).

Capture-to-score latency: for each customer utterance, from the moment its last sample was
played (paplay's start + the utterance's end in the file) to the commit of its scores
(`utterances.created_at`), with the real models and Whisper on this machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from support.voip import demo_legs

from appliance.capture.wav import write_wav
from appliance.store.connection import connect

ROOT = Path(__file__).resolve().parent.parent
MODEL_CARD = ROOT / "models" / "emotion" / "model_card.json"
LEGS = ("pos1_agent", "pos1_customer", "pos2_agent", "pos2_customer")
SECONDS = 24
POS2_DELAY_S = 2.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("pulseaudio") and shutil.which("paplay")),
        reason="PulseAudio not installed (apt-get install pulseaudio pulseaudio-utils)",
    ),
    pytest.mark.skipif(
        not list(Path("/usr/lib").glob("*/alsa-lib/libasound_module_pcm_pulse.so")),
        reason="ALSA pulse plugin not installed (libasound2-plugins)",
    ),
    pytest.mark.skipif(not MODEL_CARD.exists(), reason="no trained emotion model"),
]


@pytest.fixture
def sound_server(tmp_path):
    """A private PulseAudio with one null sink per leg, and the ALSA names for their monitors."""
    d = tmp_path / "pulse"
    (d / "run").mkdir(parents=True)
    sock = d / "native"
    env = {
        **os.environ,
        "HOME": str(d),
        "XDG_RUNTIME_DIR": str(d / "run"),
        "PULSE_RUNTIME_PATH": str(d / "run"),
        "PULSE_SERVER": f"unix:{sock}",
    }
    args = ["pulseaudio", "--daemonize=no", "-n", "--exit-idle-time=-1", "--use-pid-file=no",
            "--system=false", "--disallow-exit", "--log-target=stderr",
            f"--load=module-native-protocol-unix socket={sock} auth-anonymous=1"]  # fmt: skip
    args += [f"--load=module-null-sink sink_name={leg} rate=16000 channels=1" for leg in LEGS]
    log = open(d / "pulse.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
        assert proc.poll() is None and time.monotonic() < deadline, (d / "pulse.log").read_text()
        time.sleep(0.2)
    conf = d / "asound.conf"
    conf.write_text(
        "</usr/share/alsa/alsa.conf>\n"
        + "".join(
            f'pcm.{leg} {{\n  type pulse\n  device "{leg}.monitor"\n'
            f'  hint.description "{leg} (PulseAudio null sink monitor)"\n}}\n'
            for leg in LEGS
        )
    )
    env["ALSA_CONFIG_PATH"] = str(conf)
    try:
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _rows(db: Path, sql: str) -> list[tuple]:
    c = connect(db, readonly=True)
    try:
        return [tuple(r) for r in c.execute(sql).fetchall()]
    finally:
        c.conn.close()


def _turns(x: np.ndarray, sr: int) -> list[tuple[float, float]]:
    """Speech turns of one channel (level 12 dB over its floor, gaps under 0.5 s bridged)."""
    hop = sr // 100
    n = len(x) // hop
    db = 10 * np.log10(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-10)
    on = np.flatnonzero(db > max(np.percentile(db, 10) + 12, -50))
    turns: list[list[float]] = []
    for i in on:
        if turns and i / 100 - turns[-1][1] < 0.5:
            turns[-1][1] = (i + 1) / 100
        else:
            turns.append([i / 100, (i + 1) / 100])
    return [(a, b) for a, b in turns if b - a >= 0.3]


def test_appliance_run_captures_two_positions_through_pulseaudio_in_real_time(
    sound_server, tmp_path
):
    env = sound_server
    agent, customer = demo_legs(SECONDS, 16000)
    files = {}
    for leg, x in zip(LEGS, (agent, customer, agent, customer), strict=True):
        files[leg] = tmp_path / f"{leg}.wav"
        write_wav(files[leg], [x], 16000)
    out = subprocess.run(
        [sys.executable, "-c", "import json; from appliance.capture.sources import list_devices;"
         " print(json.dumps([d['name'] for d in list_devices()]))"],
        env=env, capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0 and all(leg in out.stdout for leg in LEGS), out.stdout + out.stderr
    db = tmp_path / "live.db"
    conf = tmp_path / "appliance.toml"
    conf.write_text(
        textwrap.dedent(
            f"""
            [box]
            id = "pulse-test"
            [paths]
            db = "{db}"
            [stt]
            engine = "whisper"
            [retention]
            min_free_mb = 0.0
            [daemon]
            silence_end_s = 3.0
            metrics_listen = "off"
            """
        )
        + "".join(
            f'[[positions]]\nid = "pos-{p}"\ndevice = "pos{p}_agent"\n'
            f'customer_device = "pos{p}_customer"\nsamplerate = 16000\n'
            "[positions.channels]\nagent = 0\ncustomer = 0\n"
            for p in (1, 2)
        )
    )
    log_path = tmp_path / "daemon.log"
    log = open(log_path, "w")  # noqa: SIM115
    daemon = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "-v", "run", "--config", str(conf)],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    players: list[subprocess.Popen] = []
    try:
        deadline = time.monotonic() + 180
        while log_path.read_text().count("capturing from") < 2:
            assert daemon.poll() is None and time.monotonic() < deadline, log_path.read_text()[
                -3000:
            ]
            time.sleep(0.2)
        time.sleep(1.0)
        starts = {}
        for p, delay in ((1, 0.0), (2, POS2_DELAY_S)):
            time.sleep(delay)
            starts[p] = time.time()
            for leg in (f"pos{p}_agent", f"pos{p}_customer"):
                players.append(subprocess.Popen(["paplay", "-d", leg, str(files[leg])], env=env))
        for pl in players:
            assert pl.wait(SECONDS + 30) == 0
        deadline = time.monotonic() + 90
        while len(_rows(db, "SELECT id FROM calls WHERE state = 'ended'")) < 2:
            assert daemon.poll() is None and time.monotonic() < deadline, log_path.read_text()[
                -3000:
            ]
            time.sleep(0.5)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0, log_path.read_text()[-3000:]
    finally:
        for proc in [*players, daemon]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log.close()
    truth = _turns(customer, 16000)
    latencies = []
    for p in (1, 2):
        rows = _rows(
            db,
            "SELECT u.start, u.end, u.created_at, u.emotion_label FROM utterances u JOIN calls c "
            f"ON c.id = u.call_id WHERE c.position = 'pos-{p}' AND u.speaker = 'customer' "
            "ORDER BY u.start",
        )
        assert len(rows) >= 3 and sum(r[3] is not None for r in rows) >= 3, rows
        agent_emotions = _rows(
            db,
            "SELECT COUNT(*) FROM utterances u JOIN calls c ON c.id = u.call_id WHERE "
            f"c.position = 'pos-{p}' AND u.speaker = 'agent' AND u.emotion_label IS NOT NULL",
        )
        assert agent_emotions == [(0,)]
        offset = truth[0][0] - rows[0][0]  # call time -> file time, by the first customer turn
        for start, end, created, _ in rows:
            latencies.append(created - (starts[p] + end + offset))
            assert any(a - 0.6 < start + offset < b for a, b in truth), (start + offset, truth)
    med, worst = statistics.median(latencies), max(latencies)
    print(
        f"capture-to-score latency, 2 positions, real time, Whisper: median {med:.2f} s, "
        f"max {worst:.2f} s over {len(latencies)} customer utterances"
    )
    assert 0 < med < 8.0 and worst < 15.0
    overruns = [line for line in log_path.read_text().splitlines() if "overrun" in line.lower()]
    assert not overruns, overruns
