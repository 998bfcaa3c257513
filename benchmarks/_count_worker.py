"""Sequential purchases in a process of their own, for an instruction count.

`python -m benchmarks._count_worker --impl ours|aiohttp --url URL --key-id K
--flows N` buys N lines one after the other from the sandbox at `--url`
(the secret comes on stdin) and exits. The instructions scenario runs it
under callgrind twice, with two values of N: the difference of the two
counts is what N more purchases cost, without the interpreter's start,
the imports and the warm-up, which both runs share.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from ._peers import AiohttpPeer, OursPeer
from ._server import Server
from ._workers import worker_parser, worker_server


async def _run(args: argparse.Namespace, server: Server) -> None:
    peer_class = OursPeer if args.impl == "ours" else AiohttpPeer
    async with peer_class(server) as peer:
        for _ in range(args.flows):
            await peer.provision()


def main() -> int:
    """Parse the options, buy the lines, exit 0 (or fail with a traceback)."""
    parser = worker_parser("python -m benchmarks._count_worker")
    parser.add_argument("--flows", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(_run(args, worker_server(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
