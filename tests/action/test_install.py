"""The Action's install, run for real: action.yml's key, cache and install steps (and its run step on what they
installed), with uv on PATH, with uv fetched from PyPI (GitHub's runners have none), with pip when uv cannot be had
or fails, and from the actions cache on a later job."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from action.harness import Job, World, copy_action
from testkit import ROOT

ACTION = yaml.safe_load((ROOT / "action.yml").read_text())


@pytest.fixture(scope="session")
def uv_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a uv in it, as on a runner that has uv on PATH."""
    target = tmp_path_factory.mktemp("uv")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target), "uv>=0.5"],
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert (target / "bin" / "uv").exists()
    return target / "bin"


def path_without_uv() -> str:
    return os.pathsep.join(
        folder for folder in os.environ["PATH"].split(os.pathsep) if folder and not (Path(folder) / "uv").exists()
    )


def install(job: Job, **env: str) -> tuple[str, str]:
    """The composite's steps up to and including the install; the installer it says it used, and the log."""
    code, _, log = job.run_action({}, env, stop_after="install")
    assert code == 0, log
    job.finish()  # the post steps: actions/cache saves a missed key
    assert job.action_steps["cache"]["outputs"]["cache-hit"] in ("true", "false")
    return job.action_steps["install"]["outputs"]["installer"], log


def installed_file(job: Job, module: str = "agentdeploy") -> Path:
    python = job.temp / "agentdeploy-venv" / "bin" / "python"
    found = subprocess.run(
        [str(python), "-c", f"import {module}; print({module}.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    return Path(found.stdout.strip())


def test_the_key_covers_the_runner_the_interpreter_and_the_action_content(world: World, tmp_path: Path) -> None:
    step = next(s for s in ACTION["runs"]["steps"] if s.get("id") == "key")
    assert "hashFiles" not in str(ACTION["runs"]["steps"])  # hashFiles reads the workspace, not the action
    cache = next(s for s in ACTION["runs"]["steps"] if str(s.get("uses", "")).startswith("actions/cache@"))
    assert cache["with"]["key"] == "${{ steps.key.outputs.key }}" and "restore-keys" not in cache["with"]
    assert step["env"] == {"ACTION_PATH": "${{ github.action_path }}"}

    runs = itertools.count()

    def key(action: Path) -> str:
        job = Job(
            World(tmp=tmp_path / f"runs-{next(runs)}", action=action, cache=world.cache, artifacts=world.artifacts)
        )
        code, _, log = job.run_action({}, {}, stop_after="key")
        assert code == 0, log
        return str(job.action_steps["key"]["outputs"]["key"])

    v1 = key(world.action)
    version = ".".join(map(str, sys.version_info[:3]))
    assert v1.startswith(f"agentdeploy-Linux-{os.uname().machine}-py{version}-"), v1
    assert key(world.action) == v1  # stable
    moved = copy_action(tmp_path / "moved")  # `v1` moved to a commit that changed one source file
    (moved / "src" / "agentdeploy" / "__init__.py").write_text(
        (moved / "src" / "agentdeploy" / "__init__.py").read_text() + "# moved\n"
    )
    assert key(moved) != v1
    dependencies = copy_action(tmp_path / "dependencies")  # or only the dependencies
    pyproject = dependencies / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"filelock>=3.12"', '"filelock>=3.13"'))
    assert key(dependencies) != v1
    built = copy_action(tmp_path / "built")  # what a build leaves in the checkout is not content
    (built / "src" / "agentdeploy.egg-info").mkdir()
    (built / "src" / "agentdeploy.egg-info" / "PKG-INFO").write_text("Name: agentdeploy\n")
    (built / "src" / "agentdeploy" / "__pycache__").mkdir(exist_ok=True)
    (built / "src" / "agentdeploy" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert key(built) == key(copy_action(tmp_path / "clean"))


def test_uv_on_path_installs_and_a_later_job_restores_the_environment_from_the_cache(
    world: World, uv_dir: Path, tmp_path: Path
) -> None:
    first = Job(world)
    first.path = f"{uv_dir}{os.pathsep}{path_without_uv()}"
    installer, log = install(first)
    assert installer in ("uv", "cached"), log  # an earlier test of this session may have filled the cache
    if installer == "uv":
        assert "::group::install agentdeploy with uv " in log and "agentdeploy: installed with uv in" in log
    installed = installed_file(first)
    assert installed.is_relative_to(first.temp / "agentdeploy-venv"), installed  # not this checkout's source

    # A later job on a fresh runner: the environment comes from the cache and is used as it is.
    later = Job(world)
    later.path = path_without_uv()  # no uv needed for a cache hit
    started = time.monotonic()
    installer, log = install(later)
    assert installer == "cached" and "the cached environment is current" in log, log
    assert later.action_steps["cache"]["outputs"]["cache-hit"] == "true"
    assert time.monotonic() - started < 30

    # An environment another version of the action left (where RUNNER_TEMP is kept and nothing was cached) is
    # not used: its stamp names another key.
    (tmp_path / "no-cache").mkdir()
    kept = Job(
        World(tmp=tmp_path / "kept-runs", action=world.action, cache=tmp_path / "no-cache", artifacts=world.artifacts)
    )
    shutil.copytree(later.temp / "agentdeploy-venv", kept.temp / "agentdeploy-venv", symlinks=True)
    (kept.temp / "agentdeploy-venv" / ".agentdeploy-install-key").write_text("agentdeploy-Linux-an-older-v1\n")
    kept.path = first.path
    installer, log = install(kept)
    assert installer == "uv", log

    # The same job with a moved v1 tag: another key, so a fresh install, never the old environment.
    moved = copy_action(tmp_path / "moved-v1")
    marker = "# the moved v1\n"
    init = moved / "src" / "agentdeploy" / "__init__.py"
    init.write_text(init.read_text() + marker)
    again = Job(World(tmp=tmp_path / "moved-runs", action=moved, cache=world.cache, artifacts=world.artifacts))
    again.path = first.path
    installer, log = install(again)
    assert installer == "uv", log
    assert again.action_steps["cache"]["outputs"]["cache-hit"] == "false"
    assert installed_file(again).read_text().endswith(marker)


def test_a_runner_without_uv_gets_it_from_pypi_and_the_run_step_runs_on_what_was_installed(
    world: World, tmp_path: Path
) -> None:
    job = Job(
        World(
            tmp=tmp_path / "runs",
            action=copy_action(tmp_path / "v1"),
            cache=tmp_path / "empty-cache",
            artifacts=world.artifacts,
        )
    )
    job.world.cache.mkdir()
    job.path = path_without_uv()
    installer, log = install(job)
    assert installer == "uv", log
    assert (job.temp / "agentdeploy-uv" / "bin" / "uv").exists()

    # The whole composite, on the environment it installed: a bad config ends in an annotation on its line.
    (job.workspace / "agent.yaml").write_text(
        "name: x\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: hi}\ndeployment:\n  prot: 1\n"
    )
    code, outputs, log = job.run_action({"config": "agent.yaml"}, {})
    assert code == 1 and outputs["status"] == "failed", log
    assert job.action_steps["install"]["outputs"]["installer"] == "cached"  # the second install step: nothing to do
    assert "::error title=deployment.prot,file=agent.yaml,line=5" in log, log


@pytest.mark.parametrize("why", ["uv cannot be had", "uv fails"])
def test_pip_installs_when_uv_cannot(world: World, tmp_path: Path, why: str) -> None:
    job = Job(
        World(
            tmp=tmp_path / "runs",
            action=copy_action(tmp_path / "v1"),
            cache=tmp_path / "empty-cache",
            artifacts=world.artifacts,
        )
    )
    job.world.cache.mkdir()
    env: dict[str, str] = {}
    if why == "uv cannot be had":
        # No uv on PATH, and pip cannot get one (an index without uv, as behind a mirror that lacks it).
        job.path = path_without_uv()
        constraints = tmp_path / "no-uv.txt"
        constraints.write_text("uv<0\n")
        env["PIP_CONSTRAINT"] = str(constraints)
    else:
        broken = tmp_path / "broken-uv"
        broken.mkdir()
        (broken / "uv").write_text(
            '#!/bin/sh\n[ "$1" = --version ] && echo "uv 0.0.1" && exit 0\necho "uv: broken" >&2\nexit 2\n'
        )
        (broken / "uv").chmod(0o755)
        job.path = f"{broken}{os.pathsep}{path_without_uv()}"
    installer, log = install(job, **env)
    assert installer == "pip", log
    expected = "uv could not be had" if why == "uv cannot be had" else "uv could not install agentdeploy"
    assert f"agentdeploy: {expected}" in log and "agentdeploy: installed with pip in" in log, log
    assert installed_file(job).is_relative_to(job.temp / "agentdeploy-venv")
    assert installed_file(job, "pip").exists()  # a venv made by python -m venv, not by uv
