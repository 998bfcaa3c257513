"""The secret canary of tests/conftest.py: proof that it fires, channel by channel.

A canary that never fires looks exactly like one that works. So a copy of the
suite's real conftest runs in a child pytest over tests that each leak a
secret through one channel (a DEBUG log, stdout, stderr, output read with
capsys/capfd, a warning, an exception, the environment), and one clean test;
every leaking test must fail with the canary's message and the clean one pass.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).parent.parent
CONFTEST = TESTS / "conftest.py"
#: The support modules the conftest imports, copied beside it for the child.
SUPPORT = (
    "_loopback_proxy.py",
    "scripted_api.py",
    "cli_support.py",
    "foundation_support.py",
)

LEAKS = textwrap.dedent(
    """
    import logging
    import os
    import sys
    import warnings

    import pytest

    from sendblue_lines import LinesClient

    SECRET = "inner-leak-secret-" + "7" * 12


    def use_secret():
        # A test learns its secret the way every test does: a client built with it.
        return LinesClient("key-id", SECRET, base_url="https://api.example.test")


    def test_debug_log():
        use_secret()
        logging.getLogger("sendblue_lines.anything").debug("value %s", SECRET)


    def test_stdout():
        use_secret()
        print(SECRET)


    def test_stderr():
        use_secret()
        sys.stderr.write(SECRET + "\\n")


    def test_read_with_capsys(capsys):
        use_secret()
        print(SECRET)
        capsys.readouterr()


    def test_read_with_capfd(capfd):
        use_secret()
        os.write(1, SECRET.encode())
        capfd.readouterr()


    @pytest.mark.filterwarnings("default")
    def test_recorded_warning():
        use_secret()
        warnings.warn(f"careful with {SECRET}", UserWarning, stacklevel=1)


    def test_exception():
        use_secret()
        raise RuntimeError(SECRET)


    def test_session_canary_without_any_client(secret_canary):
        logging.getLogger("sendblue_lines").debug(secret_canary.canary)


    def test_secret_from_the_environment(monkeypatch):
        monkeypatch.setenv("SENDBLUE_API_SECRET_KEY", "env-only-secret-123456")
        print("env-only-secret-123456")


    def test_an_inspected_error_repr(secret_canary):
        use_secret()
        secret_canary.inspect("an error's repr", repr(ValueError(SECRET)))


    def test_span_attribute():
        use_secret()
        from opentelemetry import trace

        with trace.get_tracer("t").start_as_current_span("s") as span:
            span.set_attribute("leak", SECRET)


    def test_span_event():
        use_secret()
        from opentelemetry import trace

        with trace.get_tracer("t").start_as_current_span("s") as span:
            span.add_event("e", {"detail": "x" + SECRET})


    def test_span_name():
        use_secret()
        from opentelemetry import trace

        with trace.get_tracer("t").start_as_current_span("s-" + SECRET):
            pass


    def test_sendblue_key_of_a_log_record():
        use_secret()
        logging.getLogger("sendblue_lines.http").info(
            "nothing in the message", extra={"sendblue_token_fp": SECRET}
        )


    def test_json_escaped_in_a_log_line():
        use_secret()
        import json

        quoted = 'inner-"quoted"-secret-123456'
        LinesClient("key-id", quoted, base_url="https://api.example.test")
        logging.getLogger("sendblue_lines.cli").info(
            "%s", json.dumps({"v": quoted})
        )


    async def test_proxy_traffic(loopback_proxy):
        use_secret()
        import aiohttp
        from aiohttp import web

        async def ok(request):
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/", ok)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(
                    f"http://127.0.0.1:{port}/", proxy=loopback_proxy.url,
                    headers={"sb-api-secret-key": SECRET},
                ) as response:
                    await response.read()
        finally:
            await runner.cleanup()


    def test_clean(capsys):
        client = use_secret()
        logging.getLogger("sendblue_lines").debug("nothing to see: %r", client)
        print("fine")
        assert "fine" in capsys.readouterr().out
        assert SECRET not in repr(client)
    """
)

LEAKING = [
    "test_debug_log",
    "test_stdout",
    "test_stderr",
    "test_read_with_capsys",
    "test_read_with_capfd",
    "test_recorded_warning",
    "test_exception",
    "test_session_canary_without_any_client",
    "test_secret_from_the_environment",
    "test_an_inspected_error_repr",
    "test_span_attribute",
    "test_span_event",
    "test_span_name",
    "test_sendblue_key_of_a_log_record",
    "test_json_escaped_in_a_log_line",
    "test_proxy_traffic",
]


def run_child(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Run the leaking tests under a copy of the conftest; name -> (outcome, text)."""
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    for name in SUPPORT:
        (tmp_path / name).write_text((TESTS / name).read_text())
    (tmp_path / "test_leaks.py").write_text(LEAKS)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    junit = tmp_path / "junit.xml"
    subprocess.run(  # noqa: S603 - our own interpreter on our own files
        [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
            f"--junitxml={junit}", "test_leaks.py",
        ],
        cwd=tmp_path, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    results: dict[str, tuple[str, str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):  # noqa: S314 - ours
        outcome, text = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = child.tag
                text += (child.get("message") or "") + (child.text or "")
        results[str(case.get("name"))] = (outcome, text)
    return results


@pytest.fixture(scope="module")
def child_results(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return run_child(tmp_path_factory.mktemp("canary"))


@pytest.mark.parametrize("name", LEAKING)
def test_the_canary_fails_a_test_that_leaks(
    child_results: dict[str, tuple[str, str]], name: str
) -> None:
    """Each channel that carries a secret fails its test with the canary's message."""
    outcome, text = child_results[name]
    assert outcome in ("failure", "error"), f"{name} was not failed by the canary"
    assert "SECRET CANARY" in text
    # The canary's own message names the secret only masked.
    for line in text.splitlines():
        if "SECRET CANARY" in line:
            assert "inner-leak-secret-777777777777" not in line
            assert "env-only-secret-123456" not in line


def test_the_canary_lets_a_clean_test_pass(
    child_results: dict[str, tuple[str, str]],
) -> None:
    """A test that logs, prints and reprs a client without its secret passes."""
    assert child_results["test_clean"] == ("passed", "")


def test_the_canary_knows_this_sessions_secret_and_every_client_secret(
    secret_canary: Any,
) -> None:
    """The session's canary is unique and registered; a client's secret is learned."""
    from sendblue_lines import LinesClient

    assert secret_canary.canary.startswith("canary-")
    assert secret_canary.canary in secret_canary.secrets
    fresh = "reliability-fresh-secret-0123456789"
    LinesClient("k", fresh, base_url="https://api.example.test")
    assert fresh in secret_canary.secrets
    assert secret_canary.find(f"xx{fresh}yy") == [fresh]
    # Too short to be told from chance: never learned, never a false alarm.
    LinesClient("k", "short", base_url="https://api.example.test")
    assert "short" not in secret_canary.secrets
