"""The package stays readable: no function over 60 lines, no module over 300, no path hacks, no ``src.`` imports."""

from __future__ import annotations

import ast

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
