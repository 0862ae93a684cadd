"""Packets off a mirrored switch port: a Linux packet socket (AF_PACKET), Ethernet (VLAN tags
skipped), IPv4 (fragments skipped) and IPv6, UDP.

Needs CAP_NET_RAW, nothing else: the tap's unit grants only that. The interface goes into
promiscuous mode through a packet-socket membership (released with the socket, so a killed tap
does not leave the port promiscuous). On `lo` every packet shows twice (outgoing and incoming):
the outgoing copy is skipped.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_OUTGOING = 4
RCVBUF = 8 << 20


class SniffError(OSError):
    """The interface cannot be opened for capture (missing, or no CAP_NET_RAW)."""


@dataclass(frozen=True)
class Datagram:
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


def parse_frame(frame: bytes) -> Datagram | None:
    """A UDP datagram from an Ethernet frame, or None for anything else."""
    if len(frame) < 14:
        return None
    off = 12
    ethertype = struct.unpack_from("!H", frame, off)[0]
    while ethertype in (0x8100, 0x88A8) and len(frame) >= off + 6:  # 802.1Q / QinQ
        off += 4
        ethertype = struct.unpack_from("!H", frame, off)[0]
    off += 2
    if ethertype == 0x0800:
        if len(frame) < off + 20:
            return None
        ihl = (frame[off] & 0x0F) * 4
        total = struct.unpack_from("!H", frame, off + 2)[0]
        frag = struct.unpack_from("!H", frame, off + 6)[0]
        if frame[off + 9] != 17 or frag & 0x3FFF:  # not UDP, or a fragment
            return None
        src = socket.inet_ntop(socket.AF_INET, frame[off + 12 : off + 16])
        dst = socket.inet_ntop(socket.AF_INET, frame[off + 16 : off + 20])
        end = off + total
        off += ihl
    elif ethertype == 0x86DD:
        if len(frame) < off + 40 or frame[off + 6] != 17:  # extension headers not followed
            return None
        end = off + 40 + struct.unpack_from("!H", frame, off + 4)[0]
        src = socket.inet_ntop(socket.AF_INET6, frame[off + 8 : off + 24])
        dst = socket.inet_ntop(socket.AF_INET6, frame[off + 24 : off + 40])
        off += 40
    else:
        return None
    if len(frame) < off + 8:
        return None
    sport, dport, ulen = struct.unpack_from("!HHH", frame, off)
    end = min(end, off + ulen, len(frame))
    return Datagram((src, sport), (dst, dport), frame[off + 8 : end])


class Sniffer:
    """A packet socket on one interface, read with a timeout (the caller ticks in between)."""

    def __init__(self, interface: str, promiscuous: bool = True):
        try:
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError as exc:
            raise SniffError(f"capturing needs CAP_NET_RAW: {exc.strerror}") from exc
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            self.sock.bind((interface, 0))
            if promiscuous and interface != "lo":
                idx = socket.if_nametoindex(interface)
                mreq = struct.pack("iHH8s", idx, PACKET_MR_PROMISC, 0, b"")
                self.sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        except OSError as exc:
            self.sock.close()
            raise SniffError(f"cannot capture on {interface!r}: {exc.strerror or exc}") from exc
        self.interface = interface
        self.frames = 0

    def read(self, timeout: float) -> list[Datagram]:
        """UDP datagrams received within `timeout` (at most a burst's worth)."""
        self.sock.settimeout(timeout)
        out: list[Datagram] = []
        try:
            while len(out) < 256:
                frame, addr = self.sock.recvfrom(65535)
                self.frames += 1
                if addr[2] != PACKET_OUTGOING:
                    d = parse_frame(frame)
                    if d is not None:
                        out.append(d)
                self.sock.settimeout(0)
        except (TimeoutError, BlockingIOError):
            pass
        return out

    def close(self) -> None:
        self.sock.close()
