"""The error tree: its shape, its data, its messages, and pickling."""

from __future__ import annotations

import inspect
import pickle
from datetime import datetime, timezone
from typing import Any

import pytest

import sendblue_lines
from sendblue_lines import errors
from sendblue_lines.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DailyLimitReachedError,
    JournalError,
    MalformedResponseError,
    MonthlyLimitReachedError,
    NoCardOnFileError,
    NoLinesAvailableError,
    OutcomeUnknownError,
    PermissionDeniedError,
    ProvisioningFailedError,
    RateLimitError,
    SendblueError,
    ServerError,
    TokenExpiredError,
    TransportError,
)
from sendblue_lines.models import LimitWindow, ProvisioningLimits

FIRST_SENT = datetime(2026, 5, 18, 14, 21, 3, 250000, tzinfo=timezone.utc)
BODY = {"status": "ERROR", "error": "some_code", "message": "some text"}

#: One realistic instance of every error class, and the attributes it carries.
INSTANCES: list[Any] = [
    pytest.param(SendblueError("boom"), {"message": "boom"}, id="SendblueError"),
    pytest.param(
        ConfigurationError("missing credentials"),
        {"message": "missing credentials"},
        id="ConfigurationError",
    ),
    pytest.param(
        TransportError("refused", sent=False, method="POST", path="/x"),
        {"message": "refused", "sent": False, "method": "POST", "path": "/x"},
        id="TransportError",
    ),
    pytest.param(
        MalformedResponseError("bad", status=200, raw="<html>", path="/p"),
        {"message": "bad", "status": 200, "raw": "<html>", "path": "/p"},
        id="MalformedResponseError",
    ),
    *[
        pytest.param(
            cls("some text", status=status, code="some_code", body=BODY, path="/p"),
            {
                "message": "some text",
                "status": status,
                "code": "some_code",
                "body": BODY,
                "path": "/p",
            },
            id=cls.__name__,
        )
        for cls, status in [
            (APIError, 418),
            (BadRequestError, 400),
            (AuthenticationError, 401),
            (NoCardOnFileError, 402),
            (PermissionDeniedError, 403),
            (TokenExpiredError, 410),
            (NoLinesAvailableError, 503),
            (ProvisioningFailedError, 500),
            (ServerError, 502),
        ]
    ],
    *[
        pytest.param(
            cls(
                "limit reached",
                code="daily_limit_reached",
                body=BODY,
                limits=ProvisioningLimits(daily=LimitWindow(limit=3, used=3)),
                next_available_at=FIRST_SENT,
            ),
            {
                "status": 429,
                "code": "daily_limit_reached",
                "body": BODY,
                "limits": ProvisioningLimits(daily=LimitWindow(limit=3, used=3)),
                "next_available_at": FIRST_SENT,
            },
            id=cls.__name__,
        )
        for cls in (RateLimitError, DailyLimitReachedError, MonthlyLimitReachedError)
    ],
    pytest.param(
        OutcomeUnknownError(
            "unknown",
            preview_token="lpv_abc123def456",
            first_sent_at=FIRST_SENT,
            attempts=2,
            reason="timed out; then HTTP 410",
            status=410,
            raw='{"status": "ERROR"}',
        ),
        {
            "message": "unknown",
            "preview_token": "lpv_abc123def456",
            "first_sent_at": FIRST_SENT,
            "attempts": 2,
            "reason": "timed out; then HTTP 410",
            "status": 410,
            "raw": '{"status": "ERROR"}',
        },
        id="OutcomeUnknownError",
    ),
    pytest.param(
        JournalError(
            "SQLite journal j.sqlite3: cannot record the outcome: disk is full",
            backend="sqlite",
            location="j.sqlite3",
            operation="record the outcome",
        ),
        {
            "message": (
                "SQLite journal j.sqlite3: cannot record the outcome: disk is full"
            ),
            "backend": "sqlite",
            "location": "j.sqlite3",
            "operation": "record the outcome",
        },
        id="JournalError",
    ),
]


@pytest.mark.parametrize(("error", "attributes"), INSTANCES)
def test_errors_pickle_with_their_data(error: Any, attributes: dict[str, Any]) -> None:
    """Every error survives a pickle round trip with its class, message and data."""
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        copy = pickle.loads(pickle.dumps(error, protocol=protocol))  # noqa: S301
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert copy.args == error.args
        for name, value in attributes.items():
            assert getattr(copy, name) == value, name


#: Sample values for keyword arguments, by name; others are guessed by type.
SAMPLES: dict[str, Any] = {
    "sent": False,
    "status": 418,
    "body": BODY,
    "first_sent_at": FIRST_SENT,
    "next_available_at": FIRST_SENT,
    "limits": ProvisioningLimits(monthly=LimitWindow(limit=10, used=2)),
}


def _sample(parameter: inspect.Parameter) -> Any:
    if parameter.name in SAMPLES:
        return SAMPLES[parameter.name]
    annotation = str(parameter.annotation)
    if "int" in annotation:
        return 7
    if "datetime" in annotation:
        return FIRST_SENT
    return f"sample {parameter.name}"


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_class_pickles_with_all_its_attributes(name: str) -> None:
    """Every class in `sendblue_lines.errors`, given all arguments, pickles whole."""
    cls = getattr(errors, name)
    parameters = list(inspect.signature(cls).parameters.values())[1:]
    kwargs = {p.name: _sample(p) for p in parameters}
    error = cls("what happened", **kwargs)
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301
    assert type(copy) is cls
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)
    for key, value in kwargs.items():
        if key != "raw":
            assert getattr(copy, key) == value, key


@pytest.mark.parametrize(
    ("cls", "parent"),
    [
        pytest.param(ConfigurationError, SendblueError, id="ConfigurationError"),
        pytest.param(TransportError, SendblueError, id="TransportError"),
        pytest.param(MalformedResponseError, SendblueError, id="MalformedResponse"),
        pytest.param(APIError, SendblueError, id="APIError"),
        pytest.param(OutcomeUnknownError, SendblueError, id="OutcomeUnknownError"),
        pytest.param(BadRequestError, APIError, id="BadRequestError"),
        pytest.param(AuthenticationError, APIError, id="AuthenticationError"),
        pytest.param(NoCardOnFileError, APIError, id="NoCardOnFileError"),
        pytest.param(PermissionDeniedError, APIError, id="PermissionDeniedError"),
        pytest.param(TokenExpiredError, APIError, id="TokenExpiredError"),
        pytest.param(RateLimitError, APIError, id="RateLimitError"),
        pytest.param(DailyLimitReachedError, RateLimitError, id="DailyLimit"),
        pytest.param(MonthlyLimitReachedError, RateLimitError, id="MonthlyLimit"),
        pytest.param(NoLinesAvailableError, APIError, id="NoLinesAvailableError"),
        pytest.param(ProvisioningFailedError, APIError, id="ProvisioningFailed"),
        pytest.param(ServerError, APIError, id="ServerError"),
        pytest.param(JournalError, SendblueError, id="JournalError"),
    ],
)
def test_the_tree_is_the_one_design_draws(cls: type, parent: type) -> None:
    """Each error sits directly under the parent that design.md's tree gives it."""
    assert cls.__bases__ == (parent,)


def test_the_base_error_is_an_exception_not_a_base_exception() -> None:
    """SendblueError derives from Exception, so `except Exception` catches it."""
    assert SendblueError.__bases__ == (Exception,)


def test_every_error_is_exported_from_the_package() -> None:
    """The package re-exports every error class under the same object."""
    for name in errors.__all__:
        assert getattr(sendblue_lines, name) is getattr(errors, name)
        assert name.endswith("Error")


def test_api_error_str_names_status_code_and_message() -> None:
    """An APIError reads as its status, code and the server's message."""
    error = DailyLimitReachedError(
        "Maximum 3 lines can be added per day via API",
        code="daily_limit_reached",
    )
    assert str(error) == (
        "HTTP 429 daily_limit_reached: Maximum 3 lines can be added per day via API"
    )
    assert str(AuthenticationError("Invalid API credentials", status=401)) == (
        "HTTP 401: Invalid API credentials"
    )


def test_api_error_copies_its_body() -> None:
    """An APIError keeps its own copy of the body, not the caller's mapping."""
    body = {"status": "ERROR", "message": "x"}
    error = APIError("x", status=418, body=body)
    body["message"] = "changed"
    assert error.body == {"status": "ERROR", "message": "x"}
    assert APIError("x", status=418).body is None


@pytest.mark.parametrize(
    "cls",
    [
        pytest.param(MalformedResponseError, id="MalformedResponseError"),
        pytest.param(OutcomeUnknownError, id="OutcomeUnknownError"),
    ],
)
def test_raw_text_is_cut_to_an_excerpt(cls: type[Any]) -> None:
    """A huge raw body is kept as its first 2 KiB plus a note of what was cut."""
    raw = "x" * 5000
    if cls is OutcomeUnknownError:
        error = cls(
            "m",
            preview_token="lpv_t",
            first_sent_at=FIRST_SENT,
            attempts=1,
            reason="r",
            raw=raw,
        )
    else:
        error = cls("m", raw=raw)
    assert error.raw.startswith("x" * 2048)
    assert error.raw.endswith("... [2952 more characters]")
    assert len(error.raw) < 2100


def test_short_raw_text_is_kept_whole() -> None:
    """A raw body within the limit is kept as it is."""
    assert MalformedResponseError("m", raw="<html>").raw == "<html>"
    assert MalformedResponseError("m").raw is None
