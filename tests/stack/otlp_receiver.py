"""A test double for Tempo: an OTLP/HTTP trace receiver that prints each span as a JSON line
(or, with --discard, the benchmark's sink that accepts and forgets).

Runs in the app image (which carries opentelemetry-proto) on the compose network,
under the network alias `tempo`; the tests read its output with `docker logs`.
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue


def attribute_values(attributes: Iterable[KeyValue]) -> dict[str, object]:
    values: dict[str, object] = {}
    for attribute in attributes:
        kind = attribute.value.WhichOneof("value")
        if kind == "array_value":
            values[attribute.key] = [
                getattr(item, item.WhichOneof("value") or "string_value")
                for item in attribute.value.array_value.values
            ]
        else:
            values[attribute.key] = getattr(attribute.value, kind) if kind else None
    return values


class Receiver(BaseHTTPRequestHandler):
    # Keeps the exporter's connection open between batches, as Tempo does; HTTP/1.0
    # would make every export a new connection and a DNS lookup of `tempo`.
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if DISCARD:  # the benchmark's sink: accept and forget, as cheaply as possible
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resource = attribute_values(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    line = {
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "name": span.name,
                        "kind": span.kind,
                        "resource": resource,
                        "attributes": attribute_values(span.attributes),
                        "status_code": span.status.code,  # 0 unset, 1 ok, 2 error
                        "events": [
                            {"name": event.name, "attributes": attribute_values(event.attributes)}
                            for event in span.events
                        ],
                    }
                    # One write under the lock: print's text and its newline are two
                    # writes, and the replicas' exports arrive on threads side by side.
                    with OUTPUT:
                        sys.stdout.write(json.dumps(line) + "\n")
                        sys.stdout.flush()
        payload = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(format % args + "\n")


DISCARD = "--discard" in sys.argv
OUTPUT = threading.Lock()

if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", 4318), Receiver).serve_forever()  # noqa: S104
