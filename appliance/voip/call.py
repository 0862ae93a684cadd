"""A VoIP call's media turned into the pipeline's time-aligned chunks.

`MediaCall` owns one pipeline call. Its legs are the senders: the agent, the customer, or one
mixed stream (`mixed`: both parties on one channel, split by the diarizer before emotion). Each
leg has a jitter buffer per SSRC (`RtpStream`); released audio is placed on the call's timeline
(the first packet of a leg lands where the wall clock says, later ones where their timestamps
say) and the call emits 20 ms chunks once every leg has audio up to there, or has gone quiet
for `stall_s` (a leg that sends nothing - hold, silence suppression, a one-way call - is
silence, and does not hold back the other). A leg that comes back after a stall is moved
forward to the present rather than dropped.

The pipeline call opens with the first audio packet (its codec fixes the call's rate; a leg on
another rate is resampled) and closes on BYE, CANCEL or a media timeout after the buffers are
flushed. RFC 4733 events pause transcription (both speakers) from the first digit until
`dtmf_resume_s` of call time after the last: keypad payment entry. Digits are never kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from appliance.pipeline.call import CallMeta
from appliance.voip.rtp import DtmfEvent, RtpPacket, RtpStream, StreamStats

log = logging.getLogger(__name__)

CHUNK_S = 0.02
ROLES = ("agent", "customer", "mixed")


@dataclass(frozen=True)
class MediaTiming:
    """Jitter buffer and call timing (`[voip]` settings)."""

    jitter_packets: int = 4
    jitter_max_s: float = 0.12
    stall_s: float = 0.3
    dtmf_pause: bool = True
    dtmf_resume_s: float = 8.0


class Sink:
    """What a call drives: the pipeline (`PipelineSink`) or a test double."""

    def open(self, meta: CallMeta, sr: int, source: str) -> Any: ...
    def feed(self, handle: Any, chunk: dict[str, np.ndarray]) -> None: ...
    def pause(self, handle: Any, paused: bool) -> None: ...
    def close(self, handle: Any) -> None: ...


class PipelineSink(Sink):
    """The live pipeline: the same `open_call`/`feed`/`close_call` a position uses."""

    def __init__(self, pipeline: Any):
        self.pipeline = pipeline

    def open(self, meta: CallMeta, sr: int, source: str) -> Any:
        return self.pipeline.open_call(meta, sr, source=source)

    def feed(self, handle: Any, chunk: dict[str, np.ndarray]) -> None:
        self.pipeline.feed(handle, chunk)

    def pause(self, handle: Any, paused: bool) -> None:
        self.pipeline.pause_transcription(handle, paused)

    def close(self, handle: Any) -> None:
        self.pipeline.close_call(handle)


@dataclass
class Leg:
    role: str
    codecs: dict[int, str]
    timing: MediaTiming
    streams: dict[int, RtpStream] = field(default_factory=dict)
    offsets: dict[int, int] = field(default_factory=dict)
    """SSRC -> call sample position of that stream's sample 0."""
    pieces: list[tuple[int, np.ndarray]] = field(default_factory=list)
    end: int = 0
    """Call sample position up to which this leg's audio is known."""
    last_arrival: float | None = None

    def stream(self, ssrc: int) -> RtpStream:
        s = self.streams.get(ssrc)
        if s is None:
            t = self.timing
            s = self.streams[ssrc] = RtpStream(
                dict(self.codecs), depth=t.jitter_packets, max_wait_s=t.jitter_max_s
            )
        return s

    def idle(self, now: float) -> bool:
        held = any(s._held for s in self.streams.values())
        return not held and (
            self.last_arrival is None or now - self.last_arrival > self.timing.stall_s
        )

    def merged_stats(self) -> dict:
        total = StreamStats()
        for s in [*self.streams.values()]:
            for k, v in vars(s.stats).items():
                setattr(total, k, getattr(total, k) + v)
        return {**total.as_dict(), "streams": len(self.streams)}


class MediaCall:
    """One call's legs -> pipeline chunks. Not thread-safe: one thread drives it."""

    def __init__(
        self,
        meta: CallMeta,
        sink: Sink,
        source: str,
        timing: MediaTiming | None = None,
        splitter_factory: Callable[[int], Any] | None = None,
        info: dict | None = None,
    ):
        self.meta = meta
        self.sink = sink
        self.source = source
        self.timing = timing or MediaTiming()
        self.splitter_factory = splitter_factory
        self.info = dict(info or {})
        """What the tap/recorder knows about the call (SIP Call-ID, caller, callee ...)."""
        self.legs: dict[str, Leg] = {}
        self.handle: Any = None
        self.sr = 0
        self.t0: float | None = None
        self.emitted = 0
        self.dtmf_until: int | None = None
        self.closed = False
        self.last_activity = time.monotonic()
        self._splitter: Any = None

    def set_leg(self, role: str, codecs: dict[int, str]) -> Leg:
        """Declare (or update the codecs of) a leg; an SDP re-offer may change them."""
        if role not in ROLES:
            raise ValueError(f"unknown leg role {role!r}")
        leg = self.legs.get(role)
        if leg is None:
            leg = self.legs[role] = Leg(role, dict(codecs), self.timing)
        else:
            leg.codecs.update(codecs)
            for s in leg.streams.values():
                s.codecs.update(codecs)
        return leg

    # -- packets in --------------------------------------------------------------------

    def packet(self, role: str, pkt: RtpPacket, now: float | None = None) -> None:
        if self.closed or role not in self.legs:
            return
        now = time.monotonic() if now is None else now
        leg = self.legs[role]
        leg.last_arrival = self.last_activity = now
        leg.stream(pkt.ssrc).push(pkt, now)
        self.tick(now)

    def tick(self, now: float | None = None, flush: bool = False) -> None:
        """Release what the jitter buffers let go and emit what every leg covers."""
        now = time.monotonic() if now is None else now
        for leg in self.legs.values():
            for ssrc, stream in leg.streams.items():
                for item in stream.pull(now, flush=flush):
                    if isinstance(item, DtmfEvent):
                        self._dtmf(leg)
                    else:
                        self._place(leg, ssrc, stream, item, now)
        self._emit(now, flush)

    def _place(self, leg: Leg, ssrc: int, stream: RtpStream, item, now: float) -> None:
        pos, audio = item
        rate = stream.decoder.rate if stream.decoder else 8000
        if self.handle is None:
            self._open(rate, now)
        if rate != self.sr:  # a leg on another codec's rate (rare): linear resampling
            n = int(round(len(audio) * self.sr / rate))
            audio = np.interp(np.arange(n) * rate / self.sr, np.arange(len(audio)), audio).astype(
                np.float32
            )
            pos = int(round(pos * self.sr / rate))
        if ssrc not in leg.offsets:
            at_wall = int(round((now - (self.t0 or now)) * self.sr))
            leg.offsets[ssrc] = max(at_wall, leg.end, self.emitted) - pos
        start = leg.offsets[ssrc] + pos
        if start < self.emitted:  # back after a stall: move the leg to the present
            if start + len(audio) <= self.emitted and not leg.idle(now):
                return  # really late audio: already emitted as silence
            leg.offsets[ssrc] += self.emitted - start
            start = self.emitted
        leg.pieces.append((start, audio))
        leg.end = max(leg.end, start + len(audio))

    def _open(self, rate: int, now: float) -> None:
        self.sr = 16000 if rate >= 16000 else 8000
        self.t0 = now
        self.handle = self.sink.open(self.meta, self.sr, self.source)
        if "mixed" in self.legs and self.splitter_factory is not None:
            self._splitter = self.splitter_factory(self.sr)
        log.info("%s call %s: media started at %d Hz", self.source, self.info.get("id", ""), rate)

    def _emit(self, now: float, flush: bool) -> None:
        if self.handle is None:
            return
        hop = int(self.sr * CHUNK_S)
        legs = list(self.legs.values())
        target_end = max((leg.end for leg in legs), default=0)
        while True:
            nxt = self.emitted + hop
            if flush:
                if self.emitted >= target_end:
                    break
            elif not all(leg.end >= nxt or leg.idle(now) for leg in legs):
                break
            elif all(leg.idle(now) for leg in legs):
                wall = int((now - (self.t0 or now) - self.timing.stall_s) * self.sr)
                if nxt > max(wall, target_end):
                    break
            self._feed({leg.role: self._take(leg, self.emitted, hop) for leg in legs})
            self.emitted = nxt

    def _take(self, leg: Leg, start: int, n: int) -> np.ndarray:
        out = np.zeros(n, np.float32)
        keep = []
        for p, a in leg.pieces:
            lo, hi = max(p, start), min(p + len(a), start + n)
            if hi > lo:
                out[lo - start : hi - start] = a[lo - p : hi - p]
            if p + len(a) > start + n:
                keep.append((p, a))
        leg.pieces = keep
        return out

    def _feed(self, chunk: dict[str, np.ndarray]) -> None:
        if "mixed" in chunk:
            mixed = chunk.pop("mixed")
            if self._splitter is not None:
                for part in self._splitter.push(mixed):
                    self.sink.feed(self.handle, part)
                return
            chunk.setdefault("customer", mixed)
        n = len(next(iter(chunk.values())))
        for role in ("agent", "customer"):
            chunk.setdefault(role, np.zeros(n, np.float32))
        self.sink.feed(self.handle, chunk)
        self._check_dtmf_resume()

    # -- DTMF ------------------------------------------------------------------------------

    def _dtmf(self, leg: Leg) -> None:
        if not self.timing.dtmf_pause or self.handle is None:
            return
        if self.dtmf_until is None:
            self.sink.pause(self.handle, True)
            log.info(
                "%s call %s: keypad entry, transcription paused",
                self.source,
                self.info.get("id", ""),
            )
        self.dtmf_until = self.emitted + int(self.timing.dtmf_resume_s * self.sr)

    def _check_dtmf_resume(self) -> None:
        if self.dtmf_until is not None and self.emitted >= self.dtmf_until:
            self.dtmf_until = None
            self.sink.pause(self.handle, False)

    # -- end ---------------------------------------------------------------------------------

    def close(self) -> Any:
        """Flush every leg into the pipeline and close its call; returns the pipeline handle
        (None when no media ever came)."""
        if self.closed:
            return self.handle
        self.tick(flush=True)
        if self._splitter is not None and self.handle is not None:
            for part in self._splitter.flush():
                self.sink.feed(self.handle, part)
        self.closed = True
        if self.handle is not None:
            if self.dtmf_until is not None:
                self.sink.pause(self.handle, False)
            self.sink.close(self.handle)
        return self.handle

    def media_stats(self) -> dict:
        return {role: leg.merged_stats() for role, leg in self.legs.items()}
