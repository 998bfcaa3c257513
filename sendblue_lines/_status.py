"""What an HTTP answer means: the spec's status and error-code table, in one place."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import TypeVar

from ._transport import Reply
from .errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    DailyLimitReachedError,
    MalformedResponseError,
    MonthlyLimitReachedError,
    NoCardOnFileError,
    NoLinesAvailableError,
    PermissionDeniedError,
    ProvisioningFailedError,
    RateLimitError,
    ServerError,
    TokenExpiredError,
    excerpt,
)
from .models import structure

#: Status codes whose class does not depend on the body's `error` code.
_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: NoCardOnFileError,
    403: PermissionDeniedError,
    410: TokenExpiredError,
}
_RATE_LIMITS: dict[str, type[RateLimitError]] = {
    "daily_limit_reached": DailyLimitReachedError,
    "monthly_limit_reached": MonthlyLimitReachedError,
}
T = TypeVar("T")
NO_LINES_AVAILABLE = "no_lines_available"
PROVISIONING_FAILED = "provisioning_failed"


def is_success(reply: Reply) -> bool:
    """True for a 2xx answer."""
    return 200 <= reply.status < 300


def error_code(reply: Reply) -> str | None:
    """The body's `error` field, when the body is a JSON object that has one.

    An `error` that is not a string, or is blank, is no code at all (None):
    the status alone then decides the error's class.
    """
    if isinstance(reply.data, Mapping):
        code = reply.data.get("error")
        if isinstance(code, str) and code.strip():
            return code
    return None


def read(reply: Reply, path: str, cls: type[T]) -> T:
    """The body of a 2xx answer as a `cls`.

    Raises:
        MalformedResponseError: the body was unreadable or not a valid `cls`.
    """
    if reply.problem is not None:
        raise MalformedResponseError(
            f"unreadable answer from {path} (HTTP {reply.status}): {reply.problem}",
            status=reply.status,
            raw=reply.text,
            path=path,
        )
    return structure(reply.data, cls, status=reply.status, path=path, raw=reply.text)


def error_for(reply: Reply, path: str) -> APIError:
    """The typed error for a non-2xx answer, as the spec's table says."""
    status = reply.status
    body = reply.data if isinstance(reply.data, Mapping) else None
    code = error_code(reply)
    message = body.get("message") if body is not None else None
    if not isinstance(message, str) or not message.strip():
        message = _describe_status(reply)
    cls: type[APIError]
    if status in _BY_STATUS:
        cls = _BY_STATUS[status]
    elif status == 429:
        cls = _RATE_LIMITS.get(code or "", RateLimitError)
    elif status == 503 and code == NO_LINES_AVAILABLE:
        cls = NoLinesAvailableError
    elif status == 500 and code == PROVISIONING_FAILED:
        cls = ProvisioningFailedError
    elif 300 <= status < 400:
        redirect = ServerError(message, status=status, code=code, body=body, path=path)
        redirect.redirect = True
        return redirect
    elif status >= 500:
        cls = ServerError
    else:
        cls = APIError
    return cls(message, status=status, code=code, body=body, path=path)


def _describe_status(reply: Reply) -> str:
    status = reply.status
    if 300 <= status < 400:
        where = excerpt(reply.location, 200) or "an unnamed location"
        return (
            f"the server answered with a redirect to {where}, which is never "
            "followed (it could carry the API secret to another host)"
        )
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "unexpected status"
    detail = f": {excerpt(reply.text, 200)}" if reply.text.strip() else ""
    return f"{phrase}{detail}"
