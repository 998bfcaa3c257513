"""One purchase against the local sandbox, seen as a trace and as JSON log lines.

Run it with `python examples/observability.py` (it needs
`opentelemetry-sdk` and `opentelemetry-instrumentation-aiohttp-client`). It
sets up OpenTelemetry's SDK with an in-memory exporter, gives the client
OpenTelemetry's aiohttp `TraceConfig`, logs the SDK's records as JSON with
their `sendblue_` keys, buys one line from a sandbox on 127.0.0.1, then
prints the trace as a tree. Nothing leaves this machine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import TextIO

from opentelemetry import trace
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from sendblue_lines import LinesClient, Provisioner
from sendblue_lines.sandbox import Sandbox


class SendblueJson(logging.Formatter):
    """The record's logger, level, message and every `sendblue_` key, as JSON."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as one line of JSON."""
        data = {"logger": record.name, "level": record.levelname}
        data["message"] = record.getMessage()
        data.update(
            (key, value)
            for key, value in vars(record).items()
            if key.startswith("sendblue_")
        )
        return json.dumps(data)


def print_tree(spans: tuple[ReadableSpan, ...], out: TextIO) -> None:
    """Each span under its parent: name, then its attributes."""
    children: dict[int | None, list[ReadableSpan]] = {}
    ids = {span.context.span_id for span in spans}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in ids else None, []).append(span)

    def show(span: ReadableSpan, depth: int) -> None:
        attributes = dict(span.attributes or {})
        shown = ", ".join(f"{key}={value!r}" for key, value in attributes.items())
        print(f"{'  ' * depth}{span.name} [{span.kind.name}] {shown}", file=out)
        for child in children.get(span.context.span_id, []):
            show(child, depth + 1)

    for root in children.get(None, []):
        show(root, 0)


async def main(out: TextIO = sys.stdout) -> None:
    """Buy one line from a fresh sandbox; print the log lines, then the trace."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    handler = logging.StreamHandler(out)
    handler.setFormatter(SendblueJson())
    logger = logging.getLogger("sendblue_lines")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)

    async with (
        Sandbox() as sandbox,
        LinesClient(
            sandbox.api_key_id,
            sandbox.api_secret_key,
            base_url=sandbox.url,
            trace_configs=[create_trace_config()],
        ) as client,
    ):
        line = await Provisioner(client).provision()
    logger.removeHandler(handler)
    print(f"\nbought {line.phone_number}\n", file=out)
    print_tree(exporter.get_finished_spans(), out)


if __name__ == "__main__":
    asyncio.run(main())
