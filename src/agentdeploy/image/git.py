"""The git adapter: the only code that runs git. Works in shallow clones and on detached HEAD."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from agentdeploy.image.tags import GitFacts, clean_remote_url, source_url_from_env

if TYPE_CHECKING:
    from agentdeploy.config.loader import LoadedConfig


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


def uncommitted_change(
    directory: Path, inputs: Collection[Path] | None, *, sent: Callable[[str], bool] | None = None
) -> str | None:
    """A short hash that names how the build inputs differ from HEAD, or None when they are as committed.

    `inputs` are the files the image is built from (absolute paths), or None for the files under `directory`
    that `sent` (a path relative to `directory`) says the build context holds: a user's own Dockerfile sends the
    directory but never its secrets (image/ignore.py), so a changed .env changes no tag. Modified, staged,
    deleted, untracked and even git-ignored inputs count: the commit does not describe what goes into the image.
    Outside a git checkout there is no commit to differ from (None).
    """
    root = _git(directory, "rev-parse", "--show-toplevel")
    if root is None:
        return None
    try:
        result = run_git(
            directory,
            ["status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignored=matching", "--", "."],
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    fields = result.stdout.split("\0")
    changed: set[Path] = set()
    index = 0
    while index < len(fields):
        entry = fields[index]
        index += 1
        if len(entry) < 4:
            continue
        status, name = entry[:2], entry[3:]
        if status[0] in "RC":
            index += 1  # a rename or copy is followed by its old path
        changed.add((Path(root) / name).resolve())
    wanted = {path.resolve() for path in inputs} if inputs is not None else None
    top = directory.resolve()
    state = top / ".agentdeploy"

    def is_input(path: Path) -> bool:
        if wanted is not None:
            return path in wanted
        if top not in path.parents or state in path.parents:
            return False
        return sent is None or sent(path.relative_to(top).as_posix())

    relevant = sorted(path for path in changed if is_input(path))
    if not relevant:
        return None
    digest = hashlib.sha256()
    for path in relevant:
        digest.update(str(path.relative_to(Path(root).resolve())).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest() if path.is_file() else b"deleted")
    return digest.hexdigest()[:12]


def git_facts(config: LoadedConfig, environ: Mapping[str, str]) -> GitFacts:
    """What git says about the agent's checkout, and whether its build inputs are as committed (the tag
    says so when they are not). Raises ContextError when a file the config names is missing."""
    from agentdeploy.image.context import collect
    from agentdeploy.image.ignore import sent_filter
    from agentdeploy.image.spec import own_dockerfile_path

    entries, _ = collect(config)
    own = own_dockerfile_path(config)
    if own is None:
        uncommitted = uncommitted_change(config.project_dir, [entry.source for entry in entries])
    else:
        dockerfile = own.relative_to(config.project_dir.resolve()).as_posix()
        sent = sent_filter(config.project_dir, dockerfile)
        uncommitted = uncommitted_change(config.project_dir, None, sent=sent)
    facts = read_git_facts(config.project_dir, environ)
    return dataclasses.replace(facts, uncommitted=uncommitted)


NO_COMMIT = "0" * 40  # what GitHub gives as the commit before a push that made its branch (github.event.before)


def resolve_commit(directory: Path, ref: str) -> str:
    """The commit `ref` names in the checkout that holds `directory`; GitError naming the ref when there is none
    (a ref that starts with '-' is read as a name, never as an option)."""
    from agentdeploy.errors import GitError

    if _git(directory, "rev-parse", "--show-toplevel") is None:
        raise GitError(f"{directory} is not in a git checkout: there is no history to compare with {ref}")
    try:
        result = run_git(directory, ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"])
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git could not be run to read {ref}: {exc}") from None
    sha = result.stdout.strip()
    if result.returncode != 0 or not sha:
        raise GitError(
            f"{ref!r} names no commit in this checkout",
            hint="check the name; a shallow checkout (actions/checkout's default fetch-depth: 1) lacks earlier "
            "commits: check out with fetch-depth: 0, or fetch that commit first",
        )
    return sha


def changed_since(directory: Path, commit: str) -> tuple[Path, list[Path]]:
    """(the checkout's top directory, resolved; every path that differs between `commit` and HEAD, absolute under
    it). Committed changes only: the working tree and the index do not count. Renames count as both paths."""
    from agentdeploy.errors import GitError

    top = _git(directory, "rev-parse", "--show-toplevel")
    head = _git(directory, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    if top is None or head is None:
        raise GitError(f"{directory} has no commit checked out to compare with {commit}")
    try:
        result = run_git(Path(top), ["diff", "--name-only", "-z", "--no-renames", commit, head, "--"], timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git could not compare {commit} with HEAD: {exc}") from None
    if result.returncode != 0:
        raise GitError(f"git could not compare {commit} with HEAD: {result.stderr.strip()}")
    root = Path(top).resolve()
    return root, [root / name for name in result.stdout.split("\0") if name]
