"""One scale run in a fresh process, so that its memory is its own.

`python -m benchmarks._scale_worker --impl ours|aiohttp ...` buys `--count`
lines at `--concurrency` from the sandbox at `--url`, after a warm-up batch,
and prints one JSON object: wall and CPU time, the resident set size after
the warm-up (the baseline), the peak during the run, for our SDK the
resident size each time another tenth of the outcomes has been consumed from
`Provisioner.batch()`, and the sandbox's resident size after the warm-up and
after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from typing import Any

from ._measure import reset_peak_rss, status_kib
from ._peers import AiohttpPeer, OursPeer, Peer, PeerError
from ._server import Server, process_cpu_seconds
from ._workers import worker_parser, worker_server


async def _ours(server: Server, count: int, concurrency: int) -> list[list[float]]:
    """Consume `batch()` outcome by outcome, sampling RSS every tenth."""
    samples: list[list[float]] = []
    step = max(count // 10, 1)
    consumed = 0
    peer = OursPeer(server)
    async with (
        peer,
        peer.provisioner.batch(count, concurrency=concurrency) as outcomes,
    ):
        async for outcome in outcomes:
            if outcome.error is not None:
                raise PeerError(f"slot {outcome.index} failed: {outcome.error!r}")
            consumed += 1
            if consumed % step == 0:
                samples.append([consumed, (status_kib("VmRSS") or 0) / 1024])
    if consumed != count:
        raise PeerError(f"batch() settled {consumed} of {count} slots")
    return samples


async def _peer_batch(peer: Peer, count: int, concurrency: int) -> None:
    async with peer:
        bought = await peer.provision_many(count, concurrency)
    if bought != count:
        raise PeerError(f"bought {bought} of {count}")


async def _run(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    peer_class = OursPeer if args.impl == "ours" else AiohttpPeer
    # The warm-up loads every module and fills the allocator's arenas as a
    # long-lived process would have; the baseline is taken after it.
    await _peer_batch(peer_class(server), args.warmup, args.concurrency)
    gc.collect()
    baseline = status_kib("VmRSS")
    sandbox_before = status_kib("VmRSS", args.server_pid)
    reset = reset_peak_rss()
    peak_before = status_kib("VmHWM")
    server0 = process_cpu_seconds(args.server_pid)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    samples: list[list[float]] = []
    if args.impl == "ours":
        samples = await _ours(server, args.count, args.concurrency)
    else:
        await _peer_batch(peer_class(server), args.count, args.concurrency)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    server_cpu = process_cpu_seconds(args.server_pid) - server0
    return {
        "server_cpu": server_cpu,
        "impl": args.impl,
        "count": args.count,
        "concurrency": args.concurrency,
        "wall": wall,
        "cpu": cpu,
        "baseline_kib": baseline,
        "peak_before_kib": peak_before,
        "peak_kib": status_kib("VmHWM"),
        "peak_reset": reset,
        "samples": samples,
        "sandbox_before_kib": sandbox_before,
        "sandbox_after_kib": status_kib("VmRSS", args.server_pid),
    }


def main() -> int:
    parser = worker_parser("python -m benchmarks._scale_worker")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args()
    if args.cpu is not None:
        # On a CPU of its own, away from the sandbox's: two processes that
        # the scheduler happens to put on one CPU serialise, and the run
        # then measures the scheduler, not the client (we saw 1,500 against
        # 3,700 lines/s from one run to the next).
        os.sched_setaffinity(0, {args.cpu})
    server = worker_server(args)
    print(json.dumps(asyncio.run(_run(args, server))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
