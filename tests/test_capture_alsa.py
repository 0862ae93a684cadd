"""Live capture through PortAudio and ALSA without a sound card: ALSA's `type file` plugin.

How it works: an ALSA configuration (ALSA_CONFIG_PATH = a file that includes the system's
alsa.conf and then ours) defines PCMs such as

    pcm.pos1_tap {
        type plug                      # format/rate/channels adaptation, as for a real card
        slave {
            pcm {
                type file              # reads capture data from `infile` ...
                slave.pcm "null"       # ... on top of the null device (there is no card)
                file "/dev/null"       # playback side: discard
                infile "/tmp/.../call.raw"   # raw S16_LE interleaved stereo, 16 kHz
                format "raw"
            }
            format S16_LE
            rate 16000
            channels 2
        }
        hint.description "..."         # what `arecord -L` shows
    }

PortAudio (v19.6) does not use the hints: it walks every `pcm.*` definition in the loaded
configuration (skipping its built-in list: hw, plughw, dmix, null, file, ...), opens each one to
probe its channels, and lists it under its name: `sounddevice.query_devices()` shows `pos1_tap`.
The capture is not paced (the null device returns data as fast as it is read), the infile is
read exactly once; after its end the plugin returns what is left in the ring buffer, so the raw
file ends with a few seconds of digital silence. PortAudio reads int16 (`SoundDeviceSource`'s
dtype): with float32 the plug layer's format conversion interacts with the file plugin's mmap
reads and skips blocks of the infile, and so does a rate conversion in the plug layer (the
rig therefore runs at the file's 16 kHz; 44.1/48 kHz capture is covered in test_capture.py).
A `pcm.!default` in ~/.asoundrc works the same way (position device "default").
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
import wave
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "appliance" / "data" / "demo_call.wav"
MODEL_CARD = ROOT / "models" / "emotion" / "model_card.json"
PAD_S = 3.0


def _portaudio_ok() -> str | None:
    try:
        import sounddevice  # noqa: F401
    except OSError as exc:
        return f"PortAudio not available: {exc}"
    if not Path("/usr/share/alsa/alsa.conf").exists():
        return "ALSA configuration (libasound2) not installed"
    return None


pytestmark = pytest.mark.skipif(_portaudio_ok() is not None, reason=str(_portaudio_ok()))


def _demo_frames() -> np.ndarray:
    with wave.open(str(DEMO), "rb") as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 16000, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)


def _file_pcm(name: str, raw: Path, channels: int, desc: str) -> str:
    return textwrap.dedent(
        f"""
        pcm.{name} {{
            type plug
            slave {{
                pcm {{
                    type file
                    slave.pcm "null"
                    file "/dev/null"
                    infile "{raw}"
                    format "raw"
                }}
                format S16_LE
                rate 16000
                channels {channels}
            }}
            hint.description "{desc}"
        }}
        """
    )


@pytest.fixture(scope="module")
def alsa_env(tmp_path_factory):
    """Raw files + an ALSA config with a stereo tap (pos1_tap) and two mono devices (pos2_*)."""
    d = tmp_path_factory.mktemp("alsa")
    frames = _demo_frames()
    pad = np.zeros((int(PAD_S * 16000), 2), dtype="<i2")
    stereo = np.concatenate([frames, pad])
    (d / "call.raw").write_bytes(stereo.tobytes())
    (d / "agent.raw").write_bytes(np.ascontiguousarray(stereo[:, 0]).tobytes())
    (d / "customer.raw").write_bytes(np.ascontiguousarray(stereo[:, 1]).tobytes())
    conf = d / "asound.conf"
    conf.write_text(
        "</usr/share/alsa/alsa.conf>\n"
        + _file_pcm("pos1_tap", d / "call.raw", 2, "Position 1 handset tap (file)")
        + _file_pcm("pos2_agent", d / "agent.raw", 1, "Position 2 agent headset (file)")
        + _file_pcm("pos2_customer", d / "customer.raw", 1, "Position 2 customer line (file)")
    )
    env = {**os.environ, "ALSA_CONFIG_PATH": str(conf), "PYTHONUNBUFFERED": "1"}
    return d, env, frames


def _py(code: str, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run Python in a fresh process: PortAudio reads the ALSA configuration at initialisation."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_portaudio_lists_the_file_plugin_pcms(alsa_env):
    d, env, _ = alsa_env
    out = _py(
        "import json; from appliance.capture.sources import list_devices; print(json.dumps(list_devices()))",
        env,
    )
    assert out.returncode == 0, out.stderr
    names = {x["name"] for x in json.loads(out.stdout)}
    assert {"pos1_tap", "pos2_agent", "pos2_customer"} <= names
    cli = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "list-devices"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0 and "pos1_tap" in cli.stdout
    hints = subprocess.run(["arecord", "-L"], env=env, capture_output=True, text=True, timeout=30)
    if hints.returncode == 0:  # alsa-utils present: the hint is what arecord shows
        assert "Position 1 handset tap (file)" in hints.stdout


def test_sound_device_source_reads_the_call_sample_exact(alsa_env, tmp_path):
    d, env, frames = alsa_env
    np.save(tmp_path / "ref.npy", frames)
    out = _py(
        f"""
        import numpy as np
        from appliance.capture.sources import SoundDeviceSource
        ref = np.load({str(tmp_path / "ref.npy")!r}).astype(np.float32) / 32768
        for kw in (dict(device="pos1_tap", customer_device=None),
                   dict(device="pos2_agent", customer_device="pos2_customer")):
            one = kw["customer_device"] is None
            src = SoundDeviceSource(kw["device"], 16000, 0, 1 if one else 0, kw["customer_device"])
            got = {{"agent": [], "customer": []}}
            for i, ch in enumerate(src.chunks()):
                for k, v in ch.items():
                    assert v.dtype == np.float32 and len(v) == 320, (k, v.dtype, len(v))
                    got[k].append(v)
                if i * 320 >= len(ref) + 16000:
                    break
            src.close()
            a = np.concatenate(got["agent"]); c = np.concatenate(got["customer"])
            n = len(ref)
            assert np.array_equal(a[:n], ref[:, 0]) and np.array_equal(c[:n], ref[:, 1]), kw
            assert np.abs(a[n:]).max() == 0 and np.abs(c[n:]).max() == 0  # the silent pad
            print("ok", kw["device"], src.overruns)
        """,
        env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("ok") == 2


def _rows(db_path, sql):
    from appliance.store.connection import connect

    db = connect(db_path, readonly=True)
    try:
        return [tuple(r) for r in db.execute(sql).fetchall()]
    finally:
        db.conn.close()


def _wait(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except Exception:
            pass
        time.sleep(0.2)
    return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_config(path: Path, db: Path, positions: str) -> None:
    path.write_text(
        textwrap.dedent(
            f"""
            [box]
            id = "alsa-test"
            [paths]
            db = "{db}"
            [stt]
            engine = "none"
            [retention]
            min_free_mb = 0.0
            """
        )
        + positions
    )


POSITIONS = """
[[positions]]
id = "pos-1"
device = "pos1_tap"
[positions.channels]
agent = 0
customer = 1

[[positions]]
id = "pos-2"
device = "pos2_agent"
customer_device = "pos2_customer"
[positions.channels]
agent = 0
customer = 0
"""


def test_daemon_live_capture_with_fake_engine(alsa_env, tmp_path):
    """The daemon's default source factory on two ALSA positions (no model needed)."""
    d, env, _ = alsa_env
    conf = tmp_path / "appliance.toml"
    db = tmp_path / "live.db"
    _write_config(conf, db, POSITIONS)
    code = f"""
        import threading, sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from test_daemon import fake_engines
        from appliance.config import load_config
        from appliance.ops.daemon import DaemonOptions, run_daemon
        from appliance.store.connection import connect
        import time
        cfg = load_config({str(conf)!r})
        stop = threading.Event()
        def watch():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    db = connect({str(db)!r}, readonly=True)
                    n = db.execute("SELECT COUNT(*) FROM calls WHERE state='ended'").fetchone()[0]
                    db.conn.close()
                    if n >= 2:
                        break
                except Exception:
                    pass
                time.sleep(0.2)
            stop.set()
        threading.Thread(target=watch, daemon=True).start()
        sys.exit(run_daemon(cfg, engines=fake_engines(), options=DaemonOptions(metrics="off",
                 health_interval_s=0.5), stop_event=stop))
    """
    out = _py(code, env, timeout=90)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    calls = _rows(db, "SELECT position, state FROM calls ORDER BY position")
    assert calls == [("pos-1", "ended"), ("pos-2", "ended")]
    per_pos = dict(
        _rows(
            db,
            "SELECT c.position, COUNT(*) FROM utterances u JOIN calls c ON c.id = u.call_id "
            "WHERE u.speaker = 'customer' AND u.emotion_label IS NOT NULL GROUP BY c.position",
        )
    )
    assert per_pos["pos-1"] >= 8 and per_pos["pos-2"] == per_pos["pos-1"]


@pytest.mark.skipif(
    not MODEL_CARD.exists(),
    reason="models/emotion/model_card.json absent: the emotion model is not trained yet",
)
def test_appliance_run_end_to_end_through_alsa(alsa_env, tmp_path):
    """`appliance run --config` with the real engines, ALSA file capture, SIGTERM, sd_notify."""
    d, env, _ = alsa_env
    conf = tmp_path / "appliance.toml"
    db = tmp_path / "live.db"
    _write_config(conf, db, POSITIONS.split('[[positions]]\nid = "pos-2"')[0])
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    port = _free_port()
    run_env = {
        **env,
        "NOTIFY_SOCKET": str(sock_path),
        "WATCHDOG_USEC": "1000000",
        "APPLIANCE_METRICS": f"127.0.0.1:{port}",
        "APPLIANCE_HEALTH_INTERVAL_S": "0.5",
    }
    log_path = tmp_path / "daemon.log"
    log_file = open(log_path, "w")  # noqa: SIM115 - a file, not a pipe: a full pipe blocks the daemon
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "-v", "run", "--config", str(conf)],
        env=run_env,
        cwd=ROOT,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        text=True,
    )
    notes: list[str] = []

    def drain():
        while True:
            try:
                notes.append(sock.recv(4096).decode())
            except (TimeoutError, OSError):
                return

    try:
        ok = _wait(
            lambda: _rows(db, "SELECT state FROM calls") == [("ended",)] or proc.poll() is not None,
            timeout=120,
        )
        drain()
        assert proc.poll() is None, log_path.read_text()[-3000:]
        assert ok, "no ended call within 120 s"
        assert _wait(lambda: _rows(db, "SELECT value FROM settings WHERE key='health'"), 10)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log_file.close()
        drain()
        sock.close()
    log_text = log_path.read_text()
    assert rc == 0, log_text[-3000:]
    joined = "\n".join(notes)
    assert "READY=1" in joined and "WATCHDOG=1" in joined and "STOPPING=1" in joined
    assert joined.index("READY=1") < joined.index("STOPPING=1")
    assert b"appliance_stream_connected" in metrics
    utts = _rows(db, "SELECT speaker, emotion_label FROM utterances")
    customer = [u for u in utts if u[0] == "customer"]
    assert len(customer) >= 8
    labels = {u[1] for u in customer}
    assert None not in labels and labels <= {
        "neutral",
        "happy",
        "sad",
        "angry",
        "fearful",
        "disgust",
        "surprised",
    }
    assert all(u[1] is None for u in utts if u[0] == "agent")
    kinds = dict(_rows(db, "SELECT kind, COUNT(*) FROM outbox GROUP BY kind"))
    assert kinds.get("utterance") == len(utts) and kinds.get("call", 0) >= 2
    health = json.loads(_rows(db, "SELECT value FROM settings WHERE key='health'")[0][0])
    assert health["emotion_model"]["version"] and health["streams"][0]["position"] == "pos-1"

    # live capture through ALSA scores the customer exactly as offline analysis of the file does
    # (sample-exact capture, same VAD cuts, same causal normalisation); times shift by the
    # moment the call opened (customer onset minus the pre-roll)
    offline = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "analyze", str(DEMO), "--no-stt", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert offline.returncode == 0, offline.stderr[-2000:]
    ref = [u for u in json.loads(offline.stdout)["utterances"] if u["speaker"] == "customer"]
    live = _rows(
        db,
        "SELECT start, emotion_label, confidence FROM utterances WHERE speaker = 'customer' ORDER BY start",
    )
    assert [u["emotion"]["label"] for u in ref] == [r[1] for r in live]
    assert all(
        abs(u["emotion"]["confidence"] - r[2]) < 0.02 for u, r in zip(ref, live, strict=True)
    )
    shifts = [u["start"] - r[0] for u, r in zip(ref, live, strict=True)]
    assert max(shifts) - min(shifts) < 0.8, shifts


def test_default_pcm_from_home_asoundrc(alsa_env, tmp_path):
    """~/.asoundrc with `pcm.!default` (no ALSA_CONFIG_PATH): position device "default"."""
    d, env, frames = alsa_env
    home = tmp_path / "home"
    home.mkdir()
    text = _file_pcm("!default", d / "call.raw", 2, "Default capture (file)")
    (home / ".asoundrc").write_text(text)
    env = {k: v for k, v in env.items() if k != "ALSA_CONFIG_PATH"}
    env["HOME"] = str(home)
    np.save(tmp_path / "ref.npy", frames[:16000])
    out = _py(
        f"""
        import numpy as np, sounddevice as sd
        from appliance.capture.sources import SoundDeviceSource
        assert [x["name"] for x in sd.query_devices()] == ["default"], sd.query_devices()
        ref = np.load({str(tmp_path / "ref.npy")!r}).astype(np.float32) / 32768
        src = SoundDeviceSource("default", 16000, 0, 1)
        it = src.chunks()
        got = [next(it) for _ in range(50)]
        src.close()
        c = np.concatenate([g["customer"] for g in got])
        assert np.array_equal(c, ref[:len(c), 1])
        print("ok")
        """,
        env,
    )
    assert out.returncode == 0 and "ok" in out.stdout, out.stdout + out.stderr
