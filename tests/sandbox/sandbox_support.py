"""Requests to a sandbox from another process: what a service under test sends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from cli_support import PIPE, WAIT, spawn

from sendblue_lines.sandbox import Sandbox

#: A client in a process of its own, with nothing but the standard library, as
#: a service under test in any language would be: it sends each request it is
#: given ([method, url, headers, body text or null]) and prints [status, body].
_CHILD = """
import json, sys, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
answers = []
for method, url, headers, body in json.load(sys.stdin):
    data = None if body is None else body.encode()
    request = urllib.request.Request(url, data, headers, method=method)
    try:
        with opener.open(request, timeout=10) as response:
            answers.append([response.status, response.read().decode()])
    except urllib.error.HTTPError as error:
        answers.append([error.code, error.read().decode()])
print(json.dumps(answers))
"""


async def from_outside(
    sandbox: Sandbox[Any],
    *calls: tuple[str, str] | tuple[str, str, Any],
    headers: dict[str, str] | None = None,
) -> list[tuple[int, Any]]:
    """Send ``(method, path[, body])`` calls from another process, one after another.

    A body that is a str is sent as it is, anything else as JSON; every call
    carries the default account's headers unless ``headers`` is given.
    Returns each answer's status and parsed JSON body.
    """
    signed = sandbox.auth_headers() if headers is None else headers
    requests = []
    for method, path, *body in calls:
        text = None
        if body:
            text = body[0] if isinstance(body[0], str) else json.dumps(body[0])
        kind = {} if text is None else {"Content-Type": "application/json"}
        requests.append([method, sandbox.url + path, {**signed, **kind}, text])
    async with spawn(sandbox, stdin=PIPE, program=("-c", _CHILD)) as child:
        given = json.dumps(requests).encode()
        out, _ = await asyncio.wait_for(child.communicate(given), WAIT)
    assert child.returncode == 0
    return [(status, json.loads(body)) for status, body in json.loads(out)]
