"""`import sendblue_lines` needs only the four core dependencies.

asyncpg is the ``postgres`` extra, imported when a `PostgresJournal` opens;
the sandbox (aiohttp.web) is for tests and the command. A program that buys
lines with the core install must import without either. Each check runs in
a fresh interpreter, since this one has loaded everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys


def loaded_after(code: str, modules: tuple[str, ...]) -> set[str]:
    """Which of `modules` a fresh interpreter has loaded after `code`."""
    script = (
        f"import json, sys\n{code}\n"
        f"print(json.dumps([m for m in {modules!r} if m in sys.modules]))"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter, our script
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(json.loads(done.stdout))


def test_the_package_loads_neither_asyncpg_nor_the_sandbox() -> None:
    """Every public name, journals included, imports without the extras."""
    code = (
        "import sendblue_lines\n"
        "[getattr(sendblue_lines, name) for name in sendblue_lines.__all__]\n"
        "from sendblue_lines import PostgresJournal\n"
        "PostgresJournal('postgresql://u@127.0.0.1/db')"
    )
    assert (
        loaded_after(code, ("asyncpg", "aiohttp.web", "sendblue_lines.sandbox"))
        == set()
    )
