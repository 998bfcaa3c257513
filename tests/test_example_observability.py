"""`examples/observability.py`, run as a program so that it sets up its own tracing.

The conftest holds this process's tracer provider (OpenTelemetry allows one),
so the example runs in a child interpreter, against its own sandbox on
127.0.0.1, and its output is what the Observability page shows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "observability.py"


def test_the_example_prints_json_log_lines_and_the_trace() -> None:
    """JSON lines with the sendblue_ keys, then provision > confirm > POST confirm."""
    done = subprocess.run(  # noqa: S603 - our interpreter, our example
        [sys.executable, str(EXAMPLE)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    logs, _, tree = done.stdout.partition("\nbought +1")
    records = [json.loads(line) for line in logs.splitlines()]
    [outcome] = [r for r in records if r["sendblue_event"] == "outcome"]
    assert outcome["sendblue_outcome"] == "bought"
    fingerprint = outcome["sendblue_token_fp"]
    lines = tree.splitlines()[2:]
    assert lines[0].startswith("sendblue_lines.provision [INTERNAL] ")
    assert f"sendblue_lines.token_fp='{fingerprint}'" in lines[0]
    nested = [line for line in lines if line.startswith("  sendblue_lines.confirm")]
    assert len(nested) == 1
    assert any(
        line.startswith("    POST [CLIENT]") and "provision-confirm" in line
        for line in lines
    )
