"""Prometheus metrics of one replica: RED per route, Redis calls, visits, build info, and the
process's own resources (memory, CPU, file descriptors, garbage collection)."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder

from service.counter import REDIS_OPERATIONS

HTTP_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"))
# Latencies seen here run from under a millisecond (Redis on the same host) to
# the 1 s Redis timeout; the top bucket catches anything past it.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
# The latency SLO's threshold (docs/SLO.md), one of the buckets so that the share under it
# is counted, not interpolated; a request slower than this keeps its trace (tracing.py).
LATENCY_SLO_SECONDS = 0.5


class Metrics:
    def __init__(self, replica_id: str, version: str) -> None:
        # One process per container, so a plain registry per app: no multiprocess
        # mode, and tests can build as many apps as they like side by side.
        self.registry = CollectorRegistry(auto_describe=True)
        # prometheus-client's standard collectors register on its global registry, which
        # this app does not expose: these put RSS, CPU seconds, open fds and GC per
        # replica on its own /metrics.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        # A plain int the middleware adds to and takes from; read at scrape time.
        self.in_flight = 0
        Gauge(
            "http_requests_in_flight",
            "HTTP requests being answered right now.",
            registry=self.registry,
        ).set_function(lambda: self.in_flight)
        self.redis_duration = Histogram(
            "redis_command_duration_seconds",
            "Time of a call to Redis (one round trip), by command.",
            ["command"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.redis_errors = Counter(
            "redis_command_errors",
            "Calls to Redis that failed or timed out, by command.",
            ["command"],
            registry=self.registry,
        )
        # Series exist (at 0) before the first error, so dashboards and rules see them;
        # the children are made once here, not per call on the hot path.
        self._redis_children = {
            command: (self.redis_duration.labels(command), self.redis_errors.labels(command))
            for command in REDIS_OPERATIONS
        }
        self.visits = Counter(
            "tally_visits",
            "Visits this replica counted (a replayed request id is not a new visit).",
            registry=self.registry,
        )
        # Liveness probes (GET /healthz), apart from the requests: Docker sends one per
        # replica every few seconds, and they would skew the request rate and latency.
        self.health_probes = Counter(
            "tally_health_probes",
            "Liveness probes (GET /healthz) answered, by status code.",
            ["status"],
            registry=self.registry,
        )
        self._probe_children: dict[int, Any] = {}
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        Info("tally_build", "Version and replica id of this process.", registry=self.registry).info(
            {"version": version, "replica": replica_id}
        )

    def observe_request(
        self,
        method: str,
        route: str,
        status: int,
        seconds: float,
        exemplar: dict[str, str] | None,
    ) -> None:
        """One answered request. A method outside HTTP's own is labelled "other":
        anyone can send any token as a method, and labels must stay bounded."""
        key = (method if method in HTTP_METHODS else "other", route, status)
        children = self._request_children.get(key)
        if children is None:  # labels() per request costs more than the observation
            children = self.requests.labels(*key), self.duration.labels(*key[:2])
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds, exemplar)

    def observe_probe(self, status: int) -> None:
        child = self._probe_children.get(status)
        if child is None:
            child = self._probe_children[status] = self.health_probes.labels(status)
        child.inc()

    def observe_redis(self, command: str, seconds: float, ok: bool) -> None:
        duration, errors = self._redis_children[command]
        duration.observe(seconds)
        if not ok:
            errors.inc()

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The registry rendered for this Accept header: OpenMetrics (with exemplars) when asked."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
