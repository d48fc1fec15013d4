"""Traces through the stack: nginx -> replicas -> OTLP, tied to the replicas' JSON logs."""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx

from tests.compose_stack import Stack
from tests.support import run, wait_until

SERVER = 2  # OTLP SpanKind SPAN_KIND_SERVER


def server_spans_for(stack: Stack, request_ids: set[str]) -> list[dict[str, Any]]:
    return [
        span
        for span in stack.received_spans()
        if span["kind"] == SERVER
        and set(span["attributes"].get("http.request.header.x-request-id", [])) & request_ids
    ]


def test_every_request_gives_a_server_span_tied_to_its_log_line(stack: Stack) -> None:
    with httpx.Client() as client:
        responses = [client.get(f"{stack.url}/count") for _ in range(30)]
    request_ids = {response.headers["X-Request-ID"] for response in responses}
    assert len(request_ids) == 30

    # The batch processor exports every few seconds.
    def thirty_spans() -> list[dict[str, Any]] | None:
        found = server_spans_for(stack, request_ids)
        return found if len(found) >= 30 else None

    spans = wait_until(thirty_spans, 30, "30 server spans at the OTLP receiver")
    assert len(spans) == 30
    assert {span["name"] for span in spans} == {"GET /count"}
    replicas = {span["resource"]["service.instance.id"] for span in spans}
    assert len(replicas) >= 2
    assert {span["resource"]["service.name"] for span in spans} == {"tally"}

    logged = {}
    for line in stack.app_log_lines():
        record = json.loads(line)  # every line a replica writes is JSON
        if record.get("event") == "request" and record.get("request_id") in request_ids:
            logged[record["request_id"]] = record
    for span in spans:
        [request_id] = span["attributes"]["http.request.header.x-request-id"]
        assert logged[request_id]["trace_id"] == span["trace_id"]
        assert logged[request_id]["span_id"] == span["span_id"]
        assert logged[request_id]["replica"] == span["resource"]["service.instance.id"]


def test_a_callers_traceparent_keeps_its_trace_id_end_to_end(stack: Stack) -> None:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    response = httpx.get(
        f"{stack.url}/count", headers={"traceparent": f"00-{trace_id}-{parent_id}-01"}
    )
    assert response.status_code == 200
    request_id = response.headers["X-Request-ID"]
    [span] = wait_until(
        lambda: server_spans_for(stack, {request_id}), 30, "the span of the traced request"
    )
    assert span["trace_id"] == trace_id
    assert span["parent_span_id"] == parent_id
    children = wait_until(
        lambda: [s for s in stack.received_spans() if s["parent_span_id"] == span["span_id"]],
        30,
        "the Redis child span",
    )
    assert [child["name"] for child in children] == ["EVALSHA"]
    assert children[0]["trace_id"] == trace_id


def traced_request(stack: Stack) -> str:
    """A /count in a sampled trace of the caller's; returns its request id."""
    traceparent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    response = httpx.get(f"{stack.url}/count", headers={"traceparent": traceparent})
    assert response.status_code == 200
    return response.headers["X-Request-ID"]


def logged_events(stack: Stack, event: str) -> list[dict[str, Any]]:
    records = (json.loads(line) for line in stack.app_log_lines())
    return [record for record in records if record.get("event") == event]


def test_traces_flow_once_tempo_is_up_however_late_it_starts(stack: Stack) -> None:
    # As when the core stack runs first and the observability profile is added later:
    # Tempo's name does not resolve while the replicas serve, then it does.
    run("docker", "stop", stack.receiver)
    try:
        wait_until(
            lambda: traced_request(stack) and logged_events(stack, "traces_undelivered"),
            60,
            "a replica to say its spans are not delivered",
            0.5,
        )
    finally:
        run("docker", "start", stack.receiver)
    # Spans leave in batches: keep sending, and look for any of the requests sent so far.
    sent: set[str] = set()

    def delivered() -> list[dict[str, Any]]:
        sent.add(traced_request(stack))
        return server_spans_for(stack, sent)

    wait_until(delivered, 60, "a traced request's span to reach Tempo once it is up", 0.5)
    assert logged_events(stack, "traces_delivered")
