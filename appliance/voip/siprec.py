"""A SIPREC recording server (RFC 7866 recorder, RFC 7865 metadata) for PBXs and SBCs that fork
their calls to a recorder.

SIP over UDP and TCP on one address. An INVITE carries a multipart/mixed body: the SDP offer
(one m= line per recorded stream, each with an `a=label`) and the rs-metadata XML that says
which participant sends on which stream. Streams are mapped to participants by that metadata,
never by their order; a participant is the agent when its address-of-record's host lies in
`agent_nets` or its AOR matches `agent_aor`, else the first other participant is the customer.
One stream (both parties mixed) is recorded as a mixed leg and diarized. The answer is
`recvonly` on ports from `ports`, with the first codec we decode (PCMU, PCMA, G.722) and
telephone-event when offered. A re-INVITE keeps the ports of known labels (new metadata may
swap participants); BYE or CANCEL ends the recording; OPTIONS is answered (SRCs ping).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import select
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from appliance.voip.call import MediaCall, MediaTiming, Sink
from appliance.voip.rtp import MediaError, parse_rtp
from appliance.voip.sip import (
    Media,
    RecordingMetadata,
    SipError,
    SipMessage,
    body_parts,
    parse_message,
    parse_metadata,
    parse_sdp,
    response,
    tcp_frames,
    uri_user,
)

log = logging.getLogger(__name__)

SUPPORTED = ("PCMU", "PCMA", "G722")
MetaFor = Callable[[str, str, str, str, str], Any]
"""(caller, callee, customer, agent, call id) -> CallMeta."""


def split_hostport(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"--listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


@dataclass
class Recording:
    call_id: str
    to_tag: str
    call: MediaCall
    ports: dict[str, socket.socket] = field(default_factory=dict)
    """SDP label -> our RTP socket."""
    roles: dict[str, str] = field(default_factory=dict)
    """SDP label -> leg role."""
    last_activity: float = field(default_factory=time.monotonic)


class SiprecServer:
    def __init__(
        self,
        listen: str,
        sink: Sink,
        meta_for: MetaFor,
        on_closed: Callable[[MediaCall], None],
        timing: MediaTiming | None = None,
        ports: tuple[int, int] = (40000, 40999),
        media_timeout_s: float = 60.0,
        agent_nets: list | None = None,
        agent_aor: str = "",
        splitter_factory: Callable[[int], Any] | None = None,
    ):
        self.host, self.port = split_hostport(listen)
        self.sink, self.meta_for, self.on_closed = sink, meta_for, on_closed
        self.timing = timing or MediaTiming()
        self.port_range = ports
        self.media_timeout_s = media_timeout_s
        self.agent_nets = agent_nets or []
        self.agent_aor = re.compile(agent_aor) if agent_aor else None
        self.splitter_factory = splitter_factory
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.udp = socket.socket(family, socket.SOCK_DGRAM)
        self.tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.udp.bind((self.host, self.port))
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.tcp.bind((self.host, self.port))
            self.tcp.listen(16)
        except OSError as exc:
            self.udp.close()
            self.tcp.close()
            raise ValueError(f"cannot listen on {listen}: {exc.strerror}") from exc
        self.family = family
        self.conns: dict[socket.socket, bytearray] = {}
        self.recordings: dict[str, Recording] = {}
        self.rtp: dict[socket.socket, tuple[Recording, str]] = {}
        self.rejected = 0

    # -- loop ------------------------------------------------------------------------------

    def poll(self, timeout: float) -> None:
        socks = [self.udp, self.tcp, *self.conns, *self.rtp]
        ready, _, _ = select.select(socks, [], [], timeout)
        now = time.monotonic()
        for s in ready:
            if s is self.udp:
                data, addr = s.recvfrom(65535)
                self._sip(data, lambda out, a=addr: self.udp.sendto(out, a), addr[0])
            elif s is self.tcp:
                conn, _ = s.accept()
                conn.setblocking(False)
                self.conns[conn] = bytearray()
            elif s in self.conns:
                self._tcp(s)
            elif s in self.rtp:
                rec, label = self.rtp[s]
                try:
                    data = s.recv(65535)
                    rec.call.packet(rec.roles[label], parse_rtp(data), now)
                    rec.last_activity = now
                except (MediaError, OSError):
                    pass

    def _tcp(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(65535)
        except OSError:
            data = b""
        if not data:
            self.conns.pop(conn, None)
            conn.close()
            return
        buf = self.conns[conn]
        buf.extend(data)
        try:
            frames = tcp_frames(buf)
        except SipError as exc:
            log.warning("siprec: TCP stream dropped: %s", exc)
            self.conns.pop(conn, None)
            conn.close()
            return
        peer = conn.getpeername()[0]
        for frame in frames:
            self._sip(frame, conn.sendall, peer)

    def tick(self, now: float) -> None:
        for rec in list(self.recordings.values()):
            rec.call.tick(now)
            if now - rec.last_activity > self.media_timeout_s:
                self._end(rec, "media timeout")

    def close(self) -> None:
        for rec in list(self.recordings.values()):
            self._end(rec, "recorder stopped")
        for s in [self.udp, self.tcp, *self.conns]:
            s.close()

    # -- SIP -------------------------------------------------------------------------------

    def _sip(self, data: bytes, reply: Callable[[bytes], Any], peer: str) -> None:
        try:
            msg = parse_message(data)
        except SipError as exc:
            self.rejected += 1
            log.warning("siprec: message from %s refused: %s", peer, exc)
            return
        if not msg.is_request:
            return
        rec = self.recordings.get(msg.call_id)
        if rec is not None:
            rec.last_activity = time.monotonic()
        if msg.method == "INVITE":
            reply(self._invite(msg, rec))
        elif msg.method in ("BYE", "CANCEL"):
            reply(response(msg, 200, "OK", to_tag=rec.to_tag if rec else ""))
            if rec is not None:
                self._end(rec, msg.method)
        elif msg.method == "OPTIONS":
            reply(response(msg, 200, "OK", to_tag=uuid.uuid4().hex[:8]))
        elif msg.method != "ACK":
            reply(response(msg, 405, "Method Not Allowed"))

    def _invite(self, msg: SipMessage, rec: Recording | None) -> bytes:
        try:
            parts = body_parts(msg)
            offer = [m for m in parse_sdp(parts.get("application/sdp", b"")) if m.kind == "audio"]
            xml = parts.get("application/rs-metadata+xml")
            metadata = parse_metadata(xml) if xml else None
            roles = self._roles(offer, metadata)
        except SipError as exc:
            self.rejected += 1
            log.warning("siprec: INVITE refused: %s", exc)
            return response(msg, 400, f"Bad Request ({exc})"[:120])
        if not offer or not all(_codec(m) for m in offer):
            self.rejected += 1
            return response(msg, 488, "Not Acceptable Here")
        if rec is None:
            rec = self._new(msg, metadata, roles)
        else:  # re-INVITE: new metadata may swap who sends on which label
            rec.roles.update(roles)
        answer = []
        for m in offer:
            label = m.label or str(len(answer))
            role = rec.roles.get(label, roles.get(label, "mixed"))
            rec.roles[label] = role
            codecs = {pt: m.codec(pt) for pt in m.payloads}
            rec.call.set_leg(role, codecs)
            if label not in rec.ports:
                s = self._bind_rtp()
                rec.ports[label] = s
                self.rtp[s] = (rec, label)
            answer.append((m, label, rec.ports[label].getsockname()[1]))
        contact = f"<sip:recorder@{self._host_for_uri()}:{self.port}>"
        return response(
            msg, 200, "OK", to_tag=rec.to_tag, contact=contact, body=self._sdp(answer).encode()
        )

    def _new(self, msg: SipMessage, metadata: RecordingMetadata | None, roles: dict) -> Recording:
        users = [uri_user(p.aor) for p in (metadata.participants if metadata else [])]
        customer = agent = ""
        for p in metadata.participants if metadata else []:
            role = self._participant_role(p.aor)
            if role == "agent" and not agent:
                agent = uri_user(p.aor)
            elif role != "agent" and not customer:
                customer = uri_user(p.aor)
        caller, callee = (users + ["", ""])[:2]
        meta = self.meta_for(caller, callee, customer, agent, msg.call_id)
        call = MediaCall(
            meta,
            self.sink,
            "siprec",
            self.timing,
            splitter_factory=self.splitter_factory,
            info={"id": msg.call_id, "session_id": metadata.session_id if metadata else ""},
        )
        rec = Recording(msg.call_id, uuid.uuid4().hex[:10], call, roles=dict(roles))
        self.recordings[msg.call_id] = rec
        log.info("siprec: recording %s with %d stream(s)", msg.call_id, len(roles) or 1)
        return rec

    def _participant_role(self, aor: str) -> str:
        if self.agent_aor is not None and self.agent_aor.search(aor):
            return "agent"
        host = aor.split("@")[-1].split(";")[0].split(">")[0].rsplit(":", 1)[0].strip("[]")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return "customer"
        return "agent" if any(ip in n for n in self.agent_nets) else "customer"

    def _roles(self, offer: list[Media], metadata: RecordingMetadata | None) -> dict[str, str]:
        """SDP label -> leg role, from who sends on each stream."""
        if len(offer) == 1:
            return {offer[0].label or "0": "mixed"}
        if metadata is None:
            raise SipError("two streams but no rs-metadata to tell their participants")
        roles: dict[str, str] = {}
        for m in offer:
            p = metadata.sender_of_label(m.label)
            if p is None:
                raise SipError(f"stream label {m.label!r} has no participant in the metadata")
            roles[m.label] = self._participant_role(p.aor)
        if len(set(roles.values())) != len(roles):
            # no address tells: the first participant of the metadata is the customer
            first = metadata.participants[0].aor if metadata.participants else ""
            for m in offer:
                p = metadata.sender_of_label(m.label)
                roles[m.label] = "customer" if p is not None and p.aor == first else "agent"
            log.warning("siprec: agent not identified by agent_nets/agent_aor; assumed")
        return roles

    def _bind_rtp(self) -> socket.socket:
        lo, hi = self.port_range
        for port in range(lo - lo % 2, hi + 1, 2):  # RTP on even ports
            s = socket.socket(self.family, socket.SOCK_DGRAM)
            try:
                s.bind((self.host, port))
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                return s
            except OSError:
                s.close()
        raise SipError("no free RTP port in voip.rtp_port_min..max")

    def _host_for_uri(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def _sdp(self, answer: list[tuple[Media, str, int]]) -> str:
        ip = "IP6" if ":" in self.host else "IP4"
        lines = ["v=0", f"o=appliance 1 1 IN {ip} {self.host}", "s=recorder", "t=0 0"]
        for m, label, port in answer:
            pt = next(p for p in m.payloads if m.codec(p) in SUPPORTED)
            pts = [pt] + ([m.dtmf_payload] if m.dtmf_payload is not None else [])
            lines += [
                f"m=audio {port} RTP/AVP {' '.join(map(str, pts))}",
                f"c=IN {ip} {self.host}",
                *[f"a=rtpmap:{p} {m.rtpmap[p]}" for p in pts if p in m.rtpmap],
                f"a=label:{label}",
                "a=recvonly",
            ]
        return "\r\n".join(lines) + "\r\n"

    def _end(self, rec: Recording, why: str) -> None:
        self.recordings.pop(rec.call_id, None)
        for s in rec.ports.values():
            self.rtp.pop(s, None)
            s.close()
        if rec.call.closed:
            return
        rec.call.close()
        log.info("siprec: recording %s ends (%s)", rec.call_id, why)
        if rec.call.handle is not None:
            self.on_closed(rec.call)


def _codec(m: Media) -> str:
    return next((m.codec(p) for p in m.payloads if m.codec(p) in SUPPORTED), "")
