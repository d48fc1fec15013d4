"""Settings: defaults, the tutorial's variables, secrets from files, and every error message."""

from pathlib import Path

import pytest

from service.settings import ConfigError, Settings
from tests.settings_cases import INVALID


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


def test_without_sentinels_redis_is_one_server_and_nothing_waits_for_replicas() -> None:
    settings = Settings.from_env({})
    assert settings.redis_sentinels == ()
    assert settings.redis_sentinel_service == "tally"
    assert settings.redis_wait_replicas == 0


def test_sentinels_are_parsed_in_order_with_their_ports() -> None:
    env = {
        "REDIS_SENTINELS": "sentinel-1:26379, sentinel-2:26380,10.0.0.3:26379",
        "REDIS_SENTINEL_SERVICE": "counter",
        "REDIS_WAIT_REPLICAS": "1",
    }
    settings = Settings.from_env(env)
    assert settings.redis_sentinels == (
        ("sentinel-1", 26379),
        ("sentinel-2", 26380),
        ("10.0.0.3", 26379),
    )
    assert settings.redis_sentinel_service == "counter"
    assert settings.redis_wait_replicas == 1


def test_log_level_is_case_insensitive() -> None:
    assert Settings.from_env({"LOG_LEVEL": "debug"}).log_level == "DEBUG"


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
