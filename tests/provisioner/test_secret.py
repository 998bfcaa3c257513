"""The client's secret never reaches the Provisioner's logs, errors or repr."""

from __future__ import annotations

import logging

import pytest
from provisioner_support import (
    SECRET,
    Make,
)
from scripted_api import ScriptedApi

from sendblue_lines import (
    LinesClient,
    OutcomeUnknownError,
)


async def test_the_secret_never_reaches_the_logs(
    make: Make, client: LinesClient, api: ScriptedApi, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing the Provisioner logs, on success or failure, holds the secret."""
    api.limits()
    api.buys()
    api.limits()
    api.preview()
    api.fail("confirm", "502", times=3)
    provisioner = make()
    with caplog.at_level(logging.DEBUG, logger="sendblue_lines"):
        await provisioner.provision()
        with pytest.raises(OutcomeUnknownError) as caught:
            await provisioner.provision()
    assert caplog.records
    assert SECRET not in caplog.text
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(provisioner)
