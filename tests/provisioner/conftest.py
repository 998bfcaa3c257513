"""Fixtures for the Provisioner's tests: a scripted client, a factory, a sandbox client.

Unit tests script the API with `api` (aioresponses, see `scripted_api`) and
buy through `client`, whose secret (`provisioner_support.SECRET`) is unique
to these tests; tests over real sockets use the sandbox through
`sandbox_client`, whose secret is the sandbox's own random one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from crash_support import store_spec
from provisioner_support import FAST_NO_LINES, KEY_ID, NO_WAIT, SECRET, Make, connect
from scripted_api import BASE_URL

from sendblue_lines import LinesClient, Provisioner
from sendblue_lines.sandbox import ManualClock, Sandbox


@pytest.fixture
async def client() -> AsyncIterator[LinesClient]:
    """A LinesClient on the scripted base URL, retrying without waiting."""
    async with LinesClient(KEY_ID, SECRET, base_url=BASE_URL, retry=NO_WAIT) as c:
        yield c


@pytest.fixture
def make(client: LinesClient) -> Make:
    """A Provisioner factory on `client`, whose no-lines retries do not wait."""

    def build(**options: Any) -> Provisioner:
        options.setdefault("no_lines_retry", FAST_NO_LINES)
        return Provisioner(client, **options)

    return build


@pytest.fixture
async def sandbox_client(
    sendblue_sandbox: Sandbox[ManualClock],
) -> AsyncIterator[LinesClient]:
    """A LinesClient on the sandbox, with short timeouts and no waiting retries."""
    async with connect(sendblue_sandbox, timeout=2.0) as c:
        yield c


@pytest.fixture(params=["sqlite", "postgres"])
async def spec(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """A fresh journal store of each kind, as a spec a child process can open."""
    async with store_spec(request.param, tmp_path) as made:
        yield made
