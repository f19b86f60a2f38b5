"""The benchmark scripts' own logic (scripts/bench_*.py): the bugs that made them fail or mislead, each pinned.
They run whole, in their --smoke mode, in .ci/run."""

from __future__ import annotations

import importlib.util
import io
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from testkit import busybox_rootfs

ROOT = Path(__file__).resolve().parents[2]


def script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_script_{name}", ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_the_stand_in_rootfs_has_each_path_once_even_when_an_applet_is_asked_for_twice() -> None:
    # bench_build asked for ("chmod",), already among the default applets: two bin/chmod entries, and
    # `docker import` answered 500.
    with tarfile.open(fileobj=io.BytesIO(busybox_rootfs(("chmod", "tr", "base64"))), mode="r") as tar:
        names = tar.getnames()
    assert sorted(set(names)) == sorted(names)
    assert "bin/base64" in names and names.count("bin/chmod") == 1


def test_the_tool_share_of_a_workflow_run_is_the_sum_of_its_measured_parts() -> None:
    bench = script("bench_workflow_jobs")
    # The `agents` step (no stages: all of it is start-up), then push and deploy (stages inside).
    stamps = [
        (100.0, "start"),
        (100.4, "exit"),
        (200.0, "start"),
        (200.5, "::group::plan"),
        (200.9, "::endgroup::"),
        (201.0, "::group::image"),
        (203.0, "::endgroup::"),
        (203.2, "exit"),
    ]
    first, second = bench.split_runs(stamps)
    assert (first.startup, first.tail, first.grouped) == (pytest.approx(0.4), 0.0, 0.0)
    assert (second.startup, second.tail, second.grouped) == (
        pytest.approx(0.5),
        pytest.approx(0.2),
        pytest.approx(2.4),
    )
    # Before: run step 3.0 - image 2.9 - release 0.8 (two clocks) gave a negative share. Now the parts add up.
    assert bench.tool_share(0.1, 3.2, first.startup + second.startup, 0.4, second.tail) == pytest.approx(4.8)
    with pytest.raises(AssertionError, match="a measured part is negative"):
        bench.tool_share(0.1, 3.2, -0.1, 0.4, 0.2)


def test_each_use_of_the_action_says_whether_it_installed_or_restored() -> None:
    # The cold row used to show the deploy job's installer, "cached" (it restored what the agent job saved).
    logs = [
        "::group::install agentdeploy with uv 0.9.2\n...\nagentdeploy: installed with uv in 3s\n",
        "agentdeploy: the cached environment is current (Linux-X64-py3.11-abc)\n",
        "agentdeploy: installed with pip in 31s\n",
    ]
    assert script("bench_workflow_jobs").installers(logs) == "uv 3s, cached, pip 31s"


def test_the_azure_headline_carries_the_request_counts() -> None:
    bench = script("bench_azure")
    counts = {
        "agents": 20,
        "single": 8,
        "single_writes": 2,
        "gate_polls": 2,
        "multiple": 9,
        "single_noop": 3,
        "tokens": 1,
    }
    deploy = {"overhead": 1.05, "requests": 11.0, "writes": 2.0, "wall": 6.05}
    assert bench.headline(counts, deploy, 5.0) == (
        "headline: a deploy that changes the image makes 8 ARM requests (2 writes) + 2 gate polls (multiple mode 9), "
        "a no-op 3 reads, 1 Entra token request(s) for 20 agents; a deploy takes 6.05 s with the fake's 5 s "
        "provisioning (which it waits about twice), 11 ARM requests (2 writes) with operation polls at that delay"
    )
    assert bench.headline(counts, None, 5.0).endswith("1 Entra token request(s) for 20 agents")


def test_bench_build_renders_upstreams_own_dockerfile_for_the_example_agent() -> None:
    bench = script("bench_build")
    arguments = bench.upstream_arguments(ROOT / "examples" / "hello-agent" / "agent.yaml", version="v1")
    assert arguments == {
        "agent_name": "hello-agent",
        "port": 8080,
        "protocol": "rest",
        "version": "v1",
        "instruction_files": ["data/knowledge.md", "instructions.md"],  # the vectorstore's single file counts
        "data_directories": None,
        "environment": {"LOG_LEVEL": "info"},
    }
    dockerfile = bench.upstream_generator()(base_image="local/base:1", **arguments)
    steps = [line for line in dockerfile.splitlines() if line and not line.startswith("#")]
    # upstream 0.7.1's template: the build time in a LABEL right after FROM (so nothing after it is reused)
    assert steps[0] == "FROM local/base:1"
    assert steps[3].startswith('LABEL org.opencontainers.image.created="20')
    assert "COPY --chown=root:root instructions.md /app/instructions.md" in steps
    assert "RUN chmod a-w /app/instructions.md" in steps
    assert steps[-2:] == ["USER holodeck", 'ENTRYPOINT ["/app/entrypoint.sh"]']
