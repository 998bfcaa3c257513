"""The Provisioner refuses bad options in its constructor, before any request."""

from __future__ import annotations

from typing import Any

import pytest

from sendblue_lines import (
    ConfigurationError,
    LinesClient,
    Provisioner,
)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"max_lines": -1}, id="negative-max-lines"),
        pytest.param({"max_lines": True}, id="bool-max-lines"),
        pytest.param({"max_repreviews": -1}, id="negative-repreviews"),
        pytest.param({"max_repreviews": 11}, id="too-many-repreviews"),
        pytest.param({"no_lines_retry": 3}, id="int-retry"),
        pytest.param({"expiry_margin": -1.0}, id="negative-margin"),
        pytest.param({"expiry_margin": 600}, id="margin-as-long-as-a-token"),
        pytest.param({"on_outcome": "print"}, id="on-outcome-not-callable"),
        pytest.param({"approve": 1}, id="approve-not-callable"),
    ],
)
async def test_bad_options_are_refused_by_the_constructor(
    client: LinesClient, options: dict[str, Any]
) -> None:
    """Every option is checked before any await."""
    with pytest.raises(ConfigurationError):
        Provisioner(client, **options)


def test_a_client_is_required() -> None:
    """Only a LinesClient will do."""
    with pytest.raises(ConfigurationError):
        Provisioner(object())  # type: ignore[arg-type]
