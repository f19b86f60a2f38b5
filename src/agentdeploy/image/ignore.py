"""What a build from the user's own Dockerfile may send to the engine (pure, over a directory listing).

A `COPY . /app/` copies whatever the context holds, and the context is the project directory: a git-ignored
`.env`, a private key, `.git`. Those are left out unless the user's `.dockerignore` names them with `!`:
agentdeploy's patterns come first and the user's after, so by `.dockerignore`'s own rule (the last matching
pattern wins) the user has the final word. The same list decides the inputs digest and the `-dirty-` tag.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from docker.utils.build import PatternMatcher

# .dockerignore patterns, matched at any depth. Templates of .env files hold names, not values.
SECRET_PATTERNS = (
    "**/.env",
    "**/.env.*",
    "**/.envrc",
    "!**/.env.example",
    "!**/.env.sample",
    "**/*.pem",
    "**/*.key",
    "**/*.p12",
    "**/*.pfx",
    "**/*.jks",
    "**/*.keystore",
    "**/id_rsa*",
    "**/id_dsa*",
    "**/id_ecdsa*",
    "**/id_ed25519*",
    "**/.ssh",
    "**/.netrc",
    "**/.npmrc",
    "**/.pypirc",
    "**/.aws",
    "**/.azure",
    "**/.docker/config.json",
)
# Version control and agentdeploy's own state (it changes with every deploy): never part of an agent.
NOT_INPUTS = ("**/.git", "**/.agentdeploy")
DEFAULT_EXCLUDES = (*NOT_INPUTS, *SECRET_PATTERNS)
_OWN_STATE = ".agentdeploy"  # left out without a word: agentdeploy made it


def read_dockerignore(directory: Path) -> list[str]:
    """The patterns of `directory/.dockerignore` (none when it has no such file), as the engine reads them."""
    path = directory / ".dockerignore"
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


@dataclass(frozen=True)
class OwnContext:
    """The build context of a user's own Dockerfile."""

    files: list[str]  # what is sent, relative to the context directory (regular files, symlinks, directories)
    left_out: list[str]  # what agentdeploy's patterns kept out (not the user's), directories ending in "/"


def _matcher(patterns: list[str]) -> PatternMatcher:
    # docker-py's port of the engine's .dockerignore matcher: the same rules `docker build` applies.
    from docker.utils.build import PatternMatcher

    return PatternMatcher(patterns)


def _matches(matcher: PatternMatcher, relative: str) -> bool:
    # types-docker says PathLike; docker-py calls str methods on it (a posix path string is what it wants).
    return bool(matcher.matches(relative))  # type: ignore[arg-type]


def _included(directory: Path, patterns: list[str], dockerfile: str) -> set[str]:
    """Paths the engine would receive with `patterns` as the .dockerignore (the Dockerfile is always sent)."""
    return set(_matcher([*patterns, f"!{dockerfile}"]).walk(str(directory)))


def own_context(directory: Path, dockerfile: str) -> OwnContext:
    """`dockerfile` is relative to `directory` (posix)."""
    theirs = read_dockerignore(directory)
    sent = _included(directory, [*DEFAULT_EXCLUDES, *theirs], dockerfile)
    meant = _included(directory, list(theirs), dockerfile)
    dropped = sorted(meant - sent)
    dropped_set = set(dropped)
    left_out = []
    for path in dropped:
        parent = os.path.dirname(path)
        while parent and parent not in dropped_set:
            parent = os.path.dirname(parent)
        if parent or os.path.basename(path) == _OWN_STATE:
            continue  # named by its directory, or agentdeploy's own
        whole_directory = (directory / path).is_dir() and not (directory / path).is_symlink()
        left_out.append(path + "/" if whole_directory else path)
    return OwnContext(files=sorted(sent), left_out=left_out)


def sent_filter(directory: Path, dockerfile: str) -> Callable[[str], bool]:
    """Whether a path (relative to `directory`, posix; it need not exist: a deleted file) would be sent, by the
    rules `own_context` walks with: a path under an excluded directory is not, unless a `!` pattern reaches in."""
    matcher = _matcher([*DEFAULT_EXCLUDES, *read_dockerignore(directory), f"!{dockerfile}"])
    reopened = [pattern.cleaned_pattern for pattern in matcher.patterns if pattern.exclusion]

    def sent(relative: str) -> bool:
        parts = relative.split("/")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            if _matches(matcher, prefix) and not any(pattern.startswith(prefix) for pattern in reopened):
                return False
        return not _matches(matcher, relative)

    return sent


@functools.cache
def _secrets() -> PatternMatcher:
    return _matcher(list(SECRET_PATTERNS))


def is_secret_file(relative: str) -> bool:
    """A file found in an agent's data directory that a generated image leaves out (`relative` to the project,
    posix): it, or a directory it is in, matches SECRET_PATTERNS."""
    parts = relative.split("/")
    return any(_matches(_secrets(), "/".join(parts[:depth])) for depth in range(1, len(parts) + 1))
