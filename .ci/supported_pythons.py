"""Print the oldest and the newest supported Python found on this machine.

"Supported" is read from pyproject.toml: the oldest is the minor version of
`requires-python = ">=3.X"`, the newest the highest `Programming Language ::
Python :: 3.Y` classifier. Each is looked up under pyenv's root (`$PYENV_ROOT`,
`pyenv root`, `~/.pyenv`), taking the highest patch release, then on PATH as
`python3.X`. Prints one interpreter path per line, oldest first. Exits 1,
saying which version is missing and where it looked, when either is not
found: CI must prove both ends of the range, not skip them quietly.

Standard library only, and no tomllib: this runs on 3.10 too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def supported_range(pyproject: str) -> tuple[int, int]:
    """The oldest and newest supported 3.x minor versions."""
    oldest = re.search(r'requires-python\s*=\s*">=\s*3\.(\d+)', pyproject)
    newest = re.findall(r"Programming Language :: Python :: 3\.(\d+)", pyproject)
    if oldest is None or not newest:
        sys.exit("pyproject.toml: no requires-python >=3.X or no 3.Y classifiers")
    return int(oldest.group(1)), max(int(minor) for minor in newest)


def pyenv_roots() -> list[Path]:
    """Where pyenv may keep its interpreters, most specific first."""
    roots = []
    if os.environ.get("PYENV_ROOT"):
        roots.append(Path(os.environ["PYENV_ROOT"]))
    pyenv = shutil.which("pyenv")
    if pyenv is not None:
        found = subprocess.run(  # noqa: S603 - our own PATH lookup, no shell
            [pyenv, "root"], capture_output=True, text=True, check=False
        )
        if found.returncode == 0 and found.stdout.strip():
            roots.append(Path(found.stdout.strip()))
    roots.append(Path.home() / ".pyenv")
    return list(dict.fromkeys(roots))


def reports(python: Path, minor: int) -> bool:
    """True when `python` runs and is CPython 3.`minor`."""
    try:
        answer = subprocess.run(  # noqa: S603 - an interpreter path we found
            [str(python), "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return answer.returncode == 0 and answer.stdout.strip() == f"(3, {minor})"


def find(minor: int, roots: list[Path]) -> Path | None:
    """The newest patch release of 3.`minor` that runs, or None."""
    candidates: list[tuple[int, Path]] = []
    for root in roots:
        for entry in (root / "versions").glob(f"3.{minor}.*"):
            patch = re.fullmatch(rf"3\.{minor}\.(\d+)", entry.name)
            if patch is not None:
                candidates.append((int(patch.group(1)), entry / "bin" / "python"))
    for _, python in sorted(candidates, reverse=True):
        if reports(python, minor):
            return python
    on_path = shutil.which(f"python3.{minor}")
    if on_path is not None and reports(Path(on_path), minor):
        return Path(on_path)
    return None


def main() -> None:
    """Print both interpreters, or exit 1 naming the missing ones."""
    oldest, newest = supported_range((ROOT / "pyproject.toml").read_text())
    roots = pyenv_roots()
    missing = []
    for minor in dict.fromkeys((oldest, newest)):
        python = find(minor, roots)
        if python is None:
            missing.append(f"3.{minor}")
        else:
            print(python)
    if missing:
        where = ", ".join(str(root / "versions") for root in roots)
        sys.exit(
            f"no interpreter for Python {' and '.join(missing)} (looked in {where} "
            "and on PATH); install it (e.g. `pyenv install`) so that CI can test "
            "both ends of the supported range"
        )


if __name__ == "__main__":
    main()
