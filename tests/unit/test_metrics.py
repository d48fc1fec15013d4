"""Metrics: RED per route template, visits, build info, process and GC, OpenMetrics on request."""

from __future__ import annotations

from quart.testing.utils import sentinel
from quart.typing import TestClientProtocol as Client

from service.metrics import Metrics
from tests.serving import Samples, scrape


def requests_total(samples: Samples, method: str, route: str, status: str) -> float:
    labels = (("method", method), ("route", route), ("status", status))
    return samples.get(("http_requests_total", labels), 0.0)


def any_label_mentions(samples: Samples, text: str) -> bool:
    return any(text in str(labels) for _, labels in samples)


async def test_requests_are_counted_by_route_template_method_and_status(client: Client) -> None:
    await client.get("/count")
    await client.get("/count")
    await client.get("/no/such/path/123")
    samples = await scrape(client)
    assert requests_total(samples, "GET", "/count", "200") == 2
    assert requests_total(samples, "GET", "unmatched", "404") == 1
    assert not any_label_mentions(samples, "/no/such")


async def test_a_route_with_variables_is_labelled_by_its_template(client: Client) -> None:
    response = await client.get("/static/style.css")
    assert response.status_code == 200
    samples = await scrape(client)
    assert requests_total(samples, "GET", "/static/<path:filename>", "200") == 1
    assert not any_label_mentions(samples, "style.css")


async def test_a_made_up_method_is_labelled_other(client: Client) -> None:
    # Any token is a valid HTTP method on the wire; labels must stay bounded.
    for method in ("FROB", "XYZZY"):
        # quart's TestClientProtocol leaves out the default of `json`: this is that default.
        response = await client.open("/count", method=method, json=sentinel)
        assert response.status_code == 405
    samples = await scrape(client)
    assert requests_total(samples, "other", "/count", "405") == 2
    assert not any_label_mentions(samples, "FROB")


async def test_latency_histogram_has_buckets_from_1ms_to_2s(client: Client) -> None:
    await client.get("/")
    samples = await scrape(client)
    les = {
        dict(labels)["le"]
        for name, labels in samples
        if name == "http_request_duration_seconds_bucket" and dict(labels)["route"] == "/"
    }
    assert {"0.001", "2.0", "+Inf"} <= les


async def test_a_replayed_request_id_is_not_a_new_visit(client: Client) -> None:
    for _ in range(3):
        await client.get("/count", headers={"X-Request-ID": "same"})
    await client.get("/count")
    assert (await scrape(client))[("tally_visits_total", ())] == 2


async def test_build_info_names_version_and_replica(client: Client) -> None:
    samples = await scrape(client)
    info = [labels for name, labels in samples if name == "tally_build_info"]
    assert dict(info[0])["replica"] == "replica-1"
    assert "version" in dict(info[0])


async def test_the_app_exports_its_own_process_and_gc_metrics(client: Client) -> None:
    names = {name for name, _ in await scrape(client)}
    assert {
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "python_gc_collections_total",
        "python_info",
    } <= names


async def test_in_flight_is_back_to_zero_after_requests(client: Client) -> None:
    await client.get("/count")
    samples = await scrape(client)
    # The scrape itself is in flight while it renders.
    assert samples[("http_requests_in_flight", ())] == 1


async def test_openmetrics_is_served_when_asked(client: Client) -> None:
    response = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.content_type.startswith("application/openmetrics-text")
    assert (await response.get_data(as_text=True)).endswith("# EOF\n")


def test_redis_calls_are_timed_and_failures_counted() -> None:
    metrics = Metrics("r", "0")
    metrics.observe_redis("evalsha", 0.002, True)
    metrics.observe_redis("evalsha", 1.0, False)
    assert (
        metrics.registry.get_sample_value(
            "redis_command_duration_seconds_count", {"command": "evalsha"}
        )
        == 2
    )
    assert (
        metrics.registry.get_sample_value("redis_command_errors_total", {"command": "evalsha"}) == 1
    )
