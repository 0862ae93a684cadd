"""Loading a TOML config: walk the document against the dataclasses, check every value and
the cross-section rules; a `ConfigError` names the failing key."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import tomllib
import types
import typing
import urllib.parse
from pathlib import Path
from typing import Any

from appliance.config.errors import ConfigError
from appliance.config.sections import AppConfig


def _check_scalar(key: str, value: Any, tp: Any, meta: dict) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _check_scalar(key, value, args[0], meta)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {value!r}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"must be a number, got {value!r}")
        value = float(value)
    elif tp is str and not isinstance(value, str):
        raise ConfigError(key, f"must be a string, got {value!r}")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(
            key, f"must be one of {', '.join(map(str, meta['choices']))}; got {value!r}"
        )
    if "min" in meta and value < meta["min"]:
        raise ConfigError(key, f"must be >= {meta['min']}, got {value!r}")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(key, f"must be <= {meta['max']}, got {value!r}")
    if "pattern" in meta:
        import re

        if not re.fullmatch(meta["pattern"], value):
            raise ConfigError(key, f"must match {meta['pattern']}, got {value!r}")
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
            raise ConfigError(f"{prefix}{key}", f"unknown key (known keys: {known})")
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
            raise ConfigError(key, f"must be a list, got {value!r}")
        if dataclasses.is_dataclass(item_tp):
            return [_build(item_tp, v, f"{key}[{i}].") for i, v in enumerate(value)]
        return [_check_scalar(f"{key}[{i}]", v, item_tp, meta) for i, v in enumerate(value)]
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
        port = u.port
    except ValueError:
        port = -1
    if not u.hostname or port == -1 or u.path not in ("", "/") or u.query or u.fragment:
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
    """Read and validate a TOML config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("(file)", f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("(syntax)", f"{path}: {exc}") from exc
    return config_from_dict(data, base_dir=path.resolve().parent)
