"""The configuration: one frozen dataclass per TOML section, every field with its help text and
constraints (choices, min, max, pattern, nonempty, path, maxlen, items, min_items) in its
metadata, which loading checks and `appliance check-config --describe` prints."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _f(default: Any, help: str, **constraints: Any) -> Any:
    """A dataclass field with documentation and optional constraints (choices, min, max)."""
    meta = {"help": help, **constraints}
    if isinstance(default, (list, dict, tuple)) or dataclasses.is_dataclass(default):
        value = default
        return field(default_factory=lambda: _copy(value), metadata=meta)
    return field(default=default, metadata=meta)


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


_SEVERITIES = ("info", "warning", "critical")
_EVENTS = ("alert", "relationship_signal")  # a box's alert, the bridge's site-wide signal
_URL = r"^(https?://\S+)?$"


@dataclass(frozen=True)
class BoxConfig:
    id: str = _f(
        "box-01",
        "Identifier of this box in MQTT topics (letters, digits, - and _).",
        pattern=r"^[A-Za-z0-9_-]{1,32}$",
    )
    site: str = _f("", "Free label of the site, shown on the panel only.")


@dataclass(frozen=True)
class PathsConfig:
    db: str = _f(
        "appliance.db",
        "SQLite database file (relative paths are relative to the config file).",
        nonempty=True,
        path=True,
    )
    numba_cache: str = _f(
        "",
        "Writable directory for numba's compiled-kernel cache; empty = numba's default.",
        path=True,
    )
    state_dir: str = _f(
        "", "Writable state directory (keys, caches); empty = the database's folder.", path=True
    )


@dataclass(frozen=True)
class MqttConfig:
    url: str = _f(
        "",
        "Broker URL mqtt://host:port or mqtts://host:port; empty disables publishing (rows stay in the outbox).",
    )
    prefix: str = _f(
        "callcenter",
        "Topic prefix: topics are <prefix>/v1/<box id>/...",
        pattern=r"^[A-Za-z0-9_/-]{1,64}$",
    )
    client_id: str = _f(
        "", "MQTT client id; empty = appliance-<box id>. Stable ids give persistent sessions."
    )
    username: str = _f("", "Broker user name.")
    password_file: str = _f(
        "", "File holding the broker password (kept out of the config).", path=True
    )
    ca_file: str = _f("", "CA certificate for TLS (mqtts://).", path=True)
    cert_file: str = _f("", "Client certificate for TLS.", path=True)
    key_file: str = _f("", "Client private key for TLS.", path=True)
    keepalive: int = _f(30, "Keep-alive interval in seconds.", min=5, max=3600)
    pseudonymise_customers: bool = _f(
        True, "Publish customer references as a keyed hash, never in clear."
    )
    outbox_max_rows: int = _f(
        200000,
        "Pending outbox rows above which an alarm is raised and oldest unsent low-priority rows are dropped.",
        min=1000,
    )
    batch_size: int = _f(100, "Rows published per publisher round.", min=1, max=10000)
    max_inflight: int = _f(50, "Published rows awaiting PUBACK at most.", min=1, max=1000)
    reconnect_min_delay: float = _f(
        1.0, "First reconnect delay (s); doubles up to reconnect_max_delay.", min=0.01, max=60.0
    )
    reconnect_max_delay: float = _f(30.0, "Longest reconnect delay (s).", min=0.1, max=3600.0)
    checkpoint_interval: float = _f(
        0.1,
        "Least seconds between retained checkpoints; a new one follows each PUBACK of the previous one while rows are acknowledged (a restart re-sends what came after the last).",
        min=0.0,
        max=3600.0,
    )
    sync_timeout: float = _f(
        5.0,
        "Seconds to wait for the echo of the checkpoint probe after a connect before sending anyway.",
        min=0.1,
        max=600.0,
    )
    resend_after: float = _f(
        60.0,
        "A row unacknowledged this long on a live connection is published again (s).",
        min=1.0,
        max=86400.0,
    )
    customer_key_file: str = _f("", "Site key for customer ids (docs/crm.md); empty = per box.")


@dataclass(frozen=True)
class PolicyConfig:
    agent_emotion: bool = _f(
        False,
        "Infer emotion on the agent channel too. Off by default: the EU AI Act art. 5(1)(f) forbids inferring workers' emotions; enable only where lawful and consented.",
    )
    store_transcripts: bool = _f(
        True, "Keep redacted transcripts on the box for the panel (never published)."
    )


@dataclass(frozen=True)
class SttConfig:
    engine: str = _f(
        "auto",
        "Speech-to-text engine: auto (Vosk when an English Vosk model is configured, else bundled Whisper tiny.en), vosk, whisper, none.",
        choices=("auto", "vosk", "whisper", "none"),
    )
    vosk_model: str = _f(
        "", "Directory of an English Vosk model (install.sh --vosk-model installs one).", path=True
    )
    whisper_model: str = _f(
        "", "Directory of a CTranslate2 Whisper model; empty = the bundled tiny.en.", path=True
    )
    threads: int = _f(1, "CPU threads per STT decode.", min=1, max=16)
    workers: int = _f(
        0,
        "STT decodes that run at once (threads and model workers); 0 = one per CPU core.",
        min=0,
        max=16,
    )
    beam_size: int = _f(1, "Beam size for Whisper decoding (1 = greedy, fastest).", min=1, max=10)
    partials: bool = _f(
        True, "Produce partial results while a customer speaks (first thing skipped under load)."
    )
    model: str = _f(
        "tiny.en",
        "Bundled Whisper model: tiny.en (English only, fastest: Raspberry Pi 4) or base (multilingual, about 2.5x the decode time: Pi 5, Orin; docs/stt.md).",
        choices=("tiny.en", "base"),
    )
    language: str = _f(
        "en",
        "Language of the calls (ISO 639-1: en, de, fr, es, ...); positions[].language overrides it per position. Other than en needs model = base; redaction reads de/fr/es number words, text sentiment is English only.",
        pattern=r"^[a-z]{2}$",
    )
    context: bool = _f(
        False,
        "Give Whisper the previous utterance of the same speaker in the call as its prompt (names and terms carry over). Off by default: measured through analyze it helps read prose (LibriVox 7.0 % -> 1.4 %) but tiny.en copies phrases of the prompt into the next utterance on unrelated ones (Asterisk prompts 6.6 % -> 10.8 % in the first measurement's scoring; docs/stt.md), and a copied phrase can fire a keyword rule twice.",
    )
    partial_interval_s: float = _f(
        1.0,
        "Whisper partials: decode what the customer has said so far every this many seconds of speech (keyword rules fire before the utterance ends); 0 = no Whisper partials.",
        min=0.0,
        max=10.0,
    )


@dataclass(frozen=True)
class RedactionConfig:
    hold_timeout_s: float = _f(
        6.0,
        "Call-time seconds without a new digit utterance that close a digit sequence the customer reads over several utterances (callers pause 0.5-3 s between groups); held rows wait at most this long after the last one.",
        min=1.0,
        max=60.0,
    )
    arm_s: float = _f(
        60.0,
        "How long an agent's prompt for sensitive data (card number, expiry, security code, date of birth, ...) arms the call for the customer's answer, and how long an automatic pause waits for it.",
        min=5.0,
        max=600.0,
    )
    follow_s: float = _f(
        20.0,
        "How long after a sensitive answer the call stays armed for its follow-ups (expiry and security code after a card number).",
        min=0.0,
        max=600.0,
    )
    auto_pause: bool = _f(
        True,
        "Pause transcription (both speakers) when the agent asks for payment data, until the answer closes.",
    )
    auto_pause_kinds: list[str] = _f(
        ["card", "expiry", "cvv"],
        "Prompt kinds that pause transcription automatically (card, expiry, cvv, dob, id, iban, account, pin).",
    )


@dataclass(frozen=True)
class EmotionConfig:
    model: str = _f(
        "",
        "ONNX emotion model file or directory with its card; empty = the bundled model.",
        path=True,
    )
    variant: str = _f(
        "",
        "Which file of the card to run: empty = the one the card ships (the faster here when trained), fp32, or int8 (int8 pays off on CPUs with dot-product instructions: Pi 5, Orin; a Pi 4 may run fp32 faster).",
        choices=("", "fp32", "int8"),
    )
    threads: int = _f(1, "onnxruntime intra-op threads.", min=1, max=16)
    providers: list[str] = _f(
        ["CPUExecutionProvider"],
        "onnxruntime execution providers in order of preference (CUDAExecutionProvider on a Jetson/CUDA box).",
        min_items=1,
    )
    min_duration: float = _f(
        0.6, "Utterances shorter than this (s) get no emotion.", min=0.1, max=10.0
    )
    prior: list[float] = _f(
        [],
        "Label prior of this site's calls, 7 non-negative numbers in label order (neutral, happy, sad, angry, fearful, disgust, surprised); empty = the model card's deploy_prior (real customer-service calls, mostly neutral).",
    )


@dataclass(frozen=True)
class VadConfig:
    threshold_db: float = _f(
        9.0, "Speech starts this many dB above the tracked noise floor.", min=1.0, max=40.0
    )
    min_level_db: float = _f(
        -55.0, "Absolute level (dBFS) below which a frame is never speech.", min=-100.0, max=0.0
    )
    preroll: float = _f(0.2, "Seconds of audio kept before speech onset.", min=0.0, max=2.0)
    hangover: float = _f(0.5, "Seconds of silence that end an utterance.", min=0.05, max=5.0)
    min_speech: float = _f(0.3, "Shortest utterance kept (s).", min=0.05, max=5.0)
    max_utterance: float = _f(
        20.0,
        "Utterances are cut at this length (s), in their quietest moment, so scores stay live. 20 s keeps a spoken sentence whole for the recogniser: at 12 s read prose lost 1-1.4 points of WER against decoding it whole (docs/stt.md); key phrases still fire before the cut (stt.partials).",
        min=1.0,
        max=60.0,
    )
    speech_model: str = _f(
        "silero",
        "Speech check of each segment: silero (Silero VAD v6 from the faster-whisper package, pinned by SHA-256; drops hold music, ring-back, DTMF, beeps) or energy (level only).",
        choices=("silero", "energy"),
    )
    speech_threshold: float = _f(
        0.5, "Speech probability from which a 32 ms chunk counts as speech.", min=0.05, max=0.95
    )
    min_voiced: float = _f(
        0.064,
        "Seconds of speech chunks (32 ms each) a segment needs; segments with less are dropped as non-speech.",
        min=0.0,
        max=5.0,
    )


@dataclass(frozen=True)
class ChannelMap:
    agent: int = _f(0, "Input channel index of the agent's microphone.", min=0, max=63)
    customer: int = _f(1, "Input channel index of the customer's line.", min=0, max=63)


@dataclass(frozen=True)
class PositionConfig:
    id: str = _f("pos-1", "Agent position identifier.", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    device: str = _f(
        "default", "Capture device name or index (sounddevice), e.g. a udev-named ALSA device."
    )
    customer_device: str = _f(
        "", "Second capture device for the customer when agent and customer are two mono devices."
    )
    samplerate: int = _f(16000, "Capture sample rate.", choices=(8000, 16000, 44100, 48000))
    channels: ChannelMap = _f(ChannelMap(), "Which input channel carries whom.")
    call_type: str = _f(
        "support", "Default call type at this position.", choices=("support", "sales", "check-in")
    )
    mono: bool = _f(
        False,
        "Both parties on one channel (channels.customer): diarized into agent and customer before emotion.",
    )
    agent_enrolment: str = _f(
        "",
        "WAV of this position's agent speaking (10-30 s): tells the agent's voice on a mono channel; empty = whoever speaks first is the agent.",
    )
    language: str = _f(
        "",
        "Language of this position's calls (ISO 639-1); empty = stt.language.",
        pattern=r"^([a-z]{2})?$",
    )


@dataclass(frozen=True)
class RuleConfig:
    name: str = _f("rule", "Rule identifier (published as `rule`).", pattern=r"^[a-z0-9_]{1,48}$")
    signal: str = _f(
        "sentiment",
        "Signal the rule watches.",
        choices=(
            "sentiment",
            "sentiment_slope",
            "enthusiasm",
            "enthusiasm_slope",
            "arousal",
            "overtalk_s",
            "silence_s",
            "health",
            "negative_streak",
            "key_phrase",
            "negative_evidence",
            "upset",
            "decline",
        ),
    )
    op: str = _f("<", "Comparison of signal against threshold.", choices=("<", "<=", ">", ">="))
    threshold: float = _f(0.0, "Threshold the signal is compared with.")
    clear: float | None = _f(
        None, "Hysteresis: the rule re-arms only once the signal crosses back past this value."
    )
    min_utterances: int = _f(3, "Customer utterances needed before the rule may fire.", min=1)
    duration: int = _f(1, "Consecutive customer utterances the condition must hold.", min=1)
    cooldown: float = _f(60.0, "Seconds before the same rule may fire again in a call.", min=0.0)
    severity: str = _f("warning", "Alert severity.", choices=("info", "warning", "critical"))
    action: str = _f(
        "intervention_recommended",
        "Recommended action published with the alert.",
        choices=(
            "intervention_recommended",
            "accelerate",
            "escalate",
            "coach",
            "investigate",
            "follow_up",
        ),
    )
    call_types: list[str] = _f(
        [],
        "Call types the rule applies to; empty = all.",
        items={"choices": ("support", "sales", "check-in")},
    )


@dataclass(frozen=True)
class AlertsConfig:
    budget_per_call: int = _f(3, "Most alerts one call may raise (alert fatigue).", min=0, max=100)


@dataclass(frozen=True)
class RetentionConfig:
    transcripts_days: float = _f(7.0, "Days redacted transcripts are kept.", min=0.0)
    scores_days: float = _f(365.0, "Days utterance/call scores are kept.", min=1.0)
    outbox_sent_days: float = _f(7.0, "Days sent outbox rows are kept after their PUBACK.", min=0.0)
    alerts_days: float = _f(180.0, "Days alerts are kept.", min=1.0)
    min_free_mb: float = _f(
        200.0,
        "Below this much free disk, transcripts stop being stored (scores and outbox go on).",
        min=0.0,
    )
    audit_days: float = _f(
        180.0, "Days the panel's audit log and the call command rows are kept.", min=1.0
    )


@dataclass(frozen=True)
class PanelConfig:
    host: str = _f("127.0.0.1", "Address the panel listens on.", nonempty=True)
    port: int = _f(8443, "Panel port.", min=1, max=65535)
    cert_file: str = _f("", "TLS certificate of the panel.", path=True)
    key_file: str = _f("", "TLS key of the panel.", path=True)
    metrics_token_file: str = _f("", "File holding the bearer token for /metrics.", path=True)
    session_idle_minutes: float = _f(
        30.0, "A session unused this long ends (an open Live page keeps it in use).", min=1.0
    )
    session_max_hours: float = _f(
        12.0, "A session ends this long after its login, in use or not.", min=0.1, max=168.0
    )
    streams_per_user: int = _f(4, "Live streams one user may hold open (429 above).", min=1)
    max_streams: int = _f(
        16, "Live streams served at once; pages have threads of their own.", min=1, max=256
    )
    call_commands: str = _f(
        "supervisor",
        "Who may start and end calls at configured positions: supervisor (and admin), admin, off.",
        choices=("supervisor", "admin", "off"),
    )


@dataclass(frozen=True)
class DaemonConfig:
    silence_end_s: float = _f(
        8.0,
        "An automatically detected call ends after this much silence on both channels.",
        min=1.0,
        max=600.0,
    )
    managed_silence_end_s: float = _f(
        600.0,
        "A call opened by a CTI/panel command ends after this much silence if its `end` never comes.",
        min=10.0,
    )
    health_interval_s: float = _f(
        15.0,
        "Seconds between health snapshots (the health topic is published every fourth one).",
        min=1.0,
        max=3600.0,
    )
    metrics_listen: str = _f(
        "127.0.0.1:9108",
        "host:port of the Prometheus text endpoint (localhost only by default); off disables it.",
    )
    metrics_token_file: str = _f(
        "",
        "File with a bearer token the metrics endpoint requires (warned about off loopback).",
        path=True,
    )


@dataclass(frozen=True)
class AnalyzeConfig:
    max_duration_s: float = _f(
        14400.0,
        "Longest recording `appliance analyze` takes (s); a longer one is refused (exit 2) before anything is decoded. Files are decoded a block at a time, so memory does not grow with the length.",
        min=1.0,
        max=604800.0,
    )


@dataclass(frozen=True)
class BridgeRouteConfig:
    name: str = _f("route", "Route name (logs, deliveries).", pattern=r"^[a-z0-9_-]{1,48}$")
    events: list[str] = _f([], "Events matched; empty = both.", choices=_EVENTS)
    rules: list[str] = _f([], "Rule ids matched (box or bridge rules); empty = any.")
    severities: list[str] = _f([], "Severities matched; empty = any.", choices=_SEVERITIES)
    segments: list[str] = _f([], "Customer segments matched; empty = any (also none).")
    deliver: bool = _f(True, "false = matching events are stored, not delivered.")
    webhook: str = _f("", "URL to POST to; empty = the bridge's webhook.", pattern=_URL)
    secret_file: str = _f("", "Signing secret file; empty = the bridge's webhook_secret_file.")


@dataclass(frozen=True)
class BridgeConfig:
    webhook: str = _f("", "URL events are POSTed to; empty = store only.", pattern=_URL)
    webhook_secret_file: str = _f("", "File holding the webhook signing secret (>= 16 bytes).")
    max_attempts: int = _f(10, "Delivery attempts before the dead-letter table.", min=1)
    backoff_initial: float = _f(2.0, "Seconds before the first retry; doubles.", min=0.01)
    lease_s: float = _f(60.0, "A dead instance's claimed delivery is retried after (s).", min=1.0)
    routes: list[BridgeRouteConfig] = _f([], "First matching route decides; none = the webhook.")


@dataclass(frozen=True)
class VoipConfig:
    agent_nets: list[str] = _f(
        [],
        "CIDRs of the agents' phones and softphones (tap --agent-net): the party inside is the agent.",
    )
    jitter_packets: int = _f(
        4, "RTP packets a packet waits for before release (absorbs reordering).", min=0, max=50
    )
    jitter_max_ms: float = _f(
        120.0, "Longest wait of a packet in the jitter buffer (ms).", min=0.0, max=2000.0
    )
    stall_s: float = _f(
        0.3,
        "A leg silent this long (no RTP) is treated as silence and no longer holds back the other.",
        min=0.05,
        max=10.0,
    )
    media_timeout_s: float = _f(
        60.0, "A call with neither SIP nor RTP for this long ends (lost BYE).", min=1.0
    )
    dtmf_pause: bool = _f(
        True,
        "RFC 4733 keypad events (payment entry) pause transcription, both speakers; digits are never kept.",
    )
    dtmf_resume_s: float = _f(
        8.0, "Call seconds after the last keypad event when transcription resumes.", min=0.0
    )
    rtp_port_min: int = _f(40000, "SIPREC recorder: first RTP port offered.", min=1024, max=65534)
    rtp_port_max: int = _f(40999, "SIPREC recorder: last RTP port offered.", min=1025, max=65535)
    agent_aor: str = _f(
        "",
        "SIPREC recorder: regular expression on a participant's address of record that marks the agent (e.g. ^sip:1[0-9]{3}@); agent_nets also match AOR hosts.",
    )


@dataclass(frozen=True)
class DiarizeConfig:
    threshold: float = _f(
        0.5,
        "Cosine distance to the agent's voice above which a stretch of a mono channel is the customer (enrolment), or that opens the second speaker (first speaker).",
        min=0.0,
        max=2.0,
    )
    window_s: float = _f(
        1.0,
        "Speech per speaker decision (s): the delay a mono channel adds before scoring.",
        min=0.3,
        max=5.0,
    )


@dataclass(frozen=True)
class AppConfig:
    box: BoxConfig = _f(BoxConfig(), "This box.")
    paths: PathsConfig = _f(PathsConfig(), "Files and directories.")
    mqtt: MqttConfig = _f(MqttConfig(), "Publishing of derived scores.")
    policy: PolicyConfig = _f(PolicyConfig(), "Legal and privacy policy switches.")
    stt: SttConfig = _f(SttConfig(), "Speech to text.")
    redaction: RedactionConfig = _f(
        RedactionConfig(), "Redaction with the call's context, and pause of transcription."
    )
    emotion: EmotionConfig = _f(EmotionConfig(), "Emotion model.")
    vad: VadConfig = _f(VadConfig(), "Voice activity detection.")
    positions: list[PositionConfig] = _f(
        [PositionConfig()], "Agent positions served by this box.", min_items=1
    )
    rules: list[RuleConfig] = _f(
        [], "Alert rules; empty = the shipped defaults (see appliance.scoring.rules.DEFAULT_RULES)."
    )
    alerts: AlertsConfig = _f(AlertsConfig(), "Alert fatigue controls.")
    retention: RetentionConfig = _f(RetentionConfig(), "Retention per table.")
    panel: PanelConfig = _f(PanelConfig(), "Supervisor panel.")
    daemon: DaemonConfig = _f(DaemonConfig(), "Live capture daemon.")
    bridge: BridgeConfig = _f(BridgeConfig(), "The CRM bridge: webhooks and routes.")
    voip: VoipConfig = _f(
        VoipConfig(), "VoIP capture: the passive SIP/RTP tap and the SIPREC recorder."
    )
    diarize: DiarizeConfig = _f(
        DiarizeConfig(), "Two speakers on one channel (mono positions, mixed SIPREC streams)."
    )
    analyze: AnalyzeConfig = _f(AnalyzeConfig(), "Offline analysis of recordings.")
    base_dir: str = field(
        default="", metadata={"help": "(internal) folder of the config file", "internal": True}
    )

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(os.path.expanduser(path))
        if not p.is_absolute() and self.base_dir:
            p = Path(self.base_dir) / p
        return p

    def mqtt_resolved(self, url: str | None = None) -> MqttConfig:
        """The `[mqtt]` section with its files made absolute (and another broker URL if given)."""
        m = self.mqtt
        files = {
            k: str(self.resolve(getattr(m, k))) if getattr(m, k) else ""
            for k in ("password_file", "ca_file", "cert_file", "key_file")
        }
        return dataclasses.replace(m, url=m.url if url is None else url, **files)
