"""RTP media: packets, the codecs a call center meets, RFC 4733 events, and one stream's jitter
buffer with loss concealment.

`RtpStream` takes packets in arrival order and releases decoded audio in timestamp order: a
packet waits until `depth` later packets arrived or `max_wait_s` passed (reordering absorbed up
to that), a packet older than what was released is late and dropped, and a hole left by a lost
packet is filled by repeating the last pitch-length of audio with a fade (the idea of ITU-T
G.711 Appendix I, simplified), silence after `max_conceal_s`. A timestamp jump without a
sequence gap is the sender's silence suppression: filled with silence, not concealed.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

import numpy as np

from appliance.capture.resample import mulaw_decode

#: Clock rates by codec name (G.722's RTP clock is 8000 although it samples at 16 kHz, RFC 3551).
AUDIO_RATES = {"PCMU": 8000, "PCMA": 8000, "G722": 16000}
RTP_CLOCK = {"PCMU": 8000, "PCMA": 8000, "G722": 8000}
DTMF_EVENTS = "0123456789*#ABCD"
RESYNC_GAP = 3000
"""A sequence jump larger than this (a minute of packets) is a restarted sender, not loss."""


class MediaError(ValueError):
    """Not an RTP packet we can use."""


@dataclass(frozen=True)
class RtpPacket:
    pt: int
    seq: int
    ts: int
    ssrc: int
    marker: bool
    payload: bytes


def parse_rtp(data: bytes) -> RtpPacket:
    """RFC 3550 header (CSRCs, extension and padding skipped)."""
    if len(data) < 12 or data[0] >> 6 != 2:
        raise MediaError("not RTP version 2")
    b0, b1, seq, ts, ssrc = struct.unpack("!BBHII", data[:12])
    off = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if len(data) < off + 4:
            raise MediaError("truncated header extension")
        off += 4 + 4 * struct.unpack("!H", data[off + 2 : off + 4])[0]
    end = len(data)
    if b0 & 0x20:
        end -= data[-1]
    if off > end:
        raise MediaError("truncated RTP packet")
    return RtpPacket(b1 & 0x7F, seq, ts, ssrc, bool(b1 & 0x80), data[off:end])


def _alaw_table() -> np.ndarray:
    out = np.zeros(256, np.float32)
    for i in range(256):
        a = i ^ 0x55
        t = (a & 0x0F) << 4
        seg = (a & 0x70) >> 4
        if seg == 0:
            t += 8
        elif seg == 1:
            t += 0x108
        else:
            t = (t + 0x108) << (seg - 1)
        out[i] = (t if a & 0x80 else -t) / 32768.0
    return out


_ALAW = _alaw_table()
_ULAW = mulaw_decode(np.arange(256, dtype=np.uint8)).astype(np.float32)


class Decoder:
    """Payload bytes -> float32 samples at the codec's audio rate; keeps G.722's state."""

    def __init__(self, codec: str):
        self.codec = codec.upper()
        if self.codec not in AUDIO_RATES:
            raise MediaError(f"unsupported codec {codec!r} (PCMU, PCMA, G722)")
        self.rate = AUDIO_RATES[self.codec]
        self._g722 = None
        if self.codec == "G722":
            from G722 import G722  # public-domain ITU reference port (libg722)

            self._g722 = G722(16000, 64000)

    def decode(self, payload: bytes) -> np.ndarray:
        b = np.frombuffer(payload, np.uint8)
        if self.codec == "PCMU":
            return _ULAW[b]
        if self.codec == "PCMA":
            return _ALAW[b]
        pcm = np.asarray(self._g722.decode(payload), dtype=np.int16)
        return pcm.astype(np.float32) / 32768.0

    def samples_per_tick(self) -> float:
        """Audio samples per RTP clock tick."""
        return self.rate / RTP_CLOCK[self.codec]


@dataclass(frozen=True)
class DtmfEvent:
    """One RFC 4733 telephone event, reported once when its end packet arrives."""

    ts: int
    event: str
    duration_s: float


def parse_dtmf(payload: bytes) -> tuple[int, bool, int]:
    """(event code, end bit, duration in clock ticks)."""
    if len(payload) < 4:
        raise MediaError("short telephone-event payload")
    ev, flags, dur = struct.unpack("!BBH", payload[:4])
    return ev, bool(flags & 0x80), dur


@dataclass
class StreamStats:
    packets: int = 0
    lost: int = 0
    """Packets never received (sequence gaps at release)."""
    late: int = 0
    """Packets that arrived after their slot was released (dropped)."""
    reordered: int = 0
    """Packets that arrived before one with a lower sequence number."""
    duplicates: int = 0
    concealed_s: float = 0.0
    dtmf: int = 0
    """Telephone events seen (the digits are never kept: they may be a card number)."""

    def as_dict(self) -> dict:
        return {
            "packets": self.packets,
            "lost": self.lost,
            "late": self.late,
            "reordered": self.reordered,
            "duplicates": self.duplicates,
            "concealed_s": round(self.concealed_s, 3),
            "dtmf_events": self.dtmf,
        }


@dataclass
class _Held:
    pkt: RtpPacket
    arrived: float


@dataclass
class RtpStream:
    """One sender's stream (an SSRC) -> decoded audio in order, at `decoder.rate`."""

    codecs: dict[int, str]
    """payload type -> codec name (from the SDP), telephone-event included."""
    depth: int = 4
    max_wait_s: float = 0.12
    max_conceal_s: float = 0.06
    stats: StreamStats = field(default_factory=StreamStats)
    decoder: Decoder | None = None
    _held: dict[int, _Held] = field(default_factory=dict)
    _next_seq: int | None = None
    _top: int | None = None
    _base_ts: int | None = None
    _pos0: int = 0
    """Stream position of `_base_ts` (moves when the sender restarts)."""
    _written: int = 0
    """Samples released so far (stream-relative)."""
    _last: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    _conceal_run: int = 0
    _dtmf_seen: set = field(default_factory=set)

    def _ext(self, seq: int) -> int:
        """16-bit sequence -> extended, near the highest seen."""
        if self._top is None:
            return seq
        cand = (self._top & ~0xFFFF) | seq
        if cand - self._top > 0x8000:
            cand -= 0x10000
        elif self._top - cand > 0x8000:
            cand += 0x10000
        return cand

    def push(self, pkt: RtpPacket, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.stats.packets += 1
        s = self._ext(pkt.seq)
        if self._next_seq is not None and abs(s - self._next_seq) > RESYNC_GAP:
            # the sender restarted its sequence and timestamps (a re-INVITE, a transfer):
            # follow it from where the audio stands (what was held, 80 ms at most, goes)
            self._held.clear()
            self._next_seq = self._top = self._base_ts = None
            self._pos0 = self._written
            s = pkt.seq
        if self._top is not None and s < self._top:
            self.stats.reordered += 1
        if self._next_seq is not None and s < self._next_seq:
            self.stats.late += 1
            return
        if s in self._held:
            self.stats.duplicates += 1
            return
        self._top = s if self._top is None else max(self._top, s)
        self._held[s] = _Held(pkt, now)

    def pull(
        self, now: float | None = None, flush: bool = False
    ) -> list[tuple[int, np.ndarray] | DtmfEvent]:
        """Release what is due: (stream sample position, audio) pieces and DTMF events."""
        now = time.monotonic() if now is None else now
        out: list = []
        while self._held:
            first = min(self._held)
            due = len(self._held) > self.depth or now - self._held[first].arrived >= self.max_wait_s
            if not flush and not due:
                break
            held = self._held.pop(first)
            gap = 0 if self._next_seq is None else first - self._next_seq
            self.stats.lost += max(0, gap)
            self._next_seq = first + 1
            out.extend(self._release(held.pkt, gap))
        return out

    def _release(self, pkt: RtpPacket, gap: int) -> list:
        codec = self.codecs.get(pkt.pt, "")
        if codec.upper() == "TELEPHONE-EVENT":
            return self._dtmf(pkt)
        if not codec:
            return []
        if self.decoder is None or self.decoder.codec != codec.upper():
            try:
                self.decoder = Decoder(codec)
            except MediaError:
                return []
        dec = self.decoder
        if self._base_ts is None:
            self._base_ts = pkt.ts
        ticks = (pkt.ts - self._base_ts) & 0xFFFFFFFF
        if ticks > (1 << 31):  # behind the base (a reordered first packet): at the base
            ticks = 0
        pos = self._pos0 + int(round(ticks * dec.samples_per_tick()))
        audio = dec.decode(pkt.payload)
        out: list = []
        hole = pos - self._written
        if hole > 0:
            fill = self._conceal(hole, dec.rate) if gap > 0 else np.zeros(hole, np.float32)
            out.append((self._written, fill))
            self._written += hole
        elif hole < 0:  # overlaps what was released (a shifted timestamp): keep the new tail
            audio = audio[-hole:]
            pos = self._written
        if len(audio):
            out.append((pos, audio))
            self._written = pos + len(audio)
            self._last = audio
            self._conceal_run = 0
        return out

    def _conceal(self, n: int, sr: int) -> np.ndarray:
        """Repeat the last pitch-length period with a fade; silence after max_conceal_s."""
        out = np.zeros(n, np.float32)
        last = self._last
        if not len(last):
            return out
        period = _pitch_period(last, sr)
        cycle = last[-period:]
        limit = int(self.max_conceal_s * sr) - self._conceal_run
        k = max(0, min(n, limit))
        if k:
            reps = np.resize(cycle, k)
            fade = np.linspace(1.0, 0.0, k + 1, dtype=np.float32)[1:]
            out[:k] = reps * fade
            self.stats.concealed_s += k / sr
            self._conceal_run += k
        return out

    def _dtmf(self, pkt: RtpPacket) -> list:
        try:
            ev, end, dur = parse_dtmf(pkt.payload)
        except MediaError:
            return []
        # the end packet is sent three times (RFC 4733 2.5.1.4): one event per timestamp
        if not end or pkt.ts in self._dtmf_seen or ev >= len(DTMF_EVENTS):
            return []
        self._dtmf_seen.add(pkt.ts)
        self.stats.dtmf += 1
        return [DtmfEvent(pkt.ts, DTMF_EVENTS[ev], dur / 8000.0)]


def _pitch_period(x: np.ndarray, sr: int) -> int:
    """Autocorrelation pitch period within 2.5-15 ms of the last 20 ms (or the whole piece)."""
    lo, hi = int(0.0025 * sr), int(0.015 * sr)
    seg = x[-max(hi * 2, len(x)) :]
    if len(seg) < 2 * hi:
        return max(1, min(len(x), int(0.01 * sr)))
    seg = seg - seg.mean()
    ref = seg[-hi:]
    best, lag = -1.0, hi
    for k in range(lo, hi):
        a = seg[-hi - k : len(seg) - k]
        c = float(np.dot(ref, a)) / (float(np.linalg.norm(ref) * np.linalg.norm(a)) + 1e-9)
        if c > best:
            best, lag = c, k
    return lag
