""".github/workflows/release.yml, the Action's own release, run by the harness (action/harness.py) as the runner runs
it: a tag pushed to a repository standing for GitHub, each job on a fresh checkout, `gh` a stand-in that keeps the
releases as GitHub would (and refuses a tag the repository lacks, as `--verify-tag` does). The `test` job is ci.yml
through workflow_call, i.e. .ci/run: that is CI itself, so here only its wiring is checked."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from action.harness import REPOSITORY, TOKEN, Job, World
from testkit import ROOT, git

WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
DOCUMENT = yaml.safe_load(WORKFLOW.read_text())

CHANGELOG = """# Changelog

## [Unreleased]

## [{new}] - 2026-12-05

### Added

- The `{new}` feature.

## [1.3.1] - 2026-11-30

- A fix.
"""

# `gh` as the release job calls it: release view / create / edit, against releases kept as files (one per tag).
FAKE_GH = """#!{python}
import json, os, subprocess, sys
from pathlib import Path
state = Path(os.environ["FAKE_GH_STATE"])
calls = state / "calls.jsonl"
with calls.open("a") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "token": os.environ.get("GH_TOKEN", ""),
                          "repo": os.environ.get("GH_REPO", "")}}) + "\\n")
if os.environ.get("GH_TOKEN") != "{token}":
    sys.exit("gh: To use GitHub CLI in a GitHub Actions workflow, set the GH_TOKEN environment variable.")
command, tag, rest = sys.argv[1:3], sys.argv[3], sys.argv[4:]
release = state / "releases" / tag
def option(name):
    for index, arg in enumerate(rest):
        if arg == name:
            return rest[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None
if command == ["release", "view"]:
    sys.exit(0 if release.exists() else "release not found")
if command == ["release", "create"]:
    if release.exists():
        sys.exit("a release with the same tag name already exists: " + tag)
    if "--verify-tag" in rest:
        found = subprocess.run(["git", "--git-dir", os.environ["FAKE_GH_ORIGIN"], "rev-parse", "--verify", "-q",
                                "refs/tags/" + tag], capture_output=True)
        if found.returncode != 0:
            sys.exit("tag " + tag + " doesn't exist in the repo, aborting due to --verify-tag flag")
elif command == ["release", "edit"]:
    if not release.exists():
        sys.exit("release not found")
else:
    sys.exit("the stand-in knows no gh " + " ".join(command))
release.parent.mkdir(exist_ok=True)
body = Path(option("--notes-file")).read_text()
kept = json.loads(release.read_text()) if release.exists() else {{}}
kept["notes"] = body
kept["title"] = option("--title") or kept.get("title")
kept["latest"] = option("--latest") or kept.get("latest")
release.write_text(json.dumps(kept))
print("https://github.com/org/agentdeploy/releases/tag/" + tag)
"""


class ActionRepository:
    """agentdeploy's repository: a working clone and the bare one standing for GitHub, with the files the release
    reads (pyproject.toml, CHANGELOG.md, scripts/release_notes.py, the workflows)."""

    def __init__(self, root: Path) -> None:
        self.work, self.origin = root / "work", root / "origin.git"
        (self.work / "scripts").mkdir(parents=True)
        shutil.copy(ROOT / "scripts" / "release_notes.py", self.work / "scripts")
        shutil.copytree(ROOT / ".github", self.work / ".github")
        git(root, "init", "-q", "--bare", str(self.origin))
        git(self.work, "init", "-q", "-b", "main")
        git(self.work, "remote", "add", "origin", str(self.origin))

    def commit(self, version: str, changelog_version: str | None = None) -> str:
        pyproject = (ROOT / "pyproject.toml").read_text()
        pyproject = re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', pyproject, count=1)
        (self.work / "pyproject.toml").write_text(pyproject)
        (self.work / "CHANGELOG.md").write_text(CHANGELOG.format(new=changelog_version or version))
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "--allow-empty", "-m", f"version {version}")
        return git(self.work, "rev-parse", "HEAD")

    def tag(self, tag: str, *, annotated: bool = True) -> None:
        if annotated:  # what `git tag -a` makes: a tag object, not the commit
            git(self.work, "tag", "-a", tag, "-m", f"release {tag}")
        else:
            git(self.work, "tag", tag)
        git(self.work, "push", "-q", "origin", "HEAD:refs/heads/main" if self.on_main() else "HEAD", f"refs/tags/{tag}")

    def on_main(self) -> bool:
        return git(self.work, "rev-parse", "--abbrev-ref", "HEAD") == "main"

    def names(self, ref: str) -> str:
        """The commit a tag on "GitHub" names."""
        return git(self.origin, "rev-parse", f"{ref}^{{commit}}")


@pytest.fixture
def repository(tmp_path: Path) -> ActionRepository:
    return ActionRepository(tmp_path / "repo")


@pytest.fixture
def gh(tmp_path: Path, world: World, repository: ActionRepository) -> Path:
    """The `gh` stand-in on the runner's PATH; its state directory (calls.jsonl, releases/<tag>)."""
    state, bin_dir = tmp_path / "gh-state", tmp_path / "gh-bin"
    state.mkdir()
    bin_dir.mkdir()
    script = bin_dir / "gh"
    script.write_text(FAKE_GH.format(python=sys.executable, token=TOKEN))
    script.chmod(0o755)
    world.origin = repository.origin
    world.path = f"{bin_dir}:{world.path}"
    world.extra_env = {"FAKE_GH_STATE": str(state), "FAKE_GH_ORIGIN": str(repository.origin)}
    return state


def run_job(world: World, name: str, tag: str) -> Job:
    """One job of release.yml for a pushed tag, on a fresh runner, as GitHub runs it once its needs succeeded."""
    spec = DOCUMENT["jobs"][name]
    job = Job(world, event_name="push", ref=f"refs/tags/{tag}", workflow=DOCUMENT, job=spec, name=name)
    job.run_steps(spec["steps"])
    return job


def gh_calls(state: Path) -> list[list[str]]:
    log = state / "calls.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    calls = [json.loads(line) for line in lines]
    assert all(call["token"] == TOKEN for call in calls)  # the job's own token, from GH_TOKEN
    assert all(call["repo"] == REPOSITORY for call in calls)  # the repository the workflow runs in
    return [call["argv"] for call in calls]


def released(state: Path, tag: str) -> dict[str, Any]:
    return dict(json.loads((state / "releases" / tag).read_text()))


def filter_pattern(pattern: str) -> re.Pattern[str]:
    """A GitHub workflow filter pattern (`v[0-9]+.[0-9]+.[0-9]+`): `+` repeats the character or set before it, `*`
    matches within a path segment, `.` is itself."""
    regex = re.escape(pattern).replace(r"\[", "[").replace(r"\]", "]").replace(r"\+", "+").replace(r"\-", "-")
    return re.compile(regex.replace(r"\*", "[^/]*"))


@pytest.mark.parametrize(
    ("tag", "runs"),
    [("v1.4.0", True), ("v10.0.12", True), ("v1", False), ("v1.4", False), ("v1.4.0-rc.1", False), ("1.4.0", False)],
)
def test_only_a_pushed_release_tag_starts_a_release(tag: str, runs: bool) -> None:
    push = DOCUMENT[True]["push"]  # YAML 1.1 reads the key `on` as true
    assert set(push) == {"tags"}  # no branch push releases anything
    assert any(filter_pattern(pattern).fullmatch(tag) for pattern in push["tags"]) is runs


def test_the_jobs_ask_for_least_privilege_and_release_only_after_the_tests() -> None:
    jobs = DOCUMENT["jobs"]
    assert DOCUMENT["permissions"] == {}
    assert {name: job["permissions"] for name, job in jobs.items()} == {
        "check": {"contents": "read"},
        "test": {"contents": "read"},
        "release": {"contents": "write"},
    }
    assert jobs["test"] == {"needs": "check", "permissions": {"contents": "read"}, "uses": "./.github/workflows/ci.yml"}
    assert jobs["release"]["needs"] == ["check", "test"]
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    assert "workflow_call" in ci[True]
    assert [step.get("run") for step in ci["jobs"]["test"]["steps"] if "run" in step] == [
        "sudo --preserve-env=PATH bash .ci/run"
    ]
    assert DOCUMENT["concurrency"] == {"group": "release", "cancel-in-progress": False}


def test_a_release_tag_creates_the_release_with_its_notes_and_moves_v1(
    world: World, repository: ActionRepository, gh: Path
) -> None:
    first = repository.commit("1.3.1", changelog_version="1.3.1")
    repository.tag("v1.3.1")
    git(repository.work, "tag", "v1")
    git(repository.work, "push", "-q", "origin", "refs/tags/v1")
    new = repository.commit("1.4.0")
    repository.tag("v1.4.0")  # annotated: v1 must name the commit, not the tag object
    assert repository.names("v1") == first

    check = run_job(world, "check", "v1.4.0")
    assert not check.failed, check.log
    assert "v1.4.0: pyproject.toml has version 1.4.0; CHANGELOG.md has its notes" in check.log
    job = run_job(world, "release", "v1.4.0")
    assert not job.failed, job.log

    calls = gh_calls(gh)
    notes = str(job.temp / "release-notes.md")
    assert calls == [
        ["release", "view", "v1.4.0"],
        ["release", "create", "v1.4.0", "--verify-tag", "--title", "v1.4.0", "--notes-file", notes, "--latest=true"],
    ]
    assert released(gh, "v1.4.0") == {
        "notes": "### Added\n\n- The `1.4.0` feature.\n",
        "title": "v1.4.0",
        "latest": "true",
    }
    assert repository.names("refs/tags/v1") == new
    assert git(repository.origin, "cat-file", "-t", "refs/tags/v1") == "commit"  # a plain tag: `@v1` is the commit
    assert repository.names("refs/tags/v1.3.1") == first  # the older release stays where it was


def test_a_fix_for_an_older_line_is_released_without_taking_v1_back(
    world: World, repository: ActionRepository, gh: Path
) -> None:
    repository.commit("1.3.1", changelog_version="1.3.1")
    repository.tag("v1.3.1")
    git(repository.work, "branch", "release-1.3")
    newest = repository.commit("1.4.0")
    repository.tag("v1.4.0")
    git(repository.work, "tag", "v1")
    git(repository.work, "push", "-q", "origin", "refs/tags/v1")
    git(repository.work, "checkout", "-q", "release-1.3")
    repository.commit("1.3.2")
    repository.tag("v1.3.2")

    job = run_job(world, "release", "v1.3.2")
    assert not job.failed, job.log
    assert [step.outcome for step in job.steps][-1] == "skipped"  # "Move the major tag" did not run
    assert released(gh, "v1.3.2")["latest"] == "false"  # v1.4.0 stays the repository's latest
    assert repository.names("refs/tags/v1") == newest


def test_a_tag_that_is_not_the_package_version_releases_nothing(
    world: World, repository: ActionRepository, gh: Path
) -> None:
    first = repository.commit("1.3.1", changelog_version="1.3.1")
    repository.tag("v1.3.1")
    git(repository.work, "tag", "v1")
    git(repository.work, "push", "-q", "origin", "refs/tags/v1")
    repository.commit("1.4.0")
    repository.tag("v1.5.0")  # the version bump was forgotten

    check = run_job(world, "check", "v1.5.0")
    assert check.failed
    assert "error: pyproject.toml:" in check.log
    assert "the package version is 1.4.0, but the tag is v1.5.0" in check.log
    # GitHub would not start the release job after a failed check; even so, it refuses on its own.
    job = run_job(world, "release", "v1.5.0")
    assert job.failed
    assert [step.outcome for step in job.steps] == ["success", "failure", "skipped", "skipped"]
    assert gh_calls(gh) == []
    assert repository.names("refs/tags/v1") == first


def test_a_rerun_updates_the_notes_of_the_release_it_made(world: World, repository: ActionRepository, gh: Path) -> None:
    new = repository.commit("1.4.0")
    repository.tag("v1.4.0", annotated=False)
    assert not run_job(world, "release", "v1.4.0").failed
    assert repository.names("refs/tags/v1") == new  # the first release of the line makes v1

    again = run_job(world, "release", "v1.4.0")
    assert not again.failed, again.log
    assert gh_calls(gh)[2:] == [
        ["release", "view", "v1.4.0"],
        ["release", "edit", "v1.4.0", "--notes-file", str(again.temp / "release-notes.md")],
    ]
    assert released(gh, "v1.4.0")["notes"] == "### Added\n\n- The `1.4.0` feature.\n"
    assert repository.names("refs/tags/v1") == new
