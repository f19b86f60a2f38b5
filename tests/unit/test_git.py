"""The git plumbing (agentdeploy/git.py): every git fact a command needs from at most two git processes, and the
same facts git itself gives, in a plain checkout, a linked worktree, on a detached HEAD and with GIT_DIR set."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import pytest

from agentdeploy.cli import main
from agentdeploy.git import read_git_facts, remote_url_in_config
from testkit import git, git_shim

AGENT = (
    "name: counted\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {file: prompt.md}\n"
    "tools:\n  - {name: faq, type: vectorstore, description: FAQ, source: data/faq.md}\n"
    "deployment:\n  registry: {url: 127.0.0.1:5000, repository: team/counted}\n"
)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A repository with the agent two directories down, an origin remote, a tag on HEAD and one on the commit
    before."""
    repo = tmp_path / "repo"
    agent = repo / "agents" / "counted"
    (agent / "data").mkdir(parents=True)
    (agent / "agent.yaml").write_text(AGENT)
    (agent / "prompt.md").write_text("Be kind.\n")
    (agent / "data" / "faq.md").write_text("Q: why? A: because.\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", "https://x-access-token:ghs_SECRET@github.com/org/agents.git")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one")
    git(repo, "tag", "v0.9.0")
    (repo / "README.md").write_text("two\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "two")
    git(repo, "tag", "v1.0.0")
    git(repo, "tag", "-a", "v1.0.1", "-m", "annotated")
    return agent


@pytest.fixture
def git_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every git process agentdeploy starts from here on, one line each."""
    shim, log = git_shim(tmp_path)
    monkeypatch.setenv("PATH", f"{shim}{os.pathsep}{os.environ['PATH']}")
    return log


def image(config: Path) -> dict[str, object]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["image", str(config), "--json"], environ={"PATH": os.environ["PATH"]}, out=out, err=err)
    assert code == 0, err.getvalue()
    return dict(json.loads(out.getvalue()))


def calls(log: Path) -> list[str]:
    return [line.removeprefix("-c safe.directory=* ") for line in log.read_text().splitlines()]


def test_every_git_fact_of_a_command_comes_from_at_most_two_git_processes(checkout: Path, git_log: Path) -> None:
    head = git(checkout, "rev-parse", "HEAD")
    described = image(checkout / "agent.yaml")
    labels = described["labels"]
    assert isinstance(labels, dict)
    # sha, commit time, remote (without its token), inputs as committed: all there ...
    assert described["tag"] == head[:7]
    assert labels["org.opencontainers.image.revision"] == head
    assert labels["org.opencontainers.image.created"] == "2026-03-04T05:06:07Z"  # testkit's commit date
    assert labels["org.opencontainers.image.source"] == "https://github.com/org/agents"
    # ... from one git log and one git status.
    assert [call.split()[0] for call in calls(git_log)] == ["log", "status"]

    git_log.write_text("")
    (checkout / "prompt.md").write_text("Be brief.\n")
    out, err = io.StringIO(), io.StringIO()
    assert main(["validate", str(checkout / "agent.yaml")], environ={}, out=out, err=err) == 0, err.getvalue()
    assert f"image 127.0.0.1:5000/team/counted:{head[:7]}-dirty-" in out.getvalue()
    assert len(calls(git_log)) == 2


def test_the_git_tag_strategy_reads_the_tags_at_head_from_the_same_two_processes(checkout: Path, git_log: Path) -> None:
    config = checkout / "agent.yaml"
    config.write_text(AGENT.replace("team/counted}", "team/counted, tag_strategy: git_tag}"))
    git(checkout, "commit", "-q", "-am", "tag strategy")
    git(checkout, "tag", "v1.2.0")
    git(checkout, "tag", "-a", "v1.10.0", "-m", "annotated, the highest")
    git_log.write_text("")
    assert image(config)["tag"] == "v1.10.0"
    assert len(calls(git_log)) == 2


def facts_by_git(directory: Path) -> tuple[str, tuple[str, ...], str | None, str]:
    """(sha, tags at HEAD, branch ref, origin URL) as git's own porcelain says them."""
    branch = subprocess.run(
        ["git", "symbolic-ref", "-q", "HEAD"], cwd=directory, capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        git(directory, "rev-parse", "HEAD"),
        tuple(git(directory, "tag", "--points-at", "HEAD").split()),
        branch or None,
        git(directory, "config", "--get", "remote.origin.url"),
    )


@pytest.mark.parametrize("where", ["branch", "detached", "worktree", "subdirectory", "decorations hidden"])
def test_the_facts_are_what_git_says(checkout: Path, tmp_path: Path, where: str) -> None:
    directory = checkout
    if where == "decorations hidden":  # the user's own `git log` shows no tags: git tag --points-at still does
        git(checkout, "config", "log.excludeDecoration", "refs/tags/*")
    elif where == "detached":
        git(checkout, "checkout", "-q", "--detach", "v0.9.0")
    elif where == "worktree":  # a linked worktree: .git is a file, the config is the main repository's
        git(checkout, "worktree", "add", "-q", "-b", "feature", str(tmp_path / "linked"), "v0.9.0")
        directory = tmp_path / "linked" / "agents" / "counted"
    elif where == "subdirectory":
        directory = checkout / "data"
    sha, tags, branch, remote = facts_by_git(directory)
    facts = read_git_facts(directory, {})
    assert (facts.sha, facts.tags_at_head, facts.ref) == (sha, tags, branch)
    assert facts.source_url == "https://github.com/org/agents" and "ghs_SECRET" in remote
    assert facts.commit_time == "2026-03-04T05:06:07Z"


def test_a_repository_moved_by_git_dir_is_asked_of_git(
    checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIT_DIR and GIT_WORK_TREE put the repository elsewhere than a `.git` above: git says where."""
    repo = checkout.parent.parent
    head = git(repo, "rev-parse", "HEAD")
    moved = tmp_path / "elsewhere.git"
    (repo / ".git").rename(moved)
    monkeypatch.setenv("GIT_DIR", str(moved))
    monkeypatch.setenv("GIT_WORK_TREE", str(repo))
    (checkout / "prompt.md").write_text("Be brief.\n")
    facts = read_git_facts(checkout, os.environ, inputs=[checkout / "prompt.md"], check_inputs=True)
    assert facts.sha == head
    assert facts.uncommitted is not None  # the edited prompt is seen
    assert facts.source_url == "https://github.com/org/agents"


def test_outside_a_checkout_git_is_asked_once(tmp_path: Path, git_log: Path) -> None:
    facts = read_git_facts(tmp_path, {}, inputs=[], check_inputs=True)
    assert facts.sha is None and facts.source_url is None
    assert len(calls(git_log)) == 1


@pytest.mark.parametrize(
    "text",
    [
        '[core]\n\tbare = false\n[remote "origin"]\n\turl = https://github.com/org/a.git\n',
        '[Remote "origin"]\n\tURL = "git@github.com:org/a.git" ; a comment\n',
        '[remote "upstream"]\n\turl = https://other/x\n[remote "origin"] url = ssh://git@host:22/org/a  # note\n',
        '[remote "origin"]\n\turl = https://first/a\n[remote "origin"]\n\turl = https://second/a\n',
        '[remote "origin"]\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n',
        '[remote "orig\\"in"]\n\turl = https://quoted/a\n[remote "origin"]\n\turl = "https://x/a \\"b\\""\n',
    ],
)
def test_the_remote_url_is_what_git_config_reads(tmp_path: Path, text: str) -> None:
    config = tmp_path / "config"
    config.write_text(text)
    read = subprocess.run(
        ["git", "config", "--file", str(config), "--get", "remote.origin.url"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert remote_url_in_config(text) == (read.stdout.rstrip("\n") or None)
