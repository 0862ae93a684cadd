"""The VoIP parts one by one, on packets built here: SIP and SDP parsing, SIPREC bodies, RTP
and the codecs, the jitter buffer (reordering, loss, late and duplicate packets, concealment),
RFC 4733 events and the keypad pause, a call's legs on one timeline, the tap's dialog logic.
The same parts run against SIPp and real sockets in test_voip_tap.py and test_siprec.py."""

from __future__ import annotations

import socket
import struct

import numpy as np
import pytest
from support.voip import (
    demo_legs,
    dialog_headers,
    dtmf_packets,
    encode,
    rtp_packets,
    sdp,
    sip,
)

from appliance.pipeline.call import CallMeta
from appliance.voip.call import MediaCall, MediaTiming, Sink
from appliance.voip.rtp import Decoder, RtpStream, parse_rtp
from appliance.voip.sip import (
    SipError,
    body_parts,
    looks_like_sip,
    parse_message,
    parse_metadata,
    parse_sdp,
    tcp_frames,
    uri_user,
)
from appliance.voip.sniff import Datagram, parse_frame
from appliance.voip.tap import TapTracker, parse_nets


class Recorder(Sink):
    """Records what a call hands the pipeline."""

    def __init__(self):
        self.opened, self.chunks, self.pauses, self.closed = [], [], [], 0

    def open(self, meta, sr, source):
        self.opened.append((meta, sr, source))
        return len(self.opened)

    def feed(self, handle, chunk):
        self.chunks.append(chunk)

    def pause(self, handle, paused):
        self.pauses.append((sum(len(c["agent"]) for c in self.chunks), paused))

    def close(self, handle):
        self.closed += 1

    def channel(self, role):
        return np.concatenate([c[role] for c in self.chunks])


def corr(x, ref):
    n = min(len(x), len(ref))
    return float(np.corrcoef(x[:n], ref[:n])[0, 1])


# -- SIP / SDP / SIPREC bodies ------------------------------------------------------------------


def test_sip_request_with_compact_headers_and_sdp():
    raw = (
        b"INVITE sip:1001@pbx SIP/2.0\r\nv: SIP/2.0/UDP 10.0.0.1\r\ni: abc@x\r\n"
        b'f: "Ann" <sip:+4930111@pbx>;tag=9\r\nt: <sip:1001@pbx>\r\nCSeq: 1 INVITE\r\n'
        b"c: application/sdp\r\nl: 999\r\n\r\n" + sdp("10.0.0.1", 4000).encode()
    )
    assert looks_like_sip(raw)
    m = parse_message(raw)
    assert (m.method, m.call_id, m.cseq_method) == ("INVITE", "abc@x", "INVITE")
    assert uri_user(m.header("from")) == "+4930111" and uri_user("tel:+4930999;x=1") == "+4930999"
    (media,) = parse_sdp(m.body)
    assert (media.address, media.port, media.payloads) == ("10.0.0.1", 4000, [0, 8, 101])
    assert media.codec(0) == "PCMU" and media.dtmf_payload == 101


@pytest.mark.parametrize(
    "raw",
    [b"INVITE sip:x\r\n\r\n", b"SIP/2.0 abc OK\r\nCall-ID: 1\r\nCSeq: 1 X\r\n\r\n", b"\xff\xfe"],
)
def test_malformed_sip_is_refused_with_a_reason(raw):
    with pytest.raises(SipError):
        parse_message(raw)


def test_tcp_framing_by_content_length():
    one = sip("OPTIONS sip:r SIP/2.0", {"Call-ID": "1", "CSeq": "1 OPTIONS"}, "abc", "text/x")
    buf = bytearray(b"\r\n\r\n" + one + one[:20])
    assert tcp_frames(buf) == [one] and bytes(buf) == one[:20]
    buf.extend(one[20:])
    assert tcp_frames(buf) == [one] and not buf


SIPREC_META = b"""<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
  <datamode>complete</datamode>
  <session session_id="s1"><sipSessionID>x</sipSessionID></session>
  <participant participant_id="P-agent"><nameID aor="sip:1001@10.1.0.5"><name>Agent</name></nameID></participant>
  <participant participant_id="P-cust"><nameID aor="sip:+4930111@carrier"/></participant>
  <stream stream_id="S-c" session_id="s1"><label>2</label></stream>
  <stream stream_id="S-a" session_id="s1"><label>1</label></stream>
  <participantstreamassoc participant_id="P-cust"><send>S-c</send><recv>S-a</recv></participantstreamassoc>
  <participantstreamassoc participant_id="P-agent"><send>S-a</send><recv>S-c</recv></participantstreamassoc>
</recording>"""


def test_siprec_multipart_body_and_metadata():
    body = (
        b"--XX\r\nContent-Type: application/sdp\r\n\r\n"
        + sdp("10.0.0.9", 5000).encode()
        + b"\r\n--XX\r\nContent-Type: application/rs-metadata+xml\r\n"
        + b"Content-Disposition: recording-session\r\n\r\n"
        + SIPREC_META
        + b"\r\n--XX--\r\n"
    )
    msg = parse_message(
        sip(
            "INVITE sip:rec@r SIP/2.0",
            {"Call-ID": "c", "CSeq": "1 INVITE"},
            body.decode(),
            'multipart/mixed;boundary="XX"',
        )
    )
    parts = body_parts(msg)
    assert set(parts) == {"application/sdp", "application/rs-metadata+xml"}
    meta = parse_metadata(parts["application/rs-metadata+xml"])
    assert meta.sender_of_label("2").aor == "sip:+4930111@carrier"
    assert meta.sender_of_label("1").aor == "sip:1001@10.1.0.5"
    with pytest.raises(SipError):
        parse_metadata(b"<recording><participant")


# -- packets ------------------------------------------------------------------------------------


def _eth_ipv4_udp(src, dst, sport, dport, payload, vlan=False):
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    )  # fmt: skip
    tag = struct.pack("!HH", 0x8100, 42) if vlan else b""
    return b"\0" * 12 + tag + b"\x08\x00" + ip + udp


def test_frames_to_datagrams_ipv4_vlan_ipv6_and_others_skipped():
    d = parse_frame(_eth_ipv4_udp("10.0.0.1", "10.0.0.2", 5060, 5062, b"hello", vlan=True))
    assert d == Datagram(("10.0.0.1", 5060), ("10.0.0.2", 5062), b"hello")
    udp = struct.pack("!HHHH", 1000, 2000, 10, 0) + b"hi"
    ip6 = struct.pack("!IHBB", 6 << 28, len(udp), 17, 64)
    ip6 += socket.inet_pton(socket.AF_INET6, "fd00::1") + socket.inet_pton(
        socket.AF_INET6, "fd00::2"
    )
    d6 = parse_frame(b"\0" * 12 + b"\x86\xdd" + ip6 + udp)
    assert d6 == Datagram(("fd00::1", 1000), ("fd00::2", 2000), b"hi")
    tcp = bytearray(_eth_ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"x"))
    tcp[14 + 9] = 6
    assert parse_frame(bytes(tcp)) is None and parse_frame(b"short") is None


@pytest.mark.parametrize("codec,pt,sr", [("PCMU", 0, 8000), ("PCMA", 8, 8000), ("G722", 9, 16000)])
def test_codecs_decode_real_speech(codec, pt, sr):
    _, customer = demo_legs(4, sr)
    pkts = [parse_rtp(p) for p in rtp_packets(customer, codec, pt)]
    dec = Decoder(codec)
    out = np.concatenate([dec.decode(p.payload) for p in pkts])
    assert dec.rate == sr and len(out) == len(pkts) * (320 if codec == "G722" else 160)
    lag, floor = 0, 0.97
    if codec == "G722":  # QMF filters delay the signal; the coarse high band lowers the SNR
        lag = int(np.argmax([np.dot(out[k : k + 16000], customer[:16000]) for k in range(40)]))
        floor = 0.93
        from G722 import G722  # packet by packet with state kept = the whole stream at once

        whole = G722(16000, 64000).decode(b"".join(p.payload for p in pkts))
        assert np.array_equal(np.round(out * 32768).astype(np.int16), np.asarray(whole))
    assert corr(out[lag:], customer) > floor


def test_unknown_codec_is_refused():
    with pytest.raises(ValueError, match="unsupported codec"):
        Decoder("G729")


# -- jitter buffer ------------------------------------------------------------------------------


def _stream_audio(stream, pkts, order, now_step=0.001):
    pieces, now = [], 0.0
    for i in order:
        now += now_step
        stream.push(parse_rtp(pkts[i]), now)
        pieces += stream.pull(now)
    pieces += stream.pull(now, flush=True)
    out = np.zeros(max(p + len(a) for p, a in pieces), np.float32)
    for p, a in pieces:
        out[p : p + len(a)] = a
    return out


def test_reordered_packets_come_out_in_order_exactly():
    _, customer = demo_legs(3)
    pkts = rtp_packets(customer)
    order = list(range(len(pkts)))
    for i in range(5, len(order) - 3, 7):  # swap neighbours, and one jump of three
        order[i], order[i + 1] = order[i + 1], order[i]
    order[40], order[43] = order[43], order[40]
    s = RtpStream({0: "PCMU"})
    out = _stream_audio(s, pkts, order)
    ref = _stream_audio(RtpStream({0: "PCMU"}), pkts, range(len(pkts)))
    assert np.array_equal(out, ref)
    assert s.stats.reordered > 0 and s.stats.lost == 0 and s.stats.late == 0


def test_loss_is_concealed_late_and_duplicate_packets_dropped():
    _, customer = demo_legs(3)
    pkts = rtp_packets(customer)
    order = [i for i in range(len(pkts)) if i not in (50, 51, 90)] + [50]  # 50 arrives too late
    order.insert(10, 9)  # a duplicate
    s = RtpStream({0: "PCMU"}, depth=2)
    out = _stream_audio(s, pkts, order)
    assert len(out) == len(pkts) * 160  # the timeline keeps its length
    assert (s.stats.lost, s.stats.late, s.stats.duplicates) == (3, 1, 1)
    hole = out[50 * 160 : 52 * 160]
    assert 0 < s.stats.concealed_s <= 0.061 and np.abs(hole[:160]).max() > 0  # concealed
    assert np.abs(hole[-80:]).max() < np.abs(hole[:80]).max()  # fading
    assert (
        corr(
            np.delete(out, np.s_[50 * 160 : 52 * 160]),
            np.delete(customer, np.s_[50 * 160 : 52 * 160]),
        )
        > 0.99
    )


def test_silence_suppression_gap_is_silence_not_concealment():
    _, customer = demo_legs(1)
    a, b = rtp_packets(customer[:1600]), rtp_packets(customer[:1600], seq0=110)
    later = [
        struct.pack("!BBHII", 0x80, 0, 110 + i, 1000 + 8000 + i * 160, 0x1234) + p[12:]
        for i, p in enumerate(b)
    ]
    s = RtpStream({0: "PCMU"})
    out = _stream_audio(s, a + later, range(20))
    assert s.stats.lost == 0 and s.stats.concealed_s == 0
    assert np.abs(out[1600:8000]).max() == 0 and len(out) == 8000 + 1600


def test_dtmf_events_counted_once_and_pause_transcription_digits_never_kept():
    _, customer = demo_legs(20)
    pkts = rtp_packets(customer, ssrc=7)
    for k, d in enumerate([4, 1, 1, 1]):  # "4111": the start of a card number, keyed at 2 s
        i = 100 + 6 * k  # events take the audio's place in the sequence
        pkts[i : i + 6] = dtmf_packets(d, ts=1000 + i * 160, seq=100 + i, ssrc=7)
    rec = Recorder()
    call = MediaCall(CallMeta(), rec, "tap", MediaTiming(dtmf_resume_s=3.0))
    call.set_leg("customer", {0: "PCMU", 101: "telephone-event"})
    for i, p in enumerate(pkts):
        call.packet("customer", parse_rtp(p), i * 0.02)
    call.close()
    assert call.media_stats()["customer"]["dtmf_events"] == 4
    (paused_at, p1), (resumed_at, p2) = rec.pauses
    assert (p1, p2) == (True, False)
    assert 1.5 < paused_at / 8000 < 2.3 and 5.0 < resumed_at / 8000 < 5.8
    assert "4111" not in repr(vars(call))


# -- a call's legs on one timeline -------------------------------------------------------------


def test_two_legs_aligned_and_a_silent_leg_does_not_hold_the_other():
    agent, customer = demo_legs(6)
    rec = Recorder()
    call = MediaCall(CallMeta(), rec, "tap", MediaTiming(stall_s=0.2))
    call.set_leg("agent", {8: "PCMA"})
    call.set_leg("customer", {0: "PCMU"})
    pa, pc = rtp_packets(agent, "PCMA", 8, ssrc=1), rtp_packets(customer, ssrc=2)
    now = 0.0
    for i in range(len(pc)):
        now += 0.02
        call.packet("customer", parse_rtp(pc[i]), now)
        if i < 100:  # the agent goes on hold after 2 s: no more packets
            call.packet("agent", parse_rtp(pa[i]), now)
        call.tick(now)
    emitted_before_close = sum(len(c["customer"]) for c in rec.chunks)
    call.close()
    assert rec.opened[0][1] == 8000 and rec.closed == 1
    assert emitted_before_close > len(customer) - 8000 * 0.5  # not held back by the silent agent
    assert corr(rec.channel("customer"), customer) > 0.99
    a = rec.channel("agent")
    assert corr(a[:16000], agent[:16000]) > 0.99 and np.abs(a[17000:]).max() == 0


def test_mixed_leg_goes_through_the_splitter():
    agent, customer = demo_legs(6)
    rec = Recorder()
    made = []

    class Halves:
        def __init__(self, sr):
            made.append(sr)

        def push(self, x):
            return [{"agent": x, "customer": np.zeros_like(x)}]

        def flush(self):
            return []

    call = MediaCall(CallMeta(), rec, "siprec", splitter_factory=Halves)
    call.set_leg("mixed", {0: "PCMU"})
    for i, p in enumerate(rtp_packets(agent + customer)):
        call.packet("mixed", parse_rtp(p), i * 0.02)
    call.close()
    assert made == [8000] and corr(rec.channel("agent"), agent + customer) > 0.99


# -- the tap's dialog logic ---------------------------------------------------------------------

C, A = ("127.0.0.2", 5060), ("127.0.0.3", 5060)


def _tracker(nets="127.0.0.3/32"):
    rec, ended = Recorder(), []

    def meta_for(d, caller_role):
        cust = d.caller if caller_role == "customer" else d.callee
        return CallMeta(customer_ref=cust, sip_call_id=d.call_id, caller=d.caller, callee=d.callee)

    return TapTracker(parse_nets(nets), rec, meta_for, ended.append), rec, ended


def _invite(tr, cid, caller_media=("127.0.0.2", 20000), callee_media=("127.0.0.3", 30000)):
    h = dialog_headers(cid, "+4930111", "1001", "1 INVITE")
    tr.datagram(Datagram(C, A, sip("INVITE sip:1001@127.0.0.3 SIP/2.0", h, sdp(*caller_media))), 0)
    h = dialog_headers(cid, "+4930111", "1001", "1 INVITE", "xyz")
    tr.datagram(Datagram(A, C, sip("SIP/2.0 200 OK", h, sdp(*callee_media, pts="0 101"))), 0)


def test_tap_follows_a_call_roles_by_agent_net_and_bye():
    tr, rec, ended = _tracker()
    _invite(tr, "cid-1")
    agent, customer = demo_legs(3)
    pa, pc = rtp_packets(agent, ssrc=1), rtp_packets(customer, ssrc=2)
    for i in range(len(pa)):
        tr.datagram(Datagram(("127.0.0.2", 20000), ("127.0.0.3", 30000), pc[i]), i * 0.02)
        tr.datagram(Datagram(("127.0.0.3", 30000), ("127.0.0.2", 20000), pa[i]), i * 0.02)
    bye = dialog_headers("cid-1", "+4930111", "1001", "2 BYE", "xyz")
    tr.datagram(Datagram(A, C, sip("BYE sip:+4930111@127.0.0.2 SIP/2.0", bye)), 3.0)
    meta = rec.opened[0][0]
    assert (meta.customer_ref, meta.sip_call_id, meta.callee) == ("+4930111", "cid-1", "1001")
    assert len(ended) == 1 and not tr.dialogs and not tr.by_addr
    assert (
        corr(rec.channel("customer"), customer) > 0.99 and corr(rec.channel("agent"), agent) > 0.99
    )


def test_tap_outbound_call_makes_the_callee_the_customer_and_skips_agent_to_agent():
    tr, rec, _ = _tracker("127.0.0.2/32")  # now the caller is the agent
    _invite(tr, "cid-2")
    assert tr.dialogs["cid-2"].roles == {"caller": "agent", "callee": "customer"}
    tr2, _, _ = _tracker("127.0.0.0/8")
    _invite(tr2, "cid-3")
    assert "cid-3" not in tr2.dialogs and tr2.ignored_calls == 1


def test_tap_cancel_error_reinvite_and_garbage():
    tr, rec, ended = _tracker()
    h = dialog_headers("cid-4", "+4930111", "1001", "1 INVITE")
    tr.datagram(
        Datagram(C, A, sip("INVITE sip:1001@127.0.0.3 SIP/2.0", h, sdp("127.0.0.2", 20000))), 0
    )
    tr.datagram(
        Datagram(C, A, sip("CANCEL sip:1001@127.0.0.3 SIP/2.0", {**h, "CSeq": "1 CANCEL"})), 1
    )
    assert not tr.dialogs and not ended and not rec.opened  # no media, no call
    tr.datagram(Datagram(C, A, b"INVITE garbage SIP/2.0\r\nno colon here\r\n\r\n"), 2)
    assert tr.sip_errors == 1
    _invite(tr, "cid-5")
    h = dialog_headers("cid-5", "+4930111", "1001", "2 INVITE", "xyz")  # re-INVITE: new port
    tr.datagram(
        Datagram(C, A, sip("INVITE sip:1001@127.0.0.3 SIP/2.0", h, sdp("127.0.0.2", 22000))), 1
    )
    assert ("127.0.0.2", 22000) in tr.by_addr and ("127.0.0.2", 20000) not in tr.by_addr
    tr.tick(1000.0)  # neither SIP nor RTP for longer than media_timeout_s
    assert not tr.dialogs


def test_agent_net_must_parse():
    with pytest.raises(ValueError, match="not an address"):
        parse_nets("10.0.0.0/8,banana")
    assert encode(np.zeros(160, np.float32), "PCMU") == bytes([0xFF]) * 160


@pytest.mark.parametrize(
    "args,says",
    [
        (
            ["tap", "--interface", "nope0", "--agent-net", "10.0.0.0/8"],
            "no network interface 'nope0'",
        ),
        (["tap", "--interface", "lo", "--agent-net", "10.0.0.0/8,banana"], "'banana' is not"),
        (["tap", "--interface", "lo"], "--agent-net is required"),
        (["siprec", "--listen", "5060"], "--listen must be HOST:PORT"),
        (
            ["tap", "--interface", "lo", "--agent-net", "10.0.0.0/8", "--max-calls", "0"],
            "at least 1",
        ),
    ],
)
def test_cli_refuses_bad_arguments_before_loading_models(args, says, tmp_path, capsys):
    from appliance.cli import main

    assert main([*args, "--db", str(tmp_path / "x.db")]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()
