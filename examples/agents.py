"""A web service that gives each new AI agent a line of its own: one per agent, ever.

`POST /agents` with ``{"agent_id": "42"}`` buys the agent's line with
``provision(key="agent:42")``. The key is kept in the journal, so a
caller's retry (a timeout, a double click, a restarted replica asked again)
never buys a second line: it gets the same line back and nothing is sent to
Sendblue; or, when the first purchase charged without a line or its outcome
was lost, the same error again, with the same token, until a person settles
it (`sendblue-lines settle`). Replicas that share the journal share the
rule, and `reconciling()` settles what a dead one left open.

Run it with `python examples/agents.py` (credentials from the environment;
the journal in ``agents.sqlite3``) and try
``curl -X POST localhost:8080/agents -d '{"agent_id": "42"}'`` twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from sendblue_lines import (
    Journal,
    LinesClient,
    OutcomeUnknownError,
    Provisioner,
    ProvisioningFailedError,
    RateLimitError,
    SendblueError,
    SQLiteJournal,
)

PROVISIONER = web.AppKey("provisioner", Provisioner)
#: The longest agent id we take: its key, ``agent:<id>``, stays far under 200.
MAX_AGENT_ID = 64


def make_app(journal: Journal, client: LinesClient) -> web.Application:
    """The service's app, over an open `journal` and `client`.

    Start and stop it in one task (`web.run_app`, or an `AppRunner` as in
    `serve`): its `reconciling()` block is a task group.
    """
    app = web.Application()
    provisioner = Provisioner(client, journal=journal)
    app[PROVISIONER] = provisioner

    async def reconciling(app: web.Application) -> AsyncIterator[None]:
        # A replica that died mid-purchase: what it left open is settled
        # here, with its own token, as soon as the journal judges it gone.
        async with provisioner.reconciling():
            yield

    app.cleanup_ctx.append(reconciling)
    app.router.add_post("/agents", create_agent)
    return app


async def create_agent(request: web.Request) -> web.Response:
    """Give the agent its line: 201 with its number, the same one on every retry."""
    try:
        agent_id = (await request.json())["agent_id"]
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": 'send {"agent_id": ...}'}, status=400)
    if not (
        isinstance(agent_id, str)
        and 0 < len(agent_id) <= MAX_AGENT_ID
        and agent_id.isprintable()
    ):
        return web.json_response({"error": "a printable agent_id"}, status=400)
    try:
        line = await request.app[PROVISIONER].provision(key=f"agent:{agent_id}")
    except OutcomeUnknownError as error:
        # Every retry gets this same token until a person settles it.
        body = {"error": "OutcomeUnknownError", "needs_human": True}
        return web.json_response(
            {**body, "preview_token": error.preview_token}, status=502
        )
    except ProvisioningFailedError:
        body = {"error": "ProvisioningFailedError", "needs_human": True}
        return web.json_response(body, status=502)
    except RateLimitError as error:
        retry = error.next_available_at.isoformat() if error.next_available_at else None
        return web.json_response(
            {"error": type(error).__name__, "retry_at": retry}, status=429
        )
    except SendblueError as error:
        return web.json_response({"error": type(error).__name__}, status=503)
    return web.json_response(
        {"agent_id": agent_id, "phone_number": line.phone_number}, status=201
    )


async def serve(port: int = 8080) -> None:
    """Serve on 127.0.0.1 until interrupted: the journal in agents.sqlite3."""
    async with SQLiteJournal("agents.sqlite3") as journal, LinesClient() as client:
        runner = web.AppRunner(make_app(journal, client))
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", port).start()
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(serve())
