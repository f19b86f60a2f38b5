#!/usr/bin/env python3
"""The release workflow's decisions (.github/workflows/release.yml), kept here so they are tested like any code.

    python scripts/release_notes.py check v1.4.0
        the tag is a release tag (vMAJOR.MINOR.PATCH), it names pyproject.toml's version, and CHANGELOG.md has a
        non-empty section for that version; exit 1 with what to fix otherwise
    python scripts/release_notes.py notes v1.4.0 --out notes.md
        the same checks, then writes that section to notes.md and, to $GITHUB_OUTPUT (or stdout):
        major=v1, move-major=true|false (false when a later 1.x release exists: a backport must not move v1 back),
        latest=true|false (whether GitHub should show it as the repository's latest release)

Only the standard library: the workflow runs it with the runner's own python3, before anything is installed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

Version = tuple[int, int, int]

_RELEASE_TAG = re.compile(r"v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
# Keep a Changelog's heading, `## [1.4.0] - 2026-12-05`; `## 1.4.0` and `## [1.4.0]` are read too.
_SECTION = re.compile(r"^## +\[?(?P<name>[^\]\s]+)\]?(?P<rest>.*)$")
_LINK_DEFINITION = re.compile(r"^\[[^\]]+\]: +\S+")


class ReleaseError(Exception):
    """What is wrong and how to fix it, printed as one message (exit 1)."""


def parse_tag(tag: str) -> Version:
    match = _RELEASE_TAG.fullmatch(tag)
    if match is None:
        raise ReleaseError(
            f"the tag {tag!r} is not a release tag: release tags are vMAJOR.MINOR.PATCH, such as v1.4.0 "
            "(the major tag, v1, is moved by this workflow and never pushed by hand)"
        )
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def format_version(version: Version) -> str:
    return ".".join(str(part) for part in version)


def project_version(pyproject: str, where: str = "pyproject.toml") -> tuple[str, int]:
    """[project] version and the line it is on."""
    try:
        version = tomllib.loads(pyproject)["project"]["version"]
    except (tomllib.TOMLDecodeError, KeyError) as exc:
        raise ReleaseError(f"{where}: no [project] version to compare the tag with ({exc})") from exc
    line = next(
        (number for number, text in enumerate(pyproject.splitlines(), 1) if re.match(r"\s*version\s*=", text)), 1
    )
    return str(version), line


def check_tag_matches(tag: str, pyproject: str, where: str = "pyproject.toml") -> Version:
    """The tag's version is the package's: a release of the Action installs exactly what its tag says."""
    version = parse_tag(tag)
    declared, line = project_version(pyproject, where)
    if declared != format_version(version):
        raise ReleaseError(
            f"{where}:{line}: the package version is {declared}, but the tag is {tag}: set version = "
            f'"{format_version(version)}" in a commit, tag that commit {tag}, and push the tag again '
            f"(git tag -d {tag} && git push origin :refs/tags/{tag} removes the wrong one)"
        )
    return version


def changelog_section(changelog: str, version: Version, where: str = "CHANGELOG.md") -> str:
    """The notes of one release: the lines under its `## [X.Y.Z]` heading, up to the next `## ` heading."""
    wanted = format_version(version)
    lines = changelog.splitlines()
    starts = [number for number, text in enumerate(lines) if (m := _SECTION.match(text)) and m.group("name") == wanted]
    if not starts:
        raise ReleaseError(
            f"{where}: no section for {wanted}: add a heading `## [{wanted}] - YYYY-MM-DD` above the previous "
            "release's, with this release's notes under it (move them there from `## [Unreleased]`)"
        )
    if len(starts) > 1:
        raise ReleaseError(
            f"{where}:{starts[1] + 1}: a second section for {wanted} (the first is at line {starts[0] + 1}): keep one"
        )
    body: list[str] = []
    for text in lines[starts[0] + 1 :]:
        if text.startswith("## ") or _LINK_DEFINITION.match(text):
            break
        body.append(text)
    notes = "\n".join(body).strip()
    if not notes:
        raise ReleaseError(
            f"{where}:{starts[0] + 1}: the section for {wanted} is empty: write what changed for the people who "
            "use the Action (what they must change first, then what is new and what is fixed)"
        )
    return notes + "\n"


def release_versions(tags: Iterable[str]) -> list[Version]:
    """The release tags among a repository's tags (v1, v1.4, nightly and the like are not releases)."""
    return [parse_tag(tag) for tag in tags if _RELEASE_TAG.fullmatch(tag)]


def major_tag(version: Version) -> str:
    return f"v{version[0]}"


def moves_major(version: Version, existing: Iterable[Version]) -> bool:
    """Whether the major tag moves to this release: only when no later release of the same major exists, so a
    fix released for an older line (v1.3.1 after v1.4.0) never takes @v1 back."""
    same_line = [other for other in existing if other[0] == version[0]]
    return all(other <= version for other in same_line)


def is_latest(version: Version, existing: Iterable[Version]) -> bool:
    """Whether this is the repository's highest release (GitHub's "Latest" badge and /releases/latest)."""
    return all(other <= version for other in existing)


def read_tags(repository: Path) -> list[str]:
    result = subprocess.run(["git", "tag", "--list", "v*"], cwd=repository, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ReleaseError(f"git tag --list failed in {repository}: {result.stderr.strip()}")
    return result.stdout.split()


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReleaseError(f"cannot read {path}: {exc.strerror}") from exc


def check(tag: str, root: Path) -> tuple[Version, str]:
    version = check_tag_matches(tag, _read(root / "pyproject.toml"))
    return version, changelog_section(_read(root / "CHANGELOG.md"), version)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="release_notes.py", description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the checkout (default: here)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="the tag, the package version and the CHANGELOG section agree").add_argument(
        "tag"
    )
    notes = commands.add_parser("notes", help="write the release notes; print major, move-major and latest")
    notes.add_argument("tag")
    notes.add_argument("--out", type=Path, required=True, help="file to write the notes to")
    args = parser.parse_args(argv)
    try:
        version, text = check(args.tag, args.root)
        if args.command == "check":
            print(f"{args.tag}: pyproject.toml has version {format_version(version)}; CHANGELOG.md has its notes")
            return 0
        existing = [other for other in release_versions(read_tags(args.root)) if other != version]
        args.out.write_text(text, encoding="utf-8")
        outputs = (
            f"major={major_tag(version)}\n"
            f"move-major={str(moves_major(version, existing)).lower()}\n"
            f"latest={str(is_latest(version, existing)).lower()}\n"
        )
        github_output = os.environ.get("GITHUB_OUTPUT")
        if github_output:
            with open(github_output, "a", encoding="utf-8") as handle:
                handle.write(outputs)
        sys.stdout.write(outputs)
        return 0
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
