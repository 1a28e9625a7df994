"""The Langfuse sink for serve_app/tracing.py, imported only when tracing is configured.

The SDK (v3 and later) exports OpenTelemetry spans to `{host}/api/public/otel/v1/traces`. Its
`start_observation` always starts a span now; a turn's spans are placed afterwards from the
turn's metrics, so they are started on our own tracer (same provider, hence the same exporter)
with their real start times and wrapped in the SDK's observation types, which set the Langfuse
attributes (type, input/output, model, usage) through the client's `mask`.

Making a span in the SDK costs a fraction of a millisecond of CPU (benchmarks/tracing_overhead.py),
so the spans are made on one worker thread of the sink, in order, never on the call's event loop.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

from langfuse import Langfuse, LangfuseGeneration, LangfuseSpan, LangfuseTool
from opentelemetry import trace as otel
from opentelemetry.sdk.trace import TracerProvider

from serve_app.tracing import SpanNode, mask_value

SCOPE = "voice_agent"
# Trace-level attributes Langfuse reads from any span of the trace.
SESSION_ID, USER_ID, TRACE_NAME = "session.id", "user.id", "langfuse.trace.name"
log = logging.getLogger(__name__)
WRAPPERS = {"span": LangfuseSpan, "generation": LangfuseGeneration, "tool": LangfuseTool}


class LangfuseSink:
    def __init__(self, public_key: str, secret_key: str, host: str):
        provider = TracerProvider()
        self._client = Langfuse(
            public_key=public_key,
            secret_key=secret_key,
            base_url=host,
            tracer_provider=provider,
            mask=lambda *, data, **_: mask_value(data),
            should_export_span=lambda span: span.instrumentation_scope.name == SCOPE,
        )
        self._tracer = provider.get_tracer(SCOPE)
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="langfuse-spans")

    def start_call(self, session_id: str, user: str, start_ns: int) -> Future:
        attrs = {SESSION_ID: session_id, USER_ID: user, TRACE_NAME: "call"}
        return self._worker.submit(self._root, SpanNode("call", "span", start_ns, start_ns), attrs)

    def turn(self, call: Future, node: SpanNode) -> None:
        self._worker.submit(self._logged, self._turn, call, node)

    def end_call(self, call: Future, reason: str, end_ns: int) -> None:
        self._worker.submit(self._logged, self._end, call, reason, end_ns)

    def flush(self) -> None:
        """Blocks until every span submitted so far is made and exported."""
        self._worker.submit(lambda: None).result()
        self._client.flush()

    # --- on the worker thread ----------------------------------------------

    @staticmethod
    def _logged(work, *args) -> None:
        try:
            work(*args)
        except Exception as exc:  # a span lost costs the call nothing
            log.warning("trace spans not made: %r", exc)

    def _root(self, node: SpanNode, attrs: dict):
        span, root = self._start(node, None, attrs)
        return span, root, attrs

    def _turn(self, call: Future, node: SpanNode) -> None:
        parent, _, attrs = call.result()
        self._emit(node, parent, attrs)

    def _end(self, call: Future, reason: str, end_ns: int) -> None:
        _, root, _ = call.result()
        root.update(output={"end_reason": reason})
        root.end(end_time=end_ns)

    def _emit(self, node: SpanNode, parent, attrs: dict) -> None:
        span, observation = self._start(node, parent, attrs)
        for child in node.children:
            self._emit(child, span, attrs)
        observation.end(end_time=node.end_ns)

    def _start(self, node: SpanNode, parent, trace_attrs: dict):
        context = otel.set_span_in_context(parent) if parent is not None else None
        span = self._tracer.start_span(node.name, context=context, start_time=node.start_ns, attributes=trace_attrs)
        attrs = dict(node.attributes)
        fields = {"input": attrs.pop("input", None), "output": attrs.pop("output", None), "metadata": attrs}
        if node.kind == "generation":
            fields |= {"model": node.model, "usage_details": node.usage}
            if node.first_output_ns is not None:
                fields["completion_start_time"] = datetime.fromtimestamp(node.first_output_ns / 1e9, UTC)
        return span, WRAPPERS[node.kind](otel_span=span, langfuse_client=self._client, **fields)
