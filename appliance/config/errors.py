"""The one error configuration checks raise."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is invalid. `key` is the dotted path of the offending key."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason
