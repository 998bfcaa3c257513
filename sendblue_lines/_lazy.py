"""Names of a package that load on first use (PEP 562).

A package's `__init__` keeps plain imports for type checkers and, at run
time, a map from each lazy name to the submodule that defines it:
`__getattr__, __dir__ = lazy_names(__name__, {...}, globals())`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    package: str, names: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of `package` for its lazy `names`.

    `names` maps each name to the (relative) module that defines it; the
    first access imports that module and keeps the value in `namespace`, so
    the next access is a plain lookup. `__dir__` lists the lazy names with
    the loaded ones.

    Raises:
        AttributeError: from `__getattr__`, for a name that is not lazy.
    """

    def __getattr__(name: str) -> object:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name], package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *names})

    return __getattr__, __dir__
