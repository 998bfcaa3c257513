"""The package's shape, checked by reading its source with `ast` (nothing is run).

docs/architecture.md promises: no import cycle; no module uses another
module's private names; no HTTP status number outside the client's own
modules (client.py, _transport.py, _status.py; the sandbox is a server and
answers with statuses); the counts behind invariant 3 change only in
_budget.py, and the code that keeps it fits on one screen.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

import sendblue_lines

PACKAGE = Path(sendblue_lines.__file__).parent
NAME = "sendblue_lines"
#: The modules that speak HTTP, and the sandbox (a server: statuses are its answers).
HTTP_MODULES = {f"{NAME}.client", f"{NAME}._transport", f"{NAME}._status"}
SANDBOX = f"{NAME}.sandbox"
#: Integers in the range of HTTP statuses that are not statuses, each with why.
NOT_STATUSES = {
    (f"{NAME}.cli._render", 130): "exit code of a command stopped by SIGINT",
    (f"{NAME}._config", 200): "the longest key, in characters",
    (f"{NAME}._logging", 200): "characters of one piece of server text shown",
}
#: Names that look private but are public API of a standard type.
PUBLIC_BY_CONVENTION = {"_replace", "_asdict", "_fields", "_make"}
#: A screen of code: lines that are not blank, comments or docstrings.
SCREEN = 60


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, tuple[Path, ast.Module]]:
    """Every module of the package: its dotted name, file and syntax tree."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        found[_module_name(path)] = (path, ast.parse(path.read_text("utf-8")))
    return found


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, apart from what sits under `if TYPE_CHECKING:`."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and _is_type_checking(child):
            yield from (n for orelse in child.orelse for n in _runtime_nodes(orelse))
            continue
        yield child
        yield from _runtime_nodes(child)


def _imported_from(module: str, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names."""
    if node.level == 0:
        return node.module or ""
    path, _ = modules()[module]
    base = module.split(".")
    if path.name != "__init__.py":
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports(
    module: str, *, typing_too: bool = False
) -> Iterator[tuple[str, str | None, int]]:
    """(module, name taken from it or None, line) for each run-time import.

    With `typing_too`, the imports under `if TYPE_CHECKING:` as well.
    """
    _, tree = modules()[module]
    for node in ast.walk(tree) if typing_too else _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            source = _imported_from(module, node)
            for alias in node.names:
                if f"{source}.{alias.name}" in modules():
                    yield f"{source}.{alias.name}", None, node.lineno
                else:
                    yield source, alias.name, node.lineno


def graph(*, typing_too: bool = False) -> dict[str, set[str]]:
    """The package's own imports: module -> modules it imports."""
    edges: dict[str, set[str]] = {}
    for module in modules():
        targets = {
            target
            for target, _, _ in imports(module, typing_too=typing_too)
            if target in modules() and target != module
        }
        # A submodule's import of its own package (for a name) runs the
        # package's __init__ first anyway; it is no cycle of ours.
        edges[module] = {t for t in targets if not module.startswith(t + ".")}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules around it, or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_the_package_has_no_import_cycle() -> None:
    """Following the imports between modules never comes back.

    Not even through an import made for type checkers only: such a cycle
    still ties two modules' designs together.
    """
    assert find_cycle(graph(typing_too=True)) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The finder itself: a made-up cycle is found and named."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(edges) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_sandbox_imports_nothing_from_the_client_side() -> None:
    """sendblue_lines.sandbox shares no code with the client (design)."""
    leaks = [
        (module, target)
        for module in modules()
        if module.startswith(SANDBOX)
        for target, _, _ in imports(module)
        if target.startswith(NAME) and not target.startswith(SANDBOX)
    ]
    assert leaks == []


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _own_private_names(tree: ast.Module) -> set[str]:
    """Private names a module defines: functions, classes, globals, attributes."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    names.update(ast.literal_eval(s) for s in _slots(tree))
    return {name for name in names if _private(name)}


def _slots(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and any(ast.unparse(t) == "__slots__" for t in node.targets)
            and isinstance(node.value, (ast.Tuple, ast.List))
        ):
            yield from (ast.unparse(e) for e in node.value.elts)


def foreign_private_uses() -> list[str]:
    """Each place a module takes or reads a private name defined elsewhere."""
    own = {module: _own_private_names(tree) for module, (_, tree) in modules().items()}
    everyone = set().union(*own.values())
    found = []
    for module, (_, tree) in modules().items():
        for target, name, line in imports(module):
            if name is not None and _private(name) and target.startswith(NAME):
                found.append(f"{module}:{line} imports {target}.{name}")
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not _private(node.attr):
                continue
            if node.attr in PUBLIC_BY_CONVENTION or node.attr in own[module]:
                continue
            if node.attr in everyone:
                found.append(f"{module}:{node.lineno} reads {ast.unparse(node)}")
    return found


def test_no_module_uses_another_modules_private_names() -> None:
    """No `from x import _name`, no `x._name` of a name another module defines."""
    assert foreign_private_uses() == []


def _decimal_ints(module: str) -> Iterator[tuple[int, int]]:
    path, tree = modules()[module]
    source = path.read_text("utf-8").splitlines()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and type(node.value) is int
            and 100 <= node.value <= 599
        ):
            text = source[node.lineno - 1][node.col_offset : node.end_col_offset]
            if re.fullmatch(r"\d+", text):  # 0o600 and 0x7F are no statuses
                yield node.value, node.lineno


def test_no_http_status_number_outside_the_client() -> None:
    """Above the client, code asks the error classes, never a status number."""
    found = [
        f"{module}:{line} {value}"
        for module in modules()
        if module not in HTTP_MODULES and not module.startswith(SANDBOX)
        for value, line in _decimal_ints(module)
        if (module, value) not in NOT_STATUSES
    ]
    assert found == []


def _code_lines(node: ast.AST, source: list[str]) -> int:
    """Lines of `node` that are code: no blanks, comments or docstrings."""
    docstrings = set()
    for inner in ast.walk(node):
        body = getattr(inner, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            end = body[0].end_lineno or body[0].lineno
            docstrings.update(range(body[0].lineno, end + 1))
    assert node.end_lineno is not None
    return sum(
        1
        for number in range(node.lineno, node.end_lineno + 1)
        if number not in docstrings
        and source[number - 1].strip()
        and not source[number - 1].strip().startswith("#")
    )


#: The counts behind invariant 3: units of max_lines held, slots in flight.
COUNTS = {"held", "in_flight"}


def test_the_counts_of_invariant_3_change_only_in_the_budget() -> None:
    """`held` and `in_flight` are assigned in _budget.py and nowhere else.

    (The sandbox, a server, counts its own requests in flight.)
    """
    writers = {
        module
        for module, (_, tree) in modules().items()
        if not module.startswith(SANDBOX)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.ctx, ast.Store)
        and node.attr in COUNTS
    }
    assert writers == {f"{NAME}._budget"}


def test_the_code_that_keeps_invariant_3_fits_on_one_screen() -> None:
    """Budget, Reservation and Slot together are at most a screen of code."""
    path, tree = modules()[f"{NAME}._budget"]
    source = path.read_text("utf-8").splitlines()
    classes = [
        node
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        and node.name in {"Budget", "Reservation", "Slot"}
    ]
    assert len(classes) == 3
    assert sum(_code_lines(node, source) for node in classes) <= SCREEN


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("x = 404\n", ["m:1 404"], id="a-status"),
        pytest.param("x = 0o600\ny = 0x7F\n", [], id="not-decimal"),
        pytest.param("x = 42\n", [], id="out-of-range"),
    ],
)
def test_the_status_finder_sees_decimal_statuses(
    source: str, expected: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The finder itself: a decimal 404 is found, octal and hex are not."""
    path = tmp_path / "m.py"
    path.write_text(source)
    monkeypatch.setattr(
        "test_architecture.modules", lambda: {"m": (path, ast.parse(source))}
    )
    assert [f"m:{line} {value}" for value, line in _decimal_ints("m")] == expected


def test_the_private_name_finder_sees_both_ways_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The finder itself: `from a import _f` and `a._g` are found, own names not."""
    sources = {
        f"{NAME}.a": "def _f(): pass\n_g = 1\n",
        f"{NAME}.b": (
            f"from {NAME}.a import _f\nimport {NAME}.a as a\n"
            "class C:\n    def __init__(self): self._own = 1\n"
            "x = a._g\ny = C()._own\n"
        ),
    }
    fake = {}
    for module, source in sources.items():
        path = tmp_path / f"{module.rsplit('.', 1)[1]}.py"
        path.write_text(source)
        fake[module] = (path, ast.parse(source))
    monkeypatch.setattr("test_architecture.modules", lambda: fake)
    assert foreign_private_uses() == [
        f"{NAME}.b:1 imports {NAME}.a._f",
        f"{NAME}.b:5 reads a._g",
    ]
