"""A call as the pipeline carries it: its metadata and its per-call state."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from appliance.scoring.call import CallScorer
from appliance.scoring.rules import RuleEngine
from appliance.segment.vad import Segmenter
from appliance.stt.call_redaction import CallRedaction


@dataclass(frozen=True)
class CallMeta:
    """Call metadata from CTI/CRM commands, the panel or the position's config."""

    position: str = "pos-1"
    customer_ref: str = ""
    """Customer reference as the CRM knows it; published only pseudonymised by default."""
    call_type: str = "support"
    segment: str = ""
    sip_call_id: str = ""
    """SIP Call-ID of a call the tap or the SIPREC recorder followed (stored, never published)."""
    caller: str = ""
    """Calling party's number; the customer's is stored pseudonymised (it is also customer_ref)."""
    callee: str = ""
    """Called party's number, the same way."""


@dataclass
class CallSession:
    """One call in flight. The capture thread owns the segmenters; the writer owns the rest."""

    id: str
    meta: CallMeta
    source: str
    sample_rate: int
    started_at: float
    segmenters: dict[str, Segmenter]
    emotion_states: dict[str, Any]
    scorer: CallScorer
    rules: RuleEngine
    redaction: CallRedaction
    """Redaction with the call's context and the pause of transcription (writer thread only)."""
    next_index: int = 0
    held: dict[int, tuple] = field(default_factory=dict)
    """Utterances the redaction context holds: index -> (Utterance, EmotionResult | None)."""
    watermark: float = 0.0
    """Call time before which no utterance can still arrive (set by the capture thread): the
    audio position, or the start of an utterance the VAD is still cutting."""
    results: list[dict] = field(default_factory=list)
    """What `appliance analyze --json` prints per utterance (text included: never published)."""
    alerts: list[dict] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    summary: dict = field(default_factory=dict)
    language: str = "en"
    """The position's language (ISO 639-1): recogniser, redaction, key phrases, sentiment."""
    stt_prev: dict[str, Any] = field(default_factory=dict)
    """Speaker -> the Future of their last utterance's transcript (the next decode's context)."""
    partial: Any = None
    """The customer's open utterance as the partials thread sees it (`pipeline.partials`)."""
    write_failures: int = 0
    """Writes of this call the store refused (its rows are incomplete)."""
