"""The git facts of an image: which commit it is built from, and whether its build inputs are as committed
(the plumbing is agentdeploy/git.py's)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from agentdeploy.git import GitFacts, read_git_facts

if TYPE_CHECKING:
    from agentdeploy.config.loader import LoadedConfig


def git_facts(config: LoadedConfig, environ: Mapping[str, str]) -> GitFacts:
    """What git says about the agent's checkout, and whether its build inputs are as committed (the tag
    says so when they are not). Raises ContextError when a file the config names is missing."""
    from agentdeploy.image.context import collect
    from agentdeploy.image.ignore import sent_filter
    from agentdeploy.image.spec import own_dockerfile_path

    entries, _ = collect(config)
    own = own_dockerfile_path(config)
    if own is None:
        inputs = [entry.source for entry in entries]
        return read_git_facts(config.project_dir, environ, inputs=inputs, check_inputs=True)
    dockerfile = own.relative_to(config.project_dir.resolve()).as_posix()
    sent = sent_filter(config.project_dir, dockerfile)
    return read_git_facts(config.project_dir, environ, sent=sent, check_inputs=True)
