"""Numbers for agents on the real HoloDeck runtime (holodeck-ai 0.7.1 from PyPI), on the local engine.

1. The real-runtime base (`agentdeploy base build`): build time when this machine has it (the cache hit
   every test run after the first sees) and, with --cold, from nothing (rootfs + pip + npm).
2. The example agent's image: its size, and what agentdeploy adds on top of the base.
3. `agentdeploy deploy` of examples/hello-agent (a fresh copy each run, verify turn included) on the
   real runtime: wall time of the whole command, and the gate (container start -> healthy verdict).
4. Chat latency through the deployed agent: the first turn (vector-store ingestion happens there)
   and the median of the following turns.

The agent talks to the fake OpenAI-compatible model of the tests on 127.0.0.1 (its answers are instant,
so the latencies are the runtime's own overhead), with proxies at a dead loopback port.

Usage: python scripts/bench_runtime.py [--runs N] [--chats N] [--cold]   (needs `sudo .ci/services` first)
       python scripts/bench_runtime.py --smoke   (one deploy, one later turn: checks that the benchmark works)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fakes.llm import FakeLlmServer  # noqa: E402
from realbase import ensure_real_base  # noqa: E402
from testkit import offline_agent_env, post_json  # noqa: E402

EXAMPLE = ROOT / "examples" / "hello-agent"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_build(client: Any, cold: bool) -> tuple[float, str]:
    started = time.monotonic()
    name = ensure_real_base(client, log=lambda line: print(f"  [base] {line}", flush=True), cold=cold)
    return time.monotonic() - started, name


def stage_agent(workdir: Path, base: str, llm_url: str) -> tuple[Path, int, str]:
    project = workdir / f"hello-{uuid.uuid4().hex[:6]}"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".agentdeploy", ".holodeck"))
    config = project / "agent.yaml"
    data = yaml.safe_load(config.read_text())
    port = free_port()
    container = f"agentdeploy-bench-{uuid.uuid4().hex[:6]}"
    deployment = data["deployment"]
    deployment["port"] = port
    deployment["build"] = {"base_image": base}
    deployment["environment"].update(offline_agent_env(llm_url))
    deployment["target"] = {"provider": "docker", "docker": {"container_name": container}}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config, port, container


def wait_ready(port: int) -> None:
    import json
    import urllib.request

    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
                if json.load(response).get("ready") is True:
                    return
        except OSError:
            pass
        time.sleep(0.1)


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENAI_API_KEY": "sk-bench-0123456789"}
    return subprocess.run([sys.executable, "-m", "agentdeploy", *argv], capture_output=True, text=True, env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="deploys to time (each from a fresh copy)")
    parser.add_argument("--chats", type=int, default=10, help="chat turns after the first, per deploy")
    parser.add_argument("--cold", action="store_true", help="remove the base first and time its build from nothing")
    parser.add_argument("--smoke", action="store_true", help="one deploy and one later chat turn")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.chats, args.cold = 1, 1, False

    import docker

    client = docker.from_env()
    seconds, base = base_build(client, args.cold)
    print(f"base {base}: {'cold build' if args.cold else 'ready (cached)'} in {seconds:.2f}s")
    if not args.smoke:  # the look-up again, now surely a hit (smoke mode: the one above was)
        cached, _ = base_build(client, False)
        print(f"base, when this machine has it: {cached:.3f}s")
    base_size = client.images.get(base).attrs["Size"]

    figures = Figures()
    with FakeLlmServer() as llm, tempfile.TemporaryDirectory(prefix="bench-runtime-") as temporary:
        for run in range(args.runs):
            if not one_deploy(client, Path(temporary), base, llm.base_url, args.chats, figures):
                return 1
            print(
                f"run {run + 1}: deploy {figures.deploy_walls[-1]:.1f}s, "
                f"gate {figures.gates[-1] if figures.gates else float('nan'):.1f}s, "
                f"first chat {figures.firsts[-1]:.2f}s",
                flush=True,
            )
    report(figures, base_size)
    return 0


@dataclass
class Figures:
    deploy_walls: list[float] = field(default_factory=list)
    gates: list[float] = field(default_factory=list)
    firsts: list[float] = field(default_factory=list)
    laters: list[float] = field(default_factory=list)
    agent_size: int = 0


def one_deploy(client: Any, workdir: Path, base: str, llm_url: str, chats: int, figures: Figures) -> bool:
    """A deploy of a fresh copy, timed, then its first chat after a restart and `chats` more; False when the
    deploy failed (its error printed)."""
    config, port, container = stage_agent(workdir, base, llm_url)
    started = time.monotonic()
    result = run_cli("deploy", str(config), "--json")
    wall = time.monotonic() - started
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        return False
    figures.deploy_walls.append(wall)
    gate = re.search(r"/health: .* after ([0-9.]+)s", result.stderr)
    if gate:
        figures.gates.append(float(gate.group(1)))
    figures.agent_size = client.images.get(yaml.safe_load(result.stdout)["image"]).attrs["Size"]
    url = f"http://127.0.0.1:{port}/agent/hello-agent/chat"
    # The verify turn was the first chat of this container; restart for a cold first turn.
    client.containers.get(container).restart()
    wait_ready(port)
    started = time.monotonic()
    status, _ = post_json(url, {"message": "What is agentdeploy?"}, timeout=120)
    figures.firsts.append(time.monotonic() - started)
    assert status == 200
    for _ in range(chats):
        started = time.monotonic()
        status, _ = post_json(url, {"message": "How does it roll back?"}, timeout=120)
        figures.laters.append(time.monotonic() - started)
        assert status == 200
    run_cli("destroy", str(config), "--yes")
    return True


def report(figures: Figures, base_size: int) -> None:
    print()
    print(
        f"agent image: {figures.agent_size / 1e6:.0f} MB; agentdeploy adds "
        f"{(figures.agent_size - base_size) / 1e3:.1f} kB over the base ({base_size / 1e6:.0f} MB)"
    )
    print(
        f"deploy (build + start + healthy + verify turn), median of {len(figures.deploy_walls)}: "
        f"{statistics.median(figures.deploy_walls):.1f}s"
    )
    if figures.gates:
        print(f"container start -> healthy verdict, median: {statistics.median(figures.gates):.1f}s")
    print(f"first chat after start (ingestion included), median: {statistics.median(figures.firsts):.2f}s")
    print(f"later chats, median of {len(figures.laters)}: {statistics.median(figures.laters) * 1000:.0f}ms")


if __name__ == "__main__":
    sys.exit(main())
