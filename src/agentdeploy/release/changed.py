"""`changed`: which agents a range of commits touched, as a GitHub `strategy.matrix`. Both front ends call
`changed_agents` and `matrix`."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agentdeploy.config.loader import LoadedConfig
from agentdeploy.errors import AgentDeployError, UsageError
from agentdeploy.jsonvalue import JsonObject, array


@dataclass(frozen=True)
class Changed:
    config: str  # as given
    agent: str  # "" when the config cannot be read
    paths: tuple[str, ...]  # what changed among its inputs, relative to the checkout's top
    reason: str = ""  # why it is listed without a path (a config that cannot be read, a first push)
    target: str = ""  # deployment.target.provider ("" when the config cannot be read), for the job's runs-on

    @property
    def listed(self) -> bool:
        """Whether it goes into the matrix (deployed)."""
        return bool(self.paths or self.reason)

    def matrix_entry(self) -> JsonObject:
        return {
            "agent": self.agent or Path(self.config).parent.name,
            "config": Path(self.config).as_posix(),
            "target": self.target,
        }


@dataclass
class _Inputs:
    files: set[Path]
    directories: set[Path]
    patterns: list[str]
    state: Path  # the record's directory: never an input (a state: commit run commits to it)

    def covers(self, path: Path) -> bool:
        if self.state == path or self.state in path.parents:
            return False
        if path in self.files or any(directory == path or directory in path.parents for directory in self.directories):
            return True
        return any(fnmatch.fnmatch(path.as_posix(), pattern) for pattern in self.patterns)


def deploy_inputs(config: LoadedConfig) -> _Inputs:
    """What an agent's deploy is made from, in the checkout: its config (the base image and every setting are in
    it), each file it names and the directories and patterns they come from (a deleted file under a named
    directory counts), and, with its own Dockerfile, the whole directory (the build context). Raises ContextError
    when a named file is missing."""
    from agentdeploy.image.context import collect, required_files
    from agentdeploy.state.store import STATE_DIR

    root = config.project_dir.resolve()
    entries, _ = collect(config)
    inputs = _Inputs(
        files={config.path.resolve(), *(entry.source for entry in entries)},
        directories=set(),
        patterns=[],
        state=root / STATE_DIR,
    )
    for requirement in required_files(config):
        named = Path(os.path.normpath(root / requirement.path))
        if requirement.pattern:
            inputs.patterns.append(named.as_posix())
        elif named.is_dir():
            inputs.directories.add(named)
    if config.deploy.build.dockerfile:
        inputs.directories.add(root)
    return inputs


def changed_agents(configs: Sequence[str], since: str) -> list[Changed]:
    """For each config, what changed among its deploy's inputs between `since` and HEAD (committed changes).
    `since` all zeros (GitHub's `before` on the push that made a branch) lists every agent. A config that cannot
    be read is listed (its deploy will say why). GitError (exit 5) when `since` names no commit."""
    from agentdeploy.config.loader import load_config
    from agentdeploy.git import NO_COMMIT, resolve_commit

    if not since.strip():
        raise UsageError("--since needs a commit, a branch or a tag")
    diffs: dict[Path, list[Path]] = {}  # checkout top -> changed paths, asked once per checkout
    found: list[Changed] = []
    for config in configs:
        directory = Path(config).resolve().parent
        commit = "" if since == NO_COMMIT else resolve_commit(directory, since)
        try:
            loaded = load_config(Path(config), display_name=config)
        except AgentDeployError as error:
            found.append(Changed(config, "", (), f"its config cannot be read ({error.message})"))
            continue
        name, target = loaded.agent.name, loaded.deploy.target.provider
        if not commit:
            found.append(Changed(config, name, (), f"{since} is no commit: a new branch", target))
            continue
        try:
            inputs = deploy_inputs(loaded)
        except AgentDeployError as error:
            found.append(Changed(config, name, (), f"it names files that are missing ({error.message})", target))
            continue
        top, paths = _diff(diffs, directory, commit)
        hits = tuple(path.relative_to(top).as_posix() for path in paths if inputs.covers(path))
        found.append(Changed(config, name, hits, target=target))
    return found


def _diff(cache: dict[Path, list[Path]], directory: Path, commit: str) -> tuple[Path, list[Path]]:
    from agentdeploy.git import changed_since

    for top, paths in cache.items():
        if directory == top or top in directory.parents:
            return top, paths
    top, paths = changed_since(directory, commit)
    cache[top] = paths
    return top, paths


def matrix(found: Iterable[Changed]) -> JsonObject:
    """`strategy.matrix` for the agents to deploy: {"include": [{"agent": ..., "config": ..., "target": ...}]}."""
    return {"include": array(entry.matrix_entry() for entry in found if entry.listed)}
