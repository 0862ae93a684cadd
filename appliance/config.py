"""Validated appliance configuration (TOML).

Every section is a frozen dataclass; every field carries a `help` text in its metadata, which
`appliance check-config --describe` prints and the README documents. Loading walks the TOML
tree against the dataclasses, so an unknown key, a wrong type or a value out of range is
reported with its full dotted key (`positions[1].channels.customer: must be >= 0`).
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from appliance.validate import ConfigError, build, read_toml

__all__ = ["AppConfig", "ConfigError", "config_from_dict", "load_config"]


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
        12.0, "Utterances are cut at this length (s) so scores stay live.", min=1.0, max=60.0
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


@dataclass(frozen=True)
class PanelConfig:
    host: str = _f("127.0.0.1", "Address the panel listens on.", nonempty=True)
    port: int = _f(8443, "Panel port.", min=1, max=65535)
    cert_file: str = _f("", "TLS certificate of the panel.", path=True)
    key_file: str = _f("", "TLS key of the panel.", path=True)
    metrics_token_file: str = _f("", "File holding the bearer token for /metrics.", path=True)


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


@dataclass(frozen=True)
class AnalyzeConfig:
    max_duration_s: float = _f(
        14400.0,
        "Longest recording `appliance analyze` takes (s); a longer one is refused (exit 2) before anything is decoded. Files are decoded a block at a time, so memory does not grow with the length.",
        min=1.0,
        max=604800.0,
    )


@dataclass(frozen=True)
class AppConfig:
    box: BoxConfig = _f(BoxConfig(), "This box.")
    paths: PathsConfig = _f(PathsConfig(), "Files and directories.")
    mqtt: MqttConfig = _f(MqttConfig(), "Publishing of derived scores.")
    policy: PolicyConfig = _f(PolicyConfig(), "Legal and privacy policy switches.")
    stt: SttConfig = _f(SttConfig(), "Speech to text.")
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


# -- loading ------------------------------------------------------------------------------


def _cross_checks(cfg: AppConfig) -> None:
    ids = [p.id for p in cfg.positions]
    for i, pid in enumerate(ids):
        if pid in ids[:i]:
            raise ConfigError(f"positions[{i}].id", f"duplicate position id {pid!r}")
    for i, pos in enumerate(cfg.positions):
        if not pos.customer_device and pos.channels.agent == pos.channels.customer:
            raise ConfigError(
                f"positions[{i}].channels.customer",
                "agent and customer must be different channels of one device",
            )
    names = [r.name for r in cfg.rules]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"rules[{i}].name", f"duplicate rule name {name!r}")
    url = cfg.mqtt.url
    if url and not url.startswith(("mqtt://", "mqtts://")):
        raise ConfigError("mqtt.url", f"must start with mqtt:// or mqtts://, got {url!r}")
    if url:
        _check_url(url)
    for i, p in enumerate(cfg.emotion.providers):
        if not p.endswith("ExecutionProvider"):
            raise ConfigError(f"emotion.providers[{i}]", f"not an onnxruntime provider name: {p!r}")
    _check_listen("daemon.metrics_listen", cfg.daemon.metrics_listen)


def _check_url(url: str) -> None:
    try:
        u = urlparse(url)
        port = u.port
    except ValueError as exc:  # a port out of range or not a number
        raise ConfigError("mqtt.url", f"{exc} in {url!r}") from None
    if not u.hostname:
        raise ConfigError("mqtt.url", f"no host in {url!r}")
    if port == 0 or u.path not in ("", "/") or u.query or u.fragment:
        raise ConfigError("mqtt.url", f"expected mqtt[s]://host[:port] (port 1-65535), got {url!r}")


def _check_listen(key: str, value: str) -> None:
    """`off`, or host:port with port 0-65535 (0: any free port); [v6]:port too."""
    if value == "off":
        return
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(key, f"must be host:port (port 0-65535) or off, got {value!r}")


def config_from_dict(data: dict, base_dir: str | Path = "") -> AppConfig:
    """Validate a parsed TOML document. Raises ConfigError naming the failing key."""
    cfg = build(AppConfig, data, "")
    cfg = dataclasses.replace(cfg, base_dir=str(base_dir))
    _cross_checks(cfg)
    return cfg


def load_config(path: str | Path) -> AppConfig:
    """Read and validate a TOML config file; any failure is a ConfigError with the reason."""
    path = Path(path)
    data = read_toml(path)
    return config_from_dict(data, base_dir=path.resolve().parent)


def referenced_files(cfg: AppConfig) -> list[tuple[str, Path]]:
    """Files a config points to, as (dotted key, path), for check-config's existence warnings."""
    out: list[tuple[str, Path]] = []
    pairs = [
        ("mqtt.password_file", cfg.mqtt.password_file),
        ("mqtt.ca_file", cfg.mqtt.ca_file),
        ("mqtt.cert_file", cfg.mqtt.cert_file),
        ("mqtt.key_file", cfg.mqtt.key_file),
        ("stt.vosk_model", cfg.stt.vosk_model),
        ("stt.whisper_model", cfg.stt.whisper_model),
        ("emotion.model", cfg.emotion.model),
        ("panel.cert_file", cfg.panel.cert_file),
        ("panel.key_file", cfg.panel.key_file),
        ("panel.metrics_token_file", cfg.panel.metrics_token_file),
    ]
    for key, value in pairs:
        if value:
            out.append((key, cfg.resolve(value)))
    return out


def describe(cls: type = AppConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, help) for every field: the documentation of the config."""
    rows: list[tuple[str, str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        tp = hints[f.name]
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            rows.append((key, "", f.metadata.get("help", "")))
            rows.extend(describe(tp, key + "."))
            continue
        if typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            rows.append((key + "[]", "", f.metadata.get("help", "")))
            rows.extend(describe(typing.get_args(tp)[0], key + "[]."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        rows.append((key, repr(default), f.metadata.get("help", "")))
    return rows


def config_reference(markdown: bool = False) -> str:
    """The config reference: `check-config --describe [--markdown]`; docs/config.md is this output."""
    rows = describe()
    if not markdown:
        return "".join(f"{k:40s} {d:24s} {h}\n" for k, d, h in rows)
    lines = [
        "# Configuration reference",
        "",
        "Generated by `appliance check-config --describe --markdown`; a test keeps it in sync with the code.",
        "Sections are TOML tables; `positions` and `rules` are arrays of tables (`[[positions]]`).",
        "",
        "| key | default | description |",
        "|---|---|---|",
    ]
    for k, d, h in rows:
        lines.append(f"| `{k}` | {('`' + d + '`') if d else ''} | {h.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
