"""scripts/release_notes.py: what the release workflow decides (the tag is the package version, the notes are the
CHANGELOG's section, whether the major tag moves), and this project's own CHANGELOG.md read by it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from testkit import ROOT, git

SCRIPT = ROOT / "scripts" / "release_notes.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("release_notes", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["release_notes"] = module  # dataclasses and the like look their module up by name
    spec.loader.exec_module(module)
    return module


rn = _load()

CHANGELOG = """# Changelog

Intro text.

## [Unreleased]

- something not released yet

## [1.4.0] - 2026-12-05

### Changed

- `state` defaults to `artifact`.

### Fixed

- A fix.

## [1.3.1] - 2026-11-30

- An older fix.

[1.4.0]: https://example.invalid/compare/v1.3.1...v1.4.0
"""

PYPROJECT = '[build-system]\nrequires = ["setuptools"]\n\n[project]\nname = "agentdeploy"\nversion = "1.4.0"\n'


@pytest.mark.parametrize(
    ("tag", "version"), [("v1.4.0", (1, 4, 0)), ("v0.1.0", (0, 1, 0)), ("v10.20.300", (10, 20, 300))]
)
def test_release_tags_are_parsed(tag: str, version: tuple[int, int, int]) -> None:
    assert rn.parse_tag(tag) == version


@pytest.mark.parametrize("tag", ["v1", "v1.4", "1.4.0", "v1.4.0-rc.1", "v01.4.0", "v1.4.0.1", "release-1.4.0", ""])
def test_anything_else_is_not_a_release_tag(tag: str) -> None:
    with pytest.raises(rn.ReleaseError, match=r"is not a release tag: release tags are vMAJOR\.MINOR\.PATCH"):
        rn.parse_tag(tag)


def test_the_tag_must_name_the_package_version() -> None:
    assert rn.check_tag_matches("v1.4.0", PYPROJECT) == (1, 4, 0)
    with pytest.raises(rn.ReleaseError) as refused:
        rn.check_tag_matches("v1.5.0", PYPROJECT)
    assert str(refused.value) == (
        'pyproject.toml:6: the package version is 1.4.0, but the tag is v1.5.0: set version = "1.5.0" in a commit, '
        "tag that commit v1.5.0, and push the tag again "
        "(git tag -d v1.5.0 && git push origin :refs/tags/v1.5.0 removes the wrong one)"
    )


def test_a_pyproject_without_a_version_is_refused() -> None:
    with pytest.raises(rn.ReleaseError, match=r"^pyproject.toml: no \[project\] version to compare the tag with"):
        rn.check_tag_matches("v1.4.0", '[project]\nname = "x"\n')


def test_the_notes_are_the_section_of_that_version_only() -> None:
    assert rn.changelog_section(CHANGELOG, (1, 4, 0)) == (
        "### Changed\n\n- `state` defaults to `artifact`.\n\n### Fixed\n\n- A fix.\n"
    )
    # The last section ends before the link definitions, not at the end of the file.
    assert rn.changelog_section(CHANGELOG, (1, 3, 1)) == "- An older fix.\n"


@pytest.mark.parametrize("heading", ["## 1.4.0", "## [1.4.0]", "## [1.4.0] - 2026-12-05"])
def test_the_heading_forms_of_keep_a_changelog_are_read(heading: str) -> None:
    assert rn.changelog_section(f"# Changelog\n\n{heading}\n\n- new\n", (1, 4, 0)) == "- new\n"


def test_a_version_without_a_section_is_refused_with_the_heading_to_add() -> None:
    with pytest.raises(rn.ReleaseError) as refused:
        rn.changelog_section(CHANGELOG, (1, 5, 0))
    assert str(refused.value) == (
        "CHANGELOG.md: no section for 1.5.0: add a heading `## [1.5.0] - YYYY-MM-DD` above the previous release's, "
        "with this release's notes under it (move them there from `## [Unreleased]`)"
    )
    # 1.4.0 is a prefix of 1.4.01 and the like: only the exact version counts.
    with pytest.raises(rn.ReleaseError, match=r"no section for 1\.4\.0"):
        rn.changelog_section("## [1.4.01]\n\n- x\n## [11.4.0]\n\n- y\n", (1, 4, 0))


def test_an_empty_section_is_refused_at_its_line() -> None:
    with pytest.raises(rn.ReleaseError, match=r"^CHANGELOG.md:3: the section for 1.4.0 is empty"):
        rn.changelog_section("# Changelog\n\n## [1.4.0] - 2026-12-05\n\n## [1.3.1]\n\n- x\n", (1, 4, 0))


def test_two_sections_for_one_version_are_refused() -> None:
    with pytest.raises(
        rn.ReleaseError, match=r"^CHANGELOG.md:5: a second section for 1.4.0 \(the first is at line 1\)"
    ):
        rn.changelog_section("## [1.4.0]\n\n- a\n\n## [1.4.0]\n\n- b\n", (1, 4, 0))


def test_only_release_tags_count_as_releases() -> None:
    assert sorted(rn.release_versions(["v1", "v1.3.1", "nightly", "v1.4", "v1.4.0", "v2.0.0-rc.1"])) == [
        (1, 3, 1),
        (1, 4, 0),
    ]


@pytest.mark.parametrize(
    ("version", "existing", "moves", "latest"),
    [
        ((1, 0, 0), [], True, True),  # the first release
        ((1, 4, 0), [(1, 3, 1), (1, 3, 0)], True, True),
        ((1, 3, 2), [(1, 4, 0), (1, 3, 1)], False, False),  # a fix of an older line never takes v1 back
        ((1, 5, 0), [(1, 4, 0), (2, 0, 0)], True, False),  # v1 moves on while v2 stays the latest
        ((2, 0, 0), [(1, 9, 9)], True, True),  # v2 starts; v1 stays where it was
    ],
)
def test_the_major_tag_moves_only_forward(
    version: tuple[int, int, int], existing: list[tuple[int, int, int]], moves: bool, latest: bool
) -> None:
    assert rn.major_tag(version) == f"v{version[0]}"
    assert rn.moves_major(version, existing) is moves
    assert rn.is_latest(version, existing) is latest


def _checkout(tmp_path: Path, version: str, changelog: str, tags: list[str]) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "pyproject.toml").write_text(PYPROJECT.replace('version = "1.4.0"', f'version = "{version}"'))
    (repo / "CHANGELOG.md").write_text(changelog)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "release")
    for tag in tags:
        git(repo, "tag", tag)
    return repo


def _run(repo: Path, *args: str, github_output: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(repo)}
    if github_output is not None:
        env["GITHUB_OUTPUT"] = str(github_output)
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=repo, env=env, capture_output=True, text=True, check=False
    )


def test_notes_writes_the_section_and_the_outputs_the_workflow_reads(tmp_path: Path) -> None:
    repo = _checkout(tmp_path, "1.4.0", CHANGELOG, ["v1", "v1.3.1", "v1.4.0"])
    output = tmp_path / "github_output"
    output.write_text("earlier=kept\n")
    result = _run(repo, "notes", "v1.4.0", "--out", str(tmp_path / "notes.md"), github_output=output)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "notes.md").read_text() == rn.changelog_section(CHANGELOG, (1, 4, 0))
    assert output.read_text() == "earlier=kept\nmajor=v1\nmove-major=true\nlatest=true\n"


def test_notes_of_a_backport_leave_the_major_tag(tmp_path: Path) -> None:
    changelog = CHANGELOG.replace("## [1.3.1] - 2026-11-30", "## [1.3.2] - 2026-12-06\n\n- backport\n\n## [1.3.1]")
    repo = _checkout(tmp_path, "1.3.2", changelog, ["v1", "v1.3.1", "v1.4.0", "v1.3.2"])
    result = _run(repo, "notes", "v1.3.2", "--out", str(tmp_path / "notes.md"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "major=v1\nmove-major=false\nlatest=false\n"
    assert (tmp_path / "notes.md").read_text() == "- backport\n"


def test_check_refuses_a_mismatch_with_one_message_and_exit_1(tmp_path: Path) -> None:
    repo = _checkout(tmp_path, "1.4.0", CHANGELOG, [])
    result = _run(repo, "check", "v1.4.1")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("error: pyproject.toml:6: the package version is 1.4.0, but the tag is v1.4.1")
    assert "Traceback" not in result.stderr
    notes = tmp_path / "notes.md"
    assert _run(repo, "notes", "v1.4.1", "--out", str(notes)).returncode == 1
    assert not notes.exists()  # nothing written for a refused tag


def test_check_accepts_a_matching_tag(tmp_path: Path) -> None:
    repo = _checkout(tmp_path, "1.4.0", CHANGELOG, [])
    result = _run(repo, "check", "v1.4.0")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "v1.4.0: pyproject.toml has version 1.4.0; CHANGELOG.md has its notes\n"


def test_this_projects_changelog_is_one_the_release_reads() -> None:
    """CHANGELOG.md starts with `## [Unreleased]`, then every release newest first, each with notes."""
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = [line.split()[1].strip("[]") for line in text.splitlines() if line.startswith("## ")]
    assert headings[0] == "Unreleased"
    released = [rn.parse_tag(f"v{name}") for name in headings[1:]]
    assert released == sorted(released, reverse=True)
    for version in released:
        assert rn.changelog_section(text, version).strip()
    version, _ = rn.project_version((ROOT / "pyproject.toml").read_text())
    if rn.parse_tag(f"v{version}") not in released:  # the next release: its notes wait under Unreleased
        body = text.split("## [Unreleased]", 1)[1].split("\n## ", 1)[0]
        assert body.strip(), "the package's version is not released yet: its notes belong under ## [Unreleased]"
