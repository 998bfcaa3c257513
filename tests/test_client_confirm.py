"""confirm(): the spec's client rules, where money moves.

The unit layer mocks the network; timeouts, disconnects and refused
connections go through real sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from foundation_support import (
    CONFIRM,
    KEY_ID,
    SECRET,
    closed_port,
    load,
    serve,
    text,
)
from hypothesis import given
from hypothesis import strategies as st
from scripted_api import CallbackResult, ScriptedApi

from sendblue_lines import (
    APIError,
    Attempt,
    AuthenticationError,
    BadRequestError,
    DailyLimitReachedError,
    LinesClient,
    MalformedResponseError,
    MonthlyLimitReachedError,
    NoCardOnFileError,
    NoLinesAvailableError,
    OutcomeUnknownError,
    PermissionDeniedError,
    Preview,
    ProvisionedLine,
    ProvisioningFailedError,
    RetryPolicy,
    TokenExpiredError,
    TransportError,
)

TOKEN = "lpv_abc123def456ghi789jkl0"
BASE = "https://api.sendblue.test"
NO_WAIT = RetryPolicy(attempts=3, base_delay=0, max_delay=0)
LINE = ProvisionedLine(
    phone_number="+14155551234", worker_id="worker_abc123", subscription_id="sub_abc123"
)


def fresh_preview(valid_for: float = 600.0) -> Preview:
    return Preview(
        token=TOKEN,
        expires_at=datetime.now(timezone.utc) + timedelta(seconds=valid_for),
    )


def sent_tokens(api: ScriptedApi) -> list[Any]:
    """The preview_token of every confirm that was recorded, in order."""
    return [body["preview_token"] for body in api.sent("confirm")]


def refused() -> aiohttp.ClientConnectorError:
    """The error aiohttp raises when the connection is refused."""
    key = SimpleNamespace(host="api.sendblue.test", port=443, ssl=True, is_ssl=True)
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))  # type: ignore[arg-type]


UNCLEAR = [
    pytest.param({"status": 502, "body": "<html>Bad Gateway</html>"}, id="502"),
    pytest.param({"status": 504, "body": ""}, id="504"),
    pytest.param({"status": 500, "payload": {"status": "ERROR"}}, id="500-no-code"),
    pytest.param(
        {"status": 500, "payload": {"status": "ERROR", "error": "internal"}},
        id="500-other-code",
    ),
    pytest.param({"status": 503, "body": "Service Unavailable"}, id="503-no-code"),
    pytest.param({"exception": aiohttp.ServerDisconnectedError()}, id="disconnect"),
    pytest.param({"exception": aiohttp.ClientOSError(104, "reset")}, id="reset"),
    pytest.param({"exception": asyncio.TimeoutError()}, id="timeout"),
    pytest.param(
        {"exception": aiohttp.ClientPayloadError("cut")}, id="payload-cut-off"
    ),
]


@pytest.fixture
async def confirmer() -> Any:
    """A LinesClient that resends confirm without waiting."""
    async with LinesClient(KEY_ID, SECRET, base_url=BASE, retry=NO_WAIT) as client:
        yield client


@pytest.mark.parametrize("given", ["preview", "token"])
async def test_confirm_returns_the_line(
    confirmer: LinesClient, api: ScriptedApi, given: str
) -> None:
    """A clean 200 gives the ProvisionedLine; a Preview or its token both work."""
    api.reply("confirm", body=text("confirm_ok"))
    preview = fresh_preview()
    line = await confirmer.confirm(preview if given == "preview" else TOKEN)
    assert line == LINE
    assert api.sent("confirm") == [{"preview_token": TOKEN}]


@pytest.mark.parametrize("unclear", UNCLEAR)
async def test_a_2xx_after_an_unclear_send_returns_the_line(
    confirmer: LinesClient, api: ScriptedApi, unclear: dict[str, Any]
) -> None:
    """An unclear send is resent with the same token, and its 2xx is the purchase."""
    api.reply("confirm", **unclear)
    api.reply("confirm", body=text("confirm_ok"))
    assert await confirmer.confirm(fresh_preview()) == LINE
    assert sent_tokens(api) == [TOKEN, TOKEN]


@pytest.mark.parametrize("unclear", UNCLEAR)
async def test_a_410_after_an_unclear_send_is_outcome_unknown(
    confirmer: LinesClient, api: ScriptedApi, unclear: dict[str, Any]
) -> None:
    """A 410 on the resend means the first send may have bought: outcome unknown."""
    before = datetime.now(timezone.utc)
    api.reply("confirm", **unclear)
    api.reply("confirm", status=410, body=text("error_410_token_expired"))
    with pytest.raises(OutcomeUnknownError) as caught:
        await confirmer.confirm(fresh_preview())
    error = caught.value
    assert error.preview_token == TOKEN
    assert before <= error.first_sent_at <= datetime.now(timezone.utc)
    assert error.first_sent_at.tzinfo is not None
    assert error.attempts == 2
    assert "410" in error.reason
    assert error.status == 410
    assert sent_tokens(api) == [TOKEN, TOKEN]


@pytest.mark.parametrize(
    ("status", "fixture"),
    [
        pytest.param(401, "error_401", id="401"),
        pytest.param(403, "error_403_plan", id="403"),
        pytest.param(429, "error_429_daily", id="429-daily"),
        pytest.param(503, "error_503_no_lines_available", id="503-no-lines"),
    ],
)
async def test_any_refusal_after_an_unclear_send_is_outcome_unknown(
    confirmer: LinesClient, api: ScriptedApi, status: int, fixture: str
) -> None:
    """After an unclear send, a refused resend cannot prove that nothing was bought."""
    api.reply("confirm", status=504, body="")
    api.reply("confirm", status=status, body=text(fixture))
    with pytest.raises(OutcomeUnknownError) as caught:
        await confirmer.confirm(fresh_preview())
    assert caught.value.attempts == 2
    assert caught.value.status == status
    assert "504" in caught.value.reason
    assert sent_tokens(api) == [TOKEN, TOKEN]


@pytest.mark.parametrize("confirm_attempts", [1, 2, 3, 5])
@pytest.mark.parametrize("unclear", UNCLEAR)
async def test_unclear_sends_until_the_attempts_run_out_are_outcome_unknown(
    api: ScriptedApi, unclear: dict[str, Any], confirm_attempts: int
) -> None:
    """Resends of one token are bounded by confirm_attempts, then outcome unknown."""
    async with LinesClient(
        KEY_ID,
        SECRET,
        base_url=BASE,
        retry=NO_WAIT,
        confirm_attempts=confirm_attempts,
    ) as client:
        api.reply("confirm", **unclear, repeat=True)
        with pytest.raises(OutcomeUnknownError) as caught:
            await client.confirm(fresh_preview())
    assert caught.value.attempts == confirm_attempts
    assert caught.value.preview_token == TOKEN
    assert sent_tokens(api) == [TOKEN] * confirm_attempts


@pytest.mark.parametrize(
    ("status", "fixture", "cls"),
    [
        pytest.param(400, "error_400_missing_token", BadRequestError, id="400"),
        pytest.param(401, "error_401", AuthenticationError, id="401"),
        pytest.param(402, "error_402_no_card_on_file", NoCardOnFileError, id="402"),
        pytest.param(403, "error_403_plan", PermissionDeniedError, id="403"),
        pytest.param(410, "error_410_token_expired", TokenExpiredError, id="410"),
        pytest.param(429, "error_429_daily", DailyLimitReachedError, id="429-daily"),
        pytest.param(
            429, "error_429_monthly", MonthlyLimitReachedError, id="429-monthly"
        ),
        pytest.param(
            503, "error_503_no_lines_available", NoLinesAvailableError, id="503-nla"
        ),
        pytest.param(404, "error_401", APIError, id="404"),
    ],
)
async def test_a_clean_first_send_refusal_is_raised_as_is(
    confirmer: LinesClient,
    api: ScriptedApi,
    status: int,
    fixture: str,
    cls: type[APIError],
) -> None:
    """A refusal of the first send means nothing was bought; it is never resent."""
    api.reply("confirm", status=status, body=text(fixture), repeat=True)
    with pytest.raises(APIError) as caught:
        await confirmer.confirm(fresh_preview())
    assert type(caught.value) is cls
    assert sent_tokens(api) == [TOKEN]


async def test_a_clean_first_send_410_is_token_expired(
    confirmer: LinesClient, api: ScriptedApi
) -> None:
    """A 410 for a token sent once is TokenExpiredError: nothing was bought."""
    api.reply("confirm", status=410, body=text("error_410_token_expired"), repeat=True)
    with pytest.raises(TokenExpiredError) as caught:
        await confirmer.confirm(TOKEN)
    assert caught.value.code == "token_expired"
    assert caught.value.body == load("error_410_token_expired")
    assert len(api.requests("confirm")) == 1


@pytest.mark.parametrize(
    "before", [pytest.param([], id="first-send"), pytest.param(UNCLEAR[0], id="resend")]
)
async def test_provisioning_failed_is_raised_at_once_and_never_resent(
    confirmer: LinesClient, api: ScriptedApi, before: Any
) -> None:
    """A 500 provisioning_failed is raised with its body; the token is not resent."""
    sends = 1
    if before:
        api.reply("confirm", **before.values[0])
        sends = 2
    api.reply(
        "confirm", status=500, body=text("error_500_provisioning_failed"), repeat=True
    )
    with pytest.raises(ProvisioningFailedError) as caught:
        await confirmer.confirm(fresh_preview())
    assert caught.value.status == 500
    assert caught.value.code == "provisioning_failed"
    assert caught.value.body == load("error_500_provisioning_failed")
    assert sent_tokens(api) == [TOKEN] * sends


UNREADABLE_2XX = [
    pytest.param(b"Purchase complete!", id="not-json"),
    pytest.param(b"", id="empty"),
    pytest.param(b"<html><body>OK</body></html>", id="html"),
    pytest.param(b'{"status": "OK", "phone_number": "+1415\xff"}', id="not-utf8"),
    pytest.param(b'{"status": "OK", "phone_number": "+141', id="cut"),
    pytest.param(
        json.dumps({**load("confirm_ok"), "phone_number": 14155551234}).encode(),
        id="phone-number-int",
    ),
    pytest.param(
        json.dumps({"status": "OK", "phone_number": "+14155551234"}).encode(),
        id="ids-missing",
    ),
    pytest.param(json.dumps([load("confirm_ok")]).encode(), id="array"),
    pytest.param(b"null", id="null"),
    pytest.param(("[" * 10_000 + "]" * 10_000).encode(), id="nested-10000"),
]


@pytest.mark.parametrize("status", [200, 201])
@pytest.mark.parametrize("body", UNREADABLE_2XX)
async def test_an_unreadable_2xx_is_outcome_unknown_never_malformed(
    confirmer: LinesClient, api: ScriptedApi, body: bytes, status: int
) -> None:
    """A 2xx to confirm whose body cannot be read means money moved: outcome unknown."""
    api.reply("confirm", status=status, body=body, repeat=True)
    with pytest.raises(OutcomeUnknownError) as caught:
        await confirmer.confirm(fresh_preview())
    error = caught.value
    assert not isinstance(error, MalformedResponseError)
    assert isinstance(error.__cause__, MalformedResponseError)
    assert error.attempts == 1
    assert error.status == status
    assert error.preview_token == TOKEN
    assert error.raw is not None
    assert len(error.raw) < 2100
    # The server took the money: a resend could only answer 410.
    assert len(api.requests("confirm")) == 1


async def test_an_unreadable_2xx_after_an_unclear_send_is_outcome_unknown(
    confirmer: LinesClient, api: ScriptedApi
) -> None:
    """A garbled 2xx on the resend is still outcome unknown, counting both sends."""
    api.reply("confirm", status=502, body="")
    api.reply("confirm", status=200, body="OK")
    with pytest.raises(OutcomeUnknownError) as caught:
        await confirmer.confirm(fresh_preview())
    assert caught.value.attempts == 2
    assert sent_tokens(api) == [TOKEN, TOKEN]


def dns_failure() -> aiohttp.ClientConnectorDNSError:
    """The error aiohttp raises when the host name does not resolve."""
    key = SimpleNamespace(host="api.sendblue.test", port=443, ssl=True, is_ssl=True)
    return aiohttp.ClientConnectorDNSError(key, OSError(-2, "Name not known"))  # type: ignore[arg-type]


NOT_SENT = [
    pytest.param(refused, id="connection-refused"),
    pytest.param(dns_failure, id="dns-failure"),
    pytest.param(
        lambda: aiohttp.ConnectionTimeoutError("Connection timeout"),
        id="connect-timeout",
    ),
]


@pytest.mark.parametrize("failure", NOT_SENT)
async def test_a_send_that_never_left_is_resent_as_is(
    confirmer: LinesClient, api: ScriptedApi, failure: Any
) -> None:
    """A send that certainly never left is sent again, and its answer counts."""
    api.reply("confirm", exception=failure())
    api.reply("confirm", status=410, body=text("error_410_token_expired"))
    # The first send never reached the server, so this 410 is a clean expiry.
    with pytest.raises(TokenExpiredError):
        await confirmer.confirm(fresh_preview())
    assert sent_tokens(api) == [TOKEN, TOKEN]


@pytest.mark.parametrize("failure", NOT_SENT)
async def test_limits_and_preview_say_nothing_was_sent(
    confirmer: LinesClient, api: ScriptedApi, failure: Any
) -> None:
    """Refused, DNS and connect-timeout failures are TransportError(sent=False)."""
    api.reply("limits", exception=failure(), repeat=True)
    with pytest.raises(TransportError) as caught:
        await confirmer.get_limits()
    assert caught.value.sent is False
    assert "nothing was sent" in str(caught.value)


async def test_refused_until_the_end_is_a_transport_error_not_sent(
    confirmer: LinesClient, api: ScriptedApi
) -> None:
    """When no send ever left, confirm raises TransportError with sent=False."""
    api.reply("confirm", exception=refused(), repeat=True)
    with pytest.raises(TransportError) as caught:
        await confirmer.confirm(fresh_preview())
    assert caught.value.sent is False
    assert len(api.requests("confirm")) == confirmer.confirm_attempts


@pytest.mark.parametrize(
    ("after", "sends"),
    [
        pytest.param(
            {"status": 410, "body": text("error_410_token_expired")}, 2, id="then-410"
        ),
        pytest.param({"exception": refused()}, 1, id="then-refused-to-the-end"),
    ],
)
async def test_a_refused_send_after_an_unclear_one_keeps_the_doubt(
    confirmer: LinesClient, api: ScriptedApi, after: dict[str, Any], sends: int
) -> None:
    """An unclear send is not forgotten because a later one never left."""
    api.reply("confirm", status=502, body="")
    api.reply("confirm", exception=refused())
    api.reply("confirm", **after)
    with pytest.raises(OutcomeUnknownError) as caught:
        await confirmer.confirm(fresh_preview())
    # Only sends that may have reached the server count as attempts.
    assert caught.value.attempts == sends
    assert "502" in caught.value.reason
    assert sent_tokens(api) == [TOKEN] * 3


async def test_no_resend_once_the_preview_has_expired(
    confirmer: LinesClient, api: ScriptedApi
) -> None:
    """An unclear send of a token past its expires_at is not resent."""
    api.reply("confirm", status=502, body="", repeat=True)
    stale = Preview(
        token=TOKEN, expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)
    )
    with pytest.raises(OutcomeUnknownError) as caught:
        await confirmer.confirm(stale)
    assert caught.value.attempts == 1
    assert len(api.requests("confirm")) == 1


async def test_resends_stop_when_the_token_expires_between_sends(
    confirmer: LinesClient, api: ScriptedApi
) -> None:
    """A token that expires while a send hangs is not sent again."""

    async def slow_gateway(url: Any, **kwargs: Any) -> CallbackResult:
        del url, kwargs
        await asyncio.sleep(0.15)
        return CallbackResult(status=504, body="")

    api.reply("confirm", callback=slow_gateway, repeat=True)
    with pytest.raises(OutcomeUnknownError) as caught:
        await confirmer.confirm(fresh_preview(valid_for=0.1))
    assert caught.value.attempts == 1
    assert len(api.requests("confirm")) == 1


async def test_a_bare_token_is_resent_up_to_the_attempts(
    confirmer: LinesClient, api: ScriptedApi
) -> None:
    """Without a Preview, there is no expiry to stop resends: the bound does."""
    api.reply("confirm", status=502, body="", repeat=True)
    with pytest.raises(OutcomeUnknownError):
        await confirmer.confirm(TOKEN)
    assert sent_tokens(api) == [TOKEN] * 3


async def test_a_resend_logs_a_warning_without_the_token(
    confirmer: LinesClient, api: ScriptedApi, caplog: pytest.LogCaptureFixture
) -> None:
    """Each resend of confirm is a WARNING that names only the token's prefix."""
    api.reply("confirm", status=502, body="")
    api.reply("confirm", status=504, body="")
    api.reply("confirm", body=text("confirm_ok"))
    with caplog.at_level(logging.DEBUG, logger="sendblue_lines"):
        await confirmer.confirm(fresh_preview())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all("same token" in r.getMessage() for r in warnings)
    assert all(TOKEN[:8] in r.getMessage() for r in warnings)
    assert TOKEN not in caplog.text
    assert SECRET not in caplog.text
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug) == 3


async def test_outcome_unknown_is_logged_as_a_warning(
    confirmer: LinesClient, api: ScriptedApi, caplog: pytest.LogCaptureFixture
) -> None:
    """An unknown outcome is logged, so it is on record even if the caller drops it."""
    api.reply("confirm", status=502, body="", repeat=True)
    with (
        caplog.at_level(logging.WARNING, logger="sendblue_lines"),
        pytest.raises(OutcomeUnknownError),
    ):
        await confirmer.confirm(fresh_preview())
    assert any("OUTCOME UNKNOWN" in r.getMessage() for r in caplog.records)


async def test_on_attempt_counts_every_confirm_send(api: ScriptedApi) -> None:
    """on_attempt sees each send of confirm, numbered from 1."""
    seen: list[Attempt] = []
    api.reply("confirm", status=502, body="")
    api.reply("confirm", body=text("confirm_ok"))
    async with LinesClient(
        KEY_ID, SECRET, base_url=BASE, retry=NO_WAIT, on_attempt=seen.append
    ) as client:
        await client.confirm(fresh_preview())
    assert [(a.path, a.attempt, a.status) for a in seen] == [
        (CONFIRM, 1, 502),
        (CONFIRM, 2, 200),
    ]


# Through real sockets on 127.0.0.1.


def scripted(*steps: str) -> Any:
    """A confirm handler that plays `steps` in order, repeating the last one.

    Why not the sandbox: it counts requests but keeps no bodies, and this
    test reads every body sent to check that only the one token went out.

    `hang` answers too late, `drop` closes the connection after reading the
    request, `410`, `502` and `200` answer so.
    """
    played: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        step = steps[min(len(played), len(steps) - 1)]
        played.append(step)
        if step == "hang":
            await asyncio.sleep(5)
        if step == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if step == "410":
            return web.json_response(load("error_410_token_expired"), status=410)
        if step == "502":
            return web.Response(status=502, text="<html>Bad Gateway</html>")
        return web.json_response(load("confirm_ok"))

    return handler


def real_client(url: str, **options: Any) -> LinesClient:
    return LinesClient(KEY_ID, SECRET, base_url=url, retry=NO_WAIT, **options)


@pytest.mark.parametrize(
    ("steps", "outcome"),
    [
        pytest.param(("hang", "200"), LINE, id="timeout-then-200"),
        pytest.param(("hang", "410"), OutcomeUnknownError, id="timeout-then-410"),
        pytest.param(("drop", "200"), LINE, id="disconnect-then-200"),
        pytest.param(("drop", "410"), OutcomeUnknownError, id="disconnect-then-410"),
        pytest.param(("502", "hang", "410"), OutcomeUnknownError, id="502-hang-410"),
        pytest.param(("drop",), OutcomeUnknownError, id="disconnect-every-time"),
        pytest.param(("hang",), OutcomeUnknownError, id="timeout-every-time"),
    ],
)
async def test_unclear_sends_over_real_sockets(
    steps: tuple[str, ...], outcome: Any
) -> None:
    """Timeouts and disconnects after writing resend the same token, and only it."""
    async with (
        serve({CONFIRM: scripted(*steps)}) as server,
        real_client(server.url, timeout=0.3) as client,
    ):
        if isinstance(outcome, ProvisionedLine):
            assert await client.confirm(fresh_preview()) == outcome
        else:
            with pytest.raises(outcome) as caught:
                await client.confirm(fresh_preview())
            assert caught.value.preview_token == TOKEN
            assert caught.value.attempts == len(server.seen)
    bodies = [seen.json() for seen in server.seen]
    assert bodies == [{"preview_token": TOKEN}] * len(bodies)
    assert 2 <= len(bodies) <= 3


async def test_a_closed_port_is_resent_as_is_and_ends_not_sent() -> None:
    """Connection refused on every send: resent, then TransportError(sent=False)."""
    seen: list[Attempt] = []
    url = f"http://127.0.0.1:{closed_port()}"
    async with real_client(url, on_attempt=seen.append) as client:
        with pytest.raises(TransportError) as caught:
            await client.confirm(fresh_preview())
    assert caught.value.sent is False
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)
    assert [(a.attempt, a.sent, a.status) for a in seen] == [
        (1, False, None),
        (2, False, None),
        (3, False, None),
    ]


@given(token=st.text(min_size=1))
def test_the_confirm_body_is_the_token_as_json(token: str) -> None:
    """The body written once per confirm reads back as `{"preview_token": token}`."""
    from sendblue_lines.client import _ConfirmRun

    run = _ConfirmRun(SimpleNamespace(), token, None)  # type: ignore[arg-type]
    assert json.loads(run.body) == {"preview_token": token}
    assert run.body == json.dumps({"preview_token": token}).encode()
