"""ARCHITECTURE.md stays true, and the shape it describes holds."""

from __future__ import annotations

import ast
import re
from pathlib import Path

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
