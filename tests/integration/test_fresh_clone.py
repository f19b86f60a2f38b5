"""The README's test command works in a clone of this repository alone: nothing beside it, no variable to set.

The clone is made in an empty temporary folder from what git tracks (plus files not yet committed, so that the
check holds for the work at hand, not only for the last commit), with no `../shared` next to it. There, the
suite collects exactly the tests it collects here, and the unit tests pass, with the optional corpora named as
left out.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from testkit import ROOT, git


def _clone(into: Path) -> Path:
    """A checkout of the working tree in `into/clone`, committed, with nothing beside it."""
    clone = into / "clone"
    files = git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not part of the work
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    git(clone.parent, "init", "-q", "-b", "main", clone.name)
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "clone")
    assert sorted(p.name for p in into.iterdir()) == ["clone"]  # no ../shared, nothing else beside it
    return clone


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "AGENTDEPLOY_"))}
    environ["PYTHONPATH"] = str(cwd / "src")  # the clone's package, ahead of the editable install's
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _collected(result: subprocess.CompletedProcess[str]) -> list[str]:
    return sorted(line for line in result.stdout.splitlines() if "::" in line)


def test_a_clone_with_nothing_beside_it_collects_every_test_and_passes_its_unit_tests(tmp_path: Path) -> None:
    clone = _clone(tmp_path / "empty")

    here = _pytest(ROOT, "--collect-only", "-q")
    there = _pytest(clone, "--collect-only", "-q")
    assert there.returncode == 0, there.stdout[-3000:] + there.stderr[-3000:]
    assert "error" not in there.stdout.lower().split("tests collected")[-1], there.stdout[-2000:]
    assert _collected(there) == _collected(here)
    assert len(_collected(there)) > 500

    unit = _pytest(clone, "tests/unit", "-rs", "-x")  # not -q: the header names the corpora
    assert unit.returncode == 0, unit.stdout[-5000:] + unit.stderr[-3000:]
    header = next(line for line in unit.stdout.splitlines() if line.startswith("optional corpora:"))
    assert header.startswith("optional corpora: left out ") and "tests/fixtures/README.md" in header, header
    # What was skipped is the optional corpus (and the az CLI, an optional tool of 733 MB), and nothing else.
    skipped = [line for line in unit.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skipped, unit.stdout[-2000:]
    assert all("optional corpus" in line or "optional tool: no az CLI" in line for line in skipped), skipped
    passed = re.search(r"(\d+) passed", unit.stdout)
    assert passed and int(passed.group(1)) > 250, unit.stdout[-500:]
