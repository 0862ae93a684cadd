"""`appliance tap` on real traffic: SIPp phones on loopback addresses, a packet socket on `lo`,
the real models.

* A customer's phone calls an agent's (SIPp, each streaming its own recorded voice over G.711
  in real time): the tap scores one call with separate legs, emotion on the customer only,
  the SIP Call-ID and the numbers stored, the customer's number never published.
* Packet loss and reordering (a UDP relay in the customer's media path that drops and swaps
  packets): the transcript stays usable; the degradation is measured as the word error rate of
  the customer's transcript against the RAVDESS sentence the customer says, clean and lossy.

Needs root (CAP_NET_RAW on `lo`), SIPp (Debian sip-tester) and the trained emotion model.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.voip import (
    SIPP,
    LossyRelay,
    UdpPeer,
    demo_legs,
    dialog_headers,
    loopback_pair,
    rtp_packets,
    sdp,
    sip,
    sipp_call,
    stream,
)

from appliance.store.connection import connect

ROOT = Path(__file__).resolve().parent.parent
MODEL_CARD = ROOT / "models" / "emotion" / "model_card.json"
NUMBER = "+4930111222"


def _can_sniff() -> str | None:
    from appliance.voip.sniff import Sniffer, SniffError

    try:
        Sniffer("lo").close()
    except SniffError as exc:
        return str(exc)
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(SIPP is None, reason="SIPp not installed (apt-get install sip-tester)"),
    pytest.mark.skipif(_can_sniff() is not None, reason=f"no packet capture: {_can_sniff()}"),
    pytest.mark.skipif(not MODEL_CARD.exists(), reason="no trained emotion model"),
]


def _config(tmp: Path, db: Path) -> Path:
    conf = tmp / "appliance.toml"
    conf.write_text(
        f'[box]\nid = "tap-test"\n[paths]\ndb = "{db}"\n[retention]\nmin_free_mb = 0.0\n'
        '[stt]\nengine = "whisper"\n'
    )
    return conf


def _start_tap(
    tmp: Path, agent_ip: str, max_calls: int, mqtt: str = ""
) -> tuple[subprocess.Popen, Path, Path]:
    db = tmp / "tap.db"
    err = tmp / "tap.err"
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "tap", "--interface", "lo",
         "--agent-net", f"{agent_ip}/32", "--db", str(db), "--max-calls", str(max_calls),
         "--json", "--config", str(_config(tmp, db)), *(["--mqtt", mqtt] if mqtt else [])],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=open(err, "w"), text=True,  # noqa: SIM115
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while "ready" not in err.read_text():
        assert proc.poll() is None, err.read_text()[-3000:]
        assert time.monotonic() < deadline, "tap not ready"
        time.sleep(0.2)
    return proc, db, err


def _rows(db: Path, sql: str) -> list[tuple]:
    d = connect(db, readonly=True)
    try:
        return [tuple(r) for r in d.execute(sql).fetchall()]
    finally:
        d.conn.close()


def test_tap_scores_a_sipp_call_legs_apart_emotion_on_the_customer_only(
    tmp_path, broker, collector
):
    customer_ip, agent_ip, _ = loopback_pair()
    agent, customer = demo_legs(22)
    tap, db, err = _start_tap(tmp_path, agent_ip, 1, broker.url)
    try:
        uac, uas = sipp_call(tmp_path, customer_ip, agent_ip, agent, customer, NUMBER)
        assert uac.returncode == 0, uac.stdout[-2000:]
        out, _ = tap.communicate(timeout=180)
    finally:
        if tap.poll() is None:
            tap.kill()
    assert tap.returncode == 0, err.read_text()[-3000:]
    (doc,) = json.loads(out)["calls"]
    v = doc["voip"]
    assert v["source"] == "tap" and v["sip_call_id"] and v["callee"] == "1001"
    assert v["caller"].startswith("c-") and NUMBER not in json.dumps(v)
    for leg in ("agent", "customer"):
        assert v["legs"][leg]["packets"] >= 1000 and v["legs"][leg]["lost"] == 0, v["legs"]
    utts = doc["utterances"]
    cust = [u for u in utts if u["speaker"] == "customer"]
    agent_utts = [u for u in utts if u["speaker"] == "agent"]
    assert len(cust) >= 3 and len(agent_utts) >= 3
    assert all(u["emotion"] is None for u in agent_utts)
    assert sum(u["emotion"] is not None for u in cust) >= 3
    # the customer's words on the customer leg, the agent's on the agent's
    assert sum("door" in (u["text"] or "").lower() for u in cust) >= 2, cust
    assert not any("door" in (u["text"] or "").lower() for u in agent_utts)
    row = _rows(db, "SELECT customer_ref, sip_call_id, caller, callee, source FROM calls")
    assert row == [(NUMBER, v["sip_call_id"], v["caller"], "1001", "tap")]
    payloads = " ".join(r[0] for r in _rows(db, "SELECT payload FROM outbox"))
    assert payloads and NUMBER not in payloads and v["sip_call_id"] not in payloads
    # through the one publishing path: derived scores only, the customer as a pseudonym
    assert collector.wait_for(len(utts) + 2, 20)
    published = collector.payloads("/utterance")
    assert len(published) == len(utts) and all("text" not in p for p in published)
    wire = b" ".join(p for _, p in collector.messages).decode()
    assert NUMBER not in wire and v["sip_call_id"] not in wire and "door" not in wire
    assert v["caller"] in wire  # the call message names the customer by the pseudonym


def _wer(hyp: str, ref: str) -> float:
    h, r = hyp.lower().replace(".", "").replace(",", "").split(), ref.lower().split()
    d = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, d[0] = d[0], i
        for j, hw in enumerate(h, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (rw != hw))
    return d[len(h)] / len(r)


def _call(customer_ip, agent_ip, relay_addr, cid, agent, customer) -> None:
    """SIP from Python, RTP paced at twice real time; the customer's media goes to the
    relay (the agent's SDP address stays the destination the relay forwards to)."""
    c_sig, a_sig = UdpPeer(customer_ip), UdpPeer(agent_ip)
    c_rtp, a_rtp = UdpPeer(customer_ip), UdpPeer(agent_ip)
    h = dialog_headers(cid, NUMBER, "1001", "1 INVITE")
    c_sig.send(sip("INVITE sip:1001@x SIP/2.0", h, sdp(*c_rtp.addr)), a_sig.addr)
    h = dialog_headers(cid, NUMBER, "1001", "1 INVITE", "t")
    a_sig.send(sip("SIP/2.0 200 OK", h, sdp(*a_rtp.addr, pts="0 101")), c_sig.addr)
    relay = LossyRelay(relay_addr, a_rtp.addr, *cid_loss[cid]) if relay_addr else None
    to_agent = relay.addr if relay else a_rtp.addr
    stream(
        [
            (c_rtp, rtp_packets(customer, ssrc=11), to_agent),
            (a_rtp, rtp_packets(agent, ssrc=12), c_rtp.addr),
        ],
        pace_s=0.01,
    )
    time.sleep(0.5)
    h = dialog_headers(cid, NUMBER, "1001", "2 BYE", "t")
    c_sig.send(sip("BYE sip:1001@x SIP/2.0", h), a_sig.addr)
    if relay:
        relay_stats[cid] = (relay.dropped, relay.swapped)
        relay.close()
    for p in (c_sig, a_sig, c_rtp, a_rtp):
        p.close()


cid_loss = {"clean": (0.0, 0.0), "lossy": (0.05, 0.05)}
relay_stats: dict[str, tuple[int, int]] = {}


def test_loss_and_reordering_leave_the_transcript_usable(tmp_path):
    customer_ip, agent_ip, relay_ip = loopback_pair()
    agent, customer = demo_legs(None)
    tap, db, err = _start_tap(tmp_path, agent_ip, 2)
    try:
        for cid in ("clean", "lossy"):
            t = threading.Thread(
                target=_call,
                args=(customer_ip, agent_ip, (relay_ip, 0), cid, agent, customer),
            )
            t.start()
            t.join(120)
        out, _ = tap.communicate(timeout=240)
    finally:
        if tap.poll() is None:
            tap.kill()
    assert tap.returncode == 0, err.read_text()[-3000:]
    docs = {d["voip"]["sip_call_id"]: d for d in json.loads(out)["calls"]}
    assert set(docs) == {"clean", "lossy"}
    ref = " ".join(["kids are talking by the door"] * 9)  # the demo customer's nine clips
    wer, legs = {}, {}
    for cid, d in docs.items():
        text = " ".join(u["text"] or "" for u in d["utterances"] if u["speaker"] == "customer")
        wer[cid] = _wer(text, ref)
        legs[cid] = d["voip"]["legs"]["customer"]
    dropped, swapped = relay_stats["lossy"]
    print(f"customer WER clean {wer['clean']:.3f}, 5% loss + 5% reordering {wer['lossy']:.3f}")
    print(f"lossy leg: {legs['lossy']}; relay dropped {dropped}, swapped {swapped}")
    assert legs["clean"]["lost"] == 0 and legs["clean"]["concealed_s"] == 0
    assert legs["lossy"]["lost"] >= dropped * 0.9 and legs["lossy"]["reordered"] >= swapped * 0.5
    assert legs["lossy"]["concealed_s"] > 0
    assert wer["clean"] < 0.35
    assert wer["lossy"] < 0.5 and wer["lossy"] - wer["clean"] < 0.3
