"""The git adapter: the only code that runs git. Works in shallow clones and on detached HEAD."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from agentdeploy.image.tags import GitFacts, clean_remote_url, source_url_from_env


def run_git(
    directory: Path,
    args: Sequence[str],
    *,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """Every git command agentdeploy runs goes through here. Raises OSError (no git) or TimeoutExpired."""
    return subprocess.run(
        # safe.directory: CI containers often check out as another user.
        ["git", "-c", "safe.directory=*", *args],
        cwd=directory,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=None if env is None else dict(env),
    )


def _git(directory: Path, *args: str) -> str | None:
    try:
        result = run_git(directory, args)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def read_git_facts(directory: Path, environ: Mapping[str, str]) -> GitFacts:
    """Facts about the checkout that holds `directory` (the agent's directory, not the cwd)."""
    sha = _git(directory, "rev-parse", "--verify", "HEAD^{commit}")
    if sha is None:
        return GitFacts(sha=None, ref=environ.get("GITHUB_REF"), source_url=source_url_from_env(environ))
    tags = _git(directory, "tag", "--points-at", "HEAD") or ""
    ref = environ.get("GITHUB_REF")
    if environ.get("GITHUB_SHA") and environ.get("GITHUB_SHA") != sha:
        ref = None  # GITHUB_REF describes another commit than the one checked out here
    if ref is None:
        ref = _git(directory, "symbolic-ref", "-q", "HEAD")
    source = source_url_from_env(environ)
    if source is None:
        remote = _git(directory, "config", "--get", "remote.origin.url")
        source = clean_remote_url(remote) if remote else None
    committed = _git(directory, "show", "-s", "--format=%ct", "HEAD")
    commit_time = (
        datetime.fromtimestamp(int(committed), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if committed and committed.isdigit()
        else None
    )
    return GitFacts(
        sha=sha,
        commit_time=commit_time,
        tags_at_head=tuple(t for t in tags.splitlines() if t),
        ref=ref,
        source_url=source,
    )
