"""The one error configuration checks raise."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def show(value: object, limit: int = 60) -> str:
    """A value as an error message shows it: repr (control characters escaped), shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ConfigError(ValueError):
    """A configuration value is invalid. `key` is the dotted path of the offending key."""

    def __init__(self, key: str, reason: str):
        key = show(key, 200)[1:-1] if _CONTROL.search(key) or len(key) > 200 else key
        super().__init__(f"{key}: {reason}".replace("\n", " "))
        self.key = key
        self.reason = reason
