"""A target another package provides is named in agent.yaml like a built-in one, with its own section checked by its
own model (issue 21, point 6).

The toy process target (fakes/process_target.py) is the plugin: registered at run time here, and installed through
the `agentdeploy.targets` entry point of a package on the path in the end-to-end test (a child `agentdeploy
validate`), as a user's package would be.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentdeploy import targets
from agentdeploy.config.loader import load_config
from agentdeploy.console import Console
from agentdeploy.errors import ConfigError, ExitCode
from agentdeploy.release.commands import Command, Invocation, Result, execute
from agentdeploy.release.pipeline import DeployOptions, Services
from fakes.process_target import ProcessSettings, make_target
from testkit import ROOT, no_engine_builder, post_json

NoEngine = no_engine_builder()  # testkit: the real plan and context hash, nothing built


def no_docker() -> Any:
    raise AssertionError("a release on the process target needs no Docker engine")


HEAD = "name: toy\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: Be kind.}\n"


@pytest.fixture
def process_target() -> Iterator[None]:
    targets.register("process", make_target)
    yield
    targets.unregister("process")


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_config(path, display_name="agent.yaml")
    return [problem.render() for problem in raised.value.problems]


def deploy(config: Path, command: Command = Command.DEPLOY) -> Result:
    services = Services(
        environ={}, console=Console(io.StringIO(), io.StringIO()), docker=no_docker, image_stage=NoEngine
    )
    options = DeployOptions(push=False)  # no --target: the config's provider decides
    return execute(
        Invocation(command=command, config=config, display_name="agent.yaml", options=options, services=services)
    )


@pytest.mark.usefixtures("process_target")
def test_the_config_names_a_plugin_target_which_reads_its_own_section(
    write_agent: Callable[..., Path], free_port: Callable[[], int]
) -> None:
    agent_port, process_port = free_port(), free_port()
    config = write_agent(
        HEAD + f"deployment:\n  port: {agent_port}\n  target:\n    provider: process\n"
        f"    process: {{port: {process_port}}}\n"
        "  registry: {url: local.test, repository: toy, tag_strategy: custom, custom_tag: v1}\n"
    )
    assert load_config(config).target_settings("process") == ProcessSettings(port=process_port)
    try:
        result = deploy(config)
        assert (result.outputs["status"], result.outputs["url"]) == ("succeeded", f"http://127.0.0.1:{process_port}")
        status, body = post_json(f"http://127.0.0.1:{process_port}/agent/toy/chat", {"message": "hi"}, timeout=5)
        assert (status, body["content"]) == (200, "toy v1: hi")
        assert (config.parent / ".agentdeploy" / "toy.process.json").exists()  # recorded under its target's name
    finally:
        with contextlib.suppress(Exception):
            execute(
                Invocation(
                    command=Command.DESTROY,
                    config=config,
                    display_name="agent.yaml",
                    options=DeployOptions(),
                    services=Services(environ={}, console=Console(io.StringIO(), io.StringIO()), docker=no_docker),
                    confirmed=True,
                )
            )


@pytest.mark.usefixtures("process_target")
def test_the_plugin_section_is_checked_by_the_plugins_model_at_its_line(write_agent: Callable[..., Path]) -> None:
    config = write_agent(
        HEAD + "deployment:\n  target:\n    provider: process\n    process:\n      prot: 9000\n      port: high\n"
    )
    assert problems(config) == [
        "agent.yaml:9:13: deployment.target.process.port: expected a whole number, got str 'high'",
        "agent.yaml:8:7: deployment.target.process.prot: unknown key 'prot'\n    fix: did you mean 'port'?",
    ]


@pytest.mark.usefixtures("process_target")
def test_an_unknown_provider_is_one_error_naming_the_built_in_and_installed_targets(
    write_agent: Callable[..., Path],
) -> None:
    config = write_agent(HEAD + "deployment:\n  target: {provider: procss}\n")
    assert problems(config) == [
        "agent.yaml:5:22: deployment.target.provider: 'procss' is not a target\n"
        "    fix: did you mean 'process'? targets here: built-in: azure, docker; installed: process"
    ]


def test_without_the_plugin_its_name_and_its_section_are_refused(write_agent: Callable[..., Path]) -> None:
    config = write_agent(HEAD + "deployment:\n  target: {provider: process, process: {port: 9000}}\n")
    assert problems(config) == [
        "agent.yaml:5:22: deployment.target.provider: 'process' is not a target\n"
        "    fix: targets here: built-in: azure, docker; installed: none (a package adds one under the entry point "
        "group agentdeploy.targets)",
        "agent.yaml:5:31: deployment.target.process: unknown key 'process'\n"
        "    fix: allowed keys here: provider, azure, docker, aws, gcp",
    ]


def installed_plugin(site: Path) -> dict[str, str]:
    """A package on the path that registers the toy target under the entry point group, as pip would install it."""
    info = site / "toy_process_target-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-process-target\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[agentdeploy.targets]\nprocess = fakes.process_target:make_target\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "tests"), str(ROOT / "src")])}


def test_an_installed_plugin_is_found_through_its_entry_point(tmp_path: Path, write_agent: Callable[..., Path]) -> None:
    environ = installed_plugin(tmp_path / "site")
    good = write_agent(HEAD + "deployment:\n  target: {provider: process, process: {port: 9000}}\n")
    bad = write_agent(HEAD + "deployment:\n  target: {provider: process, process: {port: 0}}\n", name="bad.yaml")

    def validate(config: Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "agentdeploy", "validate", config.name]
        return subprocess.run(command, cwd=config.parent, env=environ, capture_output=True, text=True, timeout=60)

    ok = validate(good)
    assert ok.returncode == ExitCode.OK, ok.stderr
    assert ok.stdout.startswith("agent.yaml: valid. agent 'toy', target process, image ")
    refused = validate(bad)
    assert refused.returncode == ExitCode.CONFIG
    assert refused.stderr.splitlines()[1:] == [
        "  bad.yaml:5:47: deployment.target.process.port: 0 is out of range: it must be at least 1"
    ]
