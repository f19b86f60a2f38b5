"""Tags and labels, from real git repositories (shallow clone, detached HEAD, tags)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentdeploy.config.loader import load_config
from agentdeploy.config.models import RegistryConfig
from agentdeploy.errors import ExitCode, GitError
from agentdeploy.git import clean_remote_url, read_git_facts
from agentdeploy.image.tags import (
    GitFacts,
    config_hash,
    created_timestamp,
    image_repository,
    image_tag,
    oci_labels,
)
from testkit import git

SHA = "0123456789abcdef0123456789abcdef01234567"


def registry(strategy: str, custom: str | None = None) -> RegistryConfig:
    return RegistryConfig(url="ghcr.io", repository="org/a", tag_strategy=strategy, custom_tag=custom)  # type: ignore[arg-type]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    origin = tmp_path / "origin"
    (origin / "agents" / "a").mkdir(parents=True)
    git(origin, "init", "-q", "-b", "main")
    (origin / "agents/a/agent.yaml").write_text(
        "name: a\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: hi}\n"
    )
    git(origin, "add", ".")
    git(origin, "commit", "-q", "-m", "one")
    git(origin, "tag", "v1.0.0")
    (origin / "agents/a/x.md").write_text("x")
    git(origin, "add", ".")
    git(origin, "commit", "-q", "-m", "two")
    return origin


def test_strategies() -> None:
    facts = GitFacts(sha=SHA, tags_at_head=("v1.2.0",))
    assert image_tag(registry("git_sha"), facts) == "0123456"
    assert image_tag(registry("git_tag"), facts) == "v1.2.0"
    assert image_tag(registry("latest"), facts) == "latest"
    assert image_tag(registry("custom", "rc-7"), facts) == "rc-7"


def test_git_tag_prefers_github_ref_and_picks_highest_tag() -> None:
    assert image_tag(registry("git_tag"), GitFacts(sha=SHA, ref="refs/tags/v2.0.0")) == "v2.0.0"
    facts = GitFacts(sha=SHA, tags_at_head=("v1.9.0", "v1.10.0", "v1.2.0"))
    assert image_tag(registry("git_tag"), facts) == "v1.10.0"


def test_git_tag_without_a_tag_at_head_never_falls_back(repo: Path) -> None:
    facts = read_git_facts(repo / "agents/a", {})
    assert facts.tags_at_head == ()  # v1.0.0 is on the previous commit
    with pytest.raises(GitError) as exc:
        image_tag(registry("git_tag"), facts)
    assert exc.value.exit_code == ExitCode.GIT
    assert "no git tag points at the current commit" in exc.value.message
    assert "never falls back" in (exc.value.hint or "")


def test_git_tag_that_is_not_an_image_tag() -> None:
    with pytest.raises(GitError) as exc:
        image_tag(registry("git_tag"), GitFacts(sha=SHA, ref="refs/tags/release/1.0"))
    assert "cannot be an image tag" in exc.value.message


def test_shallow_clone_on_detached_tag(repo: Path, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "1", "--branch", "v1.0.0", f"file://{repo}", str(clone))
    facts = read_git_facts(clone / "agents/a", {})
    assert facts.tags_at_head == ("v1.0.0",)
    assert facts.sha == git(repo, "rev-parse", "v1.0.0")
    assert facts.ref is None  # detached HEAD
    assert facts.commit_time == "2026-03-04T05:06:07Z"
    assert facts.source_url is None  # file:// remote has no https form
    assert image_tag(registry("git_tag"), facts) == "v1.0.0"
    assert image_tag(registry("git_sha"), facts) == facts.sha[:7]


def test_github_environment_describes_the_checkout(repo: Path) -> None:
    sha = git(repo, "rev-parse", "HEAD")
    environ = {
        "GITHUB_REF": "refs/tags/v9.9.9",
        "GITHUB_SHA": sha,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "org/agents",
    }
    facts = read_git_facts(repo / "agents/a", environ)
    assert (facts.ref, facts.source_url) == ("refs/tags/v9.9.9", "https://github.com/org/agents")
    # A GITHUB_REF about another commit is not trusted for this checkout.
    facts = read_git_facts(repo / "agents/a", {**environ, "GITHUB_SHA": SHA})
    assert facts.ref == "refs/heads/main"


def test_outside_git(tmp_path: Path) -> None:
    facts = read_git_facts(tmp_path, {})
    assert facts == GitFacts(sha=None)
    with pytest.raises(GitError):
        image_tag(registry("git_sha"), facts)
    assert image_tag(None, facts) == "latest"  # local-only image, no registry


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("https://x-access-token:ghs_SECRET@github.com/org/repo.git", "https://github.com/org/repo"),
        ("git@github.com:org/repo.git", "https://github.com/org/repo"),
        ("ssh://git@host:2222/org/repo", "https://host/org/repo"),
        ("/local/path", None),
    ],
)
def test_remote_urls_lose_credentials(remote: str, expected: str | None) -> None:
    assert clean_remote_url(remote) == expected


def test_labels_and_config_hash(write_agent: Callable[..., Path]) -> None:
    base = (
        'name: d\ndescription: "multi\\nline\\ttext"\nmodel: {provider: openai, name: gpt-4o}\n'
        "instructions: {inline: hi}\n"
    )
    config = load_config(write_agent(base))
    facts = GitFacts(sha=SHA, source_url="https://github.com/org/repo")
    labels = oci_labels(config, tag="0123456", git=facts, created="2026-01-01T00:00:00Z")
    assert labels == {
        "org.opencontainers.image.title": "d",
        "org.opencontainers.image.description": "multi line text",
        "org.opencontainers.image.version": "0123456",
        "org.opencontainers.image.created": "2026-01-01T00:00:00Z",
        "org.opencontainers.image.revision": SHA,
        "org.opencontainers.image.source": "https://github.com/org/repo",
        "dev.agentdeploy.config-hash": config_hash(config),
    }
    # Spelling a default out does not change the hash; changing a value does.
    spelled = load_config(write_agent(base + "deployment: {port: 8080, protocol: rest}\n"))
    assert config_hash(spelled) == config_hash(config)
    changed = load_config(write_agent(base + "deployment: {port: 9090}\n"))
    assert config_hash(changed) != config_hash(config)
    assert image_repository(config) == "agentdeploy/d"


def test_created_is_stable_per_commit() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    facts = GitFacts(sha=SHA, commit_time="2026-03-04T05:06:07Z")
    assert created_timestamp(facts, {}, now) == "2026-03-04T05:06:07Z"
    assert created_timestamp(facts, {"SOURCE_DATE_EPOCH": "0"}, now) == "1970-01-01T00:00:00Z"
    assert created_timestamp(GitFacts(sha=None), {}, now) == "2030-01-01T00:00:00Z"


# -- a tag never names content its commit does not hold ------------------------------------------------


def _image_tag(config: Path, environ: dict[str, str] | None = None) -> str:
    import io
    import json

    from agentdeploy.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main(["image", str(config), "--json"], environ=environ or {"PATH": "/usr/bin:/bin"}, out=out, err=err)
    assert code == 0, err.getvalue()
    return str(json.loads(out.getvalue())["tag"])


@pytest.fixture
def agent_repo(tmp_path: Path) -> Path:
    project = tmp_path / "repo"
    (project / "data").mkdir(parents=True)
    (project / "agent.yaml").write_text(
        "name: tagged\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {file: prompt.md}\n"
        "tools:\n  - {name: faq, type: vectorstore, description: FAQ, source: data/faq.md}\n"
        "deployment:\n  registry: {url: 127.0.0.1:5000, repository: team/tagged}\n"
    )
    (project / "prompt.md").write_text("Be kind.\n")
    (project / "data" / "faq.md").write_text("Q: why? A: because.\n")
    (project / "README.md").write_text("not an input\n")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "first")
    return project


def test_an_edited_input_gets_a_dirty_tag_that_names_the_change(agent_repo: Path) -> None:
    config = agent_repo / "agent.yaml"
    clean = git(agent_repo, "rev-parse", "HEAD")[:7]
    assert _image_tag(config) == clean

    (agent_repo / "prompt.md").write_text("Be very kind.\n")
    dirty = _image_tag(config)
    assert re.fullmatch(rf"{clean}-dirty-[0-9a-f]{{12}}", dirty)
    assert _image_tag(config) == dirty  # the same change, the same tag

    (agent_repo / "prompt.md").write_text("Be brief.\n")
    other = _image_tag(config)
    assert other != dirty and other.startswith(f"{clean}-dirty-")

    (agent_repo / "prompt.md").write_text("Be kind.\n")  # back to what is committed
    assert _image_tag(config) == clean


def test_only_build_inputs_make_a_tree_dirty(agent_repo: Path) -> None:
    config = agent_repo / "agent.yaml"
    clean = git(agent_repo, "rev-parse", "HEAD")[:7]
    (agent_repo / "README.md").write_text("edited, but not in the image\n")
    (agent_repo / "notes.txt").write_text("untracked, not in the image\n")
    (agent_repo / ".agentdeploy").mkdir()
    (agent_repo / ".agentdeploy" / "tagged.local.json").write_text("{}")  # our own state file
    assert _image_tag(config) == clean

    (agent_repo / "data" / "new.md").write_text("an untracked file under a source the agent indexes\n")
    (agent_repo / "agent.yaml").write_text(
        (agent_repo / "agent.yaml").read_text().replace("source: data/faq.md", "source: data")
    )
    git(agent_repo, "commit", "-q", "-am", "index the whole directory")
    assert _image_tag(config).startswith(git(agent_repo, "rev-parse", "HEAD")[:7] + "-dirty-")


def test_an_ignored_input_and_a_git_tag_are_marked_too(agent_repo: Path) -> None:
    config = agent_repo / "agent.yaml"
    (agent_repo / ".gitignore").write_text("data/faq.md\n")
    git(agent_repo, "rm", "-q", "--cached", "data/faq.md")
    git(agent_repo, "add", ".gitignore")
    git(agent_repo, "commit", "-q", "-m", "ignore the faq")
    git(agent_repo, "tag", "v1.2.0")
    config.write_text(
        config.read_text().replace("repository: team/tagged}", "repository: team/tagged, tag_strategy: git_tag}")
    )
    git(agent_repo, "commit", "-q", "-am", "tag strategy")
    git(agent_repo, "tag", "-f", "v1.2.0")
    # The faq goes into the image, but no commit holds it.
    assert re.fullmatch(r"v1\.2\.0-dirty-[0-9a-f]{12}", _image_tag(config))
