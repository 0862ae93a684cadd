"""Validated appliance configuration (TOML).

Every section is a frozen dataclass (`sections`); every field carries a `help` text in its
metadata, which `appliance check-config --describe` prints and docs/config.md reproduces.
Loading (`loading`) walks the TOML tree against the dataclasses, so an unknown key, a wrong type
or a value out of range is reported with its full dotted key
(`positions[1].channels.customer: must be >= 0`).
"""

from appliance.config.errors import ConfigError
from appliance.config.loading import (
    check_broker_url,
    config_from_dict,
    is_loopback,
    load_config,
)
from appliance.config.reference import config_reference, describe, referenced_files
from appliance.config.sections import (
    AlertsConfig,
    AnalyzeConfig,
    AppConfig,
    BoxConfig,
    BridgeConfig,
    BridgeRouteConfig,
    ChannelMap,
    DaemonConfig,
    DiarizeConfig,
    EmotionConfig,
    MqttConfig,
    PanelConfig,
    PathsConfig,
    PolicyConfig,
    PositionConfig,
    RedactionConfig,
    RetentionConfig,
    RuleConfig,
    SttConfig,
    VadConfig,
    VoipConfig,
)

__all__ = [
    "AlertsConfig",
    "AnalyzeConfig",
    "AppConfig",
    "BoxConfig",
    "BridgeConfig",
    "BridgeRouteConfig",
    "ChannelMap",
    "ConfigError",
    "DaemonConfig",
    "DiarizeConfig",
    "EmotionConfig",
    "MqttConfig",
    "PanelConfig",
    "PathsConfig",
    "PolicyConfig",
    "PositionConfig",
    "RedactionConfig",
    "RetentionConfig",
    "RuleConfig",
    "SttConfig",
    "VadConfig",
    "VoipConfig",
    "check_broker_url",
    "config_from_dict",
    "config_reference",
    "describe",
    "is_loopback",
    "load_config",
    "referenced_files",
]
