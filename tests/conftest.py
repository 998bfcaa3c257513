"""Shared fixtures, and the secret canary (the aioresponses shim is in `scripted_api`).

The canary (bottom of this file) fails any test that lets a secret out:
every secret a `LinesClient` of the suite is built with is recorded, and
the test's captured logs (the "sendblue_lines" logger at DEBUG, and each
record as a JSON log line: its message, `sendblue_` keys and exception),
warnings, exception texts, stdout/stderr (read
by the test or not), every OpenTelemetry span as it ends (name,
attributes, events) and the cleartext that a `loopback_proxy` saw are
searched for it, raw and JSON-escaped.

OpenTelemetry's SDK is set up once for the session with a span processor
that searches each span as it ends, so every purchase of the
suite makes its spans; the `otel_spans` fixture keeps them in an in-memory
exporter for the test that asks. Every test runs with
`SENDBLUE_CONFIG_DIR` at an empty folder and without the log variables, so
no developer's own files or settings leak in.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _loopback_proxy import LoopbackProxy
from cli_support import CREDENTIAL_VARIABLES, InProcess, variables
from foundation_support import OutrunFirst
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from scripted_api import AioResponses, ScriptedApi

import sendblue_lines._clock
import sendblue_lines._config
from sendblue_lines import LinesClient, RetryPolicy
from sendblue_lines._logging import JsonFormatter
from sendblue_lines.sandbox import Fault, ManualClock, Sandbox

BASE_URL = "https://api.sendblue.test"
KEY_ID = "key-id-for-tests"
#: A secret unique to this test session (the canary's own), for the shared fixtures.
CANARY_SECRET = "canary-" + secrets.token_hex(16)
SECRET = CANARY_SECRET
LIMITS_URL = BASE_URL + "/accounts/limits"
PREVIEW_URL = BASE_URL + "/accounts/lines/provision-preview"
CONFIRM_URL = BASE_URL + "/accounts/lines/provision-confirm"

#: Retries without waiting, so that tests of retry rules run instantly.
NO_WAIT = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)


#: The spans finished while a test holds `otel_spans` (none kept otherwise).
SPANS = InMemorySpanExporter()


class _SpanWatcher(SpanProcessor):
    """Search each span as it ends; keep it only for a test that asked for spans.

    Keeping every span of the suite would hold the soak's tens of thousands in
    memory. The search reads the name, attributes, events and status.
    """

    collecting = False

    def on_end(self, span: ReadableSpan) -> None:
        events = [(event.name, dict(event.attributes or {})) for event in span.events]
        text = f"{span.name} {dict(span.attributes or {})} {events} {span.status}"
        CANARY.inspect("an OpenTelemetry span", text)
        if self.collecting:
            SPANS.export([span])


_WATCHER = _SpanWatcher()
_provider = TracerProvider()
_provider.add_span_processor(_WATCHER)
trace.set_tracer_provider(_provider)


@pytest.fixture
def otel_spans() -> Iterator[InMemorySpanExporter]:
    """The session's in-memory span exporter, collecting for this test only."""
    SPANS.clear()
    _WATCHER.collecting = True
    try:
        yield SPANS
    finally:
        _WATCHER.collecting = False
        SPANS.clear()


@pytest.fixture(autouse=True)
def _hermetic_environment(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No credentials file, log level, base URL or journal from the machine running us.

    The command journals by default under `XDG_STATE_HOME`: each test gets
    an empty one of its own (inherited by the command's child processes), so
    no test writes into the real ``~/.local/state``.
    """
    empty = tmp_path_factory.mktemp("sendblue-config")
    monkeypatch.setenv("SENDBLUE_CONFIG_DIR", str(empty))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))
    for name in (
        "SENDBLUE_LINES_LOG",
        "SENDBLUE_API_LOG",
        "SENDBLUE_API_BASE_URL",
        "SENDBLUE_LINES_JOURNAL",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def loopback_proxy() -> AsyncIterator[LoopbackProxy]:
    """A recording forward proxy on 127.0.0.1; the canary reads what it saw."""
    async with LoopbackProxy() as proxy:
        yield proxy
    CANARY.inspect("cleartext seen by a proxy", proxy.cleartext)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert, key), trusted by nobody.

    Made with the openssl command once a test session, for the local https
    servers of the TLS and proxy tests.
    """
    openssl = shutil.which("openssl")
    assert openssl is not None, "the TLS tests need the openssl command"
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(  # noqa: S603 - fixed arguments
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
            "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No base URL or credentials variable is set; the monkeypatch, to set some."""
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def sandbox_credentials(
    sendblue_sandbox: Sandbox[Any], no_credentials: pytest.MonkeyPatch
) -> None:
    """The base URL and credentials variables point at `sendblue_sandbox` only."""
    for name, value in variables(sendblue_sandbox).items():
        no_credentials.setenv(name, value)


@pytest.fixture
def cli(
    sendblue_sandbox: Sandbox[Any],
    sandbox_credentials: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> InProcess:
    """The command run in this process (`main(argv)`) against `sendblue_sandbox`."""
    return InProcess(sendblue_sandbox, capsys, monkeypatch)


@pytest.fixture
def slow_confirms(sendblue_sandbox: Sandbox[ManualClock]) -> Sandbox[ManualClock]:
    """The sandbox; its confirm answers wait long enough to close the client.

    A test closes the client (or its session) once the confirm arrived
    (`Sandbox.wait_for_requests`), a second before the answer.
    """
    sendblue_sandbox.inject("confirm", Fault.delay(1.0), times=10)
    return sendblue_sandbox


@pytest.fixture
def outrun_first(sendblue_sandbox: Sandbox[ManualClock]) -> OutrunFirst:
    """Approves every preview; the first one's token expires on the server meanwhile."""
    return OutrunFirst(sendblue_sandbox.clock)


@pytest.fixture
def mocked() -> Iterator[AioResponses]:
    """An aioresponses mock of every aiohttp request made in the test."""
    with AioResponses() as m:
        yield m


@pytest.fixture
def api(mocked: AioResponses) -> ScriptedApi:
    """The scripted API on `mocked`, recording every call in order."""
    return ScriptedApi(mocked)


#: The client's wall clock off from the server's, in minutes, either way.
SKEWS = [-15, -11, -5, 5, 11, 15]


@pytest.fixture(params=SKEWS, ids=[f"{m:+d}min" for m in SKEWS])
def skew(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> float:
    """Skew the client's wall clock (`_clock.now`) by the parameter; return seconds."""
    seconds = float(request.param * 60)
    real_now = sendblue_lines._clock.now

    def skewed_now() -> datetime:
        return real_now() + timedelta(seconds=seconds)

    monkeypatch.setattr(sendblue_lines._clock, "now", skewed_now)
    return seconds


@pytest.fixture
async def client() -> AsyncIterator[LinesClient]:
    """A LinesClient on a fake https base URL, retrying without waiting."""
    async with LinesClient(KEY_ID, SECRET, base_url=BASE_URL, retry=NO_WAIT) as c:
        yield c


# -- the secret canary -----------------------------------------------------------

#: Shorter values are too likely to occur by chance in a log line.
MIN_SECRET_LENGTH = 8


def masked(secret: str) -> str:
    """A secret as a failure message may show it: enough to tell which one."""
    return secret[:4] + "…" + f"({len(secret)} chars)"


class SecretCanary:
    """Every secret the suite's clients use, and the leaks found per test.

    `register` learns a secret; `inspect` searches a text and remembers, for
    the test running now, where a secret was found. The report hook then
    fails that test.
    """

    def __init__(self, canary: str) -> None:
        self.canary = canary
        self.secrets: set[str] = set()
        #: What to search for: each secret, and its JSON-escaped form if other.
        self.needles: dict[str, str] = {}
        self.leaks: dict[str, list[str]] = {}
        self.current: str | None = None
        self.register(canary)

    def register(self, secret: object) -> None:
        """Learn a secret (ignored when too short to be told from chance)."""
        if isinstance(secret, str) and len(secret) >= MIN_SECRET_LENGTH:
            self.secrets.add(secret)
            self.needles[secret] = secret
            self.needles[json.dumps(secret)[1:-1]] = secret

    def find(self, text: str) -> list[str]:
        """The known secrets that occur in `text`, raw or JSON-escaped."""
        return sorted({s for needle, s in self.needles.items() if needle in text})

    def inspect(self, where: str, text: object, nodeid: str | None = None) -> bool:
        """Search `text`; note a leak for the test (default: the current one)."""
        found = self.find(text if isinstance(text, str) else repr(text))
        test = nodeid or self.current
        if found and test is not None:
            shown = ", ".join(masked(s) for s in found)
            self.leaks.setdefault(test, []).append(f"{where}: {shown}")
        return bool(found)

    def take(self, nodeid: str) -> list[str]:
        """The leaks noted for a test, forgotten once taken."""
        return self.leaks.pop(nodeid, [])


CANARY = SecretCanary(CANARY_SECRET)

#: Where the SDK reads a secret from the environment (the CLI does too).
_SECRET_VARIABLES = sendblue_lines._config.SECRET_VARIABLES


def _observing(
    resolve: Callable[..., sendblue_lines._config.Credentials],
) -> Callable[..., sendblue_lines._config.Credentials]:
    @functools.wraps(resolve)
    def observed(*args: Any, **kwargs: Any) -> sendblue_lines._config.Credentials:
        credentials = resolve(*args, **kwargs)
        CANARY.register(credentials.secret)
        return credentials

    observed.__wrapped_by_canary__ = True  # type: ignore[attr-defined]
    return observed


def _watch_credentials(patch: pytest.MonkeyPatch) -> None:
    """Wrap `resolve_credentials` wherever the package holds a reference to it."""
    original = sendblue_lines._config.resolve_credentials
    if getattr(original, "__wrapped_by_canary__", False):
        return
    observed = _observing(original)
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] != "sendblue_lines" or module is None:
            continue
        if getattr(module, "resolve_credentials", None) is original:
            patch.setattr(module, "resolve_credentials", observed)


def _watch_readouterr(patch: pytest.MonkeyPatch) -> None:
    """Search what a test reads from capsys/capfd, which its report never shows."""
    read = pytest.CaptureFixture.readouterr

    @functools.wraps(read)
    def readouterr(self: pytest.CaptureFixture[Any]) -> Any:
        result = read(self)
        CANARY.inspect("output read with readouterr()", f"{result.out}{result.err}")
        return result

    patch.setattr(pytest.CaptureFixture, "readouterr", readouterr)


class _RecordWatcher(logging.Handler):
    """Search every record of ours as a JSON log line: message, keys, exception."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.json = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        CANARY.inspect(
            "a JSON log line (message and sendblue_ keys)", self.json.format(record)
        )


@pytest.fixture(scope="session", autouse=True)
def _secret_canary_session() -> Iterator[SecretCanary]:
    """Learn every secret used; keep the package's logger at DEBUG throughout."""
    logger = logging.getLogger("sendblue_lines")
    level = logger.level
    watcher = _RecordWatcher()
    with pytest.MonkeyPatch.context() as patch:
        _watch_credentials(patch)
        _watch_readouterr(patch)
        logger.setLevel(logging.DEBUG)
        logger.addHandler(watcher)
        try:
            yield CANARY
        finally:
            logger.removeHandler(watcher)
            logger.setLevel(level)


@pytest.fixture
def secret_canary(_secret_canary_session: SecretCanary) -> SecretCanary:
    """The canary, for tests that check texts of their own (errors, reprs)."""
    return _secret_canary_session


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: object) -> Generator[None]:
    """Know which test is running, so that leaks found meanwhile are its own."""
    CANARY.current = item.nodeid
    try:
        return (yield)
    finally:
        CANARY.current = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None]:
    """Search the test's warnings; learn secrets it put in the environment.

    Warnings are recorded here and handed on unchanged to pytest's own
    recording (which reports them only after the test's report is made).
    """
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            try:
                return (yield)
            finally:
                for name in _SECRET_VARIABLES:
                    CANARY.register(os.environ.get(name))
    finally:
        for warning in caught:
            text = f"{warning.category.__name__}: {warning.message}"
            CANARY.inspect("a warning", text)
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Fail the test whose exception text, logs, output or warnings hold a secret."""
    report = yield
    if report.longrepr is not None:
        CANARY.inspect(
            "the exception or failure text", str(report.longrepr), item.nodeid
        )
    for title, content in report.sections:
        # Sections pile up over the phases: each is searched in its own phase.
        if title.endswith(f" {call.when}"):
            CANARY.inspect(title.lower(), content, item.nodeid)
    if call.when != "teardown" and call.when != "call":
        return report
    leaks = CANARY.take(item.nodeid)
    if leaks:
        where = "; ".join(dict.fromkeys(leaks))
        message = f"SECRET CANARY: a secret got out ({where})"
        previous = "" if report.longrepr is None else f"{report.longrepr}\n\n"
        report.outcome = "failed"
        report.longrepr = previous + message
    return report
