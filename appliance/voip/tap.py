"""The passive tap: SIP dialogs and their RTP, followed from copies of the packets.

SIP is recognised on any UDP port by its start line. An INVITE opens a dialog (its From is
the caller, its To the callee); the SDP in each message says where its sender receives media,
so an RTP packet sent to the caller's media address comes from the callee and the other way
round; re-INVITEs and UPDATEs move those addresses. Which party is the agent: the one whose
media address (else signalling address) lies inside `agent_nets`; the other is the customer,
whose number becomes the call's customer reference (pseudonymised when published). A call
between two agents is not a customer call and is not analysed. A dialog ends on BYE, on CANCEL
or an error answer before it was answered, or after `media_timeout_s` with neither SIP nor RTP.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.pipeline.call import CallMeta
from appliance.voip.call import MediaCall, MediaTiming, Sink
from appliance.voip.rtp import MediaError, parse_rtp
from appliance.voip.sip import (
    SipError,
    SipMessage,
    looks_like_sip,
    parse_message,
    parse_sdp,
    uri_user,
)
from appliance.voip.sip import tag as sip_tag
from appliance.voip.sniff import Datagram

log = logging.getLogger(__name__)

Nets = list[ipaddress.IPv4Network | ipaddress.IPv6Network]


def parse_nets(text: str) -> Nets:
    """`10.1.0.0/16,fd00::/64` -> networks; ValueError names the bad one."""
    nets: Nets = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ValueError(f"--agent-net: {part!r} is not an address/prefix ({exc})") from exc
    if not nets:
        raise ValueError("--agent-net needs at least one CIDR")
    return nets


def in_nets(addr: str, nets: Nets) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in n for n in nets)


@dataclass
class Dialog:
    call_id: str
    caller: str
    callee: str
    caller_tag: str
    caller_sig: str
    """Signalling address of the INVITE's sender."""
    callee_sig: str
    started: float
    media: dict[str, tuple[str, int]] = field(default_factory=dict)
    """party ("caller"/"callee") -> where it receives RTP (from its SDP)."""
    codecs: dict[str, dict[int, str]] = field(default_factory=dict)
    answered: bool = False
    call: MediaCall | None = None
    roles: dict[str, str] = field(default_factory=dict)
    """party -> "agent" / "customer"."""
    last_activity: float = field(default_factory=time.monotonic)


class TapTracker:
    """Feeds sniffed datagrams to calls; `on_closed(call)` when a call ends."""

    def __init__(
        self,
        agent_nets: Nets,
        sink: Sink,
        meta_for: Callable[[Dialog, str], CallMeta],
        on_closed: Callable[[MediaCall], None],
        timing: MediaTiming | None = None,
        media_timeout_s: float = 60.0,
    ):
        self.agent_nets = agent_nets
        self.sink = sink
        self.meta_for = meta_for
        self.on_closed = on_closed
        self.timing = timing or MediaTiming()
        self.media_timeout_s = media_timeout_s
        self.dialogs: dict[str, Dialog] = {}
        self.by_addr: dict[tuple[str, int], tuple[Dialog, str]] = {}
        """Media address -> (dialog, role of the sender of packets sent there)."""
        self.sip_errors = 0
        self.ignored_calls = 0

    # -- datagrams ---------------------------------------------------------------------

    def datagram(self, d: Datagram, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        hit = self.by_addr.get(d.dst)
        if hit is not None:
            dialog, role = hit
            if dialog.call is not None:
                with contextlib.suppress(MediaError):
                    dialog.call.packet(role, parse_rtp(d.payload), now)
                dialog.last_activity = now
            return
        if looks_like_sip(d.payload):
            try:
                msg = parse_message(d.payload)
            except SipError as exc:
                self.sip_errors += 1
                log.warning("tap: SIP from %s skipped: %s", d.src[0], exc)
                return
            self.sip(msg, d, now)

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for dialog in list(self.dialogs.values()):
            if dialog.call is not None:
                dialog.call.tick(now)
            if now - dialog.last_activity > self.media_timeout_s:
                self._end(dialog, "media timeout")

    def close(self) -> None:
        for dialog in list(self.dialogs.values()):
            self._end(dialog, "tap stopped")

    # -- SIP ---------------------------------------------------------------------------

    def sip(self, msg: SipMessage, d: Datagram, now: float) -> None:
        cid = msg.call_id
        dialog = self.dialogs.get(cid)
        if dialog is None:
            if msg.method != "INVITE" or sip_tag(msg.header("to")):
                return  # mid-dialog traffic of a call that started before the tap
            dialog = self.dialogs[cid] = Dialog(
                call_id=cid,
                caller=uri_user(msg.header("p-asserted-identity") or msg.header("from")),
                callee=uri_user(msg.header("to")),
                caller_tag=sip_tag(msg.header("from")),
                caller_sig=d.src[0],
                callee_sig=d.dst[0],
                started=now,
            )
        dialog.last_activity = now
        sender = self._sender(dialog, msg)
        if msg.content_type == "application/sdp" and msg.body:
            self._sdp(dialog, sender, msg.body)
        if msg.method == "BYE":
            self._end(dialog, "BYE")
        elif msg.method == "CANCEL" and not dialog.answered:
            self._end(dialog, "CANCEL")
        elif not msg.is_request and msg.cseq_method == "INVITE":
            if 200 <= msg.status < 300:
                dialog.answered = True
            elif msg.status >= 300 and not dialog.answered:
                self._end(dialog, f"INVITE answered {msg.status}")

    def _sender(self, dialog: Dialog, msg: SipMessage) -> str:
        from_caller = sip_tag(msg.header("from")) == dialog.caller_tag
        if msg.is_request:
            return "caller" if from_caller else "callee"
        return "callee" if from_caller else "caller"

    def _sdp(self, dialog: Dialog, party: str, body: bytes) -> None:
        try:
            audio = [m for m in parse_sdp(body) if m.kind == "audio" and m.port]
        except SipError as exc:
            self.sip_errors += 1
            log.warning("tap: SDP of call skipped: %s", exc)
            return
        if not audio:
            return
        m = audio[0]
        old = dialog.media.get(party)
        if old is not None:
            self.by_addr.pop(old, None)
        dialog.media[party] = (m.address, m.port)
        dialog.codecs[party] = {pt: m.codec(pt) or "" for pt in m.payloads}
        for pt, enc in m.rtpmap.items():
            dialog.codecs[party][pt] = enc.split("/")[0].upper()
        if not dialog.roles and not self._assign_roles(dialog):
            return
        other = "callee" if party == "caller" else "caller"
        # packets sent to `party` come from `other`
        self.by_addr[(m.address, m.port)] = (dialog, dialog.roles[other])
        if dialog.call is None:
            dialog.call = MediaCall(
                self.meta_for(dialog, dialog.roles["caller"]),
                self.sink,
                "tap",
                self.timing,
                info={"id": dialog.call_id},
            )
        # both directions normally use the codecs of the answer; take what each side offers
        codecs = {**dialog.codecs.get(party, {}), **dialog.codecs.get(other, {})}
        dialog.call.set_leg(dialog.roles[other], codecs)

    def _assign_roles(self, dialog: Dialog) -> bool:
        def is_agent(party: str) -> bool:
            media = dialog.media.get(party)
            sig = dialog.caller_sig if party == "caller" else dialog.callee_sig
            return in_nets(media[0] if media else sig, self.agent_nets) or in_nets(
                sig, self.agent_nets
            )

        caller_agent = is_agent("caller")
        callee_agent = (
            is_agent("callee")
            if "callee" in dialog.media
            else in_nets(dialog.callee_sig, self.agent_nets)
        )
        if caller_agent and callee_agent:
            log.info("tap: call between two agents, not analysed")
            self.ignored_calls += 1
            self.dialogs.pop(dialog.call_id, None)
            return False
        if not caller_agent and not callee_agent:
            log.warning("tap: neither party inside agent-net; taking the callee as the agent")
        caller_role = "agent" if caller_agent else "customer"
        dialog.roles = {
            "caller": caller_role,
            "callee": "customer" if caller_role == "agent" else "agent",
        }
        return True

    def _end(self, dialog: Dialog, why: str) -> None:
        self.dialogs.pop(dialog.call_id, None)
        for addr in list(dialog.media.values()):
            if self.by_addr.get(addr, (None,))[0] is dialog:
                del self.by_addr[addr]
        call = dialog.call
        if call is None or call.closed:
            return
        call.close()
        log.info("tap: call ends (%s)", why)
        if call.handle is not None:
            self.on_closed(call)
