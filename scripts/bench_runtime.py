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

    deploy_walls: list[float] = []
    gates: list[float] = []
    firsts: list[float] = []
    laters: list[float] = []
    agent_size = 0
    with FakeLlmServer() as llm, tempfile.TemporaryDirectory(prefix="bench-runtime-") as temporary:
        for run in range(args.runs):
            config, port, container = stage_agent(Path(temporary), base, llm.base_url)
            started = time.monotonic()
            result = run_cli("deploy", str(config), "--json")
            wall = time.monotonic() - started
            if result.returncode != 0:
                print(result.stderr, file=sys.stderr)
                return 1
            deploy_walls.append(wall)
            gate = re.search(r"/health: .* after ([0-9.]+)s", result.stderr)
            if gate:
                gates.append(float(gate.group(1)))
            image = client.images.get(yaml.safe_load(result.stdout)["image"])
            agent_size = image.attrs["Size"]
            url = f"http://127.0.0.1:{port}/agent/hello-agent/chat"
            # The verify turn was the first chat of this container; restart for a cold first turn.
            client.containers.get(container).restart()
            wait_ready(port)
            started = time.monotonic()
            status, _ = post_json(url, {"message": "What is agentdeploy?"}, timeout=120)
            firsts.append(time.monotonic() - started)
            assert status == 200
            for _ in range(args.chats):
                started = time.monotonic()
                status, _ = post_json(url, {"message": "How does it roll back?"}, timeout=120)
                laters.append(time.monotonic() - started)
                assert status == 200
            run_cli("destroy", str(config), "--yes")
            print(
                f"run {run + 1}: deploy {wall:.1f}s, gate {gates[-1] if gates else float('nan'):.1f}s, "
                f"first chat {firsts[-1]:.2f}s",
                flush=True,
            )

    print()
    print(
        f"agent image: {agent_size / 1e6:.0f} MB; agentdeploy adds {(agent_size - base_size) / 1e3:.1f} kB "
        f"over the base ({base_size / 1e6:.0f} MB)"
    )
    print(
        f"deploy (build + start + healthy + verify turn), median of {len(deploy_walls)}: "
        f"{statistics.median(deploy_walls):.1f}s"
    )
    if gates:
        print(f"container start -> healthy verdict, median: {statistics.median(gates):.1f}s")
    print(f"first chat after start (ingestion included), median: {statistics.median(firsts):.2f}s")
    print(f"later chats, median of {len(laters)}: {statistics.median(laters) * 1000:.0f}ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
