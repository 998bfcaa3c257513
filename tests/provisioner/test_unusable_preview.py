"""A preview whose token is unusable is never confirmed, and fails its slot only.

The client reads such a preview as a `MalformedResponseError` (see
`tests/test_required_fields.py` for every field); here, what the Provisioner
does with it: `provision()` raises it and sends no confirm, and in a batch it
is one slot's error while the other slots buy.
"""

from __future__ import annotations

from typing import Any

import pytest
from provisioner_support import Make
from scripted_api import UNUSABLE, UNUSABLE_IDS, ScriptedApi, merged

from sendblue_lines import LinesClient, MalformedResponseError

GOOD_PREVIEW = {
    "status": "OK",
    "preview_token": "lpv_required_fields_0001",
    "expires_at": "2099-05-18T14:30:00.000Z",
    "message": "Call the confirm endpoint within 10 minutes.",
}


@pytest.mark.parametrize("value", UNUSABLE, ids=UNUSABLE_IDS)
async def test_provision_sends_no_confirm_for_an_unusable_token(
    make: Make, client: LinesClient, api: ScriptedApi, value: Any
) -> None:
    """provision() raises MalformedResponseError and never confirms a bad token."""
    api.fail("limits", "404")
    api.raw("preview", 200, merged(GOOD_PREVIEW, preview_token=value))
    api.confirm()
    with pytest.raises(MalformedResponseError):
        await make().provision()
    assert api.count("confirm") == 0


@pytest.mark.parametrize("value", UNUSABLE, ids=UNUSABLE_IDS)
async def test_in_a_batch_an_unusable_preview_fails_only_its_slot(
    make: Make, client: LinesClient, api: ScriptedApi, value: Any
) -> None:
    """The bad preview is one slot's MalformedResponseError; the other slots buy."""
    api.fail("limits", "404")
    api.raw("preview", 200, merged(GOOD_PREVIEW, preview_token=value))
    tokens = api.preview(times=2)
    api.confirm(times=2)
    result = await make().provision_many(3, concurrency=1)
    assert result.stopped_by is None
    assert result.not_attempted == 0
    assert len(result.lines) == 2
    [error] = result.errors
    assert isinstance(error, MalformedResponseError)
    assert api.confirmed_tokens() == tokens
