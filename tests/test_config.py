"""Configuration: credentials and base URL, from arguments or the environment."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from sendblue_lines import ConfigurationError, LinesClient, RetryPolicy

ENV_NAMES = (
    "SENDBLUE_API_KEY_ID",
    "SENDBLUE_API_SECRET_KEY",
    "SENDBLUE_API_API_KEY",
    "SENDBLUE_API_API_SECRET",
    "SENDBLUE_BASE_URL",
)
SECRET = "env-secret-value-9f8e7d"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here sees credentials from the machine it runs on."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def test_credentials_come_from_the_documented_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SENDBLUE_API_KEY_ID and SENDBLUE_API_SECRET_KEY configure a bare client."""
    monkeypatch.setenv("SENDBLUE_API_KEY_ID", "env-key-id")
    monkeypatch.setenv("SENDBLUE_API_SECRET_KEY", SECRET)
    client = LinesClient()
    assert client.api_key_id == "env-key-id"
    assert client.base_url == "https://api.sendblue.com"


def test_credentials_fall_back_to_the_official_sdk_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SENDBLUE_API_API_KEY / SENDBLUE_API_API_SECRET are used when ours are unset."""
    monkeypatch.setenv("SENDBLUE_API_API_KEY", "sdk-key-id")
    monkeypatch.setenv("SENDBLUE_API_API_SECRET", SECRET)
    assert LinesClient().api_key_id == "sdk-key-id"


def test_our_variables_win_over_the_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """When both sets are present, SENDBLUE_API_KEY_ID is the one used."""
    monkeypatch.setenv("SENDBLUE_API_KEY_ID", "ours")
    monkeypatch.setenv("SENDBLUE_API_API_KEY", "theirs")
    monkeypatch.setenv("SENDBLUE_API_SECRET_KEY", SECRET)
    assert LinesClient().api_key_id == "ours"


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials and base URL passed in are used whatever the environment says."""
    monkeypatch.setenv("SENDBLUE_API_KEY_ID", "env-key-id")
    monkeypatch.setenv("SENDBLUE_API_SECRET_KEY", SECRET)
    monkeypatch.setenv("SENDBLUE_BASE_URL", "https://env.example")
    client = LinesClient("arg-key-id", "arg-secret", base_url="https://arg.example/")
    assert client.api_key_id == "arg-key-id"
    assert client.base_url == "https://arg.example"


def test_base_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """SENDBLUE_BASE_URL sets the base URL, without its trailing slash."""
    monkeypatch.setenv("SENDBLUE_BASE_URL", "http://127.0.0.1:8411/")
    client = LinesClient("key", SECRET)
    assert client.base_url == "http://127.0.0.1:8411"


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty SENDBLUE_API_KEY_ID falls through to the fallback variable."""
    monkeypatch.setenv("SENDBLUE_API_KEY_ID", "")
    monkeypatch.setenv("SENDBLUE_API_API_KEY", "sdk-key-id")
    monkeypatch.setenv("SENDBLUE_API_SECRET_KEY", SECRET)
    monkeypatch.setenv("SENDBLUE_BASE_URL", "")
    client = LinesClient()
    assert client.api_key_id == "sdk-key-id"
    assert client.base_url == "https://api.sendblue.com"


def test_missing_credentials_name_every_variable() -> None:
    """With nothing configured, the error names all four variables to set."""
    with pytest.raises(ConfigurationError) as caught:
        LinesClient()
    message = str(caught.value)
    for name in ENV_NAMES[:4]:
        assert name in message


def test_a_missing_secret_names_the_secret_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With only the key id set, the error names the secret's two variables."""
    monkeypatch.setenv("SENDBLUE_API_KEY_ID", "env-key-id")
    with pytest.raises(ConfigurationError) as caught:
        LinesClient()
    assert "SENDBLUE_API_SECRET_KEY" in str(caught.value)
    assert "SENDBLUE_API_API_SECRET" in str(caught.value)
    assert "SENDBLUE_API_KEY_ID" not in str(caught.value)


def test_a_missing_key_id_names_the_key_id_variables() -> None:
    """With only the secret passed, the error names the key id's two variables."""
    with pytest.raises(ConfigurationError) as caught:
        LinesClient(api_secret_key=SECRET)
    assert "SENDBLUE_API_KEY_ID" in str(caught.value)
    assert "SENDBLUE_API_API_KEY" in str(caught.value)
    assert SECRET not in str(caught.value)


BAD_VALUES = [
    pytest.param(f"{SECRET}\r\nX-Injected: 1", id="crlf"),
    pytest.param(f"{SECRET}\n", id="trailing-lf"),
    pytest.param(f"{SECRET}\rx", id="cr"),
    pytest.param(f"{SECRET}\x00", id="nul"),
    pytest.param(f"{SECRET}\tx", id="tab"),
    pytest.param(f"{SECRET}\x1b[0m", id="escape"),
    pytest.param(f"{SECRET}\x7f", id="del"),
    pytest.param(f" {SECRET}", id="leading-space"),
    pytest.param(f"{SECRET}é", id="non-ascii"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("value", BAD_VALUES)
def test_a_secret_that_is_not_a_clean_header_value_is_refused(value: str) -> None:
    """A secret with CR/LF, control or non-ASCII characters is refused, unquoted."""
    with pytest.raises(ConfigurationError) as caught:
        LinesClient("key-id", value)
    assert SECRET not in str(caught.value)
    assert "secret" in str(caught.value)


@pytest.mark.parametrize("value", BAD_VALUES)
def test_a_key_id_that_is_not_a_clean_header_value_is_refused(value: str) -> None:
    """A key id with CR/LF, control or non-ASCII characters is refused."""
    with pytest.raises(ConfigurationError, match="key id"):
        LinesClient(value, "secret")


def test_control_characters_in_the_environment_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A secret read from the environment is checked like one passed in."""
    monkeypatch.setenv("SENDBLUE_API_KEY_ID", "env-key-id")
    monkeypatch.setenv("SENDBLUE_API_SECRET_KEY", f"{SECRET}\r\nX-Evil: 1")
    with pytest.raises(ConfigurationError) as caught:
        LinesClient()
    assert SECRET not in str(caught.value)


def test_a_credential_that_is_not_a_string_is_refused() -> None:
    """A non-string credential is a ConfigurationError, not a TypeError later."""
    with pytest.raises(ConfigurationError, match="string"):
        LinesClient(12345, SECRET)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://api.sendblue.com", id="https"),
        pytest.param("http://127.0.0.1:8080", id="ipv4-loopback"),
        pytest.param("http://127.45.6.7", id="ipv4-loopback-range"),
        pytest.param("http://[::1]:9000", id="ipv6-loopback"),
        pytest.param("http://localhost:3000", id="localhost"),
        pytest.param("http://LOCALHOST", id="localhost-upper"),
        pytest.param("https://10.1.2.3:8443/prefix", id="https-private-with-path"),
    ],
)
def test_https_and_loopback_http_are_accepted(url: str) -> None:
    """HTTPS anywhere, and plain http to a loopback host, are accepted."""
    assert LinesClient("k", "s", base_url=url).base_url == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://api.sendblue.com", id="public-name"),
        pytest.param("http://10.0.0.5:8080", id="private-ip"),
        pytest.param("http://0.0.0.0:8080", id="unspecified"),
        pytest.param("http://[::2]", id="ipv6-not-loopback"),
        pytest.param("http://localhost.evil.example", id="localhost-prefix"),
        pytest.param("http://127.0.0.1.nip.io", id="loopback-lookalike"),
    ],
)
def test_plain_http_to_a_host_that_is_not_loopback_is_refused(url: str) -> None:
    """http:// to anything but 127.0.0.0/8, ::1 or localhost is refused."""
    with pytest.raises(ConfigurationError, match="https"):
        LinesClient("k", "s", base_url=url)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("ftp://api.sendblue.com", id="ftp"),
        pytest.param("api.sendblue.com", id="no-scheme"),
        pytest.param("https://", id="no-host"),
        pytest.param("https://api.sendblue.com:99999", id="bad-port"),
        pytest.param("https://api.sendblue.com/?a=1", id="query"),
        pytest.param("https://api.sendblue.com/#x", id="fragment"),
        pytest.param("https://api.sendblue.com\r\nX: 1", id="crlf"),
    ],
)
def test_an_unusable_base_url_is_refused(url: str) -> None:
    """A base URL that is not an absolute http(s) URL to a host is refused."""
    with pytest.raises(ConfigurationError):
        LinesClient("k", "s", base_url=url)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(f"https://user:{SECRET}@api.sendblue.com", id="https"),
        pytest.param(f"ftp://user:{SECRET}@api.sendblue.com", id="bad-scheme"),
        pytest.param(f"https://user:{SECRET}@api.sendblue.com:notaport", id="port"),
        pytest.param(f"http://user:{SECRET}@api.sendblue.com", id="plain-http"),
        pytest.param(f"https://user:{SECRET}@api.sendblue.com/?q=1", id="query"),
        pytest.param(f"https://api.sendblue.com/?key={SECRET}", id="secret-in-query"),
        pytest.param(f"https://api.sendblue.com/#{SECRET}", id="secret-in-fragment"),
    ],
)
def test_a_refused_base_url_never_repeats_its_credentials(url: str) -> None:
    """A base URL carrying a password is refused without echoing the password."""
    with pytest.raises(ConfigurationError) as caught:
        LinesClient("k", "s", base_url=url)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)
    assert caught.value.__cause__ is None or SECRET not in str(caught.value.__cause__)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"timeout": 0}, id="timeout-zero"),
        pytest.param({"timeout": -1.0}, id="timeout-negative"),
        pytest.param({"timeout": float("nan")}, id="timeout-nan"),
        pytest.param({"connect_timeout": 0}, id="connect-timeout-zero"),
        pytest.param({"confirm_attempts": 0}, id="confirm-attempts-zero"),
        pytest.param({"confirm_attempts": 6}, id="confirm-attempts-six"),
        pytest.param({"session": object()}, id="session-not-aiohttp"),
        pytest.param({"timeout": "30"}, id="timeout-string"),
        pytest.param({"connect_timeout": None}, id="connect-timeout-none"),
        pytest.param({"timeout": True}, id="timeout-bool"),
        pytest.param({"confirm_attempts": "3"}, id="confirm-attempts-string"),
        pytest.param({"confirm_attempts": 2.5}, id="confirm-attempts-float"),
        pytest.param({"retry": 3}, id="retry-not-a-policy"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    """Out-of-range or mistyped options are refused by the constructor itself."""
    with pytest.raises(ConfigurationError):
        LinesClient("k", "s", **options)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"attempts": 0}, id="attempts-zero"),
        pytest.param({"attempts": 6}, id="attempts-six"),
        pytest.param({"base_delay": -0.1}, id="negative-delay"),
        pytest.param({"base_delay": 2.0, "max_delay": 1.0}, id="cap-below-base"),
        pytest.param({"attempts": "3"}, id="attempts-string"),
        pytest.param({"attempts": 2.5}, id="attempts-float"),
        pytest.param({"attempts": True}, id="attempts-bool"),
        pytest.param({"base_delay": "0.25"}, id="delay-string"),
        pytest.param({"base_delay": float("nan")}, id="delay-nan"),
    ],
)
def test_retry_policy_validates_its_values(options: dict[str, Any]) -> None:
    """RetryPolicy allows int attempts 1 to 5 and 0 <= base_delay <= max_delay."""
    with pytest.raises(ConfigurationError):
        RetryPolicy(**options)


@pytest.mark.parametrize("attempts", [1, 2, 3, 4, 5])
def test_retry_policy_accepts_one_to_five_attempts(attempts: int) -> None:
    """Every attempt count the design allows builds a policy."""
    assert RetryPolicy(attempts=attempts).attempts == attempts


def test_retry_policy_defaults_are_the_documented_ones() -> None:
    """The default policy is 3 tries, 0.25 s base delay, 5 s cap."""
    assert RetryPolicy() == RetryPolicy(attempts=3, base_delay=0.25, max_delay=5.0)


def test_the_constructor_checks_everything_without_an_event_loop() -> None:
    """A bad configuration raises from the constructor, with no loop running."""
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    with pytest.raises(ConfigurationError):
        LinesClient("k", "s", base_url="http://api.sendblue.com")
    # And a good one builds without a loop, opening no session yet.
    client = LinesClient("k", "s")
    assert not client.closed


def test_a_caller_session_must_be_an_aiohttp_session() -> None:
    """`session=` accepts an aiohttp.ClientSession and refuses anything else."""
    assert issubclass(aiohttp.ClientSession, object)
    with pytest.raises(ConfigurationError, match="ClientSession"):
        LinesClient("k", "s", session="not a session")  # type: ignore[arg-type]
