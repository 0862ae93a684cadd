"""VoIP test helpers: SIP messages with SDP, RTP packets of real audio (G.711 mu-law/A-law,
G.722, RFC 4733 events), senders bound to loopback addresses, SIPp scenarios, and the small
UDP relay that drops and reorders packets."""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import struct
import subprocess
import threading
import time
import wave
from pathlib import Path

import numpy as np

from appliance.capture.resample import mulaw_encode, resample

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "appliance" / "data" / "demo_call.wav"
SIPP = shutil.which("sipp")


def demo_legs(seconds: float | None = None, sr: int = 8000) -> tuple[np.ndarray, np.ndarray]:
    """The demo call's agent and customer channels at `sr` (float32), optionally cut."""
    with wave.open(str(DEMO), "rb") as w:
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
        rate = w.getframerate()
    x = x.astype(np.float32) / 32768.0
    if seconds:
        x = x[: int(seconds * rate)]
    return resample(x[:, 0], rate, sr), resample(x[:, 1], rate, sr)


def alaw_encode(x: np.ndarray) -> np.ndarray:
    """G.711 A-law by nearest code: an independent check of the decoder's table would need
    the formula, so the table here is built from the standard's segment layout."""
    codes = np.arange(256)
    a = codes ^ 0x55
    mant, seg = (a & 0x0F) << 4, (a & 0x70) >> 4
    mag = np.where(seg == 0, mant + 8, (mant + 0x108) << np.maximum(seg - 1, 0))
    vals = np.where(a & 0x80, mag, -mag) / 32768.0
    order = np.argsort(vals)
    sv = vals[order]
    i = np.clip(np.searchsorted(sv, x), 1, len(sv) - 1)
    nearer = np.where(np.abs(x - sv[i - 1]) <= np.abs(sv[i] - x), i - 1, i)
    return codes[order][nearer].astype(np.uint8)


def encode(x: np.ndarray, codec: str) -> bytes:
    if codec == "PCMU":
        return mulaw_encode(x).tobytes()
    if codec == "PCMA":
        return alaw_encode(x).tobytes()
    from G722 import G722

    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)
    return G722(16000, 64000).encode(pcm.tolist())


def rtp_packets(
    audio: np.ndarray, codec: str = "PCMU", pt: int = 0, ssrc: int = 0x1234, seq0: int = 100
) -> list[bytes]:
    """20 ms RTP packets of `audio` (8 kHz for G.711, 16 kHz for G.722)."""
    payload = encode(audio, codec)
    per = 160  # bytes per 20 ms for all three codecs at 64 kbit/s
    ts_step = 160  # G.722's RTP clock is 8 kHz too
    out = []
    for i in range(0, len(payload) // per):
        hdr = struct.pack(
            "!BBHII", 0x80, pt, (seq0 + i) & 0xFFFF, (1000 + i * ts_step) & 0xFFFFFFFF, ssrc
        )
        out.append(hdr + payload[i * per : (i + 1) * per])
    return out


def dtmf_packets(event: int, ts: int, seq: int, ssrc: int, pt: int = 101) -> list[bytes]:
    """One RFC 4733 event: start, two updates and three end packets (same timestamp)."""
    out = []
    for k, (end, dur) in enumerate([(0, 160), (0, 320), (0, 480), (1, 640), (1, 640), (1, 640)]):
        hdr = struct.pack("!BBHII", 0x80, pt | (0x80 if k == 0 else 0), seq + k, ts, ssrc)
        out.append(hdr + struct.pack("!BBH", event, 0x80 * end | 10, dur))
    return out


def sdp(addr: str, port: int, pts: str = "0 8 101", direction: str = "sendrecv") -> str:
    maps = {
        "0": "PCMU/8000",
        "8": "PCMA/8000",
        "9": "G722/8000",
        "101": "telephone-event/8000",
    }
    lines = [
        "v=0",
        f"o=- 1 1 IN IP4 {addr}",
        "s=-",
        f"c=IN IP4 {addr}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {pts}",
        *[f"a=rtpmap:{p} {maps[p]}" for p in pts.split()],
        f"a={direction}",
    ]
    return "\r\n".join(lines) + "\r\n"


def sip(
    start: str, headers: dict[str, str], body: str = "", ctype: str = "application/sdp"
) -> bytes:
    lines = [start, *[f"{k}: {v}" for k, v in headers.items()]]
    if body:
        lines.append(f"Content-Type: {ctype}")
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def dialog_headers(call_id: str, caller: str, callee: str, cseq: str, to_tag: str = "") -> dict:
    to = f"<sip:{callee}@127.0.0.3>" + (f";tag={to_tag}" if to_tag else "")
    return {
        "Via": "SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-1",
        "From": f'"Customer" <sip:{caller}@127.0.0.2>;tag=abc',
        "To": to,
        "Call-ID": call_id,
        "CSeq": cseq,
        "Max-Forwards": "70",
    }


class UdpPeer:
    """A UDP socket bound to a loopback address (the tap sees its packets on `lo`)."""

    def __init__(self, addr: str, port: int = 0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((addr, port))
        self.addr = self.sock.getsockname()

    def send(self, data: bytes, to: tuple[str, int]) -> None:
        self.sock.sendto(data, to)

    def close(self) -> None:
        self.sock.close()


def stream(peers: list[tuple[UdpPeer, list[bytes], tuple[str, int]]], pace_s: float = 0.02) -> None:
    """Send several streams interleaved, packet by packet, `pace_s` apart (0.02 = real time)."""
    n = max(len(p[1]) for p in peers)
    t0 = time.monotonic()
    for i in range(n):
        for peer, pkts, to in peers:
            if i < len(pkts):
                peer.send(pkts[i], to)
        delay = t0 + (i + 1) * pace_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class LossyRelay:
    """Forwards UDP from `listen` to `target`, dropping a fraction of packets and swapping
    neighbours (reordering), reproducibly (seeded)."""

    def __init__(
        self,
        listen: tuple[str, int],
        target: tuple[str, int],
        loss: float,
        reorder: float,
        seed: int = 7,
    ):
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind(listen)
        self.rx.settimeout(0.1)
        self.addr = self.rx.getsockname()
        self.target = target
        self.loss, self.reorder = loss, reorder
        self.rng = random.Random(seed)
        self.forwarded = self.dropped = self.swapped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        held: bytes | None = None
        while not self._stop.is_set():
            try:
                data, _ = self.rx.recvfrom(65535)
            except TimeoutError:
                if held is not None:
                    self.rx.sendto(held, self.target)
                    held = None
                continue
            if self.rng.random() < self.loss:
                self.dropped += 1
                continue
            if held is None and self.rng.random() < self.reorder:
                held = data  # sent after the next one
                self.swapped += 1
                continue
            self.rx.sendto(data, self.target)
            self.forwarded += 1
            if held is not None:
                self.rx.sendto(held, self.target)
                self.forwarded += 1
                held = None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.rx.close()


def sipp(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.Popen:
    """Start SIPp in the background (no screen, logs in cwd)."""
    assert SIPP, "sipp not installed"
    return subprocess.Popen(
        [SIPP, *args, "-nostdin", "-bg" if False else "-nd", "-trace_err"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@contextlib.contextmanager
def running(proc: subprocess.Popen):
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def loopback_pair() -> tuple[str, str, str]:
    """Fresh loopback addresses (customer, agent, a third for relays): parallel runs on one
    machine do not meet on them."""
    r = random.Random()
    base = f"127.{r.randint(32, 250)}.{r.randint(1, 250)}"
    return f"{base}.2", f"{base}.3", f"{base}.4"


def free_udp_port(addr: str) -> int:
    """An even port free for UDP and TCP on `addr` (RTP wants even ports)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((addr, 0))
            port = s.getsockname()[1]
        if port % 2 == 0 and port < 65000:
            with contextlib.suppress(OSError), socket.socket() as t:
                t.bind((addr, port))
                return port
    raise RuntimeError("no free port")


def write_ulaw(path: Path, audio: np.ndarray) -> Path:
    path.write_bytes(mulaw_encode(audio).tobytes())
    return path


_SDP_BODY = """v=0
o={who} 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
"""

UAS_XML = (
    """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="agent phone">
  <recv request="INVITE" crlf="true"/>
  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:1001@[local_ip]:[local_port]>
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:1001@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

"""
    + _SDP_BODY.format(who="agent")
    + """
]]></send>
  <recv request="ACK" crlf="true"/>
  <nop><action><exec rtp_stream="{audio},1,0"/></action></nop>
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <timewait milliseconds="500"/>
</scenario>
"""
)

UAC_XML = (
    """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="customer">
  <send retrans="500"><![CDATA[
INVITE sip:1001@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Customer" <sip:{number}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:1001@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:{number}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

"""
    + _SDP_BODY.format(who="customer")
    + """
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true"/>
  <send><![CDATA[
ACK sip:1001@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Customer" <sip:{number}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:1001@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <nop><action><exec rtp_stream="{audio},1,0"/></action></nop>
  <pause milliseconds="{talk_ms}"/>
  <send retrans="500"><![CDATA[
BYE sip:1001@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Customer" <sip:{number}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:1001@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200" crlf="true"/>
</scenario>
"""
)


def sipp_call(
    workdir: Path,
    customer_ip: str,
    agent_ip: str,
    agent_audio: np.ndarray,
    customer_audio: np.ndarray,
    number: str = "+4930111222",
    timeout: float = 120,
) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """One call by SIPp: the customer's phone calls the agent's; each streams its own voice
    (G.711 mu-law, real time) and the customer hangs up after the audio."""
    a = write_ulaw(workdir / "agent.ul", agent_audio)
    c = write_ulaw(workdir / "customer.ul", customer_audio)
    talk_ms = int(1000 * len(customer_audio) / 8000) + 600
    (workdir / "uas.xml").write_text(UAS_XML.replace("{audio}", a.name))
    (workdir / "uac.xml").write_text(
        UAC_XML.replace("{audio}", c.name)
        .replace("{number}", number)
        .replace("{talk_ms}", str(talk_ms))
    )
    sip_port = free_udp_port(agent_ip)
    media = free_udp_port(agent_ip) // 2 * 2
    common = ["-m", "1", "-nostdin", "-nd", "-timeout", str(int(timeout)), "-timeout_error"]
    uas = subprocess.Popen(
        [SIPP, "-sf", "uas.xml", "-i", agent_ip, "-p", str(sip_port), "-mi", agent_ip,
         "-mp", str(media), *common],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    time.sleep(0.5)
    uac = subprocess.run(
        [SIPP, "-sf", "uac.xml", f"{agent_ip}:{sip_port}", "-i", customer_ip,
         "-p", str(free_udp_port(customer_ip)), "-mi", customer_ip,
         "-mp", str(free_udp_port(customer_ip) // 2 * 2), *common],
        cwd=workdir, capture_output=True, text=True, timeout=timeout + 10,
    )  # fmt: skip
    try:
        out, _ = uas.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        uas.kill()
        out, _ = uas.communicate()
    return uac, subprocess.CompletedProcess(uas.args, uas.returncode, out, "")


SIPREC_METADATA = """<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
<datamode>complete</datamode>
<session session_id="sess-1"><sipSessionID>orig-call</sipSessionID></session>
<participant participant_id="p-cust"><nameID aor="sip:{number}@carrier.example"/></participant>
<participant participant_id="p-agent"><nameID aor="sip:1001@{agent_ip}"><name>Agent</name></nameID></participant>
{streams}
<participantstreamassoc participant_id="p-cust"><send>s-c</send></participantstreamassoc>
<participantstreamassoc participant_id="p-agent"><send>s-a</send></participantstreamassoc>
</recording>"""


def siprec_body(number: str, agent_ip: str, two_streams: bool) -> str:
    """SDP + rs-metadata: the agent's stream is the first m= line, but the metadata lists the
    customer first: only the metadata says who sends on which label."""
    m = "m=audio {port} RTP/AVP 0 101\na=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\na=label:{label}\na=sendonly\n"
    sdp_text = "v=0\no=src 1 1 IN IP4 [local_ip]\ns=SIPREC\nc=IN IP4 [local_ip]\nt=0 0\n"
    if two_streams:
        sdp_text += m.format(port="[media_port]", label="10") + m.format(
            port="[media_port+2]", label="20"
        )
        streams = '<stream stream_id="s-c" session_id="sess-1"><label>20</label></stream>\n<stream stream_id="s-a" session_id="sess-1"><label>10</label></stream>'
    else:
        sdp_text += m.format(port="[media_port]", label="1")
        streams = '<stream stream_id="s-mix" session_id="sess-1"><label>1</label></stream>'
    meta = SIPREC_METADATA.format(number=number, agent_ip=agent_ip, streams=streams)
    return (
        "--RECBOUND\nContent-Type: application/sdp\n\n"
        + sdp_text
        + "\n--RECBOUND\nContent-Type: application/rs-metadata+xml\n"
        + "Content-Disposition: recording-session\n\n"
        + meta
        + "\n--RECBOUND--\n"
    )


def siprec_scenario(number: str, agent_ip: str, two_streams: bool, talk_ms: int) -> str:
    """A session recording client: INVITE (multipart), ACK, a re-INVITE halfway, BYE."""
    body = siprec_body(number, agent_ip, two_streams)

    def invite(cseq: int, tag: str) -> str:
        return f"""  <send retrans="500"><![CDATA[
INVITE sip:recorder@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:src@[local_ip]:[local_port]>;tag=[pid]SRC[call_number]
To: <sip:recorder@[remote_ip]:[remote_port]>{tag}
Call-ID: [call_id]
CSeq: {cseq} INVITE
Contact: <sip:src@[local_ip]:[local_port];transport=[transport]>;+sip.src
Require: siprec
Max-Forwards: 70
Content-Type: multipart/mixed;boundary=RECBOUND
Content-Length: [len]

{body}
]]></send>
  <recv response="100" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
ACK sip:recorder@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:src@[local_ip]:[local_port]>;tag=[pid]SRC[call_number]
To: <sip:recorder@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: {cseq} ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
"""

    half = talk_ms // 2
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="siprec src">
{invite(1, "")}
  <pause milliseconds="{half}"/>
{invite(2, "[peer_tag_param]")}
  <pause milliseconds="{talk_ms - half}"/>
  <send retrans="500"><![CDATA[
BYE sip:recorder@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:src@[local_ip]:[local_port]>;tag=[pid]SRC[call_number]
To: <sip:recorder@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 3 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"""


def answered_ports(trace: Path, timeout: float = 30) -> dict[str, int]:
    """label -> port of the recorder's first 200 OK, read from SIPp's message trace."""
    from appliance.voip.sip import parse_sdp

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = trace.read_text(errors="replace").replace("\r\n", "\n") if trace.exists() else ""
        i = text.find("SIP/2.0 200 OK")
        if i >= 0 and "a=recvonly" in text[i:]:
            body = text[i:].split("\n\n", 1)[1] if "\n\n" in text[i:] else ""
            body = body.replace("\r\n", "\n").split("\n\n")[0]
            media = parse_sdp(body.encode())
            if media and all(m.label for m in media):
                return {m.label: m.port for m in media}
        time.sleep(0.1)
    raise AssertionError(f"no answer in {trace}")
