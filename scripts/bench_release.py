"""The tool's own share of a release, measured with the real commands on this machine, in one run:

1. start-up: wall time of `agentdeploy validate CONFIG` and `agentdeploy plan CONFIG` (median of N runs) against
   `python -c pass` for the same interpreter (goal: within 3x), and which heavy packages each imports;
2. rebuild after a one-line prompt change: `agentdeploy deploy` on the local Docker engine, from process start to
   its "built ..." line (start-up, config, git, context, base and skip look-ups, the build), against a hand
   `DOCKER_BUILDKIT=0 docker build` of the same generated context (`agentdeploy context`) after another one-line
   change (goal: within 1.3x); each build starts from a warm cache that lacks its own change;
3. git subprocesses each command starts, counted by a `git` on PATH that logs and runs the real one (goal: all
   git facts from at most two git calls).

The agent is a small one in a fresh git repository, on an offline base (busybox with a stand-in `holodeck serve`,
imported once per content, as the tests do). Everything it starts is removed at the end (its container, its
images); the base stays for the next run.

Usage: python scripts/bench_release.py [--runs N] [--source CHECKOUT]   (needs the Docker engine: `sudo .ci/services`)
       python scripts/bench_release.py --smoke      (one repetition: checks that the benchmark itself works;
                                                     never fails on a timing)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from testkit import busybox_rootfs  # noqa: E402

BASE_REPOSITORY = "agentdeploy-bench-base"
HEAVY = ("docker", "azure", "requests", "urllib3", "msal", "pydantic", "jinja2", "yaml")
STARTUP_GOAL, REBUILD_GOAL, GIT_GOAL = 3.0, 1.3, 2


@dataclass(frozen=True)
class Bench:
    """The agent under test and how to run the tool on it."""

    project: Path
    config: Path
    tool: list[str]  # the installed console script, or `python -m agentdeploy`
    env: dict[str, str]
    name: str

    def command(self, *args: str) -> list[str]:
        return [*self.tool, *args]


def tool_command(source: Path | None) -> list[str]:
    script = Path(sys.executable).with_name("agentdeploy")
    return [str(script)] if script.exists() and source is None else [sys.executable, "-m", "agentdeploy"]


def bench_base() -> str:
    """The offline base, imported once per content (a new import would give the cache a new parent each run)."""
    rootfs = busybox_rootfs()
    reference = f"{BASE_REPOSITORY}:content-{hashlib.sha256(rootfs).hexdigest()[:12]}"
    found = subprocess.run(["docker", "image", "inspect", reference], capture_output=True, check=False)
    if found.returncode != 0:
        subprocess.run(["docker", "import", "-", reference], input=rootfs, capture_output=True, check=True, timeout=120)
    return reference


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def git(directory: Path, *args: str) -> None:
    identity = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid"}
    identity |= {"GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}
    subprocess.run(["git", *args], cwd=directory, env={**os.environ, **identity}, check=True, capture_output=True)


def make_agent(work: Path, base: str, source: Path | None) -> Bench:
    name = f"bench-release-{uuid.uuid4().hex[:8]}"
    project = work / "repo" / "agents" / "bench"
    project.mkdir(parents=True)
    (project / "prompt.md").write_text("You answer questions about agentdeploy.\nchange 0\n")
    (project / "data").mkdir()
    (project / "data" / "faq.md").write_text("Q: what is agentdeploy? A: a deployer.\n")
    config = project / "agent.yaml"
    config.write_text(
        f"name: {name}\n"
        "description: the release benchmark's agent\n"
        "model: {provider: openai, name: gpt-4o-mini}\n"
        "instructions: {file: prompt.md}\n"
        "tools:\n  - {name: faq, type: vectorstore, description: faq, source: data/faq.md}\n"
        "deployment:\n"
        f"  port: {free_port()}\n"
        "  health: {path: /health, timeout_seconds: 30}\n"
        f"  build: {{base_image: '{base}'}}\n"
        f"  target: {{docker: {{container_name: {name}}}}}\n"
    )
    repo = work / "repo"
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", "https://github.com/example/agents.git")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the agent")
    git(repo, "tag", "v1.0.0")
    # No GitHub Actions variables: the git facts come from git, as on a laptop.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GITHUB_", "AGENTDEPLOY_"))}
    env["NO_COLOR"] = "1"
    if source is not None:  # another checkout's code (say, before a change), run by this interpreter
        env["PYTHONPATH"] = str(source.resolve() / "src")
    return Bench(project, config, tool_command(source), env, name)


def timed(command: Sequence[str], env: Mapping[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=dict(env), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def median_of(command: Sequence[str], env: Mapping[str, str], cwd: Path, runs: int) -> float:
    timed(command, env, cwd)  # warm the page cache and the .pyc files
    return statistics.median(timed(command, env, cwd) for _ in range(runs))


def heavy_imports(bench: Bench, *args: str) -> list[str]:
    """Third-party packages the command imports, from -X importtime (with their cumulative milliseconds)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "agentdeploy", *args],
        env=bench.env,
        cwd=bench.project,
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, int] = {}
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", line)
        if match and match.group(2) in HEAVY:
            found[match.group(2)] = max(found.get(match.group(2), 0), int(match.group(1)))
    return [f"{name} {micros / 1000:.0f} ms" for name, micros in sorted(found.items(), key=lambda item: -item[1])]


def startup(bench: Bench, runs: int) -> dict[str, float]:
    baseline = median_of([sys.executable, "-c", "pass"], bench.env, bench.project, runs)
    print(f"python -c pass: median {baseline * 1000:.0f} ms over {runs} runs")
    ratios = {}
    for label, args, needs in (
        ("--help", ("--help",), ()),
        ("validate", ("validate", str(bench.config)), ("pydantic", "yaml", "jinja2")),
        ("plan", ("plan", str(bench.config)), ("pydantic", "yaml", "jinja2", "docker")),
    ):
        median = median_of(bench.command(*args), bench.env, bench.project, runs)
        ratios[label] = median / baseline
        heavy = heavy_imports(bench, *args)
        print(
            f"agentdeploy {label}: median {median * 1000:.0f} ms = {median / baseline:.1f}x python -c pass "
            f"(goal {STARTUP_GOAL:g}x); imports: {', '.join(heavy) if heavy else 'none of ' + '/'.join(HEAVY)}"
        )
        if needs:  # the floor: the same interpreter importing only the packages the command cannot do without
            floor = median_of([sys.executable, "-c", f"import {', '.join(needs)}"], bench.env, bench.project, runs)
            print(
                f"  floor: python -c 'import {', '.join(needs)}' median {floor * 1000:.0f} ms; "
                f"agentdeploy's own share {(median - floor) * 1000:.0f} ms"
            )
    return ratios


def change_prompt(bench: Bench, marker: str) -> None:
    prompt = bench.project / "prompt.md"
    prompt.write_text(prompt.read_text().splitlines()[0] + f"\nchange {marker}\n")


def deploy_until_built(bench: Bench) -> tuple[float, str]:
    """Seconds from the deploy's start to its "built ..." line, and that line; the deploy then runs to its end."""
    start = time.perf_counter()
    process = subprocess.Popen(
        bench.command("deploy", str(bench.config), "--verbose"),
        env=bench.env,
        cwd=bench.project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    built: tuple[float, str] | None = None
    tail: list[str] = []
    for line in process.stderr:
        tail = [*tail[-30:], line.rstrip()]
        if built is None and line.startswith("built "):
            built = (time.perf_counter() - start, line.strip())
    if process.wait() != 0 or built is None:
        raise SystemExit("agentdeploy deploy failed or built nothing:\n  " + "\n  ".join(tail))
    return built


def hand_build(bench: Bench, work: Path, tag: str) -> float:
    """`docker build` of the context agentdeploy generates, by hand (the legacy builder, as agentdeploy uses)."""
    context = work / f"context-{tag}"
    subprocess.run(
        bench.command("context", str(bench.config), "--out", str(context)),
        env=bench.env,
        cwd=bench.project,
        check=True,
        capture_output=True,
    )
    env = {**bench.env, "DOCKER_BUILDKIT": "0"}
    start = time.perf_counter()
    subprocess.run(
        ["docker", "build", "-q", "-t", f"{bench.name}-hand:{tag}", str(context)],
        env=env,
        check=True,
        capture_output=True,
    )
    elapsed = time.perf_counter() - start
    shutil.rmtree(context)
    return elapsed


def rebuild(bench: Bench, work: Path, runs: int) -> float:
    deploy_until_built(bench)  # the first build: every later one starts from its layers
    hand_build(bench, work, "warm")
    ours, hands, lines = [], [], []
    for run in range(1, runs + 1):
        change_prompt(bench, f"{run}a")
        seconds, line = deploy_until_built(bench)
        ours.append(seconds)
        lines.append(line[line.rfind("(") :])
        change_prompt(bench, f"{run}b")
        hands.append(hand_build(bench, work, str(run)))
    tool, hand = statistics.median(ours), statistics.median(hands)
    print(
        f"rebuild after a one-line prompt change: agentdeploy deploy to 'built' median {tool:.2f} s "
        f"{lines[-1]}, hand docker build of the same context {hand:.2f} s: "
        f"{tool / hand:.2f}x (goal {REBUILD_GOAL:g}x) over {runs} runs"
    )
    return tool / hand


def git_shim(work: Path) -> tuple[Path, Path]:
    """A directory holding a `git` that logs its arguments, one call a line, and runs the real git."""
    real = shutil.which("git")
    assert real, "git is not installed"
    shim = work / "shim"
    shim.mkdir()
    log = work / "git-calls.log"
    (shim / "git").write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    (shim / "git").chmod(0o755)
    return shim, log


def git_calls(bench: Bench, work: Path) -> dict[str, int]:
    shim, log = git_shim(work)
    env = {**bench.env, "PATH": f"{shim}{os.pathsep}{bench.env.get('PATH', '')}"}
    counts = {}
    for label, args in (("validate", ("validate",)), ("plan", ("plan",)), ("image", ("image",))):
        log.write_text("")
        subprocess.run(
            bench.command(*args, str(bench.config)), env=env, cwd=bench.project, check=True, capture_output=True
        )
        calls = [line for line in log.read_text().splitlines() if line]
        counts[label] = len(calls)
        shown = "; ".join(re.sub(r"^-c safe\.directory=\* ", "", call) for call in calls)
        print(f"git calls of agentdeploy {label}: {len(calls)} (goal <= {GIT_GOAL}): {shown}")
    return counts


def cleanup(bench: Bench) -> None:
    subprocess.run(
        bench.command("destroy", str(bench.config), "--yes"),
        env=bench.env,
        cwd=bench.project,
        capture_output=True,
        check=False,
    )
    for repository in (f"agentdeploy/{bench.name}", f"{bench.name}-hand"):
        listed = ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", repository]
        tags = subprocess.run(listed, capture_output=True, text=True, check=False).stdout.split()
        if tags:
            subprocess.run(["docker", "rmi", *tags], capture_output=True, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help="one repetition of each measurement")
    parser.add_argument("--source", type=Path, help="measure the code of another checkout (its src/) instead")
    args = parser.parse_args()
    runs = 1 if args.smoke else args.runs
    with tempfile.TemporaryDirectory(prefix="agentdeploy-bench-release-") as temporary:
        work = Path(temporary)
        bench = make_agent(work, bench_base(), args.source)
        try:
            ratios = startup(bench, runs)
            rebuild_ratio = rebuild(bench, work, runs)
            counts = git_calls(bench, work)
        finally:
            cleanup(bench)
    verdicts = [
        ("start-up (validate, plan)", max(ratios["validate"], ratios["plan"]) <= STARTUP_GOAL),
        ("rebuild", rebuild_ratio <= REBUILD_GOAL),
        ("git calls", max(counts.values()) <= GIT_GOAL),
    ]
    print(json.dumps({"startup_ratios": ratios, "rebuild_ratio": round(rebuild_ratio, 2), "git_calls": counts}))
    print("goals: " + ", ".join(f"{what} {'met' if met else 'missed'}" for what, met in verdicts))
    return 0  # a benchmark reports; it never fails on a timing


if __name__ == "__main__":
    sys.exit(main())
