"""SIP messages, SDP and SIPREC bodies: parsing what the tap and the recorder read, and the few
responses the recorder writes.

Only what a recorder needs: the start line, headers (compact forms folded to their long names),
the body; SDP media lines with their address, port, payload types, direction and label; a
multipart/mixed body split into its parts; RFC 7865 recording metadata (participants, streams
and which participant sends on which stream). Anything unparsable raises `SipError` with the
reason, so a malformed packet is logged and skipped, never half-used.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

_METHOD_NAMES = "INVITE ACK BYE CANCEL OPTIONS UPDATE PRACK INFO REGISTER NOTIFY SUBSCRIBE"
METHODS = frozenset(_METHOD_NAMES.split())
#: RFC 3261 section 7.3.3 compact header names.
COMPACT = {
    "i": "call-id",
    "f": "from",
    "t": "to",
    "m": "contact",
    "v": "via",
    "c": "content-type",
    "l": "content-length",
    "k": "supported",
    "s": "subject",
}
MAX_MESSAGE = 65535


class SipError(ValueError):
    """Not a SIP message we can use; the message says why."""


@dataclass
class SipMessage:
    method: str
    """Request method, or "" for a response."""
    status: int
    """Response status, or 0 for a request."""
    uri: str
    headers: dict[str, list[str]]
    """Lower-case long header names -> values in order."""
    body: bytes

    @property
    def is_request(self) -> bool:
        return bool(self.method)

    def header(self, name: str, default: str = "") -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else default

    @property
    def call_id(self) -> str:
        return self.header("call-id")

    @property
    def cseq_method(self) -> str:
        parts = self.header("cseq").split()
        return parts[1].upper() if len(parts) == 2 else ""

    @property
    def content_type(self) -> str:
        return self.header("content-type").split(";")[0].strip().lower()


def looks_like_sip(data: bytes) -> bool:
    """Cheap test on a UDP payload: a SIP start line (any port may carry SIP)."""
    if data.startswith(b"SIP/2.0 "):
        return True
    head = data[:10].split(b" ", 1)[0]
    return head.decode("ascii", "replace") in METHODS and b"SIP/2.0" in data[:300]


def parse_message(data: bytes) -> SipMessage:
    """One SIP message from a datagram or a framed TCP message."""
    if len(data) > MAX_MESSAGE:
        raise SipError("message too large")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipError("headers are not UTF-8") from exc
    lines = text.replace("\r\n", "\n").split("\n")
    start = lines[0].strip()
    method, status, uri = "", 0, ""
    if start.startswith("SIP/2.0 "):
        parts = start.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise SipError(f"bad status line {start[:60]!r}")
        status = int(parts[1])
    else:
        parts = start.split(" ")
        if len(parts) != 3 or parts[2] != "SIP/2.0" or not parts[0].isalpha():
            raise SipError(f"bad request line {start[:60]!r}")
        method, uri = parts[0].upper(), parts[1]
    headers: dict[str, list[str]] = {}
    last = ""
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t" and last:  # folded continuation
            headers[last][-1] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise SipError(f"bad header line {line[:60]!r}")
        name = name.strip().lower()
        name = COMPACT.get(name, name)
        headers.setdefault(name, []).append(value.strip())
        last = name
    if "call-id" not in headers or "cseq" not in headers:
        raise SipError("no Call-ID or CSeq")
    length = headers.get("content-length")
    if length and length[0].strip().isdigit():
        body = body[: int(length[0].strip())]
    return SipMessage(method, status, uri, headers, body)


def tcp_frames(buf: bytearray) -> list[bytes]:
    """Complete messages at the front of a TCP stream buffer (removed from it); RFC 3261 18.3
    frames them by Content-Length. CRLF keep-alives are dropped."""
    out = []
    while True:
        while buf[:2] == b"\r\n":
            del buf[:2]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_MESSAGE:
                raise SipError("header block too large")
            return out
        m = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", bytes(buf[:end]))
        n = end + 4 + (int(m.group(1)) if m else 0)
        if n > MAX_MESSAGE:
            raise SipError("message too large")
        if len(buf) < n:
            return out
        out.append(bytes(buf[:n]))
        del buf[:n]


def uri_user(value: str) -> str:
    """The user part of a From/To/PAI value: `"A" <sip:+4930123@pbx>;tag=x` -> `+4930123`."""
    m = re.search(r"<([^>]*)>", value)
    uri = m.group(1) if m else value.split(";")[0]
    uri = uri.strip()
    for scheme in ("sips:", "sip:", "tel:"):
        if uri.lower().startswith(scheme):
            uri = uri[len(scheme) :]
            break
    return uri.split("@")[0].split(";")[0]


def tag(value: str) -> str:
    m = re.search(r";\s*tag=([^;>\s]+)", value)
    return m.group(1) if m else ""


# -- SDP --------------------------------------------------------------------------------------


@dataclass
class Media:
    """One m= line of an SDP body."""

    kind: str
    address: str
    port: int
    payloads: list[int]
    rtpmap: dict[int, str] = field(default_factory=dict)
    """payload type -> "PCMU/8000" etc. (static types filled in)."""
    direction: str = "sendrecv"
    label: str = ""
    """`a=label:` (RFC 4574): how SIPREC metadata names a stream."""

    def codec(self, pt: int) -> str:
        return self.rtpmap.get(pt, "").split("/")[0].upper()

    @property
    def dtmf_payload(self) -> int | None:
        for pt, enc in self.rtpmap.items():
            if enc.lower().startswith("telephone-event"):
                return pt
        return None


STATIC_PT = {0: "PCMU/8000", 8: "PCMA/8000", 9: "G722/8000"}


def parse_sdp(body: bytes) -> list[Media]:
    """Media descriptions with their effective connection address (media c= over session c=)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipError("SDP is not UTF-8") from exc
    session_addr = ""
    session_dir = "sendrecv"
    media: list[Media] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        k, v = line[0], line[2:]
        cur = media[-1] if media else None
        if k == "c":
            parts = v.split()
            if len(parts) != 3:
                raise SipError(f"bad c= line {v[:60]!r}")
            addr = parts[2].split("/")[0]
            if cur is None:
                session_addr = addr
            else:
                cur.address = addr
        elif k == "m":
            parts = v.split()
            if len(parts) < 4 or not parts[1].split("/")[0].isdigit():
                raise SipError(f"bad m= line {v[:60]!r}")
            pts = [int(p) for p in parts[3:] if p.isdigit()]
            media.append(
                Media(
                    parts[0],
                    session_addr,
                    int(parts[1].split("/")[0]),
                    pts,
                    {p: STATIC_PT[p] for p in pts if p in STATIC_PT},
                    session_dir,
                )
            )
        elif k == "a":
            name, _, value = v.partition(":")
            if name in ("sendrecv", "sendonly", "recvonly", "inactive"):
                if cur is None:
                    session_dir = name
                else:
                    cur.direction = name
            elif name == "rtpmap" and cur is not None:
                pt, _, enc = value.partition(" ")
                if pt.isdigit():
                    cur.rtpmap[int(pt)] = enc.strip()
            elif name == "label" and cur is not None:
                cur.label = value.strip()
    return media


# -- multipart and SIPREC metadata ---------------------------------------------------------------


def body_parts(msg: SipMessage) -> dict[str, bytes]:
    """content type -> body: the parts of a multipart/mixed body, or the one body."""
    ctype = msg.header("content-type")
    if not ctype.lower().startswith("multipart/"):
        return {msg.content_type: msg.body} if msg.body else {}
    m = re.search(r'boundary\s*=\s*"?([^";]+)"?', ctype, re.I)
    if not m:
        raise SipError("multipart body without a boundary")
    delim = b"--" + m.group(1).encode()
    parts: dict[str, bytes] = {}
    for chunk in msg.body.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.lstrip(b"\r\n")
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            head, sep, content = chunk.partition(b"\n\n")
        pt = re.search(rb"(?im)^content-type\s*:\s*([^;\r\n]+)", head)
        if pt:
            parts[pt.group(1).decode().strip().lower()] = content.rstrip(b"\r\n")
    return parts


@dataclass
class Participant:
    id: str
    aor: str
    """Address of record (`sip:+4930123@pbx`)."""
    name: str = ""
    sends: list[str] = field(default_factory=list)
    """Stream ids this participant sends on."""


@dataclass
class RecordingMetadata:
    """RFC 7865: who the participants are and which stream (by SDP label) carries whom."""

    session_id: str
    participants: list[Participant]
    streams: dict[str, str]
    """stream id -> SDP label."""

    def sender_of_label(self, label: str) -> Participant | None:
        for stream_id, lab in self.streams.items():
            if lab == label:
                for p in self.participants:
                    if stream_id in p.sends:
                        return p
        return None


def _local(tag_name: str) -> str:
    return tag_name.rsplit("}", 1)[-1]


def parse_metadata(xml: bytes) -> RecordingMetadata:
    """The `application/rs-metadata+xml` part. Namespace-agnostic: PBXs differ in prefixes."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise SipError(f"rs-metadata is not XML: {exc}") from exc
    session_id = ""
    parts: dict[str, Participant] = {}
    streams: dict[str, str] = {}
    for el in root.iter():
        name = _local(el.tag)
        attrs = {_local(k): v for k, v in el.attrib.items()}
        if name == "session":
            session_id = attrs.get("session_id", session_id)
        elif name == "participant":
            pid = attrs.get("participant_id", "")
            aor, display = "", ""
            for sub in el:
                if _local(sub.tag) == "nameID":
                    aor = sub.attrib.get("aor", "")
                    for n in sub:
                        if _local(n.tag) == "name":
                            display = (n.text or "").strip()
                elif _local(sub.tag) == "aor":
                    aor = (sub.text or "").strip()
            parts.setdefault(pid, Participant(pid, aor)).aor = aor
            parts[pid].name = display
        elif name == "stream":
            label = ""
            for sub in el:
                if _local(sub.tag) == "label":
                    label = (sub.text or "").strip()
            streams[attrs.get("stream_id", "")] = label
        elif name == "participantstreamassoc":
            pid = attrs.get("participant_id", "")
            p = parts.setdefault(pid, Participant(pid, ""))
            for sub in el:
                if _local(sub.tag) == "send" and sub.text:
                    p.sends.append(sub.text.strip())
    return RecordingMetadata(session_id, list(parts.values()), streams)


# -- responses (the recorder's side) ---------------------------------------------------------------


def response(
    req: SipMessage,
    status: int,
    reason: str,
    to_tag: str = "",
    contact: str = "",
    body: bytes = b"",
    content_type: str = "application/sdp",
) -> bytes:
    """A response to `req` with its Via, From, To (tagged), Call-ID and CSeq copied."""
    lines = [f"SIP/2.0 {status} {reason}"]
    for v in req.headers.get("via", []):
        lines.append(f"Via: {v}")
    lines.append(f"From: {req.header('from')}")
    to = req.header("to")
    if to_tag and not tag(to):
        to = f"{to};tag={to_tag}"
    lines.append(f"To: {to}")
    lines.append(f"Call-ID: {req.call_id}")
    lines.append(f"CSeq: {req.header('cseq')}")
    if contact:
        lines.append(f"Contact: {contact}")
    lines.append("Server: appliance-siprec")
    if body:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
