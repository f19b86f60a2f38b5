"""ARCHITECTURE.md stays true, and the shape it describes holds."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from structure import ANY_AT_THE_EDGE, any_uses, size_violations
from testkit import ROOT

SRC = ROOT / "src" / "agentdeploy"
DOC = (ROOT / "ARCHITECTURE.md").read_text()


def test_every_package_and_module_the_document_names_exists() -> None:
    rows = re.findall(r"^\| `([a-z_]+)/` \| (.+?) \|", DOC, re.MULTILINE)
    assert {name for name, _ in rows} == {"config", "image", "targets", "state", "release", "github", "setup"}
    for package, owns in rows:
        directory = SRC / package
        assert (directory / "__init__.py").is_file(), f"{package}/ is named but is not a package"
        for module in re.findall(r"`([a-z_/]+\.py)`", owns):
            candidates = [directory / module, *directory.glob(f"*/{module}")]
            assert any(path.is_file() for path in candidates), f"{package}/{module} is named but does not exist"


def test_every_package_says_what_it_owns() -> None:
    for init in SRC.glob("*/__init__.py"):
        docstring = ast.get_docstring(ast.parse(init.read_text()))
        assert docstring and len(docstring) > 40, f"{init.parent.name}/ has no docstring saying what it owns"


def _provider_literals(path: Path) -> list[int]:
    """Lines that compare with, or choose by, a provider name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                if isinstance(side, ast.Constant) and side.value in ("azure", "docker"):
                    found.append(node.lineno)
                if isinstance(side, ast.Tuple | ast.List | ast.Set) and any(
                    isinstance(e, ast.Constant) and e.value in ("azure", "docker") for e in side.elts
                ):
                    found.append(node.lineno)
    return found


def test_no_provider_branch_outside_targets_and_the_config_model() -> None:
    offenders = {
        str(path.relative_to(SRC)): lines
        for path in SRC.rglob("*.py")
        if path.relative_to(SRC).parts[0] not in ("targets", "config") and (lines := _provider_literals(path))
    }
    assert offenders == {}


def test_the_adding_a_target_section_names_a_test_that_does_it() -> None:
    named = re.search(r"`(tests/unit/test_targets\.py)`", DOC)
    assert named and (ROOT / named.group(1)).is_file()


# The layers, lowest first: a module imports only from its own package or from a lower layer. The shared pieces
# every layer uses (the error tree, the console, JSON, retries, signals) sit below them all.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("agentdeploy", "errors", "jsonvalue"),
    ("git",),  # the only module that runs git (image/ and state/ use it)
    ("terminal",),  # how text looks where it is written (pure)
    ("console", "retry", "streams", "interrupts"),
    ("config",),
    ("image", "state"),
    ("targets",),
    ("release", "setup"),
    ("github",),  # the Action's front end (and its GitHub API adapters, which the CLI passes in too)
    ("cli_text",),  # what the command line prints for a person (pure)
    ("cli_config", "cli_release"),  # the command line's handlers
    ("cli",),  # the parser; `agentdeploy action` runs the Action's front end
    ("__main__",),
)
# Imports across one layer, each with its reason.
ALLOWED_ACROSS: set[tuple[str, str]] = set()  # (unit, module): none today; each would carry its reason


def _layer_of(unit: str) -> int:
    for index, units in enumerate(LAYERS):
        if unit in units:
            return index
    raise AssertionError(f"{unit} is in no layer: add it to LAYERS in {Path(__file__).name}")


def _unit(module: str) -> str:
    """`agentdeploy.release.pipeline.plan` -> `release`; `agentdeploy.__version__` -> `agentdeploy` (the package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and not parts[1].startswith("__")) else parts[0]


def _imports(path: Path, src: Path) -> list[tuple[int, str]]:
    """(line, module) for every agentdeploy import in `path`: at the top, inside functions, and under
    TYPE_CHECKING alike (a type a layer needs from above is a dependency too). `from package import x` names
    `package.x` (x may be a module); a relative import is resolved against the file's package."""
    package = ["agentdeploy", *path.relative_to(src).parent.parts]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("agentdeploy")]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            if module.split(".")[0] == "agentdeploy":
                found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def layer_violations(src: Path) -> list[str]:
    violations = []
    for path in sorted(src.rglob("*.py")):
        relative = path.relative_to(src)
        unit = relative.parts[0].removesuffix(".py")
        for line, name in _imports(path, src):
            imported, module = _unit(name), name.rpartition(".")[0]
            if imported == unit or (unit, name) in ALLOWED_ACROSS or (unit, module) in ALLOWED_ACROSS:
                continue
            if _layer_of(imported) >= _layer_of(unit):
                violations.append(f"{relative}:{line} imports {name} ({unit} may not depend on {imported})")
    return violations


def test_layers_only_point_down() -> None:
    """config < image/state < targets < release < front ends (cli.py, github/): no import runs back up."""
    assert layer_violations(SRC) == []


def test_the_layer_check_sees_an_import_under_type_checking(tmp_path: Path) -> None:
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "thing.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from agentdeploy.release.planner import Plan\n"
    )
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "rows.py").write_text("from agentdeploy import targets\nfrom ..image import git\n")
    assert layer_violations(tmp_path) == [
        "state/rows.py:1 imports agentdeploy.targets (state may not depend on targets)",
        "state/rows.py:2 imports agentdeploy.image.git (state may not depend on image)",
        "targets/thing.py:3 imports agentdeploy.release.planner.Plan (targets may not depend on release)",
    ]


def test_every_module_and_function_reads_in_one_sitting() -> None:
    assert size_violations(SRC) == []


def test_the_size_check_sees_a_long_module_and_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{n} = {n}" for n in range(61))
    (tmp_path / "long.py").write_text("def long() -> None:\n" + body + "\n" + "\n" * 340)
    assert size_violations(tmp_path) == ["long.py: 402 lines", "long.py:1 long: 62 lines"]


def test_any_is_named_only_at_the_json_edge() -> None:
    assert sorted(set(any_uses(SRC)) - set(ANY_AT_THE_EDGE)) == []
