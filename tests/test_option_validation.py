"""Every numeric and time option is checked in the constructor, before any await.

One table of bad values (inf, nan, negative, zero where it means nothing,
absurdly large, wrong types) runs against every option of `LinesClient`,
`RetryPolicy` and the `Provisioner`, including `batch()`'s.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sendblue_lines import ConfigurationError, LinesClient, Provisioner, RetryPolicy

INF = float("inf")
NAN = float("nan")

#: Wrong for any number: types first, then the values no option takes.
NOT_A_NUMBER = [
    pytest.param("30", id="str"),
    pytest.param(None, id="none"),
    pytest.param(True, id="bool-true"),
    pytest.param(False, id="bool-false"),
    pytest.param([1], id="list"),
    pytest.param(1 + 0j, id="complex"),
]
BAD_SECONDS = [
    *NOT_A_NUMBER,
    pytest.param(INF, id="inf"),
    pytest.param(-INF, id="minus-inf"),
    pytest.param(NAN, id="nan"),
    pytest.param(-1, id="negative"),
    pytest.param(-0.001, id="slightly-negative"),
    pytest.param(86_400.5, id="over-a-day"),
    pytest.param(1e300, id="absurd"),
]
BAD_POSITIVE_SECONDS = [
    *BAD_SECONDS,
    pytest.param(0, id="zero"),
    pytest.param(0.0, id="zero-float"),
]
BAD_COUNTS = [
    *NOT_A_NUMBER,
    pytest.param(2.0, id="float"),
    pytest.param(INF, id="inf"),
    pytest.param(NAN, id="nan"),
    pytest.param(-1, id="negative"),
    pytest.param(10**12, id="absurd"),
]


def no_loop() -> None:
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


@pytest.mark.parametrize("value", BAD_POSITIVE_SECONDS)
@pytest.mark.parametrize("option", ["timeout", "connect_timeout"])
def test_lines_client_time_options_are_checked(option: str, value: Any) -> None:
    """Each time option of LinesClient refuses every bad value, with no loop running."""
    no_loop()
    with pytest.raises(ConfigurationError, match=option):
        LinesClient("k", "s", **{option: value})


@pytest.mark.parametrize(
    "value", [*BAD_COUNTS, pytest.param(0, id="zero"), pytest.param(6, id="six")]
)
def test_confirm_attempts_is_checked(value: Any) -> None:
    """confirm_attempts is an int from 1 to 5."""
    with pytest.raises(ConfigurationError, match="confirm_attempts"):
        LinesClient("k", "s", confirm_attempts=value)


@pytest.mark.parametrize(
    "value", [pytest.param(3, id="int"), pytest.param("f", id="str")]
)
def test_on_attempt_must_be_callable(value: Any) -> None:
    """on_attempt is a callable or None."""
    with pytest.raises(ConfigurationError, match="on_attempt"):
        LinesClient("k", "s", on_attempt=value)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"timeout": 0.001, "connect_timeout": 0.001}, id="tiny"),
        pytest.param({"timeout": 86_400, "connect_timeout": 86_400}, id="a-day"),
        pytest.param({"timeout": 5, "connect_timeout": 2}, id="ints"),
        pytest.param({"confirm_attempts": 1}, id="one-attempt"),
        pytest.param({"confirm_attempts": 5}, id="five-attempts"),
    ],
)
def test_sane_client_options_are_accepted(options: dict[str, Any]) -> None:
    """The edges of every range are accepted, and timeouts become floats."""
    client = LinesClient("k", "s", **options)
    assert isinstance(client.timeout, float)


@pytest.mark.parametrize(
    "value", [*BAD_COUNTS, pytest.param(0, id="zero"), pytest.param(6, id="six")]
)
def test_retry_attempts_are_checked(value: Any) -> None:
    """RetryPolicy.attempts is an int from 1 to 5, checked by its constructor."""
    with pytest.raises(ConfigurationError, match="attempts"):
        RetryPolicy(attempts=value)


@pytest.mark.parametrize("value", BAD_SECONDS)
@pytest.mark.parametrize("field", ["base_delay", "max_delay"])
def test_retry_delays_are_checked(field: str, value: Any) -> None:
    """Each delay of RetryPolicy is finite seconds from 0 to a day."""
    options = {"base_delay": 0.0, "max_delay": 86_400.0, field: value}
    with pytest.raises(ConfigurationError, match=field):
        RetryPolicy(**options)


def test_retry_base_delay_above_max_delay_is_refused() -> None:
    """base_delay may not exceed max_delay."""
    with pytest.raises(ConfigurationError, match="base_delay <= max_delay"):
        RetryPolicy(base_delay=2, max_delay=1)


def test_retry_zero_delays_are_allowed() -> None:
    """Zero delays are a policy (retry at once), not a mistake."""
    assert RetryPolicy(base_delay=0, max_delay=0).delay(3) == 0


@pytest.fixture
def client() -> LinesClient:
    return LinesClient("k", "s", base_url="https://api.example.test")


@pytest.mark.parametrize("value", BAD_COUNTS)
def test_max_lines_is_checked(client: LinesClient, value: Any) -> None:
    """max_lines is None or an int from 0 to a million."""
    if value is None:
        assert Provisioner(client, max_lines=None).max_lines is None
        return
    with pytest.raises(ConfigurationError, match="max_lines"):
        Provisioner(client, max_lines=value)


@pytest.mark.parametrize("value", [*BAD_COUNTS, pytest.param(11, id="eleven")])
def test_max_repreviews_is_checked(client: LinesClient, value: Any) -> None:
    """max_repreviews is an int from 0 to 10."""
    with pytest.raises(ConfigurationError, match="max_repreviews"):
        Provisioner(client, max_repreviews=value)


@pytest.mark.parametrize(
    "value", [*BAD_SECONDS, pytest.param(600, id="token-lifetime")]
)
def test_expiry_margin_is_checked(client: LinesClient, value: Any) -> None:
    """expiry_margin is finite seconds from 0 to just under a token's 10 minutes."""
    with pytest.raises(ConfigurationError, match="expiry_margin"):
        Provisioner(client, expiry_margin=value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(False, id="false"),
        pytest.param(0, id="zero"),
        pytest.param(0.0, id="zero-float"),
        pytest.param(3, id="int"),
        pytest.param("0", id="str"),
        pytest.param({"attempts": 3}, id="dict"),
    ],
)
def test_no_lines_retry_is_checked(client: LinesClient, value: Any) -> None:
    """no_lines_retry is a RetryPolicy or None, nothing else."""
    with pytest.raises(ConfigurationError, match="no_lines_retry"):
        Provisioner(client, no_lines_retry=value)


@pytest.mark.parametrize("value", [None, RetryPolicy()])
def test_no_lines_retry_accepts_its_documented_values(
    client: LinesClient, value: Any
) -> None:
    """None and a RetryPolicy are the documented values."""
    Provisioner(client, no_lines_retry=value)


@pytest.mark.parametrize(
    "value",
    [*BAD_COUNTS, pytest.param(0, id="zero"), pytest.param(1001, id="over-1000")],
)
def test_batch_concurrency_is_checked(client: LinesClient, value: Any) -> None:
    """batch() and provision_many() refuse a bad concurrency before any await."""
    provisioner = Provisioner(client)
    with pytest.raises(ConfigurationError, match="concurrency"):
        provisioner.batch(3, concurrency=value)


@pytest.mark.parametrize("value", [v for v in BAD_COUNTS if v.id != "absurd"])
def test_batch_count_is_checked(client: LinesClient, value: Any) -> None:
    """batch()'s count is a non-negative int."""
    provisioner = Provisioner(client)
    with pytest.raises(ConfigurationError, match="count"):
        provisioner.batch(value)


async def test_provision_many_refuses_a_bad_concurrency_before_any_request(
    client: LinesClient,
) -> None:
    """provision_many checks its options before it reads the limits."""
    provisioner = Provisioner(client)
    with pytest.raises(ConfigurationError, match="concurrency"):
        await provisioner.provision_many(2, concurrency=float("inf"))  # type: ignore[arg-type]
    assert not client.closed
