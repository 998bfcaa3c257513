"""Testing your own code against the sandbox, with the `sendblue_sandbox` fixture.

Installing sendblue-lines registers the fixture with pytest: no conftest is
needed. Each test gets a fresh sandbox on 127.0.0.1 with its own state.
"""

from __future__ import annotations

from sendblue_lines import LinesClient, OutcomeUnknownError, Provisioner
from sendblue_lines.sandbox import Fault, ManualClock, Sandbox


def client_for(sandbox: Sandbox[ManualClock]) -> LinesClient:
    """A LinesClient pointed at the sandbox's URL and default account."""
    return LinesClient(sandbox.api_key_id, sandbox.api_secret_key, base_url=sandbox.url)


async def test_my_code_buys_one_line(sendblue_sandbox: Sandbox[ManualClock]) -> None:
    """A purchase through the SDK shows up in the sandbox's ledger."""
    async with client_for(sendblue_sandbox) as client:
        line = await Provisioner(client).provision()
    assert [c.phone_number for c in sendblue_sandbox.purchases()] == [line.phone_number]


async def test_my_code_survives_a_lost_answer(
    sendblue_sandbox: Sandbox[ManualClock],
) -> None:
    """A confirm whose answer is lost is reported as unknown, and bought once."""
    sendblue_sandbox.inject("confirm", Fault.drop_after_commit())
    async with client_for(sendblue_sandbox) as client:
        provisioner = Provisioner(client)
        try:
            await provisioner.provision()
        except OutcomeUnknownError as error:
            unknown = error
        else:  # pragma: no cover - the fault makes this unreachable
            raise AssertionError("expected an unknown outcome")
    assert len(sendblue_sandbox.ledger) == 1
    assert sendblue_sandbox.ledger[0].preview_token == unknown.preview_token


async def test_my_code_respects_the_daily_limit(
    sendblue_sandbox: Sandbox[ManualClock],
) -> None:
    """A batch of five on a fresh account buys three: the default daily limit."""
    async with client_for(sendblue_sandbox) as client:
        result = await Provisioner(client).provision_many(5, concurrency=5)
    assert len(result.lines) == 3
    assert result.not_attempted == 2
    assert len(sendblue_sandbox.purchases()) == 3
