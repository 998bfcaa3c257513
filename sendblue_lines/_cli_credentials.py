"""The credentials that Sendblue's own command line keeps: the CLI's last fallback.

Sendblue's official CLI stores `{"apiKey": ..., "apiSecret": ...}` in
`~/.sendblue/credentials.json` (the folder moved by `SENDBLUE_CONFIG_DIR`).
`sendblue-lines` reads it only when the environment names neither
credential. A file that the group or others may read or write is refused,
as ssh refuses a private key that others can read: the secret in it would
already be exposed, or replaceable. The checks are made on the open file
(fstat), so the file checked is the file read. No message names a value.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from ._config import KEY_ID_VARIABLES, SECRET_VARIABLES
from .errors import ConfigurationError

__all__ = ["CONFIG_DIR_VARIABLE", "credentials_path", "read_cli_credentials"]

CONFIG_DIR_VARIABLE: Final = "SENDBLUE_CONFIG_DIR"
FILE_NAME: Final = "credentials.json"
#: A credentials file is a few hundred bytes; more is not one.
MAX_BYTES: Final = 64 * 1024


def credentials_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the official CLI keeps its credentials (`$SENDBLUE_CONFIG_DIR` or ~)."""
    environ = os.environ if env is None else env
    folder = environ.get(CONFIG_DIR_VARIABLE)
    base = Path(folder).expanduser() if folder else Path.home() / ".sendblue"
    return base / FILE_NAME


def read_cli_credentials(
    env: Mapping[str, str] | None = None,
) -> tuple[str, str, Path] | None:
    """The official CLI's key id and secret, if the environment names neither.

    Returns None when a credential variable is set (the environment wins, and
    a half-set environment is reported by the client as before) or when the
    file does not exist.

    Raises:
        ConfigurationError: the file can be read or written by the group or
            others, is not a regular file, is not JSON, or lacks a string
            `apiKey` or `apiSecret`.
    """
    environ = os.environ if env is None else env
    if any(environ.get(name) for name in (*KEY_ID_VARIABLES, *SECRET_VARIABLES)):
        return None
    path = credentials_path(environ)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read {path} ({exc.strerror or type(exc).__name__})"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigurationError(f"{path} is not a regular file")
        if os.name == "posix" and info.st_mode & 0o077:
            raise ConfigurationError(
                f"refusing {path}: its mode {stat.filemode(info.st_mode)} lets the "
                "group or others read or change it; run `chmod 600` on it (and "
                "consider rotating the key), or set SENDBLUE_API_KEY_ID and "
                "SENDBLUE_API_SECRET_KEY"
            )
        raw = os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_BYTES:
        raise ConfigurationError(f"{path} is larger than a credentials file can be")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ConfigurationError(f"{path} is not valid JSON") from None
    key = data.get("apiKey") if isinstance(data, dict) else None
    secret = data.get("apiSecret") if isinstance(data, dict) else None
    if not isinstance(key, str) or not key or not isinstance(secret, str) or not secret:
        raise ConfigurationError(
            f"{path} must hold a JSON object with the strings apiKey and apiSecret"
        )
    return key, secret, path
