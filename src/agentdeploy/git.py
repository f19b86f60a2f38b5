"""Git plumbing: the only module that runs git, for image/ (the facts an image is named and labelled by) and
state/ (the state branch). Works in shallow clones, linked worktrees and on detached HEAD.

The facts of a checkout take at most two git processes: `git log -1` (commit, its time, the branch and the tags
at HEAD, from its decorations) and, when the build inputs are asked about, `git status`. Where the checkout's
top directory and its config are, this module finds the way git does (the nearest `.git` upwards); where GIT_DIR
or GIT_WORK_TREE move them, or that search disagrees with git, one `git rev-parse` says.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agentdeploy.errors import GitError

NO_COMMIT = "0" * 40  # what GitHub gives as the commit before a push that made its branch (github.event.before)
_MOVED_BY_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR")
_LOG_FORMAT = "%H%x00%ct%x00%D"


@dataclass(frozen=True)
class GitFacts:
    """What git (or the GitHub Actions environment) says about the checkout."""

    sha: str | None  # full commit sha; None outside a git checkout
    tags_at_head: tuple[str, ...] = ()
    ref: str | None = None  # e.g. refs/tags/v1.4.0 (GITHUB_REF) or refs/heads/main
    source_url: str | None = None  # https URL of the repository, without credentials
    commit_time: str | None = None  # committer date of HEAD, UTC, RFC 3339
    # How the build inputs differ from HEAD (a short hash), None when they are as committed: the commit's
    # own tag would then name other content.
    uncommitted: str | None = None


@dataclass(frozen=True)
class Checkout:
    root: Path  # the top directory of the working tree, resolved
    common_dir: Path  # the repository's own directory (a linked worktree shares its main one's)


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


def find_checkout(directory: Path, environ: Mapping[str, str]) -> Checkout | None:
    """The checkout holding `directory`, found as git finds it (no process); None when the environment moves
    the repository (GIT_DIR, ...) or no `.git` lies above: then git itself must say."""
    if any(environ.get(name) for name in _MOVED_BY_ENV):
        return None
    start = directory.resolve()
    for folder in (start, *start.parents):
        dot = folder / ".git"
        if dot.is_dir():
            git_dir = dot
        elif dot.is_file():  # a linked worktree or a submodule: "gitdir: <path>"
            text = dot.read_text(errors="replace").strip()
            if not text.startswith("gitdir:"):
                return None
            git_dir = (folder / text.removeprefix("gitdir:").strip()).resolve()
        else:
            continue
        common = git_dir / "commondir"
        shared = (git_dir / common.read_text().strip()).resolve() if common.is_file() else git_dir
        return Checkout(root=folder, common_dir=shared)
    return None


def _checkout_from_git(directory: Path) -> Checkout | None:
    found = _git(directory, "rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir")
    lines = found.splitlines() if found else []
    if len(lines) != 2:
        return None
    return Checkout(root=Path(lines[0]).resolve(), common_dir=Path(lines[1]).resolve())


def _unquote(value: str) -> str:
    """A git config value: quotes removed, escapes read, a trailing comment dropped."""
    out, quoted, index = [], False, 0
    while index < len(value):
        char = value[index]
        if char == "\\" and index + 1 < len(value):
            index += 1
            out.append({"n": "\n", "t": "\t", "b": "\b"}.get(value[index], value[index]))
        elif char == '"':
            quoted = not quoted
        elif char in "#;" and not quoted:
            break
        else:
            out.append(char)
        index += 1
    return "".join(out).strip()


def remote_url_in_config(text: str, remote: str = "origin") -> str | None:
    """remote.<remote>.url in the text of a repository's config file (the last one, as `git config --get`)."""
    section: tuple[str, str | None] | None = None
    found = None
    for raw in text.splitlines():
        line = raw.strip()
        header = re.match(r'\[\s*([A-Za-z0-9.-]+)(?:\s+"((?:[^"\\]|\\.)*)")?\s*\](.*)$', line)
        if header:
            name = header.group(2)
            section = (header.group(1).lower(), re.sub(r"\\(.)", r"\1", name) if name is not None else None)
            line = header.group(3).strip()
        entry = re.match(r"([A-Za-z][A-Za-z0-9-]*)\s*=\s*(.*)$", line)
        if entry and section == ("remote", remote) and entry.group(1).lower() == "url":
            found = _unquote(entry.group(2))
    return found or None


def source_url_from_env(environ: Mapping[str, str]) -> str | None:
    server, repo = environ.get("GITHUB_SERVER_URL"), environ.get("GITHUB_REPOSITORY")
    if server and repo:
        return f"{server.rstrip('/')}/{repo}"
    return None


def clean_remote_url(url: str) -> str | None:
    """https form of a git remote, with any credentials removed (they must never reach a label)."""
    url = url.strip()
    scp = re.match(r"^[\w.-]+@([\w.-]+):(.+)$", url)  # git@github.com:org/repo.git
    if scp:
        host, path = scp.groups()
    else:
        parsed = re.match(r"^(?:https?|ssh|git)://(?:[^@/]*@)?([^/:]+)(?::\d+)?/(.+)$", url)
        if not parsed:
            return None
        host, path = parsed.groups()
    path = path.rstrip("/")
    if path.endswith(".git"):
        path = path[:-4]
    return f"https://{host}/{path}"


@dataclass(frozen=True)
class _Head:
    sha: str
    commit_time: str | None
    branch: str | None  # refs/heads/<name>, None on a detached HEAD
    tags: tuple[str, ...]


def _read_head(directory: Path) -> _Head | None:
    """One `git log -1`: the commit, its committer time, and its decorations (HEAD -> branch, tags at HEAD).
    None outside a checkout, or before its first commit."""
    # Explicit --decorate-refs: a user's log.excludeDecoration must not hide the tags.
    refs = ("--decorate-refs=refs/tags/", "--decorate-refs=refs/heads/", "--decorate-refs=HEAD")
    shown = _git(
        directory, "log", "-1", "--no-show-signature", "--decorate=full", *refs, f"--format={_LOG_FORMAT}", "HEAD", "--"
    )
    fields = shown.split("\0") if shown else []
    if len(fields) != 3 or not re.fullmatch(r"[0-9a-f]{40,64}", fields[0]):
        return None
    sha, committed, decorations = fields
    branch, tags = None, []
    for item in decorations.split(", "):  # ref names cannot hold ", " (git check-ref-format)
        if item.startswith("HEAD -> refs/heads/"):
            branch = item.removeprefix("HEAD -> ")
        elif item.startswith("tag: refs/tags/"):
            tags.append(item.removeprefix("tag: refs/tags/"))
    commit_time = (
        datetime.fromtimestamp(int(committed), UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if committed.isdigit() else None
    )
    return _Head(sha, commit_time, branch, tuple(sorted(tags)))


def _changed_paths(directory: Path, root: Path) -> set[Path] | None:
    """Every path under `directory` that differs from HEAD (modified, staged, deleted, untracked, ignored), from
    one `git status`; None when git cannot say, or when `root` is not where git puts the paths."""
    try:
        result = run_git(
            directory, ["status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignored=matching", "--", "."]
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    inside = directory.resolve()
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
        path = root / name
        if path != inside and inside not in path.parents:
            return None  # git names paths from another top directory than the one found
        changed.add(path)
    return changed


def _uncommitted(
    changed: set[Path], root: Path, directory: Path, inputs: Collection[Path] | None, sent: Callable[[str], bool] | None
) -> str | None:
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
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest() if path.is_file() else b"deleted")
    return digest.hexdigest()[:12]


def read_git_facts(
    directory: Path,
    environ: Mapping[str, str],
    *,
    inputs: Collection[Path] | None = None,
    sent: Callable[[str], bool] | None = None,
    check_inputs: bool = False,
) -> GitFacts:
    """Facts about the checkout that holds `directory` (the agent's directory, not the cwd), from at most two
    git processes.

    With `check_inputs`, also whether the build inputs are as committed: `inputs` are the files the image is
    built from (absolute paths), or None for the files under `directory` that `sent` (a path relative to
    `directory`) says the build context holds: a user's own Dockerfile sends the directory but never its secrets
    (image/ignore.py), so a changed .env changes no tag. Modified, staged, deleted, untracked and even git-ignored
    inputs count: the commit does not describe what goes into the image.
    """
    source = source_url_from_env(environ)
    head = _read_head(directory)
    if head is None:
        return GitFacts(sha=None, ref=environ.get("GITHUB_REF"), source_url=source)
    ref = environ.get("GITHUB_REF")
    if environ.get("GITHUB_SHA") and environ.get("GITHUB_SHA") != head.sha:
        ref = None  # GITHUB_REF describes another commit than the one checked out here
    checkout = find_checkout(directory, environ)
    uncommitted = None
    if check_inputs:
        changed = _changed_paths(directory, checkout.root) if checkout else None
        if changed is None:  # the search and git disagree (or GIT_DIR moved it): git says where the top is
            checkout = _checkout_from_git(directory)
            changed = _changed_paths(directory, checkout.root) if checkout else None
        if changed is not None and checkout is not None:
            uncommitted = _uncommitted(changed, checkout.root, directory, inputs, sent)
    if source is None and checkout is not None:
        config = checkout.common_dir / "config"
        remote = remote_url_in_config(config.read_text(errors="replace")) if config.is_file() else None
        source = clean_remote_url(remote) if remote else None
    return GitFacts(
        sha=head.sha,
        commit_time=head.commit_time,
        tags_at_head=head.tags,
        ref=ref if ref is not None else head.branch,
        source_url=source,
        uncommitted=uncommitted,
    )


def resolve_commit(directory: Path, ref: str) -> str:
    """The commit `ref` names in the checkout that holds `directory`; GitError naming the ref when there is none
    (a ref that starts with '-' is read as a name, never as an option)."""
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
