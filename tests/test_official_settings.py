"""The official Sendblue SDK's and CLI's settings: the base URL, credentials.json.

The conftest points `SENDBLUE_CONFIG_DIR` at an empty folder for every test;
these tests write the official CLI's file there (or in a folder of their
own) and run `sendblue-lines` against the sandbox on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from sendblue_lines import ConfigurationError, LinesClient
from sendblue_lines._cli_credentials import credentials_path, read_cli_credentials
from sendblue_lines.cli import main
from sendblue_lines.sandbox import Sandbox


def write(folder: Path, data: object, mode: int = 0o600) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "credentials.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    path.chmod(mode)
    return path


# -- SENDBLUE_API_BASE_URL --------------------------------------------------------


def test_the_official_base_url_variable_is_read_after_ours(
    no_credentials: pytest.MonkeyPatch,
) -> None:
    """SENDBLUE_API_BASE_URL alone is used; SENDBLUE_BASE_URL wins over it."""
    no_credentials.setenv("SENDBLUE_API_BASE_URL", "https://official.example/")
    client = LinesClient("key-id", "secret-value-1234")
    assert client.base_url == "https://official.example"
    no_credentials.setenv("SENDBLUE_BASE_URL", "https://ours.example")
    assert LinesClient("key-id", "secret-value-1234").base_url == "https://ours.example"
    assert (
        LinesClient("k", "secret-value-1234", base_url="https://arg.example").base_url
        == "https://arg.example"
    )


def test_a_bad_official_base_url_is_refused_like_ours(
    no_credentials: pytest.MonkeyPatch,
) -> None:
    """Plain http to a remote host from SENDBLUE_API_BASE_URL: ConfigurationError."""
    no_credentials.setenv("SENDBLUE_API_BASE_URL", "http://api.example")
    with pytest.raises(ConfigurationError, match="refusing plain http"):
        LinesClient("key-id", "secret-value-1234")


# -- ~/.sendblue/credentials.json ---------------------------------------------------


def test_the_folder_is_home_or_sendblue_config_dir(
    no_credentials: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """~/.sendblue by default; SENDBLUE_CONFIG_DIR moves it."""
    no_credentials.delenv("SENDBLUE_CONFIG_DIR")
    assert credentials_path() == Path.home() / ".sendblue" / "credentials.json"
    no_credentials.setenv("SENDBLUE_CONFIG_DIR", str(tmp_path))
    assert credentials_path() == tmp_path / "credentials.json"


def test_the_file_is_read_when_the_environment_names_no_credential(
    no_credentials: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The keys apiKey and apiSecret of a 0600 file; any credential variable wins."""
    no_credentials.setenv("SENDBLUE_CONFIG_DIR", str(tmp_path))
    assert read_cli_credentials() is None  # no file: nothing, no error
    path = write(tmp_path, {"apiKey": "file-key", "apiSecret": "file-secret-1234"})
    assert read_cli_credentials() == ("file-key", "file-secret-1234", path)
    no_credentials.setenv("SENDBLUE_API_API_KEY", "env-key")
    assert read_cli_credentials() is None


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602])
def test_a_file_others_can_read_or_change_is_refused(
    no_credentials: pytest.MonkeyPatch, tmp_path: Path, mode: int
) -> None:
    """Readable or writable by group or others: refused, with the fix, no value."""
    no_credentials.setenv("SENDBLUE_CONFIG_DIR", str(tmp_path))
    write(tmp_path, {"apiKey": "file-key", "apiSecret": "file-secret-1234"}, mode)
    with pytest.raises(ConfigurationError, match="chmod 600") as caught:
        read_cli_credentials()
    assert "file-secret-1234" not in str(caught.value)
    assert str(tmp_path) in str(caught.value)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("not json {", id="not-json"),
        pytest.param([1, 2], id="a-list"),
        pytest.param({"apiKey": "file-key"}, id="no-secret"),
        pytest.param({"apiKey": 5, "apiSecret": "file-secret-1234"}, id="a-number"),
        pytest.param({"apiKey": "file-key", "apiSecret": ""}, id="empty"),
    ],
)
def test_a_malformed_file_is_a_clear_error(
    no_credentials: pytest.MonkeyPatch, tmp_path: Path, content: object
) -> None:
    """Not JSON, or no string apiKey / apiSecret: ConfigurationError naming the file."""
    no_credentials.setenv("SENDBLUE_CONFIG_DIR", str(tmp_path))
    write(tmp_path, content)
    with pytest.raises(ConfigurationError) as caught:
        read_cli_credentials()
    assert str(tmp_path / "credentials.json") in str(caught.value)
    assert "file-secret-1234" not in str(caught.value)


def test_a_folder_in_place_of_the_file_is_refused(
    no_credentials: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """credentials.json that is not a regular file: ConfigurationError."""
    no_credentials.setenv("SENDBLUE_CONFIG_DIR", str(tmp_path))
    (tmp_path / "credentials.json").mkdir()
    with pytest.raises(ConfigurationError):
        read_cli_credentials()


async def run(*argv: str) -> int:
    return await asyncio.wait_for(asyncio.to_thread(main, list(argv)), 30)


async def test_the_cli_buys_with_the_official_clis_credentials(
    sendblue_sandbox: Sandbox[Any],
    no_credentials: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    secret_canary: Any,
) -> None:
    """No variables, a 0600 credentials.json: the purchase goes through with them."""
    no_credentials.setenv("SENDBLUE_CONFIG_DIR", str(tmp_path / "sb"))
    no_credentials.setenv("SENDBLUE_API_BASE_URL", sendblue_sandbox.url)
    write(
        tmp_path / "sb",
        {
            "apiKey": sendblue_sandbox.api_key_id,
            "apiSecret": sendblue_sandbox.api_secret_key,
        },
    )
    assert await run("provision", "--yes", "-v") == 0
    err = capsys.readouterr().err
    assert len(sendblue_sandbox.ledger) == 1
    assert "using the credentials of Sendblue's CLI from" in err
    assert sendblue_sandbox.api_secret_key in secret_canary.secrets


async def test_the_cli_refuses_an_open_credentials_file(
    sendblue_sandbox: Sandbox[Any],
    no_credentials: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A 0644 credentials.json: exit 2 with one sentence, nothing sent."""
    no_credentials.setenv("SENDBLUE_CONFIG_DIR", str(tmp_path))
    no_credentials.setenv("SENDBLUE_BASE_URL", sendblue_sandbox.url)
    write(
        tmp_path,
        {"apiKey": sendblue_sandbox.api_key_id, "apiSecret": "open-file-secret-1234"},
        0o644,
    )
    assert await run("limits") == 2
    err = capsys.readouterr().err
    assert "Configuration error: refusing" in err
    assert "chmod 600" in err
    assert "open-file-secret-1234" not in err
    assert sendblue_sandbox.counters["limits"].requests == 0
    assert os.stat(tmp_path / "credentials.json").st_mode & 0o777 == 0o644
