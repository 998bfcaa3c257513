"""Fixtures shared by the whole suite, and the aioresponses shim for aiohttp 3.14."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from unittest import mock

import aiohttp
import aioresponses.core
import pytest
from aioresponses import aioresponses as AioResponses

from sendblue_lines import LinesClient, RetryPolicy


class _ShimResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds responses without aiohttp 3.14's `stream_writer`.

    Upstream issue pnuckowski/aioresponses#289 is open with no newer release;
    this test-only subclass supplies the missing argument.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", mock.Mock())
        super().__init__(*args, **kwargs)


aioresponses.core.ClientResponse = _ShimResponse  # type: ignore[misc]

BASE_URL = "https://api.sendblue.test"
KEY_ID = "key-id-for-tests"
SECRET = "s3cr3t-never-to-be-seen"
LIMITS_URL = BASE_URL + "/accounts/limits"
PREVIEW_URL = BASE_URL + "/accounts/lines/provision-preview"
CONFIRM_URL = BASE_URL + "/accounts/lines/provision-confirm"

#: Retries without waiting, so that tests of retry rules run instantly.
NO_WAIT = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)


@pytest.fixture
def mocked() -> Iterator[AioResponses]:
    """An aioresponses mock of every aiohttp request made in the test."""
    with AioResponses() as m:
        yield m


@pytest.fixture
async def client() -> AsyncIterator[LinesClient]:
    """A LinesClient on a fake https base URL, retrying without waiting."""
    async with LinesClient(KEY_ID, SECRET, base_url=BASE_URL, retry=NO_WAIT) as c:
        yield c
