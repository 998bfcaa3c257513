"""LinesClient over a mocked network: errors, bodies, retries, headers, logs."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest
from foundation_support import (
    CONFIRM,
    KEY_ID,
    LIMITS,
    PREVIEW,
    SECRET,
    TOKEN,
    call,
    load,
    text,
)
from hypothesis import given
from hypothesis import strategies as st
from scripted_api import ScriptedApi, sent_json

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
    ProvisioningFailedError,
    RateLimitError,
    RetryPolicy,
    SendblueError,
    ServerError,
    TokenExpiredError,
    TransportError,
    __version__,
)

BASE = "https://api.sendblue.test"


# Every row of the spec's error table, for each endpoint it can come from.
ERROR_TABLE = [
    (400, "error_400_missing_token", BadRequestError, None, [CONFIRM]),
    (401, "error_401", AuthenticationError, None, [LIMITS, PREVIEW, CONFIRM]),
    (
        402,
        "error_402_no_card_on_file",
        NoCardOnFileError,
        "no_card_on_file",
        [PREVIEW, CONFIRM],
    ),
    (403, "error_403_plan", PermissionDeniedError, None, [LIMITS, PREVIEW, CONFIRM]),
    (410, "error_410_token_expired", TokenExpiredError, "token_expired", [CONFIRM]),
    (
        429,
        "error_429_daily",
        DailyLimitReachedError,
        "daily_limit_reached",
        [PREVIEW, CONFIRM],
    ),
    (
        429,
        "error_429_monthly",
        MonthlyLimitReachedError,
        "monthly_limit_reached",
        [PREVIEW, CONFIRM],
    ),
    (
        503,
        "error_503_no_lines_available",
        NoLinesAvailableError,
        "no_lines_available",
        [PREVIEW, CONFIRM],
    ),
    (
        500,
        "error_500_provisioning_failed",
        ProvisioningFailedError,
        "provisioning_failed",
        [CONFIRM],
    ),
]
ENDPOINT_NAMES = {LIMITS: "limits", PREVIEW: "preview", CONFIRM: "confirm"}


@pytest.mark.parametrize(
    ("path", "status", "fixture", "cls", "code"),
    [
        pytest.param(
            path, status, fixture, cls, code, id=f"{ENDPOINT_NAMES[path]}-{fixture}"
        )
        for status, fixture, cls, code, paths in ERROR_TABLE
        for path in paths
    ],
)
async def test_every_row_of_the_error_table(
    client: LinesClient,
    api: ScriptedApi,
    path: str,
    status: int,
    fixture: str,
    cls: type[APIError],
    code: str | None,
) -> None:
    """Each documented error is its own class, with status, code, message and body."""
    body = load(fixture)
    api.reply(path, status=status, body=text(fixture), repeat=True)
    with pytest.raises(APIError) as caught:
        await call(client, path)
    error = caught.value
    assert type(error) is cls
    assert error.status == status
    assert error.code == code
    assert error.message == body["message"]
    assert error.body == body
    assert error.path == path
    # Documented refusals are final: sent once, never retried or resent.
    assert len(api.requests(path)) == 1


@pytest.mark.parametrize("path", [LIMITS, PREVIEW, CONFIRM])
@pytest.mark.parametrize("status", [404, 405, 409, 418, 422, 451])
async def test_an_unknown_4xx_is_a_plain_api_error(
    client: LinesClient, api: ScriptedApi, path: str, status: int
) -> None:
    """A 4xx the spec does not list is APIError itself, with what the body said."""
    body = {"status": "ERROR", "error": "something_new", "message": "Nope"}
    api.reply(path, status=status, payload=body, repeat=True)
    with pytest.raises(APIError) as caught:
        await call(client, path)
    assert type(caught.value) is APIError
    assert (caught.value.status, caught.value.code) == (status, "something_new")
    assert caught.value.message == "Nope"
    assert caught.value.body == body
    assert len(api.all_requests()) == 1


@pytest.mark.parametrize("path", [PREVIEW, CONFIRM])
@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"status": "ERROR", "message": "Too many"}, id="no-code"),
        pytest.param(
            {"status": "ERROR", "error": "hourly_limit_reached", "message": "x"},
            id="unknown-code",
        ),
    ],
)
async def test_a_429_with_another_code_is_a_plain_rate_limit_error(
    client: LinesClient, api: ScriptedApi, path: str, body: dict[str, Any]
) -> None:
    """The `error` code picks the 429 subclass; any other code is RateLimitError."""
    api.reply(path, status=429, payload=body)
    with pytest.raises(RateLimitError) as caught:
        await call(client, path)
    assert type(caught.value) is RateLimitError
    assert caught.value.status == 429


@pytest.mark.parametrize("path", [LIMITS, PREVIEW])
@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(500, {"status": "ERROR", "message": "Internal"}, id="500"),
        pytest.param(
            500, {"status": "ERROR", "error": "db_down", "message": "x"}, id="500-code"
        ),
        pytest.param(501, {"status": "ERROR"}, id="501"),
        pytest.param(502, "<html><body>Bad Gateway</body></html>", id="502-html"),
        pytest.param(503, {"status": "ERROR", "message": "Maintenance"}, id="503"),
        pytest.param(
            503,
            {"status": "ERROR", "error": "overloaded", "message": "x"},
            id="503-other-code",
        ),
        pytest.param(504, "", id="504-empty"),
        pytest.param(599, {"status": "ERROR"}, id="599"),
    ],
)
async def test_an_unknown_5xx_is_a_server_error_after_the_retries(
    client: LinesClient, api: ScriptedApi, path: str, status: int, body: Any
) -> None:
    """Any 5xx but the spec's own codes is ServerError, tried `attempts` times."""
    raw = body if isinstance(body, str) else json.dumps(body)
    api.reply(path, status=status, body=raw, repeat=True)
    with pytest.raises(ServerError) as caught:
        await call(client, path)
    assert type(caught.value) is ServerError
    assert caught.value.status == status
    assert len(api.requests(path)) == client.retry.attempts == 3
    if not isinstance(body, dict):
        assert caught.value.body is None


async def test_an_error_without_a_message_describes_its_status(
    client: LinesClient, api: ScriptedApi
) -> None:
    """With no `message` in the body, the error says what the status means."""
    api.reply(PREVIEW, status=403, payload={"status": "ERROR"})
    with pytest.raises(PermissionDeniedError) as caught:
        await client.preview()
    assert caught.value.message.startswith("Forbidden")


async def test_an_html_error_page_is_described_not_parsed(
    client: LinesClient, api: ScriptedApi
) -> None:
    """A proxy's HTML error page gives an error whose message quotes it briefly."""
    page = "<html><head><title>401 Authorization Required</title></head></html>"
    api.reply(LIMITS, status=401, body=page)
    with pytest.raises(AuthenticationError) as caught:
        await client.get_limits()
    assert caught.value.body is None
    assert caught.value.code is None
    assert "Authorization Required" in caught.value.message


DEEP_ARRAY = "[" * 10_000 + "]" * 10_000
DEEP_OBJECT = '{"a":' * 10_000 + "1" + "}" * 10_000

MALFORMED = [
    pytest.param(b"this is not json", "this is not json", id="not-json"),
    pytest.param(b"", "", id="empty"),
    pytest.param(b"   \n", "   \n", id="blank"),
    pytest.param(
        b'{"status": "OK", "preview_tok', '{"status": "OK", "preview_tok', id="cut-json"
    ),
    pytest.param(
        b"<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>",
        "<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>",
        id="html",
    ),
    pytest.param(
        b'{"status": "OK", "expires_at": "\xff\xfe"}',
        '{"status": "OK", "expires_at": "\ufffd\ufffd"}',
        id="not-utf8",
    ),
    pytest.param(b"\xef\xbb\xbf{}", "\ufeff{}", id="utf8-bom"),
    pytest.param(DEEP_ARRAY.encode(), DEEP_ARRAY, id="deep-array"),
    pytest.param(DEEP_OBJECT.encode(), DEEP_OBJECT, id="deep-object"),
]


@pytest.mark.parametrize("path", [LIMITS, PREVIEW])
@pytest.mark.parametrize(("body", "raw"), MALFORMED)
async def test_an_unreadable_2xx_body_is_malformed_with_its_raw_text(
    client: LinesClient, api: ScriptedApi, path: str, body: bytes, raw: str
) -> None:
    """A 2xx body that is not JSON is MalformedResponseError with the text, cut."""
    api.reply(path, status=200, body=body, repeat=True)
    with pytest.raises(MalformedResponseError) as caught:
        await call(client, path)
    error = caught.value
    assert error.status == 200
    assert error.path == path
    assert error.raw is not None
    if len(raw) <= 2048:
        assert error.raw == raw
    else:
        assert error.raw.startswith(raw[:2048])
        assert error.raw.endswith("more characters]")
    # An unreadable answer is an answer: not retried.
    assert len(api.requests(path)) == 1


@pytest.mark.parametrize("path", [LIMITS, PREVIEW])
async def test_a_body_declared_over_one_mib_is_refused_unread(
    client: LinesClient, api: ScriptedApi, path: str
) -> None:
    """A Content-Length above 1 MiB is refused as malformed without being read."""
    api.reply(
        path,
        body=b'{"status": "OK"}',
        headers={"Content-Length": str(1024 * 1024 + 1)},
    )
    with pytest.raises(MalformedResponseError, match="exceeds the cap"):
        await call(client, path)


TRANSIENT = [
    pytest.param({"exception": aiohttp.ServerDisconnectedError()}, id="disconnect"),
    pytest.param({"exception": aiohttp.ClientOSError(104, "reset")}, id="reset"),
    pytest.param({"exception": asyncio.TimeoutError()}, id="timeout"),
    pytest.param({"exception": TimeoutError()}, id="builtin-timeout"),
    pytest.param({"status": 500, "payload": {"status": "ERROR"}}, id="500-no-code"),
    pytest.param({"status": 502, "body": "Bad Gateway"}, id="502"),
    pytest.param({"status": 503, "payload": {"status": "ERROR"}}, id="503-no-code"),
    pytest.param({"status": 504, "body": ""}, id="504"),
    pytest.param({"status": 520, "body": ""}, id="520"),
]


@pytest.mark.parametrize("path", [LIMITS, PREVIEW])
@pytest.mark.parametrize("failure", TRANSIENT)
async def test_transient_failures_are_retried_then_succeed(
    client: LinesClient, api: ScriptedApi, path: str, failure: dict[str, Any]
) -> None:
    """Limits and preview try again after a transient failure and return the answer."""
    fixture = "limits_canonical" if path == LIMITS else "preview_ok"
    api.reply(path, **failure, repeat=2)
    api.reply(path, body=text(fixture))
    assert await call(client, path) is not None
    assert len(api.requests(path)) == 3


@pytest.mark.parametrize("path", [LIMITS, PREVIEW])
@pytest.mark.parametrize("failure", TRANSIENT)
@pytest.mark.parametrize("attempts", [1, 2, 5])
async def test_transient_failures_are_retried_at_most_attempts_times(
    api: ScriptedApi, path: str, failure: dict[str, Any], attempts: int
) -> None:
    """After `RetryPolicy.attempts` transient failures the last one is raised."""
    policy = RetryPolicy(attempts=attempts, base_delay=0, max_delay=0)
    async with LinesClient(KEY_ID, SECRET, base_url=BASE, retry=policy) as client:
        api.reply(path, **failure, repeat=True)
        with pytest.raises((TransportError, ServerError)) as caught:
            await call(client, path)
    assert len(api.requests(path)) == attempts
    if isinstance(caught.value, TransportError):
        assert caught.value.sent
        # asyncio.TimeoutError is not the builtin TimeoutError on Python 3.10.
        causes = (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError)
        assert isinstance(caught.value.__cause__, causes)


@pytest.mark.parametrize("path", [LIMITS, PREVIEW])
@pytest.mark.parametrize(
    ("status", "fixture", "cls"),
    [
        pytest.param(400, "error_400_missing_token", BadRequestError, id="400"),
        pytest.param(401, "error_401", AuthenticationError, id="401"),
        pytest.param(402, "error_402_no_card_on_file", NoCardOnFileError, id="402"),
        pytest.param(403, "error_403_plan", PermissionDeniedError, id="403"),
        pytest.param(429, "error_429_daily", DailyLimitReachedError, id="429"),
        pytest.param(
            503, "error_503_no_lines_available", NoLinesAvailableError, id="503-nla"
        ),
        pytest.param(
            500,
            "error_500_provisioning_failed",
            ProvisioningFailedError,
            id="500-provisioning-failed",
        ),
    ],
)
async def test_refusals_are_not_retried(
    client: LinesClient,
    api: ScriptedApi,
    path: str,
    status: int,
    fixture: str,
    cls: type[APIError],
) -> None:
    """4xx, no_lines_available and provisioning_failed are raised after one try."""
    api.reply(path, status=status, body=text(fixture), repeat=True)
    with pytest.raises(cls):
        await call(client, path)
    assert len(api.requests(path)) == 1


@given(
    attempts=st.integers(1, 5),
    base=st.floats(0, 10, allow_nan=False),
    extra=st.floats(0, 60, allow_nan=False),
    failed=st.integers(1, 10),
)
def test_backoff_stays_within_full_jitter_bounds(
    attempts: int, base: float, extra: float, failed: int
) -> None:
    """The wait after n failures is within [0, min(max_delay, base * 2**(n-1))]."""
    policy = RetryPolicy(attempts=attempts, base_delay=base, max_delay=base + extra)
    delay = policy.delay(failed)
    assert 0 <= delay <= min(base + extra, base * 2 ** (failed - 1))


def test_backoff_jitter_spans_the_whole_range() -> None:
    """Full jitter: waits are spread from near 0 to near the ceiling, not fixed."""
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0)
    delays = [policy.delay(3) for _ in range(400)]
    assert min(delays) < 0.4
    assert max(delays) > 3.6
    assert all(0 <= d <= 4.0 for d in delays)
    assert max(policy.delay(20) for _ in range(50)) <= 10.0


async def test_retries_wait_between_tries(
    api: ScriptedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a non-zero backoff, the client sleeps between tries, within the policy."""
    policy = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.05)
    events: list[tuple[str, float]] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        events.append(("sleep", delay))
        await real_sleep(delay)

    # The client waits with asyncio's own sleep (it never imports anyio).
    monkeypatch.setattr(asyncio, "sleep", sleep)
    async with LinesClient(
        KEY_ID,
        SECRET,
        base_url=BASE,
        retry=policy,
        on_attempt=lambda seen: events.append(("attempt", seen.attempt)),
    ) as client:
        api.reply(LIMITS, status=502, repeat=True)
        with pytest.raises(ServerError):
            await client.get_limits()
    assert [kind for kind, _ in events] == [
        "attempt",
        "sleep",
        "attempt",
        "sleep",
        "attempt",
    ]
    assert [value for kind, value in events if kind == "attempt"] == [1, 2, 3]
    assert all(0 <= value <= 0.05 for kind, value in events if kind == "sleep")


@pytest.mark.parametrize("path", [LIMITS, PREVIEW, CONFIRM])
async def test_every_request_carries_auth_accept_and_user_agent(
    api: ScriptedApi, path: str
) -> None:
    """Both auth headers, a JSON Accept and our User-Agent, with redirects off."""
    fixture = {LIMITS: "limits_canonical", PREVIEW: "preview_ok"}.get(
        path, "confirm_ok"
    )
    async with LinesClient(KEY_ID, SECRET, base_url=BASE) as client:
        api.reply(path, body=text(fixture))
        await call(client, path)
    (request,) = api.requests(path)
    headers = request.kwargs["headers"]
    assert headers["sb-api-key-id"] == KEY_ID
    assert headers["sb-api-secret-key"] == SECRET
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"] == f"sendblue-lines/{__version__}"
    assert request.kwargs["allow_redirects"] is False
    # Per request on a caller's session; our own session carries it itself.
    timeout = request.kwargs.get("timeout") or client._transport._timeout
    assert timeout.total is not None
    assert timeout.connect is not None
    assert timeout.connect < timeout.total
    # One deadline over the whole attempt names the phase itself; no timer
    # re-armed on every chunk (see test_transport's phase tests).
    assert timeout.sock_read is None
    if path == CONFIRM:
        assert sent_json(request.kwargs) == {"preview_token": TOKEN}
    else:
        assert sent_json(request.kwargs) is None


async def test_attempts_are_reported_to_on_attempt(api: ScriptedApi) -> None:
    """on_attempt gets one Attempt per HTTP attempt, with status or failure."""
    seen: list[Attempt] = []
    async with LinesClient(
        KEY_ID,
        SECRET,
        base_url=BASE,
        retry=RetryPolicy(base_delay=0, max_delay=0),
        on_attempt=seen.append,
    ) as client:
        api.reply(PREVIEW, exception=aiohttp.ServerDisconnectedError())
        api.reply(PREVIEW, status=502, body="")
        api.reply(PREVIEW, body=text("preview_ok"))
        await client.preview()
    assert [(a.method, a.path, a.attempt, a.status) for a in seen] == [
        ("POST", PREVIEW, 1, None),
        ("POST", PREVIEW, 2, 502),
        ("POST", PREVIEW, 3, 200),
    ]
    assert seen[0].error is not None
    assert seen[0].sent is True
    assert seen[1].error is None
    assert all(a.elapsed >= 0 for a in seen)
    assert all(SECRET not in repr(a) for a in seen)


async def test_a_raising_on_attempt_callback_changes_nothing(
    api: ScriptedApi, caplog: pytest.LogCaptureFixture
) -> None:
    """An observer that raises is logged and ignored; the call still returns."""

    def broken(attempt: Attempt) -> None:
        raise RuntimeError(f"observer bug on attempt {attempt.attempt}")

    async with LinesClient(KEY_ID, SECRET, base_url=BASE, on_attempt=broken) as client:
        api.reply(LIMITS, body=text("limits_canonical"))
        with caplog.at_level(logging.ERROR, logger="sendblue_lines"):
            limits = await client.get_limits()
    assert limits.known
    assert any("on_attempt" in r.getMessage() for r in caplog.records)


async def test_one_debug_record_per_attempt(
    client: LinesClient, api: ScriptedApi, caplog: pytest.LogCaptureFixture
) -> None:
    """Each attempt logs one DEBUG record naming method, path, status and attempt."""
    api.reply(LIMITS, status=503, body="")
    api.reply(LIMITS, body=text("limits_canonical"))
    with caplog.at_level(logging.DEBUG, logger="sendblue_lines"):
        await client.get_limits()
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug) == 2
    for record, status, attempt in zip(debug, (503, 200), (1, 2), strict=True):
        message = record.getMessage()
        assert record.name == "sendblue_lines.http"
        assert "GET" in message
        assert LIMITS in message
        assert str(status) in message
        assert f"attempt {attempt}" in message


async def test_the_secret_never_reaches_logs_reprs_or_messages(
    api: ScriptedApi, caplog: pytest.LogCaptureFixture
) -> None:
    """Across successes and every kind of failure, the secret is nowhere to be read."""
    errors: list[BaseException] = []
    attempts: list[Attempt] = []
    with caplog.at_level(logging.DEBUG):
        async with LinesClient(
            KEY_ID,
            SECRET,
            base_url=BASE,
            retry=RetryPolicy(base_delay=0, max_delay=0),
            on_attempt=attempts.append,
        ) as client:
            assert SECRET not in repr(client)
            assert SECRET not in str(vars(client))
            api.reply(LIMITS, body=text("limits_canonical"))
            api.reply(PREVIEW, body=text("preview_ok"))
            api.reply(CONFIRM, body=text("confirm_ok"))
            limits = await client.get_limits()
            preview = await client.preview()
            line = await client.confirm(preview)
            for value in (limits, preview, line):
                assert SECRET not in repr(value)
            failures: list[dict[str, Any]] = [
                {"status": 401, "body": text("error_401")},
                {"status": 502, "body": "<html>Bad Gateway</html>"},
                {"exception": aiohttp.ServerDisconnectedError()},
                {"status": 200, "body": "not json"},
            ]
            for failure in failures:
                for path in (LIMITS, PREVIEW, CONFIRM):
                    api.reply(path, **failure, repeat=True)
                    try:
                        await call(client, path)
                    except SendblueError as exc:
                        errors.append(exc)
                    api.clear()
    assert len(errors) == 12
    assert any(isinstance(e, OutcomeUnknownError) for e in errors)
    for error in errors:
        assert SECRET not in str(error)
        assert SECRET not in repr(error)
        assert SECRET not in repr(vars(error))
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in repr(record.args)
        assert SECRET not in (record.exc_text or "")
    assert SECRET not in caplog.text
    assert SECRET not in repr(attempts)
    assert caplog.records  # the logs were really captured


async def test_the_client_repr_names_url_and_key_id_only(client: LinesClient) -> None:
    """repr(client) shows the base URL and key id, not the secret."""
    assert repr(client) == (
        "LinesClient(base_url='https://api.sendblue.test', "
        "api_key_id='key-id-for-tests')"
    )


async def test_a_closed_client_refuses_new_requests(api: ScriptedApi) -> None:
    """After aclose(), a call is a ConfigurationError, and aclose() may run again."""
    client = LinesClient(KEY_ID, SECRET, base_url=BASE)
    api.reply(LIMITS, body=text("limits_canonical"))
    await client.get_limits()
    await client.aclose()
    await client.aclose()
    assert client.closed
    with pytest.raises(SendblueError, match="closed"):
        await client.get_limits()
    assert len(api.all_requests()) == 1


@pytest.mark.parametrize("token", ["", 123, None])
async def test_confirm_needs_a_token(
    client: LinesClient, api: ScriptedApi, token: Any
) -> None:
    """confirm() refuses an empty or non-string token before sending anything."""
    with pytest.raises(SendblueError):
        await client.confirm(token)
    assert api.all_requests() == []


async def test_no_warning_on_a_python_that_fixed_ssl_cleanup(
    api: ScriptedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Python 3.12.8+/3.13.1+ (simulated) the session opens without a warning."""
    # aiohttp warns when asked for enable_cleanup_closed on such a Python, and
    # under `filterwarnings = error` that warning is an exception.
    monkeypatch.setattr(aiohttp.connector, "NEEDS_CLEANUP_CLOSED", False)
    async with LinesClient(KEY_ID, SECRET, base_url=BASE) as client:
        api.reply(LIMITS, body=text("limits_canonical"))
        assert (await client.get_limits()).known
