"""Walk everything reachable from an error and say where a secret hides.

Written for the tests, independently of the SDK's own check: it follows an
exception's `args`, `__cause__`, `__context__`, `__notes__`, every attribute
(`__dict__` and `__slots__` up the MRO, which covers attrs and dataclass
instances such as aiohttp's `RequestInfo`), mappings (multidicts included:
keys and values), sequences and sets, and the `str()` and `repr()` of every
exception on the way. Tracebacks are not followed (their frames reach every
live object), nor classes, functions or modules. Bounded by a visited set,
a depth and a count of objects.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from typing import Any

MAX_DEPTH = 25
MAX_OBJECTS = 50_000

_SKIP = (
    types.TracebackType,
    types.FrameType,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    type,
)


def _attributes(node: object) -> Iterable[tuple[str, Any]]:
    yield from getattr(node, "__dict__", {}).items()
    for cls in type(node).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__"):
                continue
            try:
                yield name, getattr(node, name)
            except AttributeError:
                continue


def secret_paths(root: object, secrets: Iterable[str]) -> list[str]:
    """Every path from `root` to a string (or bytes) holding one of `secrets`."""
    wanted = [s for s in secrets if s]
    found: list[str] = []
    seen: set[int] = set()
    stack: list[tuple[object, str, int]] = [(root, "error", 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, str):
            found += [path for s in wanted if s in node]
            continue
        if isinstance(node, (bytes, bytearray)):
            found += [path for s in wanted if s.encode() in node]
            continue
        if node is None or isinstance(node, (bool, int, float, complex, *_SKIP)):
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        if depth > MAX_DEPTH or len(seen) > MAX_OBJECTS:
            raise AssertionError(f"the object graph is too large to walk at {path}")
        children: list[tuple[object, str]] = []
        if isinstance(node, BaseException):
            children += [
                (str(node), f"str({path})"),
                (repr(node), f"repr({path})"),
                (node.args, f"{path}.args"),
                (node.__cause__, f"{path}.__cause__"),
                (node.__context__, f"{path}.__context__"),
                (getattr(node, "__notes__", None), f"{path}.__notes__"),
            ]
        if isinstance(node, Mapping) or hasattr(node, "items"):
            try:
                items = list(node.items())  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - not a mapping after all
                items = []
            for key, value in items:
                children += [(key, f"{path}<key>"), (value, f"{path}[{key!r}]")]
        if isinstance(node, (list, tuple, set, frozenset)):
            children += [(item, f"{path}[{i}]") for i, item in enumerate(node)]
        children += [(value, f"{path}.{name}") for name, value in _attributes(node)]
        stack.extend((child, where, depth + 1) for child, where in children)
    return found
