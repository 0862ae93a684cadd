"""A call as the pipeline carries it: its metadata and its per-call state."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from appliance.scoring.call import CallScorer
from appliance.scoring.rules import RuleEngine
from appliance.segment.vad import Segmenter


@dataclass(frozen=True)
class CallMeta:
    """Call metadata from CTI/CRM commands, the panel or the position's config."""

    position: str = "pos-1"
    customer_ref: str = ""
    """Customer reference as the CRM knows it; published only pseudonymised by default."""
    call_type: str = "support"
    segment: str = ""


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
    next_index: int = 0
    results: list[dict] = field(default_factory=list)
    """What `appliance analyze --json` prints per utterance (text included: never published)."""
    alerts: list[dict] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    summary: dict = field(default_factory=dict)
    write_failures: int = 0
    """Writes of this call the store refused (its rows are incomplete)."""
