"""`appliance tap` and `appliance siprec`: VoIP calls through the same pipeline as a position.

Both run one loop on one thread: read packets for up to 20 ms, hand them to the tracker (tap)
or the recorder (siprec), tick the jitter buffers, and collect calls that ended. A call's
pipeline session is the one `analyze` and the daemon use (store, pipeline, publisher), so
its scores, transcripts, alerts and outbox rows are the same; `--json` prints, per call, what
`analyze --json` prints plus what the tap knew (`voip`: SIP Call-ID, caller, callee, per-leg
packet statistics).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from appliance.config import AppConfig
from appliance.ops.analysis import Session, call_document
from appliance.pipeline.call import CallMeta
from appliance.voip.call import MediaCall, MediaTiming, PipelineSink

log = logging.getLogger(__name__)

POLL_S = 0.02


def media_timing(cfg: AppConfig) -> MediaTiming:
    v = cfg.voip
    return MediaTiming(
        jitter_packets=v.jitter_packets,
        jitter_max_s=v.jitter_max_ms / 1000.0,
        stall_s=v.stall_s,
        dtmf_pause=v.dtmf_pause,
        dtmf_resume_s=v.dtmf_resume_s,
    )


@dataclass
class VoipRun:
    """A session plus the calls the tap or the recorder handed over."""

    cfg: AppConfig
    db_path: Path
    engines: Any
    mqtt_url: str | None = None
    session: Session = field(init=False)
    ended: list[MediaCall] = field(default_factory=list)
    documents: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        # live capture never stalls on a slow writer: text is shed first (the daemon's choice)
        self.session = Session(
            self.cfg, self.db_path, self.engines, self.mqtt_url, block_when_full=False
        )
        self.sink = PipelineSink(self.session.pipeline)

    def meta(self, caller: str, callee: str, customer: str, agent: str, call_id: str) -> CallMeta:
        """Call metadata: the customer's number as its reference, pseudonymised in caller/callee."""
        pseudo = self.session.pipeline.customer_id
        pos = next((p for p in self.cfg.positions if p.id == agent), self.cfg.positions[0])
        return CallMeta(
            position=pos.id,
            customer_ref=customer,
            call_type=pos.call_type,
            sip_call_id=call_id,
            caller=pseudo(caller) if caller and caller == customer else caller,
            callee=pseudo(callee) if callee and callee == customer else callee,
        )

    def call_ended(self, call: MediaCall) -> None:
        self.ended.append(call)

    def collect(self) -> None:
        """Documents of ended calls whose last utterance the writer committed."""
        for call in list(self.ended):
            if call.handle is None or call.handle.done.is_set():
                self.ended.remove(call)
                if call.handle is not None:
                    self.documents.append(self.document(call))

    def document(self, call: MediaCall) -> dict:
        doc = call_document(call.handle, None, str(self.db_path))
        m = call.handle.meta
        doc["voip"] = {
            "source": call.source,
            "sip_call_id": m.sip_call_id,
            "caller": m.caller,
            "callee": m.callee,
            "legs": call.media_stats(),
            **{k: v for k, v in call.info.items() if k not in ("id",)},
        }
        return doc

    def close(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.ended and time.monotonic() < deadline:
            self.collect()
            time.sleep(0.05)
        self.session.close(flush_timeout=3.0)


def serve(
    run: VoipRun,
    receiver: Any,
    max_calls: int | None,
    stop: threading.Event,
) -> int:
    """The loop: `receiver.poll(timeout)`, `receiver.tick()`, until stopped or `max_calls`."""
    print("ready", file=sys.stderr, flush=True)
    try:
        while not stop.is_set():
            receiver.poll(POLL_S)
            receiver.tick(time.monotonic())
            run.collect()
            if max_calls and len(run.documents) >= max_calls:
                break
    finally:
        receiver.close()
    return 0


def install_stop_handlers(stop: threading.Event) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())


class TapReceiver:
    """The sniffer feeding the tracker."""

    def __init__(self, run: VoipRun, interface: str, agent_nets: str) -> None:
        from appliance.voip.sniff import Sniffer
        from appliance.voip.tap import TapTracker, parse_nets

        nets = parse_nets(agent_nets)
        self.sniffer = Sniffer(interface)

        def meta_for(dialog, caller_role: str) -> CallMeta:
            customer, agent = (
                (dialog.caller, dialog.callee)
                if caller_role == "customer"
                else (dialog.callee, dialog.caller)
            )
            return run.meta(dialog.caller, dialog.callee, customer, agent, dialog.call_id)

        self.tracker = TapTracker(
            nets,
            run.sink,
            meta_for,
            run.call_ended,
            media_timing(run.cfg),
            run.cfg.voip.media_timeout_s,
        )

    def poll(self, timeout: float) -> None:
        now = time.monotonic()
        for d in self.sniffer.read(timeout):
            self.tracker.datagram(d, now)

    def tick(self, now: float) -> None:
        self.tracker.tick(now)

    def close(self) -> None:
        self.tracker.close()
        self.sniffer.close()


def with_agent_nets(cfg: AppConfig, agent_nets: str | None) -> str:
    """The tap's --agent-net, else voip.agent_nets from the config."""
    if agent_nets:
        return agent_nets
    if cfg.voip.agent_nets:
        return ",".join(cfg.voip.agent_nets)
    raise ValueError("--agent-net is required (or voip.agent_nets in the config)")


def run_voip(
    kind: str,
    cfg: AppConfig,
    db_path: str | Path,
    engines: Any,
    mqtt_url: str | None = None,
    max_calls: int | None = None,
    stop: threading.Event | None = None,
    interface: str = "",
    agent_nets: str = "",
    listen: str = "",
) -> list[dict]:
    """Run the tap (`kind="tap"`) or the recorder (`"siprec"`); returns the call documents."""
    stop = stop or threading.Event()
    run = VoipRun(cfg, Path(db_path), engines, mqtt_url)
    try:
        if kind == "tap":
            receiver: Any = TapReceiver(run, interface, agent_nets)
        else:
            from appliance.voip.siprec import SiprecServer
            from appliance.voip.tap import parse_nets

            receiver = SiprecServer(
                listen,
                run.sink,
                run.meta,
                run.call_ended,
                media_timing(cfg),
                ports=(cfg.voip.rtp_port_min, cfg.voip.rtp_port_max),
                media_timeout_s=cfg.voip.media_timeout_s,
                agent_nets=parse_nets(agent_nets) if agent_nets else [],
                agent_aor=cfg.voip.agent_aor,
                splitter_factory=splitter_factory(cfg),
            )
        serve(run, receiver, max_calls, stop)
    finally:
        run.close()
    run.collect()
    return run.documents


def splitter_factory(cfg: AppConfig, enrolment: str = ""):
    """Diarizer of a mixed stream (who speaks first is the agent unless an enrolment is given)."""
    from appliance.diarize.split import MonoSplitter

    def make(sr: int):
        return MonoSplitter(sr, cfg.vad, replace(cfg.diarize), enrolment=enrolment or None)

    return make
