"""Loading a TOML config: walk the document against the dataclasses, check every value and
the cross-section rules; a `ConfigError` names the failing key, or `(file)` / `(syntax)` and the
reason, whatever the input: a file in another encoding, nested a thousand levels deep or
megabytes long, NaN and infinity, control characters, numbers too large for a float."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import re
import tomllib
import types
import typing
import urllib.parse
from pathlib import Path
from typing import Any

from appliance.config.errors import ConfigError, show
from appliance.config.sections import AppConfig

MAX_FILE_BYTES = 1 << 20
"""A config file larger than this is refused (a real one is a few kB)."""
MAX_STRING = 1024
"""Longest string value unless a field says otherwise (`maxlen`)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def read_toml(path: str | Path) -> dict:
    """Parse a TOML file; ConfigError with the reason for anything that is not a sane one."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError("(file)", f"cannot read {show(str(path), 200)}: {reason}") from exc
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError("(file)", f"{path} is larger than {MAX_FILE_BYTES} bytes")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise ConfigError("(file)", f"{path} is UTF-16 text: save it as UTF-8")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "(file)",
            f"{path} is not UTF-8 text (byte {exc.start}: {show(raw[exc.start : exc.start + 4])})",
        ) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("(syntax)", f"{path}: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError("(syntax)", f"{path}: arrays or tables nested too deeply") from exc


def _check_str(key: str, value: str, meta: dict) -> None:
    if _CONTROL.search(value):
        raise ConfigError(key, f"control characters are not allowed, got {show(value)}")
    if len(value) > meta.get("maxlen", MAX_STRING):
        raise ConfigError(key, f"longer than {meta.get('maxlen', MAX_STRING)} characters")
    if meta.get("nonempty") and not value.strip():
        raise ConfigError(key, "must not be empty")
    if meta.get("path") and value:
        if len(value.encode()) > 4095:
            raise ConfigError(key, "path longer than 4095 bytes")
        for part in Path(value).parts:
            if len(part.encode()) > 255:
                raise ConfigError(key, f"path component longer than 255 bytes: {show(part)}")


def _check_scalar(key: str, value: Any, tp: Any, meta: dict) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _check_scalar(key, value, args[0], meta)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {show(value)}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, got {show(value)}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"must be a number, got {show(value)}")
        try:
            value = float(value)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):  # nan passes every comparison below and disables checks
            raise ConfigError(key, f"must be a finite number, got {show(value)}")
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {show(value)}")
        _check_str(key, value, meta)
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(
            key, f"must be one of {', '.join(map(str, meta['choices']))}; got {show(value)}"
        )
    if "min" in meta and value < meta["min"]:
        raise ConfigError(key, f"must be >= {meta['min']}, got {show(value)}")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(key, f"must be <= {meta['max']}, got {show(value)}")
    if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
        raise ConfigError(key, f"must match {meta['pattern']}, got {show(value)}")
    return value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(
            prefix.rstrip(".") or "(root)", f"must be a table, got {type(data).__name__}"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            # as TOML would quote it: an empty or odd key stays visible in the message
            name = key if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", key) else json.dumps(key)[:66]
            raise ConfigError(f"{prefix}{name}", f"unknown key (known keys: {known})")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            continue
        key = f"{prefix}{name}"
        kwargs[name] = _value(key, data[name], hints[name], dict(f.metadata))
    return cls(**kwargs)


def _value(key: str, value: Any, tp: Any, meta: dict) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    if typing.get_origin(tp) is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(key, f"must be a list, got {show(value)}")
        if len(value) < meta.get("min_items", 0):
            raise ConfigError(key, f"needs at least {meta['min_items']} item(s)")
        if dataclasses.is_dataclass(item_tp):
            return [_build(item_tp, v, f"{key}[{i}].") for i, v in enumerate(value)]
        items = meta.get("items", {})
        return [_check_scalar(f"{key}[{i}]", v, item_tp, items) for i, v in enumerate(value)]
    return _check_scalar(key, value, tp, meta)


def _cross_checks(cfg: AppConfig) -> None:
    ids = [p.id for p in cfg.positions]
    for i, pid in enumerate(ids):
        if pid in ids[:i]:
            raise ConfigError(f"positions[{i}].id", f"duplicate position id {pid!r}")
    for i, pos in enumerate(cfg.positions):
        if not pos.customer_device and not pos.mono and pos.channels.agent == pos.channels.customer:
            raise ConfigError(
                f"positions[{i}].channels.customer",
                "agent and customer must be different channels of one device",
            )
    names = [r.name for r in cfg.rules]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"rules[{i}].name", f"duplicate rule name {name!r}")
    check_broker_url("mqtt.url", cfg.mqtt.url)
    for section in ("mqtt", "retention", "panel", "daemon"):
        for f in dataclasses.fields(getattr(cfg, section)):
            v = getattr(getattr(cfg, section), f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{section}.{f.name}", f"must be a finite number, got {v!r}")
    kinds = ("card", "expiry", "cvv", "dob", "id", "iban", "account", "pin")
    for i, k in enumerate(cfg.redaction.auto_pause_kinds):
        if k not in kinds:
            raise ConfigError(
                f"redaction.auto_pause_kinds[{i}]", f"must be one of {', '.join(kinds)}; got {k!r}"
            )
    pr = cfg.emotion.prior
    if pr and (len(pr) != 7 or any(v < 0 for v in pr) or sum(pr) <= 0):
        raise ConfigError("emotion.prior", "needs 7 non-negative numbers in label order, not all 0")
    _voip_checks(cfg)
    _language_checks(cfg)
    for i, p in enumerate(cfg.emotion.providers):
        if not p.endswith("ExecutionProvider"):
            raise ConfigError(f"emotion.providers[{i}]", f"not an onnxruntime provider name: {p!r}")
    _check_listen("daemon.metrics_listen", cfg.daemon.metrics_listen)


def _check_listen(key: str, value: str) -> None:
    """`off`, or host:port with port 0-65535 (0: any free port); [v6]:port too."""
    if value == "off":
        return
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(key, f"must be host:port (port 0-65535) or off, got {value!r}")


def _language_checks(cfg: AppConfig) -> None:
    """A language other than English needs the multilingual Whisper (Vosk models are English)."""
    if cfg.stt.engine in ("none", "vosk") or cfg.stt.whisper_model or cfg.stt.model != "tiny.en":
        return
    if cfg.stt.language != "en":
        raise ConfigError("stt.language", f'{cfg.stt.language!r} needs stt.model = "base"')
    for i, pos in enumerate(cfg.positions):
        if pos.language not in ("", "en"):
            raise ConfigError(
                f"positions[{i}].language", f'{pos.language!r} needs stt.model = "base"'
            )


def _voip_checks(cfg: AppConfig) -> None:
    for i, net in enumerate(cfg.voip.agent_nets):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"voip.agent_nets[{i}]", f"not an address/prefix: {net!r}") from None
    try:
        re.compile(cfg.voip.agent_aor)
    except re.error as exc:
        raise ConfigError("voip.agent_aor", f"not a regular expression: {exc}") from None
    if cfg.voip.rtp_port_max <= cfg.voip.rtp_port_min:
        raise ConfigError("voip.rtp_port_max", "must be above voip.rtp_port_min")


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (brackets allowed)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_broker_url(key: str, url: str, tls_off_loopback: bool = False) -> None:
    """mqtt://host[:port] or mqtts://...; never credentials (they live in files) or echoed."""
    if not url:
        return
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(key, "must start with mqtt:// or mqtts://")
    if "@" in u.netloc:
        raise ConfigError(key, "must not hold credentials: use mqtt.username and password_file")
    try:
        _ = u.port  # parsed on access
    except ValueError as exc:  # "Port out of range 0-65535", "Port could not be cast ..."
        raise ConfigError(key, f"{exc} in {url[:80]!r}") from None
    if not u.hostname or u.path not in ("", "/") or u.query or u.fragment:
        raise ConfigError(key, f"must be mqtt[s]://host[:port], got {url[:80]!r}")
    if any(c.isspace() or ord(c) < 33 for c in url):
        raise ConfigError(key, f"must not contain spaces, got {url[:80]!r}")
    if tls_off_loopback and u.scheme != "mqtts" and not is_loopback(u.hostname):
        raise ConfigError(key, "a broker off loopback needs TLS (mqtts://)")


def config_from_dict(data: dict, base_dir: str | Path = "") -> AppConfig:
    """Validate a parsed TOML document. Raises ConfigError naming the failing key."""
    cfg = _build(AppConfig, data, "")
    cfg = dataclasses.replace(cfg, base_dir=str(base_dir))
    _cross_checks(cfg)
    return cfg


def load_config(path: str | Path) -> AppConfig:
    """Read and validate a TOML config file; any failure is a ConfigError with the reason."""
    path = Path(path)
    data = read_toml(path)
    return config_from_dict(data, base_dir=path.resolve().parent)
