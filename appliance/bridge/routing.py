"""Where an event goes: the first `[[bridge.routes]]` entry that matches its event, rule,
severity and segment decides (deliver to its webhook, to the bridge's webhook, or not at all); an event no
route matches goes to the bridge's webhook. Secrets are read once, at start, and checked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from appliance.config import BridgeConfig, BridgeRouteConfig

MIN_SECRET_BYTES = 16
DEFAULT = "default"


class RoutingError(ValueError):
    """A webhook without a usable secret, or a secret file that cannot be read."""


@dataclass(frozen=True)
class Target:
    """A delivery destination."""

    route: str
    """Name of the route that chose it (`default` when none matched)."""
    url: str


def read_secret(path: str | Path, what: str) -> bytes:
    """A signing secret: the file's content without its trailing newline, at least 16 bytes."""
    try:
        secret = Path(path).read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise RoutingError(f"{what}: cannot read {path}: {exc.strerror}") from exc
    if len(secret) < MIN_SECRET_BYTES:
        raise RoutingError(
            f"{what}: {path} holds {len(secret)} bytes (at least {MIN_SECRET_BYTES} needed)"
        )
    return secret


def _matches(route: BridgeRouteConfig, event: dict) -> bool:
    return (
        (not route.events or event.get("event") in route.events)
        and (not route.rules or event.get("rule") in route.rules)
        and (not route.severities or event.get("severity") in route.severities)
        and (not route.segments or event.get("segment") in route.segments)
    )


class Router:
    """Routes events and holds the signing secret of every destination."""

    def __init__(self, settings: BridgeConfig, resolve=Path):
        """`resolve` turns a configured path into a file (relative to the config file)."""
        self.settings = settings
        self._secrets: dict[str, bytes] = {}
        if settings.webhook or settings.webhook_secret_file:
            if not settings.webhook_secret_file:
                raise RoutingError(
                    "a webhook needs a signing secret: --webhook-secret-file FILE"
                    " (bridge.webhook_secret_file)"
                )
            self._secrets[DEFAULT] = read_secret(
                resolve(settings.webhook_secret_file), "bridge.webhook_secret_file"
            )
        for i, r in enumerate(settings.routes):
            if not r.deliver:
                continue
            if not (r.webhook or settings.webhook):
                raise RoutingError(f"bridge.routes[{i}] ({r.name}) delivers but no webhook is set")
            if r.secret_file:
                self._secrets[r.name] = read_secret(
                    resolve(r.secret_file), f"bridge.routes[{i}].secret_file"
                )
            elif DEFAULT not in self._secrets:
                raise RoutingError(f"bridge.routes[{i}] ({r.name}) has no signing secret")

    def route(self, event: dict) -> Target | None:
        """The destination of `event`, or None when it is stored without delivery."""
        for r in self.settings.routes:
            if _matches(r, event):
                if not r.deliver:
                    return None
                return Target(r.name, r.webhook or self.settings.webhook)
        return Target(DEFAULT, self.settings.webhook) if self.settings.webhook else None

    def secret(self, route: str) -> bytes | None:
        """The signing secret for a queued delivery (the default one for a route since removed)."""
        return self._secrets.get(route) or self._secrets.get(DEFAULT)

    @property
    def delivers(self) -> bool:
        return bool(self._secrets)
