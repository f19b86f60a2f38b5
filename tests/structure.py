"""The structural numbers of src/agentdeploy (issue 21: a release engine you can read in one sitting): the largest
module and function against their limits, and where `typing.Any` is named. tests/unit/test_architecture.py fails past
the limits; the pytest header prints the numbers (conftest.py)."""

from __future__ import annotations

import ast
from pathlib import Path

from testkit import ROOT

SRC = ROOT / "src" / "agentdeploy"


MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def size_violations(src: Path) -> list[str]:
    """Modules over MAX_MODULE_LINES lines and functions over MAX_FUNCTION_LINES (decorators left out)."""
    found = []
    for path in sorted(src.rglob("*.py")):
        text = path.read_text()
        relative = path.relative_to(src)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            found.append(f"{relative}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{relative}:{node.lineno} {node.name}: {length} lines")
    return found


# `Any` only at the JSON edge: each module that may use it, and the outside data it takes in.
ANY_AT_THE_EDGE = {
    "console.py": "`--json` and redaction take any JSON-able value",
    "release/planner.py": "the config's deployment section as pydantic dumps it",
    "state/artifact.py": "the GitHub REST API's JSON and the HTTP session",
    "state/branch.py": "the GitHub event payload",
    "targets/azure/auth.py": "azure-identity's credential objects",
    "targets/docker/hardening.py": "the engine's image config",
}


def any_uses(src: Path) -> dict[str, int]:
    """Module -> how many times it names typing.Any."""
    found: dict[str, int] = {}
    for path in sorted(src.rglob("*.py")):
        count = sum(
            1
            for node in ast.walk(ast.parse(path.read_text()))
            if (isinstance(node, ast.Name) and node.id == "Any")
            or (isinstance(node, ast.Attribute) and node.attr == "Any")
        )
        if count:
            found[path.relative_to(src).as_posix()] = count
    return found


def structure_line(src: Path = SRC) -> str:
    """The structural numbers the pytest header prints: largest module, largest function, `Any` uses."""
    modules = [(len(path.read_text().splitlines()), path.relative_to(src).as_posix()) for path in src.rglob("*.py")]
    functions = [
        ((node.end_lineno or node.lineno) - node.lineno + 1, f"{path.relative_to(src).as_posix()}:{node.name}")
        for path in src.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    (module_lines, module), (function_lines, function) = max(modules), max(functions)
    uses = any_uses(src)
    return (
        f"structure: largest module {module} ({module_lines} lines, limit {MAX_MODULE_LINES}), largest function "
        f"{function} ({function_lines} lines, limit {MAX_FUNCTION_LINES}), Any {sum(uses.values())} times in "
        f"{len(uses)} modules at the JSON edge"
    )
