"""Every required field of every answer: empty, blank or of the wrong type.

A preview whose token or expiry is unusable is a `MalformedResponseError`
(never a `ConfigurationError`, which would read as the caller's mistake and
stop a batch; what the Provisioner does with it is in
tests/provisioner/test_unusable_preview.py). A 2xx confirm whose
line fields are unusable is an `OutcomeUnknownError`: money moved, only the
line's details are lost. Error bodies whose `error` or `message` are odd
still map to the right error class by their status.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from scripted_api import BASE_URL, UNUSABLE, UNUSABLE_IDS, ScriptedApi, merged

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
    RateLimitError,
    RetryPolicy,
    ServerError,
    TokenExpiredError,
)

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


@pytest.fixture
async def client() -> Any:
    async with LinesClient(
        "key-id", "required-secret", base_url=BASE_URL, retry=NO_WAIT
    ) as c:
        yield c


@pytest.mark.parametrize("field", ["preview_token", "expires_at"])
@pytest.mark.parametrize("value", UNUSABLE, ids=UNUSABLE_IDS)
async def test_an_unusable_preview_field_is_malformed(
    client: LinesClient, api: ScriptedApi, field: str, value: Any
) -> None:
    """An empty, blank or mistyped token or expiry is malformed, naming the field."""
    raw = json.dumps(merged(GOOD_PREVIEW, **{field: value}))
    api.reply("preview", body=raw, content_type="application/json")
    with pytest.raises(MalformedResponseError) as caught:
        await client.preview()
    assert not isinstance(caught.value, ConfigurationError)
    assert caught.value.raw == raw
    shown = "token" if field == "preview_token" else field
    assert shown in str(caught.value)


@pytest.mark.parametrize("field", ["phone_number", "worker_id", "subscription_id"])
@pytest.mark.parametrize("value", UNUSABLE, ids=UNUSABLE_IDS)
async def test_an_unusable_line_field_after_a_2xx_confirm_is_an_unknown_outcome(
    client: LinesClient, api: ScriptedApi, field: str, value: Any
) -> None:
    """Money moved on a 2xx: an unusable line field is OutcomeUnknownError."""
    api.reply("confirm", payload=merged(GOOD_LINE, **{field: value}))
    with pytest.raises(OutcomeUnknownError) as caught:
        await client.confirm("lpv_required_fields_0001")
    assert caught.value.preview_token == "lpv_required_fields_0001"
    assert caught.value.attempts == 1
    assert isinstance(caught.value.__cause__, MalformedResponseError)
    assert len(api.requests("confirm")) == 1


@pytest.mark.parametrize("token", ["", "   ", "\n"])
async def test_the_callers_blank_token_is_a_configuration_error(
    client: LinesClient, api: ScriptedApi, token: str
) -> None:
    """A blank token from the caller (not the server) is refused before sending."""
    with pytest.raises(ConfigurationError):
        await client.confirm(token)
    assert api.requests("confirm") == []


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
    api: ScriptedApi,
    status: int,
    cls: type[APIError],
    fields: dict[str, Any],
) -> None:
    """An error body with odd `error`/`message` gives the status's class, body kept."""
    body = {"status": "ERROR", **fields}
    api.reply("preview", status=status, payload=body, repeat=True)
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
    client: LinesClient, api: ScriptedApi, fields: dict[str, Any]
) -> None:
    """A clean 410 at confirm stays TokenExpiredError whatever its body."""
    api.reply("confirm", status=410, payload={"status": "ERROR", **fields})
    with pytest.raises(TokenExpiredError):
        await client.confirm("lpv_required_fields_0001")
    assert len(api.requests("confirm")) == 1
