"""A hostile server, end to end through the Provisioner, and what it costs confirm.

tests/test_transport.py checks each hostile answer at the transport; here the
same answers come through `Provisioner.provision()` against the sandbox: the
caller gets a typed error (or the purchase goes on, where the rules say so)
within the timeout, the ledger invariants hold, nothing follows a redirect
(a second server standing for the other origin must receive nothing), and the
same client then buys a line as usual.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from aiohttp import web
from reliability_support import (
    Recorder,
    check_error,
    check_ledger,
    connect,
    kind,
    provision_once,
)

from sendblue_lines import (
    ConfigurationError,
    LinesClient,
    Provisioner,
)
from sendblue_lines.sandbox import Fault, ManualClock, Sandbox

PATHS = {
    "limits": "/accounts/limits",
    "preview": "/accounts/lines/provision-preview",
    "confirm": "/accounts/lines/provision-confirm",
}
MIB = 1024 * 1024


class OtherOrigin:
    """A second server on 127.0.0.1 that records every request it gets.

    Hand-written, not a second sandbox: it must record any path and method,
    with its headers, and the sandbox keeps only counts.
    """

    def __init__(self) -> None:
        self.hits: list[tuple[str, str, dict[str, str]]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> OtherOrigin:
        async def record(request: web.Request) -> web.Response:
            self.hits.append((request.method, request.path, dict(request.headers)))
            return web.json_response({"status": "OK"})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def other_origin() -> AsyncIterator[OtherOrigin]:
    async with OtherOrigin() as server:
        yield server


async def provision_then_again(
    sandbox: Sandbox[ManualClock], secret_canary: Any, client: LinesClient
) -> tuple[str, Recorder]:
    """provision() under the queued faults, then once more with none: still usable."""
    recorder = Recorder()
    got = await provision_once(client, recorder, secret_canary.secrets)
    sandbox.faults.clear()
    again = Recorder()
    with anyio.fail_after(15):
        line = await Provisioner(client, **again.callbacks()).provision()
    assert line.phone_number
    return got, recorder


def check_money(sandbox: Sandbox[ManualClock], recorder: Recorder) -> dict[str, int]:
    """The ledger invariants over the hostile purchase (the second one bought)."""
    first = {token for tokens in recorder.tokens.values() for token in tokens}
    charges = [c for c in sandbox.ledger if c.preview_token in first]
    return check_ledger(charges, recorder)


# -- redirects ------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("origin", ["same", "other"])
@pytest.mark.parametrize("step", ["limits", "preview", "confirm"])
async def test_a_redirect_is_never_followed(
    sandbox: Sandbox[ManualClock],
    other_origin: OtherOrigin,
    secret_canary: Any,
    status: int,
    origin: str,
    step: str,
) -> None:
    """A 3xx to either origin: a typed error (or a safe resend for confirm), no hop."""
    base = sandbox.url if origin == "same" else other_origin.url
    # Same origin points at the very endpoint: following it would show as one
    # more request there (or a 405 for a POST turned GET).
    sandbox.inject(step, Fault.redirect(base + PATHS[step], status))  # type: ignore[arg-type]
    async with connect(sandbox) as client:
        got, recorder = await provision_then_again(sandbox, secret_canary, client)
    # Limits and preview refuse a redirect (it is never transient); confirm
    # resends the same token, since a redirect may follow a purchase.
    assert got == ("line" if step == "confirm" else "ServerError")
    counts = check_money(sandbox, recorder)
    assert counts["charges"] == (1 if step == "confirm" else 0)
    assert other_origin.hits == []
    assert sandbox.counters["other"].requests == 0
    # The hostile purchase's requests (the confirm is resent once), then the
    # next purchase's one of each: not one more.
    first = {
        "limits": {"limits": 1, "preview": 0, "confirm": 0},
        "preview": {"limits": 1, "preview": 1, "confirm": 0},
        "confirm": {"limits": 1, "preview": 1, "confirm": 2},
    }[step]
    expected = {endpoint: sent + 1 for endpoint, sent in first.items()}
    assert {e: sandbox.counters[e].requests for e in PATHS} == expected


# -- bodies -----------------------------------------------------------------------


def chunked_oversized(after_commit: bool) -> Fault:
    """200 with 2 MiB of JSON-looking bytes, chunked: no Content-Length to refuse."""

    async def reply(context: Any) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        await response.prepare(context.request)
        try:
            await response.write(b'{"status": "OK", "padding": "')
            for _ in range(32):
                await response.write(b"x" * (64 * 1024))
            await response.write(b'"}')
            await response.write_eof()
        except ConnectionError:
            pass  # the client stopped reading at its cap, as it should
        return response

    return Fault(kind="chunked_oversized", after_commit=after_commit, reply=reply)


def deep_inside_an_object(depth: int) -> bytes:
    return (
        b'{"status": "OK", "preview_token": "lpv_x", "expires_at": '
        b'"2030-01-01T00:00:00.000Z", "message": "m", "extra": '
        + b"[" * depth
        + b"]" * depth
        + b"}"
    )


def relabelled(content_type: str) -> Fault:
    """The sandbox's real answer, JSON, under another content type."""

    async def reply(context: Any) -> web.StreamResponse:
        return web.Response(
            status=200,
            body=json.dumps(context.body).encode(),
            content_type=content_type,
        )

    return Fault(kind="relabelled", after_commit=True, reply=reply)


def gzip_bomb(after_commit: bool) -> Fault:
    """20 KiB of gzip that inflates to 20 MiB: the cap counts what comes out."""
    body = gzip.compress(b'{"status": "OK", "p": "' + b"0" * (20 * MIB) + b'"}')

    async def reply(context: Any) -> web.StreamResponse:
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        return web.Response(status=200, body=body, headers=headers)

    return Fault(kind="gzip_bomb", after_commit=after_commit, reply=reply)


PREVIEW_JSON = (
    b'{"status": "OK", "preview_token": "lpv_hostile", "expires_at": '
    b'"2030-01-01T00:00:00.000Z", "message": "m"}'
)

BODIES = [
    # name, step, fault, what provision() gives, charges
    ("declared-over-1MiB", "preview", Fault.oversized(2 * MIB), "MalformedResponseError", 0),  # noqa: E501
    ("chunked-over-1MiB", "preview", chunked_oversized(False), "MalformedResponseError", 0),  # noqa: E501
    ("chunked-over-1MiB", "confirm", chunked_oversized(False), "OutcomeUnknownError", 0),  # noqa: E501
    ("chunked-over-1MiB-after-commit", "confirm", chunked_oversized(True), "OutcomeUnknownError", 1),  # noqa: E501
    ("gzip-bomb", "preview", gzip_bomb(False), "MalformedResponseError", 0),
    ("gzip-bomb-after-commit", "confirm", gzip_bomb(True), "OutcomeUnknownError", 1),
    ("non-utf8", "preview", Fault.raw(200, b'{"status": "OK", "m": "\xc3\x28"}'), "MalformedResponseError", 0),  # noqa: E501
    ("latin-1-declared", "preview", Fault.raw(200, b'{"message": "caf\xe9"}', "application/json; charset=latin-1"), "MalformedResponseError", 0),  # noqa: E501
    ("non-utf8-error-body", "preview", Fault.raw(401, b"\xff\xfe denied"), "AuthenticationError", 0),  # noqa: E501
    ("nested-10000", "preview", Fault.raw(200, b"[" * 10_000 + b"]" * 10_000), "MalformedResponseError", 0),  # noqa: E501
    ("nested-10000-in-a-field", "preview", Fault.raw(200, deep_inside_an_object(10_000)), "MalformedResponseError", 0),  # noqa: E501
    ("nested-10000-error-body", "preview", Fault.raw(403, b"[" * 10_000 + b"]" * 10_000), "PermissionDeniedError", 0),  # noqa: E501
    ("nested-10000-after-commit", "confirm", Fault.raw(200, b"[" * 10_000 + b"]" * 10_000, after_commit=True), "OutcomeUnknownError", 1),  # noqa: E501
    # The content type is not trusted either way: the body decides.
    ("json-labelled-html", "preview", relabelled("text/html"), "line", 1),
    ("json-labelled-octet-stream", "preview", relabelled("application/octet-stream"), "line", 1),  # noqa: E501
    ("json-labelled-text", "confirm", relabelled("text/plain"), "line", 1),
    ("html-labelled-json", "preview", Fault.raw(200, b"<html>hi</html>", "application/json"), "MalformedResponseError", 0),  # noqa: E501
    ("error-json-labelled-text", "preview", Fault.raw(402, b'{"status": "ERROR", "error": "no_card_on_file", "message": "no"}', "text/plain"), "NoCardOnFileError", 0),  # noqa: E501
    ("html-labelled-json", "confirm", Fault.raw(200, b"<html>hi</html>", "application/json", after_commit=True), "OutcomeUnknownError", 1),  # noqa: E501
    # A body that drips in past the total timeout, every try: bounded.
    ("drip-past-timeout", "preview", Fault.drip(PREVIEW_JSON, chunk_size=2, interval=0.1), "TransportError", 0),  # noqa: E501
]  # fmt: skip


@pytest.mark.parametrize(
    ("step", "fault", "expected", "charges"),
    [pytest.param(*row[1:], id=f"{row[0]}-at-{row[1]}") for row in BODIES],
)
async def test_a_hostile_body_is_a_typed_outcome(
    sandbox: Sandbox[ManualClock],
    secret_canary: Any,
    step: str,
    fault: Fault,
    expected: str,
    charges: int,
) -> None:
    """Oversized, bombs, non-UTF-8, deep, mislabelled, dripping: typed, then usable."""
    # A preview fault hits every try: whether it is retried is not the point.
    sandbox.inject(step, fault, times=1 if expected == "line" else 3)  # type: ignore[arg-type]
    async with connect(sandbox) as client:
        got, recorder = await provision_then_again(sandbox, secret_canary, client)
    assert got == expected
    assert [kind(o) for o in recorder.outcomes] == [expected]
    assert check_money(sandbox, recorder)["charges"] == charges


# -- our own inputs ------------------------------------------------------------------

INJECTIONS = {
    "key-id-crlf": {"api_key_id": "reliability-key-id\r\nX-Injected: 1"},
    "key-id-lf": {"api_key_id": "reliability-key-id\nX-Injected: 1"},
    "secret-crlf": {"api_secret_key": "{secret}\r\nX-Injected: 1"},
    "secret-cr": {"api_secret_key": "{secret}\rX-Injected: 1"},
    "base-url-crlf": {"base_url": "{url}\r\nX-Injected: 1"},
    "base-url-lf-in-path": {"base_url": "{url}/v1\n/x"},
    "secret-nul": {"api_secret_key": "{secret}\x00"},
}


@pytest.mark.parametrize("name", sorted(INJECTIONS))
async def test_header_injection_is_refused_before_sending(
    sandbox: Sandbox[ManualClock], secret_canary: Any, name: str
) -> None:
    """CR/LF (and other controls) in our own inputs: ConfigurationError, no request."""
    options = {
        "api_key_id": sandbox.api_key_id,
        "api_secret_key": sandbox.api_secret_key,
        "base_url": sandbox.url,
    }
    for key, value in INJECTIONS[name].items():
        options[key] = value.format(secret=sandbox.api_secret_key, url=sandbox.url)
    with pytest.raises(ConfigurationError) as caught:
        LinesClient(**options)
    check_error(caught.value, secret_canary.secrets)
    assert sum(c.requests for c in sandbox.counters.values()) == 0
    async with connect(sandbox) as client:
        assert (await Provisioner(client).provision()).phone_number
