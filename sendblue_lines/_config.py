"""Reading and checking the client's configuration, before any request.

Credentials and the base URL come from arguments or from the environment;
everything is validated here so that a bad configuration is a
`ConfigurationError` from the constructor, never a surprise at the first
await. Nothing in this module ever puts a secret in a message.
"""

from __future__ import annotations

import ipaddress
import os
import unicodedata
from collections.abc import Mapping
from typing import Final
from urllib.parse import SplitResult, urlsplit

import attrs

from .errors import ConfigurationError

DEFAULT_BASE_URL = "https://api.sendblue.com"

#: Where credentials are looked up, first match wins.
KEY_ID_VARIABLES = ("SENDBLUE_API_KEY_ID", "SENDBLUE_API_API_KEY")
SECRET_VARIABLES = ("SENDBLUE_API_SECRET_KEY", "SENDBLUE_API_API_SECRET")
BASE_URL_VARIABLE = "SENDBLUE_BASE_URL"
#: Where the base URL is looked up, first match wins (the second is the official SDK's).
BASE_URL_VARIABLES = (BASE_URL_VARIABLE, "SENDBLUE_API_BASE_URL")


@attrs.frozen(kw_only=True)
class Credentials:
    """An API key id and its secret, checked to be sendable as headers."""

    key_id: str
    secret: str = attrs.field(repr=lambda _: "'***'")

    def headers(self) -> dict[str, str]:
        """The two authentication headers of every request."""
        return {"sb-api-key-id": self.key_id, "sb-api-secret-key": self.secret}


def _from_env(
    value: str | None, names: tuple[str, ...], env: Mapping[str, str]
) -> str | None:
    if value is not None:
        return value
    for name in names:
        found = env.get(name)
        if found:
            return found
    return None


def check_header_value(value: str, what: str) -> str:
    """Return `value` if it can go in a header; raise `ConfigurationError` if not."""
    if not isinstance(value, str):
        raise ConfigurationError(f"{what} must be a string, got {type(value).__name__}")
    if not value or value != value.strip():
        raise ConfigurationError(f"{what} is empty or has surrounding white space")
    # CR/LF would let a value inject headers; other control characters are
    # refused by servers and proxies in confusing ways.
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ConfigurationError(f"{what} contains control characters")
    if not value.isascii():
        raise ConfigurationError(f"{what} contains non-ASCII characters")
    return value


def resolve_credentials(
    api_key_id: str | None,
    api_secret_key: str | None,
    env: Mapping[str, str] | None = None,
) -> Credentials:
    """Take the credentials from the arguments or the environment, and check them.

    Raises:
        ConfigurationError: one is missing (the message names the variables
            that were looked at), or not sendable as an HTTP header value.
    """
    environ = os.environ if env is None else env
    key_id = _from_env(api_key_id, KEY_ID_VARIABLES, environ)
    secret = _from_env(api_secret_key, SECRET_VARIABLES, environ)
    missing = []
    if key_id is None:
        missing.append(
            f"the API key id (api_key_id= or {' / '.join(KEY_ID_VARIABLES)})"
        )
    if secret is None:
        missing.append(
            f"the API secret key (api_secret_key= or {' / '.join(SECRET_VARIABLES)})"
        )
    if missing:
        raise ConfigurationError(
            "missing Sendblue credentials: set " + " and ".join(missing)
        )
    return Credentials(
        key_id=check_header_value(key_id or "", "the API key id"),
        secret=check_header_value(secret or "", "the API secret key"),
    )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def shown_url(url: str) -> str:
    """The URL as it is safe to repeat: no user info, query or fragment."""
    # A base URL may carry a password or a key in its query; an error message
    # ends up in logs and tracebacks, so it never repeats those parts.
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"


def split_http_url(
    url: str, what: str, *, credentials: bool
) -> tuple[SplitResult, str]:
    """Split an absolute http(s) URL with a host, no query and no fragment.

    Returns its parts and its host. `credentials` allows a user and password.

    Raises:
        ConfigurationError: it is not such a URL (its secret parts never
            appear in the message).
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        raise ConfigurationError(
            f"{what} {shown_url(url)!r} is not valid (bad host or port)"
        ) from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigurationError(
            f"{what} {shown_url(url)!r} must be an absolute http(s) URL with a host"
        )
    if not credentials and (parts.username is not None or parts.password is not None):
        raise ConfigurationError(f"{what} must not carry credentials")
    if parts.query or parts.fragment:
        raise ConfigurationError(
            f"{what} {shown_url(url)!r} must not have a query or fragment"
        )
    return parts, host


def resolve_base_url(base_url: str | None, env: Mapping[str, str] | None = None) -> str:
    """Take the base URL from the argument, the environment or the default.

    The environment is `SENDBLUE_BASE_URL`, then the official SDK's
    `SENDBLUE_API_BASE_URL`; an empty variable counts as unset.

    Returns it without a trailing slash.

    Raises:
        ConfigurationError: it is not an absolute http(s) URL, it has a query,
            fragment or credentials, or it is plain http to a host that is not
            loopback (127.0.0.0/8, ::1, localhost).
    """
    environ = os.environ if env is None else env
    url = _from_env(base_url, BASE_URL_VARIABLES, environ)
    if url is None:
        return DEFAULT_BASE_URL
    if not isinstance(url, str):
        raise ConfigurationError("base_url must be a string")
    check_header_value(url, "the base URL")
    parts, host = split_http_url(url, "the base URL", credentials=False)
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigurationError(
            f"refusing plain http to {host!r}: the secret would cross the network "
            "unencrypted; use https (http is allowed for loopback hosts only)"
        )
    return url.rstrip("/")


#: The longest any time option may be, in seconds: a day. Longer is a mistake
#: (a unit slip, an `inf`), and aiohttp's timers misbehave with huge values.
MAX_SECONDS = 86_400.0


def check_seconds(
    value: object,
    what: str,
    *,
    allow_zero: bool = False,
    high: float = MAX_SECONDS,
) -> float:
    """Return `value` as a float number of seconds, or raise.

    The one check for every time option: a real number (not a bool, str or
    None), finite, above zero (or zero itself when `allow_zero`), at most
    `high`.

    Raises:
        ConfigurationError: any other value; the message names the option.
    """
    low = "0 or more" if allow_zero else "more than 0"
    rule = f"{what} must be a number of seconds, {low} and at most {high:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{rule}, got {type(value).__name__}")
    number = float(value)
    # NaN fails every comparison, so it lands here too.
    if not (number >= 0 if allow_zero else number > 0) or not number <= high:
        raise ConfigurationError(f"{rule}, got {number!r}")
    return number


def check_count(value: object, what: str, *, low: int, high: int | None = None) -> int:
    """Return `value` as an int from `low` to `high` (None: no upper bound), or raise.

    Raises:
        ConfigurationError: not an int (a bool, float or str included), or
            out of range; the message names the option.
    """
    span = f"from {low} to {high}" if high is not None else f"of at least {low}"
    rule = f"{what} must be an integer {span}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{rule}, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        raise ConfigurationError(f"{rule}, got {value}")
    return int(value)


def check_callable(value: object, what: str) -> None:
    """Accept None or a callable; raise `ConfigurationError` for anything else."""
    if value is not None and not callable(value):
        raise ConfigurationError(f"{what} must be callable or None")


def check_instance(value: object, kind: type, what: str) -> None:
    """Accept None or an instance of `kind`; raise `ConfigurationError` otherwise."""
    if value is not None and not isinstance(value, kind):
        raise ConfigurationError(f"{what} must be a {kind.__name__}")


#: The longest key, in characters.
KEY_MAX_LENGTH: Final = 200


def key_problem(key: object) -> str | None:
    """Say what is wrong with `key`, or None when it is a usable key.

    A key is a string of 1 to 200 characters with no control character
    (none of Unicode's category C: C0, C1, format and the like), so that it
    prints on one line wherever it is shown.
    """
    if not isinstance(key, str):
        return f"a key is a string, not {type(key).__name__}"
    if not key:
        return "a key cannot be empty"
    if len(key) > KEY_MAX_LENGTH:
        return f"a key is at most {KEY_MAX_LENGTH} characters, not {len(key)}"
    if any(unicodedata.category(c).startswith("C") for c in key):
        return "a key cannot hold control characters"
    return None
