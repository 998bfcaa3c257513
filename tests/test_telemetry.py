"""OpenTelemetry: aiohttp's instrumentation and our own spans, with the real packages.

The conftest sets up the OpenTelemetry SDK with an in-memory exporter for the
session; each test reads the spans its purchases made against the sandbox on
127.0.0.1. Our spans are `sendblue_lines.provision` (one per purchase) and
`sendblue_lines.confirm` (one per confirm), with the slot, the attempt, the
outcome and the token's fingerprint, never the token. Without OpenTelemetry
the SDK must not import it and must still buy: a child interpreter that
cannot import it proves that.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from foundation_support import OutrunFirst
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from sendblue_lines import (
    LinesClient,
    NoCardOnFileError,
    OutcomeUnknownError,
    Provisioner,
    ProvisioningFailedError,
    RetryPolicy,
)
from sendblue_lines._telemetry import fingerprint
from sendblue_lines.sandbox import Fault, Sandbox

NO_WAIT = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)
PATHS = (
    "/accounts/limits",
    "/accounts/lines/provision-preview",
    "/accounts/lines/provision-confirm",
)


def connect(sandbox: Sandbox[Any], **options: Any) -> LinesClient:
    options.setdefault("retry", NO_WAIT)
    return LinesClient(
        sandbox.api_key_id, sandbox.api_secret_key, base_url=sandbox.url, **options
    )


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def url_of(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    return str(attributes.get("url.full") or attributes.get("http.url") or "")


def client_spans(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    return [span for span in spans if span.kind is SpanKind.CLIENT]


def parent_of(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> ReadableSpan:
    assert span.parent is not None, f"{span.name} has no parent"
    [parent] = [s for s in spans if s.context.span_id == span.parent.span_id]
    return parent


def check_purchase_traced(spans: Sequence[ReadableSpan], sandbox: Sandbox[Any]) -> None:
    """The instrumentation saw limits, preview and confirm, under our spans."""
    seen = client_spans(spans)
    for path in PATHS:
        assert [s for s in seen if url_of(s).endswith(path)], f"no span for {path}"
    [confirm_http] = [s for s in seen if url_of(s).endswith(PATHS[2])]
    assert (confirm_http.attributes or {}).get("http.response.status_code", 200) == 200
    confirm = parent_of(confirm_http, spans)
    assert confirm.name == "sendblue_lines.confirm"
    assert parent_of(confirm, spans).name == "sendblue_lines.provision"
    for span in seen:
        assert url_of(span).startswith(sandbox.url)


async def test_trace_configs_on_the_sdk_session_see_every_request(
    sendblue_sandbox: Sandbox[Any], otel_spans: InMemorySpanExporter
) -> None:
    """trace_configs= reaches the SDK's session: limits, preview, confirm traced."""
    async with connect(sendblue_sandbox, trace_configs=[create_trace_config()]) as c:
        await Provisioner(c).provision()
    check_purchase_traced(otel_spans.get_finished_spans(), sendblue_sandbox)


async def test_a_callers_instrumented_session_sees_every_request(
    sendblue_sandbox: Sandbox[Any], otel_spans: InMemorySpanExporter
) -> None:
    """A caller's session with the instrumentation traces the same three calls."""
    session = aiohttp.ClientSession(trace_configs=[create_trace_config()])
    async with session, connect(sendblue_sandbox, session=session) as client:
        await Provisioner(client).provision()
    check_purchase_traced(otel_spans.get_finished_spans(), sendblue_sandbox)


async def test_without_trace_configs_no_http_span_is_made(
    sendblue_sandbox: Sandbox[Any], otel_spans: InMemorySpanExporter
) -> None:
    """The instrumentation's spans come from trace_configs=, not from nowhere."""
    async with connect(sendblue_sandbox) as client:
        await Provisioner(client).provision()
    spans = otel_spans.get_finished_spans()
    assert client_spans(spans) == []
    assert len(named(spans, "sendblue_lines.provision")) == 1


async def test_a_bought_line_has_its_spans_and_attributes(
    sendblue_sandbox: Sandbox[Any], otel_spans: InMemorySpanExporter
) -> None:
    """One provision and one confirm span: slot 0, attempt 1, bought, fingerprint."""
    async with connect(sendblue_sandbox) as client:
        await Provisioner(client).provision()
    [charge] = sendblue_sandbox.ledger
    spans = otel_spans.get_finished_spans()
    [provision] = named(spans, "sendblue_lines.provision")
    [confirm] = named(spans, "sendblue_lines.confirm")
    expected = {
        "sendblue_lines.slot": 0,
        "sendblue_lines.attempt": 1,
        "sendblue_lines.outcome": "bought",
        "sendblue_lines.token_fp": fingerprint(charge.preview_token),
    }
    for span in (provision, confirm):
        assert dict(span.attributes or {}) == expected
        assert span.status.status_code is StatusCode.UNSET
        assert charge.preview_token not in span.to_json()
    assert confirm.parent is not None
    assert confirm.parent.span_id == provision.context.span_id


def test_the_fingerprint_is_a_hash_not_the_token() -> None:
    """16 hex digits of SHA-256: stable, distinct per token, without the token."""
    token = "lpv_" + "a" * 40
    assert fingerprint(token) == fingerprint(token)
    assert fingerprint(token) != fingerprint(token + "b")
    assert len(fingerprint(token)) == 16
    int(fingerprint(token), 16)
    assert "lpv_" not in fingerprint(token)


NO_CARD = {"status": "ERROR", "error": "no_card_on_file", "message": "No card"}


@pytest.mark.parametrize(
    ("fault", "error", "outcome"),
    [
        pytest.param(
            Fault.respond(402, NO_CARD), NoCardOnFileError, "not_bought", id="not"
        ),
        pytest.param(
            Fault.provisioning_failed(),
            ProvisioningFailedError,
            "provisioning_failed",
            id="failed",
        ),
        pytest.param(
            Fault.drop_after_commit(), OutcomeUnknownError, "unknown", id="unknown"
        ),
    ],
)
async def test_each_outcome_is_on_both_spans(
    sendblue_sandbox: Sandbox[Any],
    otel_spans: InMemorySpanExporter,
    fault: Fault,
    error: type[Exception],
    outcome: str,
) -> None:
    """not_bought, provisioning_failed, unknown: outcome, error type, ERROR status."""
    sendblue_sandbox.inject("confirm", fault)
    async with connect(sendblue_sandbox) as client:
        with pytest.raises(error) as caught:
            await Provisioner(client).provision()
    spans = otel_spans.get_finished_spans()
    [provision] = named(spans, "sendblue_lines.provision")
    [confirm] = named(spans, "sendblue_lines.confirm")
    for span in (provision, confirm):
        attributes = span.attributes or {}
        assert attributes["sendblue_lines.outcome"] == outcome
        assert attributes["sendblue_lines.error"] == error.__name__
        assert span.status.status_code is StatusCode.ERROR
        assert [e.name for e in span.events] == ["exception"]
    if isinstance(caught.value, OutcomeUnknownError):
        token = caught.value.preview_token
        assert confirm.attributes is not None
        assert confirm.attributes["sendblue_lines.token_fp"] == fingerprint(token)
        assert token not in confirm.to_json()


async def test_a_repreview_is_the_next_attempt_of_the_same_purchase(
    outrun_first: OutrunFirst,
    sendblue_sandbox: Sandbox[Any],
    otel_spans: InMemorySpanExporter,
) -> None:
    """A 410 then a new token: one provision span (attempt 2), two confirm spans."""
    async with connect(sendblue_sandbox) as client:
        await Provisioner(client, approve=outrun_first).provision()
    spans = otel_spans.get_finished_spans()
    [provision] = named(spans, "sendblue_lines.provision")
    first, second = sorted(
        named(spans, "sendblue_lines.confirm"), key=lambda s: s.start_time or 0
    )
    assert provision.attributes is not None
    assert provision.attributes["sendblue_lines.attempt"] == 2
    assert provision.attributes["sendblue_lines.outcome"] == "bought"
    assert provision.attributes["sendblue_lines.token_fp"] == fingerprint(
        outrun_first.asked[1]
    )
    assert first.attributes is not None
    assert second.attributes is not None
    assert (
        first.attributes["sendblue_lines.attempt"],
        first.attributes["sendblue_lines.outcome"],
    ) == (1, "not_bought")
    assert first.attributes["sendblue_lines.token_fp"] == fingerprint(
        outrun_first.asked[0]
    )
    assert (
        second.attributes["sendblue_lines.attempt"],
        second.attributes["sendblue_lines.outcome"],
    ) == (2, "bought")


async def test_a_batch_makes_one_span_per_slot(
    sendblue_sandbox: Sandbox[Any], otel_spans: InMemorySpanExporter
) -> None:
    """provision_many(3) within the daily limit: slots 0, 1, 2, each bought."""
    async with connect(sendblue_sandbox) as client:
        result = await Provisioner(client).provision_many(3, concurrency=2)
    assert len(result.lines) == 3
    spans = otel_spans.get_finished_spans()
    provisions = named(spans, "sendblue_lines.provision")
    slots = sorted(
        (s.attributes or {}).get("sendblue_lines.slot", -1) for s in provisions
    )
    assert slots == [0, 1, 2]
    fingerprints = {fingerprint(c.preview_token) for c in sendblue_sandbox.ledger}
    for span in named(spans, "sendblue_lines.confirm"):
        assert span.parent is not None
        [owner] = [p for p in provisions if p.context.span_id == span.parent.span_id]
        assert owner.attributes is not None
        assert span.attributes is not None
        assert (
            span.attributes["sendblue_lines.slot"]
            == owner.attributes["sendblue_lines.slot"]
        )
        assert span.attributes["sendblue_lines.token_fp"] in fingerprints


# -- without OpenTelemetry ---------------------------------------------------------

WITHOUT_OTEL = textwrap.dedent(
    """
    import asyncio
    import importlib.abc
    import json
    import sys


    class NoOpenTelemetry(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None


    sys.meta_path.insert(0, NoOpenTelemetry())

    from sendblue_lines import LinesClient, Provisioner
    from sendblue_lines.sandbox import Sandbox


    async def main():
        try:
            import opentelemetry  # noqa: F401
        except ModuleNotFoundError:
            blocked = True
        else:
            blocked = False
        async with Sandbox() as sandbox:
            async with LinesClient(
                sandbox.api_key_id, sandbox.api_secret_key, base_url=sandbox.url
            ) as client:
                line = await Provisioner(client).provision()
            charged = len(sandbox.ledger)
        loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        print(json.dumps({
            "blocked": blocked, "bought": line.phone_number, "charged": charged,
            "loaded": loaded,
        }))


    asyncio.run(main())
    """
)


def test_without_opentelemetry_a_purchase_works_and_imports_nothing(
    tmp_path: Path,
) -> None:
    """OpenTelemetry unimportable: the sandbox purchase works, no module loaded."""
    import json

    script = tmp_path / "without_otel.py"
    script.write_text(WITHOUT_OTEL)
    done = subprocess.run(  # noqa: S603 - our interpreter, our script
        [sys.executable, str(script)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["blocked"] is True
    assert result["bought"].startswith("+1")
    assert result["charged"] == 1
    assert result["loaded"] == []
