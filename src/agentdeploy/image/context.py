"""The build context: exactly the files the agent needs, gathered into a directory.

`required_files` is pure (what the config names). `collect` checks those paths on disk (missing,
escaping the project) and reports every problem at once. `write_context` copies the files with
normalised permissions and computes a content hash of everything that goes into the image.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath

from agentdeploy.config.loader import LoadedConfig
from agentdeploy.config.yamlsource import KeyPath
from agentdeploy.errors import ContextError, Location, Problem, UsageError
from agentdeploy.image.ignore import is_secret_file

APP_DIR = "app"
HOME_DIR = "home"
# workdir/app: an empty /app of mode 1775 (sticky, group-writable), copied with --chown=0:<uid>
WORKDIR_DIR = "workdir"
SUPPORT_DIR = "agentdeploy"  # build-time helpers, outside /app
SUPPORT_FILES = ("check-runtime.sh",)
# Never copied into an image: VCS data, caches, and files that hold secrets.
_SKIP_NAMES = frozenset({".git", "__pycache__", ".DS_Store", ".holodeck", ".agentdeploy"})
_GLOB_CHARS = frozenset("*?[")


def _is_env_file(name: str) -> bool:
    return name == ".env" or (name.startswith(".env.") and not name.endswith((".sample", ".example")))


@dataclass(frozen=True)
class FileRequirement:
    """A path the config names, relative to the config's directory."""

    path: str
    keys: KeyPath  # where agent.yaml names it
    pattern: bool = False  # a glob (hierarchical_document sources allow them)


def required_files(config: LoadedConfig) -> list[FileRequirement]:
    agent = config.agent
    found: list[FileRequirement] = []
    if agent.instructions.file:
        found.append(FileRequirement(agent.instructions.file, ("instructions", "file")))
    for index, tool in enumerate(agent.tools or []):
        keys: KeyPath = ("tools", index)
        if isinstance(tool.file, str):
            found.append(FileRequirement(tool.file, (*keys, "file")))
        if isinstance(tool.source, str):
            is_pattern = tool.type == "hierarchical_document" and bool(_GLOB_CHARS & set(tool.source))
            found.append(FileRequirement(tool.source, (*keys, "source"), pattern=is_pattern))
        if tool.command == "node" and isinstance(tool.args, list):
            # `node ./server.js`: the script is part of the agent.
            for arg_index, arg in enumerate(tool.args):
                if isinstance(arg, str) and arg.endswith((".js", ".mjs", ".cjs")) and "://" not in arg:
                    found.append(FileRequirement(arg, (*keys, "args", arg_index)))
                    break
    if agent.test_cases_file:
        found.append(FileRequirement(agent.test_cases_file, ("test_cases_file",)))
    return found


def env_files_left_out(config: LoadedConfig) -> list[Problem]:
    """MCP `env_file`s hold secrets: they are never copied; say so."""
    notes = []
    for index, tool in enumerate(config.agent.tools or []):
        if isinstance(tool.env_file, str):
            notes.append(
                Problem(
                    f"{tool.env_file} is not copied into the image (env files hold secrets)",
                    config.locate(("tools", index, "env_file")),
                    hint="give its variables to the container through deployment.secrets",
                )
            )
    return notes


@dataclass(frozen=True)
class ContextEntry:
    source: Path  # absolute, inside the project
    target: PurePosixPath  # relative to the app directory of the context
    content: bytes | None = None  # what the image gets instead of the file (the runtime's config copies)


@dataclass
class BuildContext:
    directory: Path
    files: list[PurePosixPath]  # paths inside the image, relative to /app
    digest: str  # sha256 of the Dockerfile, file paths, modes and contents
    skipped: list[str] = field(default_factory=list)  # secret files left out of data directories
    # what went into the digest, per file: path in the context -> sha256 hex (plan names the files that changed)
    manifest: dict[str, str] = field(default_factory=dict)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def collect(config: LoadedConfig) -> tuple[list[ContextEntry], list[str]]:
    """Every file to copy (the config first). ContextError lists all missing/escaping paths."""
    root = config.project_dir.resolve()
    # agent.yaml (and the project config.yaml the runtime merges in) as the runtime must see them.
    entries: dict[PurePosixPath, ContextEntry] = {
        PurePosixPath(copy.name): ContextEntry(root / copy.name, PurePosixPath(copy.name), copy.text.encode())
        for copy in config.runtime_files
    }
    problems: list[Problem] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for requirement in required_files(config):
        where = config.locate(requirement.keys)
        raw = requirement.path
        if os.path.normpath(raw) in seen:
            continue  # two tools sharing one file: check (and report) it once
        seen.add(os.path.normpath(raw))
        if os.path.isabs(raw) or raw.startswith("~"):
            problems.append(
                Problem(
                    f"{raw} is an absolute path",
                    where,
                    hint="use a path relative to the agent.yaml directory, inside the project",
                )
            )
            continue
        candidates, link_problems = _expand(root, requirement)
        problems.extend(
            Problem(problem, where, hint="remove the link or copy the files in") for problem in link_problems
        )
        if not candidates and not link_problems:
            problems.append(
                Problem(
                    f"{raw} does not exist" + (" (the pattern matches nothing)" if requirement.pattern else ""),
                    where,
                    hint=f"create it, or fix the path (relative to {root})",
                )
            )
            continue
        for candidate in candidates:
            _take(candidate, root, requirement, where, entries, problems, skipped)
    if problems:
        count = "1 file" if len(problems) == 1 else f"{len(problems)} files"
        raise ContextError(f"{count} named by {config.document.display_name} cannot be used", problems=problems)
    return sorted(entries.values(), key=lambda entry: entry.target), skipped


def _take(
    candidate: Path,
    root: Path,
    requirement: FileRequirement,
    where: Location,
    entries: dict[PurePosixPath, ContextEntry],
    problems: list[Problem],
    skipped: list[str],
) -> None:
    """One path a requirement names (a file, a directory, a pattern's match): its files into `entries`, what it
    cannot use into `problems`, secret-looking files left out into `skipped`."""
    raw = requirement.path
    if not _inside(candidate.resolve(), root):
        through = " through a symlink" if ".." not in PurePosixPath(raw).parts else ""
        problems.append(
            Problem(
                f"{raw} leaves the project directory{through}",
                where,
                hint="keep the agent's files inside the directory of agent.yaml",
            )
        )
        return
    for source, problem in _walk(candidate, root):
        relative = source.relative_to(root).as_posix()
        if problem is not None:
            problems.append(Problem(problem, where, hint="remove the link or copy the file in"))
        elif _is_env_file(source.name) or ((source != candidate or requirement.pattern) and is_secret_file(relative)):
            # A file named on its own is meant (a key or .pem too), but never a .env; in a directory or a pattern,
            # anything that looks like a secret stays out.
            skipped.append(relative)
        else:
            target = PurePosixPath(relative)
            entries.setdefault(target, ContextEntry(source, target))


def _expand(root: Path, requirement: FileRequirement) -> tuple[list[Path], list[str]]:
    """The paths a requirement names, and what stopped a pattern from following a symlink."""
    # normpath folds `a/../b` so the path inside the image is clean; escaping is checked later.
    lexical = Path(os.path.normpath(root / requirement.path))
    if requirement.pattern:
        if not _inside(lexical, root):
            return [lexical], []  # reported as leaving the project, never searched
        return _glob(root, lexical.relative_to(root).parts)
    if lexical.exists():
        return [lexical], []
    # A symlink pointing outside is reported as escaping, not as missing.
    return ([lexical] if lexical.is_symlink() else []), []


def _glob(root: Path, parts: tuple[str, ...]) -> tuple[list[Path], list[str]]:
    """glob's matches of `parts` under `root` (`**` is any number of directories; a wildcard skips dot names), but
    bounded: a `**` enters each real directory once, so a symlink back to a directory it came from (a loop) or a
    second way to one is reported, not followed (Python's glob follows both, without end)."""
    found: set[Path] = set()
    problems: list[str] = []
    entered: set[tuple[Path, int]] = set()  # (real directory, pattern part) a `**` has entered

    def wild(part: str) -> bool:
        return bool(_GLOB_CHARS & set(part))

    def names(directory: Path, part: str) -> list[str]:
        try:
            listed = sorted(os.listdir(directory))
        except OSError:
            return []
        return [name for name in listed if not name.startswith(".") or part.startswith(".")]

    def step(path: Path, index: int, chain: tuple[Path, ...]) -> None:
        if index == len(parts):
            found.add(path)
            return
        part = parts[index]
        if not wild(part):
            following = path / part
            if os.path.lexists(following):
                step(following, index + 1, chain)
            return
        if part != "**":
            for name in names(path, part):
                if fnmatch.fnmatchcase(name, part) and (index + 1 == len(parts) or (path / name).is_dir()):
                    step(path / name, index + 1, chain)
            return
        step(path, index + 1, chain)  # `**` as no directory at all
        for name in names(path, part):
            below = path / name
            if not below.is_dir():
                if index + 1 == len(parts):
                    found.add(below)  # a trailing `**` matches files too
                continue
            real = below.resolve()
            shown = below.relative_to(root) if _inside(below, root) else below
            if below.is_symlink() and not _inside(real, root):
                problems.append(f"{shown} is a symlink out of the project")
            elif real in chain or any(real in link.parents for link in chain):
                problems.append(
                    f"{shown} is a symlink loop: it leads back to {real.relative_to(root).as_posix() or '.'}"
                )
            elif (real, index) in entered:
                problems.append(f"{shown} is a symlink to {real.relative_to(root).as_posix()}, which is already copied")
            else:
                entered.add((real, index))
                step(below, index, (*chain, real))

    start = root.resolve()
    step(root, 0, (start,))
    return sorted(found), problems


def _walk(path: Path, root: Path, visited: set[Path] | None = None) -> Iterator[tuple[Path, str | None]]:
    """Files under `path` (or `path` itself), each checked to stay inside `root`. A symlinked directory inside the
    project is followed once: `visited` holds the real path of every directory walked, so a link back to one of
    them (a loop such as `data/sub/l1 -> ..`, or a second way to the same directory) is a problem naming the link,
    never an endless or exponential walk."""
    if not path.is_dir():
        yield path, None
        return
    visited = set() if visited is None else visited
    visited.add(path.resolve())
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_NAMES)
        base = Path(dirpath)
        visited.add(base.resolve())
        for name in list(dirnames):
            linked = base / name
            if linked.is_symlink():
                dirnames.remove(name)
                real = linked.resolve()
                if not _inside(real, root):
                    yield linked, f"{linked.relative_to(root)} is a symlink out of the project"
                elif real in visited or any(real in seen.parents for seen in visited):
                    target = real.relative_to(root).as_posix() or "."
                    shown = linked.relative_to(root)
                    loop = real == base.resolve() or real in base.resolve().parents
                    yield (
                        linked,
                        f"{shown} is a symlink loop: it leads back to {target}, which contains it"
                        if loop
                        else f"{shown} is a symlink to {target}, which is already copied",
                    )
                else:
                    yield from _walk(linked, root, visited)
        for name in sorted(filenames):
            if name in _SKIP_NAMES:
                continue
            file_path = base / name
            if file_path.is_symlink() and not _inside(file_path.resolve(), root):
                yield file_path, f"{file_path.relative_to(root)} is a symlink out of the project"
            else:
                yield file_path, None


def write_context(
    entries: list[ContextEntry], directory: Path, dockerfile: str, skipped: list[str] | None = None
) -> BuildContext:
    """Copy into `directory` (which must be empty) and hash what the image will contain."""
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        # A bad argument (exit 2), not a file the config names that is missing (exit 4).
        raise UsageError(f"--out {directory} is not empty", hint="pass a new or empty directory")
    digest = hashlib.sha256()
    digest.update(b"Dockerfile\0" + dockerfile.encode() + b"\0")
    manifest = {"Dockerfile": hashlib.sha256(dockerfile.encode()).hexdigest()}
    (directory / "Dockerfile").write_text(dockerfile, encoding="utf-8")
    home = directory / HOME_DIR
    home.mkdir()
    (home / ".keep").write_bytes(b"")
    workdir = directory / WORKDIR_DIR / APP_DIR
    workdir.mkdir(parents=True)
    os.chmod(workdir, 0o1775)  # explicit: mkdir's mode passes through the umask
    app = directory / APP_DIR
    app.mkdir(mode=0o755)
    support = directory / SUPPORT_DIR
    support.mkdir()
    for name in SUPPORT_FILES:
        data = resources.files("agentdeploy.image").joinpath("templates", name).read_bytes()
        (support / name).write_bytes(data)
        os.chmod(support / name, 0o755)
        digest.update(f"{SUPPORT_DIR}/{name}".encode() + b"\0" + hashlib.sha256(data).digest())
        manifest[f"{SUPPORT_DIR}/{name}"] = hashlib.sha256(data).hexdigest()
    for entry in entries:
        target = app / entry.target
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        if entry.content is not None:
            target.write_bytes(entry.content)
        else:
            shutil.copyfile(entry.source, target)
        # Fixed modes: the cache key must not depend on a developer's umask.
        os.chmod(target, 0o644)
        digest.update(entry.target.as_posix().encode() + b"\0")
        content = hashlib.sha256(target.read_bytes())
        digest.update(content.digest())
        manifest[f"{APP_DIR}/{entry.target.as_posix()}"] = content.hexdigest()
    for folder, subdirs, _ in os.walk(app):
        for name in subdirs:
            os.chmod(Path(folder) / name, 0o755)
    return BuildContext(
        directory=directory,
        files=[entry.target for entry in entries],
        digest="sha256:" + digest.hexdigest(),
        skipped=list(skipped or []),
        manifest=manifest,
    )
