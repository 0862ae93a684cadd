"""The walker that validates a parsed TOML document against nested frozen dataclasses.

`config.py` declares the sections and their constraints (in each field's metadata: `choices`,
`min`, `max`, `pattern`, `nonempty`, `path`, `maxlen`, `items`, `min_items`); this module holds
what is generic: reading the file, walking the tree, checking each value. Every failure is a
`ConfigError` naming the dotted key (or `(file)` / `(syntax)`) and the reason, whatever the input:
a file in another encoding, nested a thousand levels deep or megabytes long, NaN and infinity,
control characters, numbers too large for a float.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

MAX_FILE_BYTES = 1 << 20
"""A config file larger than this is refused (a real one is a few kB)."""
MAX_STRING = 1024
"""Longest string value unless a field says otherwise (`maxlen`)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def show(value: Any, limit: int = 60) -> str:
    """A value as an error message shows it: repr, control characters escaped, shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ConfigError(ValueError):
    """A configuration value is invalid. `key` is the dotted path of the offending key."""

    def __init__(self, key: str, reason: str):
        key = show(key, 200)[1:-1] if _CONTROL.search(key) or len(key) > 200 else key
        super().__init__(f"{key}: {reason}".replace("\n", " "))
        self.key = key
        self.reason = reason


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


def check_scalar(key: str, value: Any, tp: Any, meta: dict) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return check_scalar(key, value, args[0], meta)
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


def build(cls: type, data: Any, prefix: str) -> Any:
    """An instance of dataclass `cls` from a TOML table; ConfigError on the first bad key."""
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
        kwargs[name] = value_of(key, data[name], hints[name], dict(f.metadata))
    return cls(**kwargs)


def value_of(key: str, value: Any, tp: Any, meta: dict) -> Any:
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key + ".")
    if typing.get_origin(tp) is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(key, f"must be a list, got {show(value)}")
        if len(value) < meta.get("min_items", 0):
            raise ConfigError(key, f"needs at least {meta['min_items']} item(s)")
        if dataclasses.is_dataclass(item_tp):
            return [build(item_tp, v, f"{key}[{i}].") for i, v in enumerate(value)]
        items = meta.get("items", {})
        return [check_scalar(f"{key}[{i}]", v, item_tp, items) for i, v in enumerate(value)]
    return check_scalar(key, value, tp, meta)
