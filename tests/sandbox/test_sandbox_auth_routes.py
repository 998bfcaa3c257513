"""Authentication on every endpoint, and the error body for unknown routes."""

from __future__ import annotations

import pytest

ENDPOINTS = [
    pytest.param("GET", "/accounts/limits", id="limits"),
    pytest.param("POST", "/accounts/lines/provision-preview", id="preview"),
    pytest.param("POST", "/accounts/lines/provision-confirm", id="confirm"),
    pytest.param("GET", "/api/v2/lines/state", id="lines_state"),
]


def bad_headers(sandbox):
    key_id, secret = sandbox.api_key_id, sandbox.api_secret_key
    return {
        "wrong-key-id": {"sb-api-key-id": "nobody", "sb-api-secret-key": secret},
        "wrong-secret": {"sb-api-key-id": key_id, "sb-api-secret-key": secret + "x"},
        "secret-of-another-field": {
            "sb-api-key-id": key_id,
            "sb-api-secret-key": key_id,
        },
        "missing-secret": {"sb-api-key-id": key_id},
        "missing-key-id": {"sb-api-secret-key": secret},
        "no-headers": {},
        "empty-values": {"sb-api-key-id": "", "sb-api-secret-key": ""},
        "non-ascii-secret": {"sb-api-key-id": key_id, "sb-api-secret-key": "sécret"},
    }


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_bad_credentials_are_401_everywhere(api, sandbox, method, path):
    """Wrong, partial or missing credentials answer 401 without an error code."""
    for name, headers in bad_headers(sandbox).items():
        status, body = await api.call(
            method, path, headers=headers, json={"preview_token": "lpv_x"}
        )
        assert status == 401, name
        assert body["status"] == "ERROR", name
        assert "error" not in body, name
        assert body["message"], name
    assert sandbox.ledger == []
    assert {record.api_key_id for record in sandbox.requests} == {None}


async def test_auth_is_checked_before_the_plan(api, sandbox):
    """An account on the wrong plan with a wrong secret gets 401, not 403."""
    sandbox.account.plan = "standard"
    headers = {"sb-api-key-id": sandbox.api_key_id, "sb-api-secret-key": "nope"}
    status, _ = await api.call(
        "POST", "/accounts/lines/provision-preview", headers=headers
    )
    assert status == 401


async def test_auth_is_checked_before_the_body(api, sandbox):
    """A confirm with no credentials and no body answers 401, not 400."""
    status, _ = await api.call("POST", "/accounts/lines/provision-confirm", headers={})
    assert status == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/", id="root"),
        pytest.param("GET", "/accounts/lines/add-line", id="deprecated-flow"),
        pytest.param("POST", "/accounts/lines/provision-preview/", id="trailing-slash"),
        pytest.param("GET", "/accounts/limits/extra", id="longer-path"),
    ],
)
async def test_unknown_paths_are_404_with_the_error_body(api, sandbox, method, path):
    """A path the API does not have answers 404 with the spec's error body."""
    status, body = await api.call(method, path)
    assert status == 404
    assert body == {"status": "ERROR", "message": "Not Found"}
    [record] = sandbox.requests
    assert (record.endpoint, record.status) == (None, 404)
    assert sandbox.counters["other"].statuses[404] == 1


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        pytest.param("POST", "/accounts/limits", "GET", id="post-limits"),
        pytest.param("HEAD", "/accounts/limits", "GET", id="head-limits"),
        pytest.param(
            "GET", "/accounts/lines/provision-preview", "POST", id="get-preview"
        ),
        pytest.param(
            "PUT", "/accounts/lines/provision-confirm", "POST", id="put-confirm"
        ),
    ],
)
async def test_wrong_methods_are_405_with_the_error_body(
    session, sandbox, method, path, allowed
):
    """A known path with the wrong method answers 405, the error body and Allow."""
    async with session.request(
        method, sandbox.url + path, headers=sandbox.auth_headers()
    ) as response:
        assert response.status == 405
        assert response.headers["Allow"] == allowed
        if method != "HEAD":
            assert await response.json() == {
                "status": "ERROR",
                "message": "Method Not Allowed",
            }
    assert sandbox.counters["other"].statuses[405] == 1
