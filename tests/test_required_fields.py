"""Every required field of every answer: empty, blank or of the wrong type.

A preview whose token or expiry is unusable is a `MalformedResponseError`
(never a `ConfigurationError`, which would read as the caller's mistake and
stop a batch), and in a batch it fails that slot only. A 2xx confirm whose
line fields are unusable is an `OutcomeUnknownError`: money moved, only the
line's details are lost. Error bodies whose `error` or `message` are odd
still map to the right error class by their status.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aioresponses import CallbackResult
from aioresponses import aioresponses as AioResponses
from scripted_api import sent_json

from sendblue_lines import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    LinesClient,
    MalformedResponseError,
    NoCardOnFileError,
    OutcomeUnknownError,
    PermissionDeniedError,
    Provisioner,
    RateLimitError,
    RetryPolicy,
    ServerError,
    TokenExpiredError,
)

BASE = "https://api.required.test"
LIMITS_URL = BASE + "/accounts/limits"
PREVIEW_URL = BASE + "/accounts/lines/provision-preview"
CONFIRM_URL = BASE + "/accounts/lines/provision-confirm"
NO_WAIT = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0)
GOOD_PREVIEW = {
    "status": "OK",
    "preview_token": "lpv_required_fields_0001",
    "expires_at": "2099-05-18T14:30:00.000Z",
    "message": "Call the confirm endpoint within 10 minutes.",
}
GOOD_LINE = {
    "status": "OK",
    "phone_number": "+14155551234",
    "worker_id": "worker_abc123",
    "subscription_id": "sub_abc123",
}
#: What a required string must never be.
UNUSABLE = [
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param("\t\n", id="whitespace"),
    pytest.param(0, id="number"),
    pytest.param(12.5, id="float"),
    pytest.param(None, id="null"),
    pytest.param({}, id="object"),
    pytest.param(["lpv_x"], id="list"),
    pytest.param(True, id="boolean"),
    pytest.param(..., id="missing"),
]


def merged(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = {**base, **changes}
    return {k: v for k, v in body.items() if v is not ...}


@pytest.fixture
async def client() -> Any:
    async with LinesClient(
        "key-id", "required-secret", base_url=BASE, retry=NO_WAIT
    ) as c:
        yield c


@pytest.fixture
def mocked() -> Any:
    with AioResponses() as m:
        yield m


def confirms(mocked: AioResponses) -> list[Any]:
    return [
        sent_json(call.kwargs)
        for (method, url), calls in mocked.requests.items()
        if str(url) == CONFIRM_URL
        for call in calls
    ]


@pytest.mark.parametrize("field", ["preview_token", "expires_at"])
@pytest.mark.parametrize("value", UNUSABLE)
async def test_an_unusable_preview_field_is_malformed(
    client: LinesClient, mocked: AioResponses, field: str, value: Any
) -> None:
    """An empty, blank or mistyped token or expiry is malformed, naming the field."""
    raw = json.dumps(merged(GOOD_PREVIEW, **{field: value}))
    mocked.post(PREVIEW_URL, body=raw, content_type="application/json")
    with pytest.raises(MalformedResponseError) as caught:
        await client.preview()
    assert not isinstance(caught.value, ConfigurationError)
    assert caught.value.raw == raw
    shown = "token" if field == "preview_token" else field
    assert shown in str(caught.value)


@pytest.mark.parametrize("value", UNUSABLE)
async def test_provision_sends_no_confirm_for_an_unusable_token(
    client: LinesClient, mocked: AioResponses, value: Any
) -> None:
    """provision() raises MalformedResponseError and never confirms a bad token."""
    mocked.get(LIMITS_URL, status=404, payload={"status": "ERROR"})
    mocked.post(PREVIEW_URL, payload=merged(GOOD_PREVIEW, preview_token=value))
    mocked.post(CONFIRM_URL, payload=GOOD_LINE)
    with pytest.raises(MalformedResponseError):
        await Provisioner(client).provision()
    assert confirms(mocked) == []


@pytest.mark.parametrize("value", UNUSABLE)
async def test_in_a_batch_an_unusable_preview_fails_only_its_slot(
    client: LinesClient, mocked: AioResponses, value: Any
) -> None:
    """The bad preview is one slot's MalformedResponseError; the other slots buy."""
    answers = [merged(GOOD_PREVIEW, preview_token=value)] + [
        merged(GOOD_PREVIEW, preview_token=f"lpv_required_fields_{n:04d}")
        for n in (2, 3)
    ]
    lines = iter(range(1, 10))

    def preview(url: object, **kwargs: Any) -> CallbackResult:
        del url, kwargs
        return CallbackResult(status=200, payload=answers.pop(0))

    def confirm(url: object, **kwargs: Any) -> CallbackResult:
        del url, kwargs
        n = next(lines)
        return CallbackResult(
            status=200,
            payload={**GOOD_LINE, "phone_number": f"+1415555{n:04d}"},
        )

    mocked.get(LIMITS_URL, status=404, payload={"status": "ERROR"})
    mocked.post(PREVIEW_URL, callback=preview, repeat=True)
    mocked.post(CONFIRM_URL, callback=confirm, repeat=True)
    result = await Provisioner(client).provision_many(3, concurrency=1)
    assert result.stopped_by is None
    assert result.not_attempted == 0
    assert len(result.lines) == 2
    [error] = result.errors
    assert isinstance(error, MalformedResponseError)
    assert [body["preview_token"] for body in confirms(mocked)] == [
        "lpv_required_fields_0002",
        "lpv_required_fields_0003",
    ]


@pytest.mark.parametrize("field", ["phone_number", "worker_id", "subscription_id"])
@pytest.mark.parametrize("value", UNUSABLE)
async def test_an_unusable_line_field_after_a_2xx_confirm_is_an_unknown_outcome(
    client: LinesClient, mocked: AioResponses, field: str, value: Any
) -> None:
    """Money moved on a 2xx: an unusable line field is OutcomeUnknownError."""
    mocked.post(CONFIRM_URL, payload=merged(GOOD_LINE, **{field: value}))
    with pytest.raises(OutcomeUnknownError) as caught:
        await client.confirm("lpv_required_fields_0001")
    assert caught.value.preview_token == "lpv_required_fields_0001"
    assert caught.value.attempts == 1
    assert isinstance(caught.value.__cause__, MalformedResponseError)
    assert len(confirms(mocked)) == 1


@pytest.mark.parametrize("token", ["", "   ", "\n"])
async def test_the_callers_blank_token_is_a_configuration_error(
    client: LinesClient, mocked: AioResponses, token: str
) -> None:
    """A blank token from the caller (not the server) is refused before sending."""
    with pytest.raises(ConfigurationError):
        await client.confirm(token)
    assert confirms(mocked) == []


ODD_ERROR_FIELDS = [
    pytest.param({"error": 5, "message": 7}, id="numbers"),
    pytest.param({"error": None, "message": None}, id="nulls"),
    pytest.param({"error": {}, "message": []}, id="containers"),
    pytest.param({"error": "", "message": ""}, id="empty"),
    pytest.param({"error": "  ", "message": " \n"}, id="blank"),
    pytest.param({"error": True, "message": {"text": "x"}}, id="bool-object"),
    pytest.param({}, id="absent"),
]
BY_STATUS = [
    pytest.param(400, BadRequestError, id="400"),
    pytest.param(401, AuthenticationError, id="401"),
    pytest.param(402, NoCardOnFileError, id="402"),
    pytest.param(403, PermissionDeniedError, id="403"),
    pytest.param(410, TokenExpiredError, id="410"),
    pytest.param(429, RateLimitError, id="429"),
    pytest.param(503, ServerError, id="503"),
    pytest.param(500, ServerError, id="500"),
    pytest.param(418, APIError, id="418"),
]


@pytest.mark.parametrize(("status", "cls"), BY_STATUS)
@pytest.mark.parametrize("fields", ODD_ERROR_FIELDS)
async def test_odd_error_bodies_still_map_by_status(
    client: LinesClient,
    mocked: AioResponses,
    status: int,
    cls: type[APIError],
    fields: dict[str, Any],
) -> None:
    """An error body with odd `error`/`message` gives the status's class, body kept."""
    body = {"status": "ERROR", **fields}
    mocked.post(PREVIEW_URL, status=status, payload=body, repeat=True)
    with pytest.raises(APIError) as caught:
        await client.preview()
    assert type(caught.value) is cls
    assert caught.value.status == status
    assert caught.value.code is None
    assert caught.value.body == body
    assert isinstance(caught.value.message, str)
    assert caught.value.message


@pytest.mark.parametrize("fields", ODD_ERROR_FIELDS)
async def test_a_first_410_with_an_odd_body_is_still_an_expiry(
    client: LinesClient, mocked: AioResponses, fields: dict[str, Any]
) -> None:
    """A clean 410 at confirm stays TokenExpiredError whatever its body."""
    mocked.post(CONFIRM_URL, status=410, payload={"status": "ERROR", **fields})
    with pytest.raises(TokenExpiredError):
        await client.confirm("lpv_required_fields_0001")
    assert len(confirms(mocked)) == 1
