"""The one place that reads tally's configuration: each setting declared once, as a field.

A field's declaration holds everything about a setting: the variable's name, its type
(the annotation), its default, its rule (the parser and the sentence an error shows)
and its help line. The reader (`Settings.from_env`), the error messages, the README's
settings table and `.env.example` (both written by `ops/configuration.py`) all come
from these declarations; a static test checks compose.yaml against them.
"""

from __future__ import annotations

import dataclasses
import math
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

EX_CONFIG = 78  # sysexits.h: configuration error

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "console")
REDIS_SCHEMES = ("redis", "rediss", "unix")
# The samplers the OpenTelemetry SDK knows by name (it reads OTEL_TRACES_SAMPLER itself).
OTEL_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)

T = TypeVar("T")
N = TypeVar("N", int, float)


class ConfigError(Exception):
    """A configuration variable is invalid; the message names it, the rule and the value."""

    def __init__(self, variable: str, rule: str, value: str | None = None) -> None:
        self.variable = variable
        shown = "" if value is None else f", got {value!r}"
        super().__init__(f"{variable} {rule}{shown}")


@dataclass(frozen=True)
class Spec:
    """How one variable is read, checked and documented."""

    env: str
    parse: Callable[[str], Any]  # raises ValueError when the value breaks `rule`
    rule: str
    help: str
    shown_default: str  # the default as the README and .env.example show it
    secret: bool = False  # also read from <env>_FILE (a Docker secret); never shown
    mask: Callable[[str], str] = str  # how a bad value is shown in the error


def setting(
    env: str,
    default: T,
    parse: Callable[[str], T],
    rule: str,
    help: str,
    *,
    default_factory: Callable[[], T] | None = None,
    shown_default: str | None = None,
    secret: bool = False,
    mask: Callable[[str], str] = str,
) -> T:
    """Declare a settings field read from `env`."""
    shown = shown_default if shown_default is not None else _show(default)
    spec = Spec(env, parse, rule, help, shown, secret, mask)
    metadata = {"spec": spec}
    if default_factory is not None:
        made: T = field(default_factory=default_factory, metadata=metadata, repr=not secret)
        return made
    declared: T = field(default=default, metadata=metadata, repr=not secret)
    return declared


def _show(default: object) -> str:
    if default is None:
        return ""
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


# --- rules: each returns the value or raises ValueError -------------------------------


def text(raw: str) -> str | None:
    return raw


def flag(raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def key(raw: str) -> str:
    if len(raw) > 128 or any(c.isspace() or not c.isprintable() for c in raw):
        raise ValueError(raw)
    return raw


def number(
    kind: Callable[[str], N], low: N | None = None, high: N | None = None
) -> Callable[[str], N]:
    def parse(raw: str) -> N:
        value = kind(raw)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(raw)
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(raw)
        return value

    return parse


def choice(allowed: tuple[str, ...], upper: bool = False) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.upper() if upper else raw.lower()
        if value not in allowed:
            raise ValueError(raw)
        return value

    return parse


def url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        parts = urlsplit(raw)
        if parts.scheme not in schemes or not (parts.hostname or parts.path):
            raise ValueError(raw)
        return raw

    return parse


def host(raw: str) -> str:
    if any(c in raw for c in "/@: "):
        raise ValueError(raw)
    return raw


def sentinels(raw: str) -> tuple[tuple[str, int], ...]:
    found = []
    for item in raw.split(","):
        name, _, port = item.strip().rpartition(":")
        if not name:
            raise ValueError(raw)
        found.append((host(name), port_number(port)))
    return tuple(found)


def without_password(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.password is None:
        return raw
    return raw.replace(f":{parts.password}@", ":***@", 1)


PORT_RULE = "must be a port number (1-65535)"
port_number = number(int, 1, 65535)
SECONDS_RULE = "must be a positive number of seconds"
KEY_RULE = "must be 1-128 printable characters without spaces"
FLAG_RULE = "must be true or false"
HTTP_URL_RULE = "must be an http:// or https:// URL"


@dataclass(frozen=True)
class Settings:
    # Redis: REDIS_URL, or the tutorial's REDIS_HOST / REDIS_PORT / REDIS_DB when it is unset.
    redis_url: str = setting(
        "REDIS_URL", "redis://localhost:6379/0", url(REDIS_SCHEMES),
        "must be a redis://, rediss:// or unix:// URL",
        "where Redis is (`redis://`, `rediss://`, `unix://`); wins over the three below",
        mask=without_password,
    )  # fmt: skip
    redis_host: str = setting(
        "REDIS_HOST", "localhost", host, "must be a host name or address",
        "the tutorial's way: Redis's host, used when `REDIS_URL` is unset",
    )  # fmt: skip
    redis_port: int = setting(
        "REDIS_PORT", 6379, port_number, PORT_RULE, "Redis's port, used when `REDIS_URL` is unset"
    )
    redis_db: int = setting(
        "REDIS_DB", 0, number(int, 0), "must be a database number >= 0",
        "Redis's database number, used when `REDIS_URL` is unset",
    )  # fmt: skip
    redis_username: str | None = setting(
        "REDIS_USERNAME", None, text, "", "the ACL user tally logs in as"
    )
    redis_password: str | None = setting(
        "REDIS_PASSWORD", None, text, "",
        "the ACL user's password, or (`_FILE`) a file holding it: a Docker secret",
        secret=True,
    )  # fmt: skip
    redis_timeout: float = setting(
        "REDIS_TIMEOUT", 1.0, number(float, 0.001), SECONDS_RULE,
        "seconds a Redis call may take before the request answers 503 with `Retry-After`",
    )  # fmt: skip
    # Sentinel discovery and the durability step (compose.ha.yaml sets all three).
    redis_sentinels: tuple[tuple[str, int], ...] = setting(
        "REDIS_SENTINELS", (), sentinels,
        "must be a comma-separated list of host:port (port 1-65535)",
        "`host:port,...` of Redis Sentinels that name the primary (`REDIS_URL` then gives"
        " only the db); unset: one Redis at `REDIS_URL`",
        shown_default="",
    )  # fmt: skip
    redis_sentinel_service: str = setting(
        "REDIS_SENTINEL_SERVICE", "tally", key, KEY_RULE, "the primary's name the Sentinels monitor"
    )
    redis_wait_replicas: int = setting(
        "REDIS_WAIT_REPLICAS", 0, number(int, 0), "must be a whole number of replicas >= 0",
        "replicas that must hold an increment before it is answered (`WAIT`, within half of"
        " `REDIS_TIMEOUT`; fewer: 503); 0: no wait",
    )  # fmt: skip
    redis_coalesce: bool = setting(
        "REDIS_COALESCE", True, flag, FLAG_RULE,
        "send the exactly-once increments that arrive while one is in flight to Redis"
        " together, in one pipeline, each answered alone; `false`: a round trip each",
    )  # fmt: skip
    counter_key: str = setting(
        "COUNTER_KEY", "visitor_count", key, KEY_RULE, "the counter's key (the tutorial's)"
    )
    idempotency_ttl: int = setting(
        "IDEMPOTENCY_TTL", 300, number(int, 1), "must be a whole number of seconds >= 1",
        "seconds a client's `Idempotency-Key` is remembered (a retry within it gets the"
        " first answer); an id nginx made is kept only while nginx may retry it",
    )  # fmt: skip
    replica_id: str = setting(
        "REPLICA_ID", "", key, KEY_RULE,
        "the replica's name in `X-Served-By`, logs, metrics and traces",
        default_factory=socket.gethostname, shown_default="the hostname",
    )  # fmt: skip
    log_level: str = setting(
        "LOG_LEVEL", "INFO", choice(LOG_LEVELS, upper=True),
        f"must be one of {', '.join(LOG_LEVELS)}", "`DEBUG` ... `CRITICAL`",
    )  # fmt: skip
    log_format: str = setting(
        "LOG_FORMAT", "json", choice(LOG_FORMATS), f"must be one of {', '.join(LOG_FORMATS)}",
        "`json` (containers) or `console` (a terminal)",
    )  # fmt: skip
    graceful_timeout: float = setting(
        "GRACEFUL_TIMEOUT", 10.0, number(float, 0.0), "must be a number of seconds >= 0",
        "seconds in-flight requests get to finish after SIGTERM",
    )  # fmt: skip
    port: int = setting("PORT", 8000, port_number, PORT_RULE, "the port the app listens on")
    hypercorn_one_write: bool = setting(
        "HYPERCORN_ONE_WRITE", True, flag, FLAG_RULE,
        "send a response's head and body in one write (`service/one_write.py`, a patch of"
        " Hypercorn's HTTP/1.1 writer); `false`: Hypercorn as released",
    )  # fmt: skip
    reload: bool = setting(
        "RELOAD", False, flag, FLAG_RULE, "restart on source changes (the dev profile)"
    )
    # Links from the pages to the dashboards: configuration, never guessed from the network.
    grafana_url: str | None = setting(
        "GRAFANA_URL", None, url(("http", "https")), HTTP_URL_RULE,
        "Grafana as a browser reaches it; the pages link it when set",
    )  # fmt: skip
    prometheus_url: str | None = setting(
        "PROMETHEUS_URL", None, url(("http", "https")), HTTP_URL_RULE,
        "Prometheus as a browser reaches it; the pages link it when set",
    )  # fmt: skip
    # Tracing is on when an endpoint is set and the SDK is not disabled; the SDK reads
    # the rest of OTEL_* itself (the exporter's endpoint and headers, the batch limits).
    otel_service_name: str = setting(
        "OTEL_SERVICE_NAME", "tally", key, KEY_RULE, "the traces' `service.name`"
    )
    otel_exporter_otlp_endpoint: str | None = setting(
        "OTEL_EXPORTER_OTLP_ENDPOINT", None, url(("http", "https")), HTTP_URL_RULE,
        "OTLP/HTTP endpoint; unset: tracing off",
    )  # fmt: skip
    otel_exporter_otlp_traces_endpoint: str | None = setting(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None, url(("http", "https")), HTTP_URL_RULE,
        "the same, for traces only (a full URL, `.../v1/traces`; wins when set)",
    )  # fmt: skip
    otel_traces_sampler: str = setting(
        "OTEL_TRACES_SAMPLER", "parentbased_always_on", choice(OTEL_SAMPLERS),
        f"must be one of {', '.join(OTEL_SAMPLERS)}",
        "which new traces are sampled (read by the SDK itself)",
    )  # fmt: skip
    otel_traces_sampler_arg: float = setting(
        "OTEL_TRACES_SAMPLER_ARG", 1.0, number(float, 0.0, 1.0),
        "must be a ratio between 0 and 1",
        "the share of new traces sampled (read by the SDK itself)",
    )  # fmt: skip
    otel_sdk_disabled: bool = setting(
        "OTEL_SDK_DISABLED", False, flag, FLAG_RULE, "`true` turns tracing off"
    )

    @property
    def otel_endpoint(self) -> str | None:
        """Where spans go; None: tracing is off."""
        return self.otel_exporter_otlp_traces_endpoint or self.otel_exporter_otlp_endpoint

    @property
    def dashboard_links(self) -> dict[str, str]:
        links = {"Grafana": self.grafana_url, "Prometheus": self.prometheus_url}
        return {name: link for name, link in links.items() if link}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping; raise ConfigError on the first bad value.
        Unset and empty both mean the default."""
        values = {f.name: read(spec, env) for f, spec in specs(cls) if _given(spec, env)}
        if "redis_url" not in values:
            host_ = values.get("redis_host", "localhost")
            values["redis_url"] = (
                f"redis://{host_}:{values.get('redis_port', 6379)}/{values.get('redis_db', 0)}"
            )
        return cls(**values)


def specs(cls: type[Settings] = Settings) -> list[tuple[dataclasses.Field[Any], Spec]]:
    """Every declared setting, in declaration order."""
    return [(f, f.metadata["spec"]) for f in dataclasses.fields(cls)]


def _given(spec: Spec, env: Mapping[str, str]) -> bool:
    return bool(env.get(spec.env, "").strip() or (spec.secret and _file_variable(spec, env)))


def _file_variable(spec: Spec, env: Mapping[str, str]) -> str | None:
    return env.get(f"{spec.env}_FILE", "").strip() or None


def read(spec: Spec, env: Mapping[str, str]) -> Any:
    """One declared setting from `env` (which holds it), parsed, or ConfigError."""
    raw = env.get(spec.env, "").strip()
    path = _file_variable(spec, env) if spec.secret else None
    if path is not None:
        if raw:
            raise ConfigError(f"{spec.env}_FILE", f"cannot be set together with {spec.env}")
        return _secret_from(f"{spec.env}_FILE", path)
    try:
        return spec.parse(raw)
    except ValueError:
        raise ConfigError(spec.env, spec.rule, spec.mask(raw)) from None


def _secret_from(variable: str, path: str) -> str:
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise ConfigError(variable, f"must name a readable file ({reason})", path) from None
    if not secret:
        raise ConfigError(variable, "must name a file that holds a password", path)
    return secret
