"""Fixtures of the workflow harness (action/harness.py): the action as the runner downloads it, the actions cache
that outlives a job, and a fresh "GitHub" (artifacts API, variables, secrets) per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from action.harness import Artifacts, World, copy_action


@pytest.fixture(scope="session")
def action_checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`uses: your-org/agentdeploy@v1` as the runner sees it: a copy of the action's files (so a build never
    writes into this checkout)."""
    return copy_action(tmp_path_factory.mktemp("actions") / "your-org" / "agentdeploy" / "v1")


@pytest.fixture(scope="session")
def actions_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """actions/cache's store, shared by every job of the session: the first job installs, later ones restore."""
    return tmp_path_factory.mktemp("actions-cache")


@pytest.fixture
def world(tmp_path: Path, action_checkout: Path, actions_cache: Path) -> Iterator[World]:
    artifacts = Artifacts()
    try:
        yield World(tmp=tmp_path / "runs", action=action_checkout, cache=actions_cache, artifacts=artifacts)
    finally:
        artifacts.close()
