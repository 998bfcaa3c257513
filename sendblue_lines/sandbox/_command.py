"""``sendblue-lines sandbox``: run the sandbox from a shell until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import signal
import sys
from typing import Any

from ._clock import ManualClock
from ._control import CALLS
from ._server import Sandbox, is_loopback, serve
from ._state import DEFAULT_API_KEY_ID, SandboxAccount, new_secret

__all__ = ["configure", "run"]


def _bounded(high: int) -> Any:
    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            msg = f"{text!r} is not a whole number"
            raise argparse.ArgumentTypeError(msg) from None
        if not 0 <= value <= high:
            msg = f"must be from 0 to {high}, got {value}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return count


#: Counts (limits, inventory) far above any real account's, still printable.
_count = _bounded(10**9)
#: A TCP port.
_port = _bounded(65535)
#: An hour: more latency than that is a hang, which `Fault.hang` is for.
_latency_ms = _bounded(3_600_000)


def configure(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``sandbox`` subcommand to ``subparsers`` and return its parser.

    The parser's ``handler`` default is `run`: ``sendblue-lines`` calls
    ``args.handler(args)`` and exits with what it returns.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sandbox",
        help="run a local Sendblue provisioning sandbox",
        description=(
            "Serve a local Sendblue line-provisioning sandbox until interrupted. "
            "It prints its URL and (fake) credentials; point the SDK at it with "
            "the printed SENDBLUE_* variables."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    parser.add_argument(
        "--port",
        type=_port,
        default=8787,
        help="0 picks a free port (default: %(default)s)",
    )
    parser.add_argument("--api-key-id", default=DEFAULT_API_KEY_ID, metavar="K")
    parser.add_argument(
        "--api-secret-key",
        metavar="S",
        help="the account's secret (default: a fresh random one, printed)",
    )
    parser.add_argument("--daily-limit", type=_count, default=3, metavar="N")
    parser.add_argument("--monthly-limit", type=_count, default=10, metavar="N")
    parser.add_argument(
        "--inventory",
        type=_count,
        metavar="N",
        help="lines to sell (default: unlimited)",
    )
    parser.add_argument(
        "--latency-ms",
        type=_latency_ms,
        default=0,
        metavar="N",
        help="latency added to each request",
    )
    parser.add_argument(
        "--limits-shape", choices=("canonical", "flat"), default="canonical"
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (anyone who reaches it can use it)",
    )
    parser.set_defaults(handler=run)
    return parser


def _banner(sandbox: Sandbox[ManualClock], secret_given: bool) -> str:
    # A secret the user typed is never echoed back; a generated one must be
    # shown, or nobody could use the sandbox.
    if secret_given:
        secret_line = "# SENDBLUE_API_SECRET_KEY: as given with --api-secret-key"  # noqa: S105
    else:
        quoted = shlex.quote(sandbox.api_secret_key)
        secret_line = f"export SENDBLUE_API_SECRET_KEY={quoted}"
    return "\n".join(
        (
            f"Sendblue sandbox serving on {sandbox.url} (Ctrl+C to stop)",
            f"export SENDBLUE_BASE_URL={shlex.quote(sandbox.url)}",
            f"export SENDBLUE_API_KEY_ID={shlex.quote(sandbox.api_key_id)}",
            secret_line,
            "These credentials are fake: they work against this sandbox only.",
            f"Control API, with the same two headers: {CALLS}",
        )
    )


async def _serve_until_signalled(args: argparse.Namespace) -> int:
    account = SandboxAccount(
        args.api_key_id,
        args.api_secret_key or new_secret(),
        daily_limit=args.daily_limit,
        monthly_limit=args.monthly_limit,
    )
    secret_given = args.api_secret_key is not None
    task = asyncio.ensure_future(
        serve(
            host=args.host,
            port=args.port,
            accounts=[account],
            inventory=args.inventory,
            latency=args.latency_ms / 1000,
            limits_shape=args.limits_shape,
            allow_remote=args.allow_remote,
            ready=lambda sandbox: print(_banner(sandbox, secret_given), flush=True),
        )
    )
    loop = asyncio.get_running_loop()
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    for number in stop_signals:
        loop.add_signal_handler(number, task.cancel)
    try:
        await asyncio.wait([task])
    finally:
        for number in stop_signals:
            loop.remove_signal_handler(number)
    if task.cancelled():
        print("Sandbox stopped.", flush=True)
        return 0
    error = task.exception()
    # A closed stdout (the banner's reader went away) is not a bind failure:
    # it goes up to the command, which says so.
    if isinstance(error, OSError) and not isinstance(error, BrokenPipeError):
        print(f"sendblue-lines sandbox: cannot listen: {error}", file=sys.stderr)
        return 1
    if error is not None:
        raise error
    return 0  # pragma: no cover - serve() only ends by cancellation or error


def run(args: argparse.Namespace) -> int:
    """Serve the sandbox the parsed ``args`` describe until SIGINT or SIGTERM.

    Returns 0 after a clean stop, 1 if the address cannot be bound, 2 for a
    non-loopback host without ``--allow-remote``.
    """
    if not args.allow_remote and not is_loopback(args.host):
        print(
            f"sendblue-lines sandbox: refusing to listen on {args.host!r}, which is "
            "not loopback; pass --allow-remote if you really mean to expose it",
            file=sys.stderr,
        )
        return 2
    return asyncio.run(_serve_until_signalled(args))
