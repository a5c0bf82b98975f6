"""The package stays readable: no function over 60 lines, no module over 300, no path hacks, no ``src.`` imports."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "src" / "partial_csl"
MAX_FUNCTION_LINES, MAX_MODULE_LINES = 60, 300
PYTHON_FILES = [p for p in ROOT.rglob("*.py") if ".venv" not in p.parts and "outputs" not in p.parts
                and "data" not in p.relative_to(ROOT).parts[:1]]


def test_no_function_in_the_package_is_longer_than_60_lines():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, long


def test_no_module_in_the_package_is_longer_than_300_lines():
    long = [f"{p.relative_to(ROOT)} ({n} lines)" for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not long, long


def test_nothing_edits_sys_path_or_imports_src():
    offenders = [str(p.relative_to(ROOT)) for p in PYTHON_FILES if p.name != "test_code_shape.py"
                 and any(bad in p.read_text() for bad in ("sys.path", "from src.", "import src."))]
    assert not offenders, offenders


def test_public_functions_with_more_than_8_parameters_take_the_rest_by_keyword():
    """Past 8 parameters, at most 6 positional ones (torchvision's train_one_epoch(model, loader, criterion, optimizer,
    scheduler, device)): callers name the rest (no 14 arguments by position)."""
    wide = []
    for path in [*PACKAGE.rglob("*.py"), *ROOT.glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                args = node.args
                positional = [a.arg for a in args.posonlyargs + args.args if a.arg not in ("self", "cls")]
                if len(positional) + len(args.kwonlyargs) > 8 and len(positional) > 6:
                    wide.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({len(positional)} positional)")
    assert not wide, wide


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``path`` imports (at any level, type-checking imports included)."""
    name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m in modules and m != name}


def test_the_package_import_graph_has_no_circle():
    modules = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
               for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports(path, modules) for name, path in modules.items()}
    done, path_now, circles = set(), [], []

    def visit(name: str) -> None:
        if name in path_now:
            circles.append(" -> ".join([*path_now[path_now.index(name):], name]))
            return
        if name in done:
            return
        path_now.append(name)
        for dep in sorted(graph[name]):
            visit(dep)
        path_now.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    assert not circles, circles
