"""A local stand-in for a Langfuse server: it keeps every request the SDK sends, as sent.

The SDK (v3 and later) exports OTLP over HTTP: protobuf `ExportTraceServiceRequest` bodies
(gzip or not) POSTed to `/api/public/otel/v1/traces` with Basic auth (public key, secret key).
Spans are decoded here with opentelemetry-proto, the schema the exporter encodes with.
"""

from __future__ import annotations

import base64
import gzip
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

OTLP_PATH = "/api/public/otel/v1/traces"


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes  # decompressed


def _value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


class FakeLangfuse:
    def __init__(self):
        self.received: list[Received] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                if headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                server.received.append(Received(self.path, headers, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST  # noqa: N815

            def log_message(self, *args):
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def __enter__(self) -> FakeLangfuse:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._http.shutdown()
        self._http.server_close()

    def basic_auth(self) -> set[tuple[str, str]]:
        """The (public key, secret key) pairs the exports were authenticated with."""
        pairs = set()
        for r in self.received:
            scheme, _, token = r.headers.get("authorization", "").partition(" ")
            if scheme == "Basic":
                pairs.add(tuple(base64.b64decode(token).decode().split(":", 1)))
        return pairs

    def spans(self) -> list[dict]:
        """Every span received on the OTLP path: names, ids, times (ns) and attributes."""
        spans = []
        for r in self.received:
            if r.path != OTLP_PATH:
                continue
            request = ExportTraceServiceRequest.FromString(r.body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    for s in scope.spans:
                        spans.append(
                            {
                                "name": s.name,
                                "scope": scope.scope.name,
                                "trace_id": s.trace_id.hex(),
                                "span_id": s.span_id.hex(),
                                "parent_id": s.parent_span_id.hex(),
                                "start_ns": s.start_time_unix_nano,
                                "end_ns": s.end_time_unix_nano,
                                "attributes": {a.key: _value(a.value) for a in s.attributes},
                            }
                        )
        return spans
