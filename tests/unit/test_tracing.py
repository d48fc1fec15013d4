"""Tracing is on only with an endpoint that resolves, and off cleanly otherwise."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from service.settings import Settings
from service.tracing import tracer_provider


def test_no_endpoint_means_no_tracing() -> None:
    assert tracer_provider(Settings.from_env({})) is None


def test_sdk_disabled_wins_over_an_endpoint() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318", "OTEL_SDK_DISABLED": "true"}
    assert tracer_provider(Settings.from_env(env)) is None


def test_an_endpoint_that_does_not_resolve_turns_tracing_off() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://no-such-host.invalid:4318"}
    assert tracer_provider(Settings.from_env(env)) is None


def test_a_resolvable_endpoint_gives_a_provider_with_our_resource() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318", "REPLICA_ID": "r7"}
    provider = tracer_provider(Settings.from_env(env))
    assert isinstance(provider, TracerProvider)
    attributes = provider.resource.attributes
    assert attributes["service.name"] == "tally"
    assert attributes["service.instance.id"] == "r7"
    assert attributes["service.version"]
    provider.shutdown()
