"""Liveness probes (GET /healthz): the contract's headers and their own counter, no access
line, no request series."""

from __future__ import annotations

import io
import json
from typing import Any

from quart.typing import TestClientProtocol as Client

from tests.serving import scrape


def access_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [record for record in records if record.get("event") == "request"]


async def test_probes_are_counted_by_status_and_kept_out_of_the_request_metrics(
    client: Client,
) -> None:
    for _ in range(3):
        assert (await client.get("/healthz")).status_code == 200
    await client.head("/healthz")
    await client.get("/count")
    samples = await scrape(client)
    assert samples[("tally_health_probes_total", (("status", "200"),))] == 4
    assert not any(dict(labels).get("route") == "/healthz" for _, labels in samples)
    count = (("method", "GET"), ("route", "/count"), ("status", "200"))
    assert samples[("http_requests_total", count)] == 1


async def test_probes_write_no_access_line(client: Client, stream: io.StringIO) -> None:
    await client.get("/healthz")
    await client.get("/count")
    await client.get("/healthz")
    assert [line["route"] for line in access_lines(stream)] == ["/count"]


async def test_probes_carry_the_replica_and_request_id_headers(client: Client) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "probe-1"})
    assert response.headers["X-Served-By"] == "replica-1"
    assert response.headers["X-Request-ID"] == "probe-1"
    generated = await client.get("/healthz")
    assert len(generated.headers["X-Request-ID"]) == 32


async def test_another_method_on_the_probe_path_is_an_ordinary_request(
    client: Client, stream: io.StringIO
) -> None:
    assert (await client.post("/healthz")).status_code == 405
    samples = await scrape(client)
    refused = (("method", "POST"), ("route", "/healthz"), ("status", "405"))
    assert samples[("http_requests_total", refused)] == 1
    assert not any(name == "tally_health_probes_total" for name, _ in samples)
    assert [line["status"] for line in access_lines(stream)] == [405, 200]
