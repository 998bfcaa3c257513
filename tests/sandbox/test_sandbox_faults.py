"""Fault injection: every fault kind, seen from a raw aiohttp client."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from sendblue_lines.sandbox import Fault, ManualClock, Sandbox

CONFIRM = "/accounts/lines/provision-confirm"
PREVIEW = "/accounts/lines/provision-preview"
LIMITS = "/accounts/limits"


async def post_confirm(session, sandbox, token, **kwargs):
    return await session.post(
        sandbox.url + CONFIRM,
        headers=sandbox.auth_headers(),
        json={"preview_token": token},
        allow_redirects=False,
        **kwargs,
    )


async def test_respond_sends_any_status_and_json_body(api, sandbox):
    """Fault.respond answers the given status and JSON body without processing."""
    sandbox.inject("preview", Fault.respond(418, {"status": "TEAPOT"}))
    assert await api.preview() == (418, {"status": "TEAPOT"})
    [record] = sandbox.requests
    assert (record.status, record.fault) == (418, "respond")


async def test_respond_with_text_bytes_headers_and_content_type(session, sandbox):
    """Fault.respond sends str as text, bytes raw, custom headers and content type."""
    sandbox.inject("limits", Fault.respond(200, "hello", headers={"X-Extra": "1"}))
    sandbox.inject("limits", Fault.respond(503, b"\x00\x01", content_type="x/y"))
    sandbox.inject("limits", Fault.respond(204))
    async with session.get(sandbox.url + LIMITS) as response:
        assert response.headers["X-Extra"] == "1"
        assert response.content_type == "text/plain"
        assert await response.text() == "hello"
    async with session.get(sandbox.url + LIMITS) as response:
        assert (response.status, response.content_type) == (503, "x/y")
        assert await response.read() == b"\x00\x01"
    async with session.get(sandbox.url + LIMITS) as response:
        assert response.status == 204
        assert await response.read() == b""


async def test_respond_content_type_from_headers_or_argument(session, sandbox):
    """A Content-Type in headers is used unless content_type= overrides it."""
    sandbox.inject("limits", Fault.respond(200, "<p>", headers={"content-type": "a/b"}))
    sandbox.inject(
        "limits",
        Fault.respond(200, "<p>", headers={"Content-Type": "a/b"}, content_type="c/d"),
    )
    for expected in ("a/b", "c/d"):
        async with session.get(sandbox.url + LIMITS) as response:
            assert response.headers.getall("Content-Type") == [expected]


async def test_respond_without_processing_spends_nothing(api, sandbox):
    """A respond fault on confirm leaves the token unused and the ledger empty."""
    token = await api.token()
    sandbox.inject("confirm", Fault.respond(200, {"status": "OK"}))
    assert (await api.confirm(token))[0] == 200
    assert sandbox.token_status(token) == "unused"
    assert sandbox.ledger == []


async def test_respond_after_commit_buys_then_lies(api, sandbox):
    """respond(after_commit=True) buys the line, then answers the given body."""
    token = await api.token()
    sandbox.inject(
        "confirm", Fault.respond(504, {"status": "ERROR"}, after_commit=True)
    )
    assert await api.confirm(token) == (504, {"status": "ERROR"})
    assert len(sandbox.purchases()) == 1
    assert sandbox.token_status(token) == "used"


async def test_faults_apply_to_the_next_n_requests_in_order(api, sandbox):
    """Queued faults hit the next requests of their endpoint, first in first out."""
    sandbox.inject("limits", Fault.respond(500, {"n": 1}), times=2)
    sandbox.faults.inject("limits", Fault.respond(502, {"n": 2}))
    assert sandbox.faults.pending("limits") == 3
    assert sandbox.faults.pending() == 3
    assert (await api.preview())[0] == 200  # another endpoint is untouched
    results = [await api.limits() for _ in range(4)]
    assert [status for status, _ in results] == [500, 500, 502, 200]
    assert sandbox.faults.pending() == 0


async def test_clear_forgets_queued_faults(api, sandbox):
    """faults.clear() removes what was queued."""
    sandbox.inject("limits", Fault.respond(500), times=5)
    sandbox.inject("preview", Fault.respond(500))
    sandbox.faults.clear("limits")
    assert sandbox.faults.pending() == 1
    sandbox.faults.clear()
    assert (await api.limits())[0] == 200
    assert (await api.preview())[0] == 200


@pytest.mark.parametrize(
    ("endpoint", "fault", "times", "message"),
    [
        pytest.param("nope", Fault.drop_before(), 1, "unknown endpoint", id="endpoint"),
        pytest.param("limits", Fault.drop_before(), 0, "at least 1", id="times"),
        pytest.param(
            "preview", Fault.provisioning_failed(), 1, "only applies", id="confirm-only"
        ),
    ],
)
def test_inject_refuses_nonsense(sandbox, endpoint, fault, times, message):
    """Injecting refuses unknown endpoints, times below 1, misplaced confirm faults."""
    with pytest.raises(ValueError, match=message):
        sandbox.inject(endpoint, fault, times=times)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: Fault.respond(99), id="status-too-low"),
        pytest.param(lambda: Fault.raw(1000, b""), id="status-too-high"),
        pytest.param(lambda: Fault.redirect("http://127.0.0.1/", 200), id="not-3xx"),
        pytest.param(lambda: Fault.delay(-1), id="negative-delay"),
        pytest.param(lambda: Fault.oversized(-1), id="negative-size"),
        pytest.param(lambda: Fault.drip(b"x", chunk_size=0), id="zero-chunk"),
    ],
)
def test_fault_constructors_validate(build):
    """Fault constructors refuse impossible parameters."""
    with pytest.raises(ValueError):
        build()


async def test_provisioning_failed_charges_without_a_line(api, sandbox):
    """provisioning_failed spends the token, charges without a line, answers 500."""
    sandbox.set_inventory(5)
    token = await api.token()
    sandbox.inject("confirm", Fault.provisioning_failed())
    status, body = await api.confirm(token)
    assert status == 500
    assert body["status"] == "ERROR"
    assert body["error"] == "provisioning_failed"
    [charge] = sandbox.ledger
    assert charge.outcome == "provisioning_failed"
    assert not charge.provisioned
    assert charge.phone_number is None
    assert charge.worker_id is None
    assert charge.subscription_id.startswith("sub_")
    assert charge.subscription_id in body["message"]
    assert sandbox.purchases() == []
    assert sandbox.token_status(token) == "used"
    assert sandbox.inventory == 5
    assert (await api.confirm(token))[0] == 410


async def test_provisioning_failed_still_makes_every_check(api, sandbox):
    """provisioning_failed with an expired token answers 410 and charges nothing."""
    token = await api.token()
    sandbox.clock.advance(minutes=11)
    sandbox.inject("confirm", Fault.provisioning_failed())
    assert (await api.confirm(token))[0] == 410
    assert sandbox.ledger == []


async def test_drop_before_disconnects_and_records_nothing(session, api, sandbox):
    """drop_before disconnects the client without spending or recording anything."""
    token = await api.token()
    sandbox.inject("confirm", Fault.drop_before())
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post_confirm(session, sandbox, token)
    assert sandbox.ledger == []
    assert sandbox.token_status(token) == "unused"
    record = sandbox.requests[-1]
    assert (record.endpoint, record.status, record.fault) == (
        "confirm",
        None,
        "drop_before",
    )
    assert sandbox.counters["confirm"].statuses[None] == 1
    assert (await api.confirm(token))[0] == 200


async def test_drop_after_commit_buys_then_disconnects(session, api, sandbox):
    """drop_after_commit records the purchase, then the client sees a disconnect."""
    token = await api.token()
    sandbox.inject("confirm", Fault.drop_after_commit())
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post_confirm(session, sandbox, token)
    assert len(sandbox.purchases()) == 1
    assert sandbox.token_status(token) == "used"
    status, body = await api.confirm(token)
    assert (status, body["error"]) == (410, "token_expired")


async def test_drop_on_preview_issues_a_token_nobody_sees(api, session, sandbox):
    """drop_after_commit on preview disconnects; drop_before issues nothing."""
    sandbox.inject("preview", Fault.drop_before())
    sandbox.inject("preview", Fault.drop_after_commit())
    for _ in range(2):
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await session.post(sandbox.url + PREVIEW, headers=sandbox.auth_headers())
    assert [r.fault for r in sandbox.requests] == ["drop_before", "drop_after_commit"]


async def test_delay_answers_late_but_normally(api, sandbox):
    """Fault.delay waits, then processes and answers as usual."""
    sandbox.inject("limits", Fault.delay(0.05))
    status, body = await api.limits()
    assert (status, body["status"]) == (200, "OK")
    [record] = sandbox.requests
    assert (record.status, record.fault) == (200, "delay")


async def test_delay_holds_its_request_while_others_are_answered(session, api, sandbox):
    """A delayed confirm is still unanswered, unbought, after a later request's answer.

    Closing the sandbox during the wait drops it unprocessed.
    """
    token = await api.token()
    sandbox.inject("confirm", Fault.delay(60))
    held = asyncio.ensure_future(post_confirm(session, sandbox, token))
    await sandbox.wait_for_requests("confirm")
    assert (await api.limits())[0] == 200
    assert not held.done()
    assert sandbox.in_flight("confirm") == 1
    assert sandbox.ledger == []
    await sandbox.aclose()
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await held
    assert sandbox.in_flight() == 0
    assert (sandbox.requests[-1].status, sandbox.requests[-1].fault) == (None, "delay")
    assert sandbox.ledger == []
    assert sandbox.token_status(token) == "unused"


async def test_delay_commits_after_the_client_gave_up(session, api, sandbox):
    """A delayed confirm buys the line even though the client timed out first."""
    token = await api.token()
    # The delay only has to outlast the client's timeout and the two lines
    # after it; the order is what is checked, not how long anything took.
    sandbox.inject("confirm", Fault.delay(1.0))
    with pytest.raises(asyncio.TimeoutError):
        await post_confirm(
            session, sandbox, token, timeout=aiohttp.ClientTimeout(total=0.05)
        )
    assert sandbox.in_flight("confirm") == 1  # the client gave up first
    assert sandbox.ledger == []
    await sandbox.wait_idle()
    assert len(sandbox.ledger) == 1
    assert sandbox.token_status(token) == "used"


@pytest.mark.parametrize("after_commit", [False, True])
async def test_hang_times_the_client_out_and_closes_promptly(after_commit, api):
    """Fault.hang never answers; the client times out; closing ends the hang."""
    sandbox = Sandbox(clock=ManualClock())
    async with aiohttp.ClientSession() as session:
        await sandbox.start()
        try:
            async with session.post(
                sandbox.url + PREVIEW, headers=sandbox.auth_headers()
            ) as response:
                token = (await response.json())["preview_token"]
            sandbox.inject("confirm", Fault.hang(after_commit=after_commit))
            with pytest.raises(asyncio.TimeoutError):
                await post_confirm(
                    session, sandbox, token, timeout=aiohttp.ClientTimeout(total=0.2)
                )
            assert sandbox.counters["confirm"].requests == 1
            assert sandbox.requests[-1].endpoint == "preview"  # still in progress
            assert sandbox.in_flight("confirm") == 1
        finally:
            await sandbox.aclose()
    assert sandbox.in_flight() == 0
    assert len(sandbox.purchases()) == (1 if after_commit else 0)
    record = sandbox.requests[-1]
    assert (record.endpoint, record.status, record.fault) == ("confirm", None, "hang")


@pytest.mark.parametrize("after_commit", [False, True])
async def test_malformed_is_200_json_that_does_not_parse(
    session, api, sandbox, after_commit
):
    """Fault.malformed answers 200 application/json whose body is not JSON."""
    token = await api.token()
    sandbox.inject("confirm", Fault.malformed(after_commit=after_commit))
    async with await post_confirm(session, sandbox, token) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        with pytest.raises(json.JSONDecodeError):
            await response.json()
    assert len(sandbox.purchases()) == (1 if after_commit else 0)


@pytest.mark.parametrize("after_commit", [False, True])
async def test_html_is_an_html_page(session, api, sandbox, after_commit):
    """Fault.html answers the given status with a text/html page."""
    token = await api.token()
    sandbox.inject("confirm", Fault.html(503, after_commit=after_commit))
    async with await post_confirm(session, sandbox, token) as response:
        assert response.status == 503
        assert response.content_type == "text/html"
        assert "<html>" in await response.text()
        with pytest.raises(aiohttp.ContentTypeError):
            await response.json()
    assert len(sandbox.purchases()) == (1 if after_commit else 0)


@pytest.mark.parametrize("after_commit", [False, True])
async def test_proxy_502_is_a_proxy_page(session, api, sandbox, after_commit):
    """proxy_502 answers 502 with an HTML page, optionally after buying the line."""
    token = await api.token()
    sandbox.inject("confirm", Fault.proxy_502(after_commit=after_commit))
    async with await post_confirm(session, sandbox, token) as response:
        assert response.status == 502
        assert response.content_type == "text/html"
        assert "502 Bad Gateway" in await response.text()
    assert len(sandbox.purchases()) == (1 if after_commit else 0)
    assert sandbox.token_status(token) == ("used" if after_commit else "unused")


async def test_redirect_is_answered_not_followed(session, api, sandbox):
    """Fault.redirect answers a 3xx with Location and does nothing else."""
    token = await api.token()
    sandbox.inject("confirm", Fault.redirect("http://127.0.0.1:9/elsewhere", 308))
    async with await post_confirm(session, sandbox, token) as response:
        assert response.status == 308
        assert response.headers["Location"] == "http://127.0.0.1:9/elsewhere"
    assert sandbox.ledger == []


async def test_oversized_is_valid_json_beyond_one_mebibyte(session, api, sandbox):
    """Fault.oversized answers valid JSON of the size asked, the real answer inside."""
    token = await api.token()
    sandbox.inject("confirm", Fault.oversized(2 * 1024 * 1024, after_commit=True))
    async with await post_confirm(session, sandbox, token) as response:
        raw = await response.read()
    assert len(raw) > 2 * 1024 * 1024
    body = json.loads(raw)
    assert body["status"] == "OK"
    assert body["phone_number"] == sandbox.purchases()[0].phone_number


async def test_raw_sends_exact_bytes(session, sandbox):
    """Fault.raw answers exactly the bytes given, invalid UTF-8 included."""
    sandbox.inject("limits", Fault.raw(200, b'{"status": "\xff\xfe"}'))
    async with session.get(sandbox.url + LIMITS) as response:
        assert response.content_type == "application/json"
        assert await response.read() == b'{"status": "\xff\xfe"}'


async def test_drip_sends_the_body_slowly(session, sandbox):
    """Fault.drip sends the headers and a first chunk, then holds the rest."""
    payload = json.dumps({"status": "OK", "limits": {}}).encode()
    sandbox.inject("limits", Fault.drip(payload, chunk_size=10, interval=60))
    async with session.get(sandbox.url + LIMITS) as response:
        assert response.content_length == len(payload)
        assert await response.content.readany() == payload[:10]
        assert not response.content.at_eof()
        assert sandbox.in_flight("limits") == 1


async def test_drip_sends_the_whole_body_in_chunks(session, sandbox):
    """Fault.drip's body, once all chunks are in, is the whole body given."""
    body = {"status": "OK", "limits": {}}
    sandbox.inject("limits", Fault.drip(body, chunk_size=10, interval=0.001))
    async with session.get(sandbox.url + LIMITS) as response:
        assert response.content_length == len(json.dumps(body))
        assert await response.json() == body
    assert (sandbox.requests[-1].status, sandbox.requests[-1].fault) == (200, "drip")


async def test_drip_trips_a_read_timeout(session, sandbox):
    """A drip slower than the client's sock_read timeout makes the read time out."""
    sandbox.inject("limits", Fault.drip(b"x" * 10, chunk_size=1, interval=0.5))
    timeout = aiohttp.ClientTimeout(sock_read=0.1)
    with pytest.raises(aiohttp.SocketTimeoutError):
        async with session.get(sandbox.url + LIMITS, timeout=timeout) as response:
            await response.read()


async def test_drip_stops_when_the_sandbox_closes():
    """Closing the sandbox ends a drip in progress promptly."""
    async with aiohttp.ClientSession() as session:
        sandbox = await Sandbox().start()
        try:
            sandbox.inject("limits", Fault.drip(b"x" * 100, interval=10))
            response = await session.get(sandbox.url + LIMITS)
            await sandbox.wait_for_requests("limits")
            assert sandbox.in_flight("limits") == 1
        finally:
            await sandbox.aclose()
        assert sandbox.in_flight() == 0
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
        response.release()
