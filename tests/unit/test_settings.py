"""Settings: defaults, the tutorial's variables, secrets from files, and every error message."""

from pathlib import Path

import pytest

from service.settings import ConfigError, Settings


def test_defaults_match_the_design() -> None:
    settings = Settings.from_env({"REPLICA_ID": "r1"})
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.redis_timeout == 1.0
    assert settings.counter_key == "visitor_count"
    assert settings.idempotency_ttl == 300
    assert settings.replica_id == "r1"
    assert (settings.log_level, settings.log_format) == ("INFO", "json")
    assert settings.port == 8000


def test_replica_id_defaults_to_the_hostname() -> None:
    import socket

    assert Settings.from_env({}).replica_id == socket.gethostname()


def test_tutorial_host_port_db_build_the_url() -> None:
    env = {"REDIS_HOST": "redis", "REDIS_PORT": "6380", "REDIS_DB": "2"}
    assert Settings.from_env(env).redis_url == "redis://redis:6380/2"


def test_redis_url_wins_over_host_and_port() -> None:
    env = {"REDIS_URL": "redis://cache:6379/1", "REDIS_HOST": "ignored"}
    assert Settings.from_env(env).redis_url == "redis://cache:6379/1"


def test_password_is_read_from_the_secret_file_and_never_shown(tmp_path: Path) -> None:
    secret = tmp_path / "redis_password"
    secret.write_text("s3cret\n")
    settings = Settings.from_env({"REDIS_PASSWORD_FILE": str(secret), "REDIS_USERNAME": "app"})
    assert settings.redis_password == "s3cret"
    assert settings.redis_username == "app"
    assert "s3cret" not in repr(settings)


def test_inline_password_is_accepted() -> None:
    assert Settings.from_env({"REDIS_PASSWORD": "pw"}).redis_password == "pw"


def test_log_level_is_case_insensitive() -> None:
    assert Settings.from_env({"LOG_LEVEL": "debug"}).log_level == "DEBUG"


INVALID = [
    ("REDIS_TIMEOUT", "abc", "REDIS_TIMEOUT must be a positive number of seconds, got 'abc'"),
    ("REDIS_TIMEOUT", "0", "REDIS_TIMEOUT must be a positive number of seconds, got '0'"),
    ("REDIS_TIMEOUT", "nan", "REDIS_TIMEOUT must be a positive number of seconds, got 'nan'"),
    (
        "IDEMPOTENCY_TTL",
        "1.5",
        "IDEMPOTENCY_TTL must be a whole number of seconds >= 1, got '1.5'",
    ),
    ("IDEMPOTENCY_TTL", "0", "IDEMPOTENCY_TTL must be a whole number of seconds >= 1, got '0'"),
    ("GRACEFUL_TIMEOUT", "-1", "GRACEFUL_TIMEOUT must be a number of seconds >= 0, got '-1'"),
    ("PORT", "70000", "PORT must be a port number (1-65535), got '70000'"),
    ("REDIS_PORT", "redis", "REDIS_PORT must be a port number (1-65535), got 'redis'"),
    ("REDIS_DB", "-1", "REDIS_DB must be a database number >= 0, got '-1'"),
    ("REDIS_HOST", "a/b", "REDIS_HOST must be a host name or address, got 'a/b'"),
    (
        "REDIS_URL",
        "http://redis:6379",
        "REDIS_URL must be a redis://, rediss:// or unix:// URL, got 'http://redis:6379'",
    ),
    (
        "REDIS_URL",
        "ftp://u:hunter2@x",
        "REDIS_URL must be a redis://, rediss:// or unix:// URL, got 'ftp://u:***@x'",
    ),
    (
        "LOG_LEVEL",
        "loud",
        "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'loud'",
    ),
    ("LOG_FORMAT", "xml", "LOG_FORMAT must be one of json, console, got 'xml'"),
    (
        "COUNTER_KEY",
        "two words",
        "COUNTER_KEY must be 1-128 printable characters without spaces, got 'two words'",
    ),
    (
        "REPLICA_ID",
        "x" * 129,
        f"REPLICA_ID must be 1-128 printable characters without spaces, got '{'x' * 129}'",
    ),
    ("RELOAD", "maybe", "RELOAD must be true or false, got 'maybe'"),
    ("OTEL_SDK_DISABLED", "perhaps", "OTEL_SDK_DISABLED must be true or false, got 'perhaps'"),
    (
        "OTEL_TRACES_SAMPLER",
        "sometimes",
        "OTEL_TRACES_SAMPLER must be one of always_on, always_off, traceidratio, "
        "parentbased_always_on, parentbased_always_off, parentbased_traceidratio, "
        "got 'sometimes'",
    ),
    (
        "OTEL_TRACES_SAMPLER_ARG",
        "10%",
        "OTEL_TRACES_SAMPLER_ARG must be a ratio between 0 and 1, got '10%'",
    ),
    (
        "OTEL_TRACES_SAMPLER_ARG",
        "2",
        "OTEL_TRACES_SAMPLER_ARG must be a ratio between 0 and 1, got '2'",
    ),
    (
        "GRAFANA_URL",
        "grafana:3000",
        "GRAFANA_URL must be an http:// or https:// URL, got 'grafana:3000'",
    ),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "tempo:4318",
        "OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL, got 'tempo:4318'",
    ),
]


@pytest.mark.parametrize(("variable", "value", "message"), INVALID)
def test_each_invalid_value_is_named_with_its_rule(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: value})
    assert caught.value.variable == variable
    assert str(caught.value) == message


def test_missing_secret_file_names_the_variable_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"REDIS_PASSWORD_FILE": str(missing)})
    assert str(caught.value) == (
        "REDIS_PASSWORD_FILE must name a readable file (No such file or directory), "
        f"got '{missing}'"
    )


def test_empty_secret_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(
        ConfigError, match="REDIS_PASSWORD_FILE must name a file that holds a password"
    ):
        Settings.from_env({"REDIS_PASSWORD_FILE": str(empty)})


def test_password_file_and_inline_password_together_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("pw")
    with pytest.raises(ConfigError, match="cannot be set together with REDIS_PASSWORD"):
        Settings.from_env({"REDIS_PASSWORD_FILE": str(secret), "REDIS_PASSWORD": "pw"})


def test_settings_are_immutable() -> None:
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


def test_every_declared_setting_has_a_help_line_and_a_rule_where_it_can_fail() -> None:
    from service.settings import specs, text

    for _, spec in specs():
        assert spec.help, spec.env
        assert spec.rule or spec.parse is text, spec.env


def test_an_empty_value_means_the_default() -> None:
    assert Settings.from_env({"REDIS_TIMEOUT": "", "PORT": " "}) == Settings.from_env({})


def test_traces_go_to_the_traces_endpoint_when_both_are_set() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://tempo:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://other:4318/v1/traces",
    }
    assert Settings.from_env(env).otel_endpoint == "http://other:4318/v1/traces"
    assert Settings.from_env({}).otel_endpoint is None
