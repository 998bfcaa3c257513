"""A bot-style service that buys a line when asked, over HTTP (aiohttp.web).

`POST /lines` buys one line and answers with its number. The service keeps one
long-lived `LinesClient`, caps how many lines it will ever buy, records every
outcome (even when the asking client hangs up mid-purchase), and answers each
error with a status that says what happened.

Run it with `python examples/bot.py` (credentials from the environment) and
try `curl -X POST localhost:8080/lines`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from sendblue_lines import (
    LinesClient,
    OutcomeUnknownError,
    Provisioner,
    ProvisioningFailedError,
    ProvisionOutcome,
    RateLimitError,
    SendblueError,
)

PROVISIONER = web.AppKey("provisioner", Provisioner)
OUTCOMES = web.AppKey("outcomes", list)


def make_app(
    client: LinesClient | None = None, *, max_lines: int = 10
) -> web.Application:
    """The bot's web app; uses `client` or builds one from the environment."""
    app = web.Application()
    outcomes: list[ProvisionOutcome] = []
    app[OUTCOMES] = outcomes

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        own = client is None
        lines_client = client if client is not None else LinesClient()
        app[PROVISIONER] = Provisioner(
            lines_client, max_lines=max_lines, on_outcome=outcomes.append
        )
        yield
        if own:
            await lines_client.aclose()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/lines", buy_line)
    return app


async def buy_line(request: web.Request) -> web.Response:
    """Buy one line; 201 with its number, or an error status that says why."""
    try:
        line = await request.app[PROVISIONER].provision()
    except (OutcomeUnknownError, ProvisioningFailedError) as error:
        # Money may have moved: tell the caller, and keep it for a human.
        return web.json_response(
            {"error": type(error).__name__, "needs_human": True}, status=502
        )
    except RateLimitError as error:
        retry = error.next_available_at.isoformat() if error.next_available_at else None
        return web.json_response(
            {"error": type(error).__name__, "retry_at": retry}, status=429
        )
    except SendblueError as error:
        return web.json_response({"error": type(error).__name__}, status=503)
    return web.json_response({"phone_number": line.phone_number}, status=201)


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=8080)
