"""`appliance siprec` against a SIPp session recording client on loopback.

* UDP, two streams: the agent's stream is the first m= line but the metadata lists the
  customer first; the recorder must map by the metadata's stream associations. A re-INVITE
  halfway keeps the ports; BYE ends the recording.
* TCP, one stream with both parties mixed: handled as mono, diarized (who speaks first is the
  agent), emotion on the customer's stretches only.

SIPp does the signalling (Debian's sip-tester); the test sends the RTP from Python to the ports
the recorder answered (read from SIPp's message trace), at twice real time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.voip import (
    SIPP,
    UdpPeer,
    answered_ports,
    demo_legs,
    free_udp_port,
    loopback_pair,
    rtp_packets,
    siprec_scenario,
    stream,
)

from appliance.store.connection import connect

ROOT = Path(__file__).resolve().parent.parent
MODEL_CARD = ROOT / "models" / "emotion" / "model_card.json"
NUMBER = "+4930555666"
SECONDS = 22

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(SIPP is None, reason="SIPp not installed (apt-get install sip-tester)"),
    pytest.mark.skipif(not MODEL_CARD.exists(), reason="no trained emotion model"),
]


def _src(tmp: Path, name: str, recorder: str, src_ip: str, agent_ip: str, two: bool, tcp: bool):
    talk_ms = int(SECONDS / 2 * 1000) + 1500
    (tmp / f"{name}.xml").write_text(siprec_scenario(NUMBER, agent_ip, two, talk_ms))
    args = [SIPP, "-sf", f"{name}.xml", recorder, "-i", src_ip, "-p", str(free_udp_port(src_ip)),
            "-mi", src_ip, "-mp", str(free_udp_port(src_ip)), "-m", "1", "-nostdin", "-nd",
            "-trace_msg", "-message_file", f"{name}.msg", "-timeout", "90", "-timeout_error"]  # fmt: skip
    if tcp:
        args += ["-t", "t1"]
    return subprocess.Popen(
        args, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _record(tmp, name, recorder, src_ip, agent_ip, two, tcp, sends):
    proc = _src(tmp, name, recorder, src_ip, agent_ip, two, tcp)
    ports = answered_ports(tmp / f"{name}.msg")
    rec_ip = recorder.split(":")[0]
    peer = UdpPeer(src_ip)
    stream([(peer, pkts, (rec_ip, ports[label])) for label, pkts in sends(ports)], pace_s=0.01)
    out, _ = proc.communicate(timeout=60)
    peer.close()
    assert proc.returncode == 0, out[-3000:]
    return ports


def test_siprec_two_streams_by_metadata_and_a_mixed_stream_over_tcp(tmp_path):
    src_ip, agent_ip, rec_ip = loopback_pair()
    port = free_udp_port(rec_ip)
    db = tmp_path / "rec.db"
    conf = tmp_path / "appliance.toml"
    conf.write_text(
        f'[box]\nid = "rec-test"\n[paths]\ndb = "{db}"\n[retention]\nmin_free_mb = 0.0\n'
        '[stt]\nengine = "whisper"\n[voip]\nrtp_port_min = 42000\nrtp_port_max = 42999\n'
    )
    err = tmp_path / "rec.err"
    rec = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "siprec", "--listen", f"{rec_ip}:{port}",
         "--agent-net", f"{agent_ip}/32", "--db", str(db), "--max-calls", "2", "--json",
         "--config", str(conf)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=open(err, "w"), text=True,  # noqa: SIM115
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while "ready" not in err.read_text():
            assert rec.poll() is None and time.monotonic() < deadline, err.read_text()[-3000:]
            time.sleep(0.2)
        agent, customer = demo_legs(SECONDS)
        ports = _record(
            tmp_path, "two", f"{rec_ip}:{port}", src_ip, agent_ip, True, False,
            lambda p: [("10", rtp_packets(agent, ssrc=1)), ("20", rtp_packets(customer, ssrc=2))],
        )  # fmt: skip
        assert set(ports) == {"10", "20"}
        _record(
            tmp_path, "mixed", f"{rec_ip}:{port}", src_ip, agent_ip, False, True,
            lambda p: [("1", rtp_packets(agent + customer, ssrc=3))],
        )  # fmt: skip
        out, _ = rec.communicate(timeout=180)
    finally:
        if rec.poll() is None:
            rec.kill()
    assert rec.returncode == 0, err.read_text()[-3000:]
    two, mixed = json.loads(out)["calls"]
    for doc in (two, mixed):
        assert doc["voip"]["source"] == "siprec" and doc["voip"]["session_id"] == "sess-1"
        assert doc["voip"]["caller"].startswith("c-") and NUMBER not in json.dumps(doc["voip"])
        utts = doc["utterances"]
        assert all(u["emotion"] is None for u in utts if u["speaker"] == "agent")
        cust = [u for u in utts if u["speaker"] == "customer"]
        assert sum(u["emotion"] is not None for u in cust) >= 2, utts
        # the customer says "kids are talking by the door" at 6.4-8.6, 13.8-15.9, 19.5-21 s
        on_cust = [u for u in cust if any(a - 0.5 < u["start"] < b for a, b in CUSTOMER_TURNS)]
        assert len(on_cust) >= 0.75 * len(cust) and len(on_cust) >= 2, cust
    legs = two["voip"]["legs"]
    assert set(legs) == {"agent", "customer"} and legs["customer"]["packets"] >= 1000
    assert (
        sum(
            "door" in (u["text"] or "").lower()
            for u in two["utterances"]
            if u["speaker"] == "customer"
        )
        >= 2
    )
    assert set(mixed["voip"]["legs"]) == {"mixed"}
    d = connect(db, readonly=True)
    rows = [tuple(r) for r in d.execute("SELECT customer_ref, source FROM calls").fetchall()]
    d.conn.close()
    assert rows == [(NUMBER, "siprec"), (NUMBER, "siprec")]


CUSTOMER_TURNS = [(6.4, 8.7), (13.8, 16.0), (19.5, 21.2)]
