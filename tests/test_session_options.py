"""proxy=, trust_env=, trace_configs=: checked by the constructor, honoured on the wire.

The proxy tests run a recording forward proxy on 127.0.0.1. Through it the
https base URL must be a CONNECT tunnel: the proxy reads the CONNECT line and
its own credentials, never the secret. An https sandbox needs a certificate
the SDK trusts; aiohttp builds its verifying SSL context when it is
imported, so the purchase over TLS runs in a child interpreter whose
`SSL_CERT_FILE` names a certificate made for this test (the SDK still
verifies it, as always).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _loopback_proxy import LoopbackProxy

from sendblue_lines import ConfigurationError, LinesClient, RetryPolicy, TransportError

KEY_ID = "key-id-for-options"
SECRET = "options-secret-" + "9" * 16
HTTPS = "https://api.sendblue.test"
LOOPBACK_HTTP = "http://127.0.0.1:9"
TESTS = Path(__file__).parent


def make(**options: Any) -> LinesClient:
    options.setdefault("base_url", HTTPS)
    return LinesClient(KEY_ID, SECRET, **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"proxy": 3128}, "proxy must be an http(s) URL string", id="int"),
        pytest.param(
            {"proxy": "socks5://u:hunter2pass@127.0.0.1:1080"},
            "must be an absolute http(s) URL",
            id="socks",
        ),
        pytest.param(
            {"proxy": "http://u:hunter2pass@127.0.0.1:99999"},
            "bad host or port",
            id="port",
        ),
        pytest.param(
            {"proxy": "http://u:hunter2pass@proxy.test/?x=1"},
            "query or fragment",
            id="query",
        ),
        pytest.param(
            {"proxy": "http://u:hunter2pass@proxy.test\r\nX: y"},
            "control",
            id="crlf",
        ),
        pytest.param(
            {"proxy": "http://u:hunter2pass@127.0.0.1:3128", "base_url": LOOPBACK_HTTP},
            "refusing proxy= with a plain-http base URL",
            id="plain-http-target",
        ),
        pytest.param({"trust_env": "yes"}, "trust_env must be True or False", id="te"),
        pytest.param(
            {"trace_configs": aiohttp.TraceConfig()},
            "sequence of aiohttp.TraceConfig",
            id="not-a-list",
        ),
        pytest.param(
            {"trace_configs": [aiohttp.TraceConfig(), object()]},
            "sequence of aiohttp.TraceConfig",
            id="not-a-trace-config",
        ),
    ],
)
def test_bad_session_options_are_refused_by_the_constructor(
    options: dict[str, Any], message: str
) -> None:
    """A clear ConfigurationError before any await, never the proxy's password."""
    with pytest.raises(ConfigurationError, match=re.escape(message)) as caught:
        make(**options)
    assert "hunter2pass" not in str(caught.value)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"proxy": "http://127.0.0.1:3128"}, id="proxy"),
        pytest.param({"trust_env": True}, id="trust_env"),
        pytest.param({"trace_configs": []}, id="trace_configs"),
    ],
)
async def test_session_options_with_a_callers_session_are_refused(
    options: dict[str, Any],
) -> None:
    """They configure the SDK's own session; with session= the error says so."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(
            ConfigurationError, match=r"on your own aiohttp\.ClientSession"
        ):
            make(session=session, **options)


def test_good_session_options_are_accepted() -> None:
    """An http(s) proxy with credentials, trust_env and a tuple of trace configs."""
    make(
        proxy="https://u:hunter2pass@proxy.test:3128",
        trust_env=True,
        trace_configs=(aiohttp.TraceConfig(),),
    )
    make(proxy="http://127.0.0.1:3128", trace_configs=None)


def test_trust_env_with_an_http_proxy_for_a_plain_http_target_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP_PROXY would see the secret of a plain-http call: refused unless NO_PROXY."""
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    with pytest.raises(ConfigurationError, match=r"add 127\.0\.0\.1 to NO_PROXY"):
        make(base_url=LOOPBACK_HTTP, trust_env=True)
    make(base_url=LOOPBACK_HTTP)  # without trust_env the variable is not read
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    make(base_url=LOOPBACK_HTTP, trust_env=True)


async def test_a_proxy_that_refuses_connect_means_nothing_was_sent(
    loopback_proxy: LoopbackProxy,
) -> None:
    """A 407 to CONNECT comes before the tunnel: the confirm certainly never left."""
    loopback_proxy.refuse = 407
    no_wait = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)
    target = "https://127.0.0.1:9"
    async with make(base_url=target, proxy=loopback_proxy.url, retry=no_wait) as c:
        with pytest.raises(TransportError) as caught:
            await c.confirm("lpv_never_sent_token")
    assert caught.value.sent is False
    assert loopback_proxy.connects == ["127.0.0.1:9"] * 3
    assert SECRET not in loopback_proxy.cleartext


# -- a purchase through the proxy, over TLS, in a child interpreter ----------------

THROUGH_PROXY = textwrap.dedent(
    """
    import asyncio
    import json
    import os
    import ssl
    import sys

    sys.path.insert(0, sys.argv[1])
    from _loopback_proxy import LoopbackProxy, TlsFront

    from sendblue_lines import LinesClient, Provisioner
    from sendblue_lines.sandbox import Sandbox, SandboxAccount


    async def main():
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(sys.argv[2], sys.argv[3])
        account = SandboxAccount("proxy-key-id", os.environ["CHILD_SECRET"])
        async with Sandbox(accounts=[account]) as sandbox:
            port = int(sandbox.url.rsplit(":", 1)[1])
            async with TlsFront(context, port) as front, LoopbackProxy() as proxy:
                options = {}
                if sys.argv[4] == "proxy":
                    options["proxy"] = proxy.url.replace("//", "//puser:ppass@")
                else:
                    os.environ["HTTPS_PROXY"] = proxy.url
                    options["trust_env"] = True
                async with LinesClient(
                    "proxy-key-id", os.environ["CHILD_SECRET"],
                    base_url=f"https://127.0.0.1:{front.port}", **options,
                ) as client:
                    line = await Provisioner(client).provision()
            print(json.dumps({
                "bought": line.phone_number,
                "charged": len(sandbox.ledger),
                "connects": proxy.connects,
                "cleartext": proxy.cleartext,
                "tunnelled": proxy.tunnelled[0],
                "front": front.port,
            }))


    asyncio.run(main())
    """
)


@pytest.mark.parametrize("how", ["proxy", "trust_env"])
def test_a_purchase_through_a_proxy_is_a_connect_tunnel_without_the_secret(
    tmp_path: Path,
    certificate: tuple[Path, Path],
    secret_canary: Any,
    how: str,
) -> None:
    """proxy= or HTTPS_PROXY with trust_env: CONNECT, a line bought, no secret seen."""
    secret = "proxy-child-secret-" + os.urandom(12).hex()
    secret_canary.register(secret)
    script = tmp_path / "through_proxy.py"
    script.write_text(THROUGH_PROXY)
    cert, key = certificate
    env = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper()}
    env.update(CHILD_SECRET=secret, SSL_CERT_FILE=str(cert))
    done = subprocess.run(  # noqa: S603 - our interpreter, our script
        [sys.executable, str(script), str(TESTS), str(cert), str(key), how],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    secret_canary.inspect("cleartext seen by the child's proxy", result["cleartext"])
    assert result["bought"].startswith("+1")
    assert result["charged"] == 1
    # Every request went through the tunnel: CONNECT to the TLS front only.
    assert result["connects"]
    assert set(result["connects"]) == {f"127.0.0.1:{result['front']}"}
    assert result["tunnelled"] > 0
    cleartext = result["cleartext"]
    assert cleartext.startswith("CONNECT 127.0.0.1:")
    assert secret not in cleartext
    assert "sb-api-secret-key" not in cleartext.lower()
    assert "sb-api-key-id" not in cleartext.lower()
    assert "provision" not in cleartext
    if how == "proxy":
        # The proxy's own credentials go to the proxy, as they should.
        assert "Proxy-Authorization: Basic" in cleartext
