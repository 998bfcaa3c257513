"""Checking `proxy=`, `trust_env=`, `trace_configs=`: options of the SDK's session.

They configure the `aiohttp.ClientSession` that `LinesClient` creates, so
with a caller's `session=` they are refused (the caller configures its own
session; silently ignoring a proxy would send traffic where the caller said
it must not go). The secret must never reach a proxy in the clear: an
https base URL goes through a proxy as a CONNECT tunnel (the proxy sees the
host and port, then only TLS), and a plain-http base URL (loopback only)
is refused with `proxy=`, and with `trust_env=True` when the environment
names a proxy for it. A proxy URL may carry the proxy's own user and
password; no message here ever repeats them.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ._config import check_header_value, split_http_url
from .errors import ConfigurationError

__all__ = ["session_options"]


def _check_proxy(proxy: object, base_url: str) -> str:
    if not isinstance(proxy, str):
        raise ConfigurationError(
            f"proxy must be an http(s) URL string or None, not {type(proxy).__name__}"
        )
    try:
        check_header_value(proxy, "the proxy URL")
    except ConfigurationError:
        # The value may hold the proxy's password: say what is wrong, not what.
        raise ConfigurationError(
            "the proxy URL is empty, has surrounding white space, control or "
            "non-ASCII characters"
        ) from None
    split_http_url(proxy, "the proxy URL", credentials=True)
    if urlsplit(base_url).scheme != "https":
        raise ConfigurationError(
            "refusing proxy= with a plain-http base URL: the proxy would see the "
            "secret in the clear; use an https base URL (it goes through the proxy "
            "as a CONNECT tunnel)"
        )
    return proxy


def _check_env_proxy(base_url: str) -> None:
    parts = urlsplit(base_url)
    if parts.scheme != "http":
        return
    # The same standard-library look-ups aiohttp makes with trust_env=True.
    proxies = urllib.request.getproxies()
    if "http" in proxies and not urllib.request.proxy_bypass(parts.hostname or ""):
        raise ConfigurationError(
            "refusing trust_env=True with a plain-http base URL while the "
            "environment names an HTTP proxy (HTTP_PROXY): the proxy would see the "
            f"secret in the clear; add {parts.hostname} to NO_PROXY or use https"
        )


def session_options(
    *,
    proxy: object,
    trust_env: object,
    trace_configs: object,
    session: aiohttp.ClientSession | None,
    base_url: str,
) -> dict[str, Any]:
    """Check the session options; return the keywords for `aiohttp.ClientSession`.

    Raises:
        ConfigurationError: a bad value (the proxy's password never repeated),
            a proxy for a plain-http base URL, or any of them with `session=`.
    """
    if not isinstance(trust_env, bool):
        raise ConfigurationError("trust_env must be True or False")
    if trace_configs is not None and not (
        isinstance(trace_configs, Sequence)
        and not isinstance(trace_configs, (str, bytes))
        and all(isinstance(config, aiohttp.TraceConfig) for config in trace_configs)
    ):
        raise ConfigurationError(
            "trace_configs must be a sequence of aiohttp.TraceConfig, or None"
        )
    if proxy is not None:
        proxy = _check_proxy(proxy, base_url)
    if session is not None and (
        proxy is not None or trust_env or trace_configs is not None
    ):
        raise ConfigurationError(
            "proxy=, trust_env= and trace_configs= configure the session the SDK "
            "creates; with session= set them on your own aiohttp.ClientSession "
            "(ClientSession(proxy=..., trust_env=..., trace_configs=[...]))"
        )
    options: dict[str, Any] = {}
    if proxy is not None:
        options["proxy"] = proxy
    if trust_env:
        _check_env_proxy(base_url)
        options["trust_env"] = True
    if trace_configs:
        assert isinstance(trace_configs, Sequence)  # noqa: S101 - checked above
        options["trace_configs"] = list(trace_configs)
    return options
