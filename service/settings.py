"""The one place that reads tally's configuration from the environment."""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

EX_CONFIG = 78  # sysexits.h: configuration error

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "console")
REDIS_SCHEMES = ("redis", "rediss", "unix")

N = TypeVar("N", int, float)


class ConfigError(Exception):
    """A configuration variable is invalid; the message names it, the rule and the value."""

    def __init__(self, variable: str, rule: str, value: str | None = None) -> None:
        self.variable = variable
        shown = "" if value is None else f", got {value!r}"
        super().__init__(f"{variable} {rule}{shown}")


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://localhost:6379/0"
    redis_username: str | None = None
    redis_password: str | None = field(default=None, repr=False)
    redis_timeout: float = 1.0
    # Sentinel discovery: the primary's address comes from these (host, port) pairs
    # instead of REDIS_URL's host; none means a single Redis at REDIS_URL.
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_service: str = "tally"
    # Replicas that must hold an increment before it is answered (WAIT); 0: no wait.
    redis_wait_replicas: int = 0
    counter_key: str = "visitor_count"
    idempotency_ttl: int = 300
    replica_id: str = field(default_factory=socket.gethostname)
    log_level: str = "INFO"
    log_format: str = "json"
    graceful_timeout: float = 10.0
    port: int = 8000
    reload: bool = False
    # Where a browser finds the dashboards; linked from the pages while they are up.
    grafana_url: str = "http://localhost:3000"
    prometheus_url: str = "http://localhost:9090"
    # Only what decides whether tracing is on; the SDK reads the rest of OTEL_* itself.
    otel_service_name: str = "tally"
    otel_endpoint: str | None = None
    otel_sdk_disabled: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping; raise ConfigError on the first bad value."""
        reader = _Reader(env)
        return cls(
            redis_url=_redis_url(reader),
            redis_username=reader.text("REDIS_USERNAME"),
            redis_password=_redis_password(reader),
            redis_timeout=reader.number(
                "REDIS_TIMEOUT", 1.0, "must be a positive number of seconds", float, low=0.001
            ),
            redis_sentinels=_redis_sentinels(reader),
            redis_sentinel_service=reader.key("REDIS_SENTINEL_SERVICE", "tally"),
            redis_wait_replicas=reader.number(
                "REDIS_WAIT_REPLICAS", 0, "must be a whole number of replicas >= 0", int, low=0
            ),
            counter_key=reader.key("COUNTER_KEY", "visitor_count"),
            idempotency_ttl=reader.number(
                "IDEMPOTENCY_TTL", 300, "must be a whole number of seconds >= 1", int, low=1
            ),
            replica_id=reader.key("REPLICA_ID", socket.gethostname()),
            log_level=reader.choice("LOG_LEVEL", "INFO", LOG_LEVELS, upper=True),
            log_format=reader.choice("LOG_FORMAT", "json", LOG_FORMATS),
            graceful_timeout=reader.number(
                "GRACEFUL_TIMEOUT", 10.0, "must be a number of seconds >= 0", float, low=0.0
            ),
            port=reader.number("PORT", 8000, "must be a port number (1-65535)", int, 1, 65535),
            reload=reader.flag("RELOAD"),
            grafana_url=reader.url("GRAFANA_URL", "http://localhost:3000"),
            prometheus_url=reader.url("PROMETHEUS_URL", "http://localhost:9090"),
            otel_service_name=reader.key("OTEL_SERVICE_NAME", "tally"),
            otel_endpoint=reader.text("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or reader.text("OTEL_EXPORTER_OTLP_ENDPOINT"),
            otel_sdk_disabled=reader.flag("OTEL_SDK_DISABLED"),
        )


class _Reader:
    """Typed access to an environment mapping; unset and empty mean the default."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def key(self, name: str, default: str) -> str:
        value = self.text(name) or default
        if len(value) > 128 or any(c.isspace() or not c.isprintable() for c in value):
            raise ConfigError(name, "must be 1-128 printable characters without spaces", value)
        return value

    def number(
        self,
        name: str,
        default: N,
        rule: str,
        kind: Callable[[str], N],
        low: N | None = None,
        high: N | None = None,
    ) -> N:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigError(name, rule, raw) from None
        too_low = low is not None and value < low
        too_high = high is not None and value > high
        if value != value or too_low or too_high:  # value != value: NaN
            raise ConfigError(name, rule, raw)
        return value

    def url(self, name: str, default: str) -> str:
        value = self.text(name) or default
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(name, "must be an http:// or https:// URL", value)
        return value

    def choice(self, name: str, default: str, allowed: tuple[str, ...], upper: bool = False) -> str:
        raw = self.text(name)
        if raw is None:
            return default
        value = raw.upper() if upper else raw.lower()
        if value not in allowed:
            raise ConfigError(name, f"must be one of {', '.join(allowed)}", raw)
        return value

    def flag(self, name: str) -> bool:
        raw = self.text(name)
        if raw is None:
            return False
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(name, "must be true or false", raw)


def _redis_url(reader: _Reader) -> str:
    url = reader.text("REDIS_URL")
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in REDIS_SCHEMES or not (parts.hostname or parts.path):
            raise ConfigError(
                "REDIS_URL", "must be a redis://, rediss:// or unix:// URL", _without_password(url)
            )
        return url
    # The tutorial configured Redis by host, port and db; keep those working.
    host = reader.text("REDIS_HOST") or "localhost"
    if any(c in host for c in "/@: "):
        raise ConfigError("REDIS_HOST", "must be a host name or address", host)
    port = reader.number("REDIS_PORT", 6379, "must be a port number (1-65535)", int, 1, 65535)
    db = reader.number("REDIS_DB", 0, "must be a database number >= 0", int, low=0)
    return f"redis://{host}:{port}/{db}"


def _redis_sentinels(reader: _Reader) -> tuple[tuple[str, int], ...]:
    raw = reader.text("REDIS_SENTINELS")
    if raw is None:
        return ()
    rule = "must be a comma-separated list of host:port (port 1-65535)"
    sentinels = []
    for item in raw.split(","):
        host, _, port = item.strip().rpartition(":")
        bad_host = not host or any(c in host for c in "/@: ")
        if bad_host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ConfigError("REDIS_SENTINELS", rule, raw)
        sentinels.append((host, int(port)))
    return tuple(sentinels)


def _redis_password(reader: _Reader) -> str | None:
    path = reader.text("REDIS_PASSWORD_FILE")
    inline = reader.text("REDIS_PASSWORD")
    if path is None:
        return inline
    if inline is not None:
        raise ConfigError("REDIS_PASSWORD_FILE", "cannot be set together with REDIS_PASSWORD")
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise ConfigError(
            "REDIS_PASSWORD_FILE", f"must name a readable file ({reason})", path
        ) from None
    if not secret:
        raise ConfigError("REDIS_PASSWORD_FILE", "must name a file that holds a password", path)
    return secret


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
