"""Ten agents in one repository, one of them changed: what a push costs, three ways, against the fake Azure run as
a process (tests/fakes/serve.py, as the self-test workflow runs it) and the registry on 127.0.0.1:5000.

1. one run:          `agentdeploy plan 'agents/*/agent.yaml'` then `agentdeploy deploy 'agents/*/agent.yaml'`
2. ten runs:         for each agent, `agentdeploy plan CONFIG` then `agentdeploy deploy CONFIG` (ten jobs, in turn)
3. changed + matrix: `agentdeploy changed --since HEAD~1 'agents/*/agent.yaml'`, then plan and deploy the one
                     agent it names (what the matrix job does)

For each: wall time, CLI processes, ARM requests (and how many were writes, and how many writes the fake refused
because another was in flight), token requests. Before the three, all ten are deployed once in one run (reported
too: ten builds, ten creates). Each scenario starts from one new commit that changes one agent's prompt.

Images are built on the busybox test base (imported here as agentdeploy-bench-base:1, the way tests/conftest.py
`base_image` does it) and pushed to 127.0.0.1:5000 (`.ci/services` starts it); Docker must answer.

Usage: python scripts/bench_many.py [--agents 10] [--delay 1.0] [--parallel 4] [--keep DIR]
       python scripts/bench_many.py --smoke   (2 agents, 0.2 s provisioning: checks that the benchmark works)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from testkit import busybox_rootfs  # noqa: E402

BASE = "agentdeploy-bench-base:1"
REGISTRY = "127.0.0.1:5000"


@dataclass
class Figures:
    name: str
    seconds: float
    processes: int
    arm: int
    writes: int
    refused: int
    tokens: int


class Fake:
    """tests/fakes/serve.py as a process, and its request log through the /_fake/ routes."""

    def __init__(self, directory: Path, delay: float) -> None:
        self.directory = directory
        serve = [sys.executable, str(ROOT / "tests" / "fakes" / "serve.py"), "--dir", str(directory)]
        self.process = subprocess.Popen([*serve, "--provisioning-delay", str(delay)])
        for _ in range(200):
            if (directory / "env").exists():
                break
            if self.process.poll() is not None:
                raise SystemExit("the fake Azure did not start")
            time.sleep(0.05)
        self.env = dict(line.split("=", 1) for line in (directory / "env").read_text().splitlines() if "=" in line)
        self.context = ssl.create_default_context(cafile=self.env["REQUESTS_CA_BUNDLE"])

    def log(self, route: str, since: int = 0) -> list[dict[str, object]]:
        url = f"{self.env['AGENTDEPLOY_ARM_ENDPOINT']}/_fake/{route}?since={since}"
        with urllib.request.urlopen(url, context=self.context, timeout=30) as answer:
            return list(json.load(answer)["value"])

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def write_agents(repo: Path, count: int, run_id: str) -> list[str]:
    names = [f"a{index:02d}" for index in range(count)]
    for name in names:
        directory = repo / "agents" / name
        directory.mkdir(parents=True)
        (directory / "prompt.md").write_text(f"You are {name}.\n")
        (directory / "agent.yaml").write_text(
            f"name: bench-{name}\n"
            "model: {provider: openai, name: gpt-4o}\n"
            "instructions: {file: prompt.md}\n"
            "deployment:\n"
            f"  registry: {{url: '{REGISTRY}', repository: bench/{run_id}-{name}, tag_strategy: git_sha}}\n"
            "  health: {timeout_seconds: 120}\n"
            "  environment: {LOG_LEVEL: info}\n"
            "  secrets: {OPENAI_API_KEY: '${OPENAI_API_KEY:-not-a-real-key}'}\n"
            f"  build: {{base_image: '{BASE}'}}\n"
            "  target:\n"
            "    provider: azure\n"
            "    azure:\n"
            "      subscription_id: ${AZURE_SUBSCRIPTION_ID}\n"
            "      resource_group: agents-rg\n"
            "      environment_name: agents-env\n"
            "      cpu: 0.5\n"
            "      memory: 1Gi\n"
        )
    return [f"agents/{name}/agent.yaml" for name in names]


def change(repo: Path, round_number: int) -> None:
    """One new commit that changes one agent's prompt (always the same agent: a03, or the last of fewer)."""
    agents = sorted(path.name for path in (repo / "agents").iterdir())
    prompt = repo / "agents" / ("a03" if "a03" in agents else agents[-1]) / "prompt.md"
    prompt.write_text(prompt.read_text() + f"Round {round_number}: be brief.\n")
    git(repo, "commit", "-qam", f"{prompt.parent.name}, round {round_number}")


def cli(repo: Path, env: dict[str, str], *argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "agentdeploy", *argv], cwd=repo, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"agentdeploy {' '.join(argv)} exited {done.returncode}")
    return done.stdout


def measure(name: str, fake: Fake, steps: list[list[str]], repo: Path, env: dict[str, str]) -> tuple[Figures, str]:
    since = len(fake.log("requests"))
    start = time.perf_counter()
    last = ""
    for step in steps:
        last = cli(repo, env, *step)
    seconds = time.perf_counter() - start
    requests = fake.log("requests", since)
    arm = [r for r in requests if str(r["path"]).startswith("/subscriptions/")]
    writes = fake.log("writes", since)
    refused = [r for r in writes if r["status"] == 409]
    tokens = [r for r in requests if not str(r["path"]).startswith("/subscriptions/")]
    return Figures(name, seconds, len(steps), len(arm), len(writes), len(refused), len(tokens)), last


def make_repository(repo: Path, agents: int, run_id: str) -> tuple[Path, list[str]]:
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "bench@example.com")
    git(repo, "config", "user.name", "bench")
    configs = write_agents(repo, agents, run_id)
    (repo / ".gitignore").write_text(".agentdeploy/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"{agents} agents")
    return repo, configs


def agent_env(fake: Fake) -> dict[str, str]:
    """The environment of a run against the fake: none of this shell's agentdeploy, GitHub or Azure settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTDEPLOY_", "GITHUB_", "AZURE_"))}
    env.update(fake.env)
    env.update(
        AZURE_CLIENT_ID=fake.env["FAKE_AZURE_CLIENT_ID"],
        AZURE_TENANT_ID=fake.env["FAKE_AZURE_TENANT_ID"],
        AZURE_SUBSCRIPTION_ID=fake.env["FAKE_AZURE_SUBSCRIPTION_ID"],
    )
    return env


def print_table(args: argparse.Namespace, statuses: list[str], rows: list[Figures]) -> None:
    print(f"{args.agents} agents, one changed per round; fake provisioning delay {args.delay:g}s")
    print(f"deploy --parallel {args.parallel}")
    print(f"one run's outcomes: {', '.join(statuses)}")
    header = f"{'scenario':<40} {'wall s':>7} {'procs':>5} {'ARM req':>8} {'writes':>7} {'409s':>5} {'tokens':>6}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.name:<40} {row.seconds:>7.1f} {row.processes:>5} {row.arm:>8} {row.writes:>7} "
            f"{row.refused:>5} {row.tokens:>6}"
        )


def remove_images(prefix: str) -> None:
    """Every tag this run built and pushed (its repositories are its own: the run id is in their names)."""
    import docker
    import docker.errors

    client = docker.from_env()
    tags = [tag for image in client.api.images() for tag in image.get("RepoTags") or [] if tag.startswith(prefix)]
    for tag in tags:
        try:
            client.images.remove(tag)
        except docker.errors.APIError as error:
            print(f"cleanup: {tag}: {error}", file=sys.stderr)


def import_base() -> None:
    """The stand-in base, once the engine and the registry answer."""
    import docker

    client = docker.from_env()
    client.ping()
    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=5).close()
    except OSError as exc:
        raise SystemExit(f"no registry at {REGISTRY} ({exc}): start it with `sudo .ci/services`") from None
    repository, tag = BASE.split(":")
    client.api.import_image_from_data(busybox_rootfs(), repository=repository, tag=tag)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--delay", type=float, default=1.0, help="the fake's provisioning delay (seconds)")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temporary directory)")
    parser.add_argument("--smoke", action="store_true", help="2 agents, 2 in parallel, 0.2 s provisioning")
    args = parser.parse_args()
    if args.smoke:
        args.agents, args.delay, args.parallel = 2, 0.2, 2

    import_base()

    run_id = uuid.uuid4().hex[:8]  # in the names of its image repositories, so its cleanup removes only its own
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-many-"))
    work.mkdir(parents=True, exist_ok=True)
    fake = Fake(work / "fake", args.delay)
    try:
        repo, configs = make_repository(work / "repo", args.agents, run_id)
        env = agent_env(fake)
        glob = "agents/*/agent.yaml"
        parallel = ["--parallel", str(args.parallel)]
        rows: list[Figures] = []
        first, _ = measure(
            f"first deploy of all {args.agents}, one run", fake, [["deploy", glob, *parallel]], repo, env
        )
        rows.append(first)

        change(repo, 1)
        one, out = measure(
            "one run: plan + deploy of the glob",
            fake,
            [["plan", glob], ["deploy", glob, *parallel, "--json"]],
            repo,
            env,
        )
        statuses = sorted(entry["status"] for entry in json.loads(out))
        rows.append(one)

        change(repo, 2)
        steps = [[verb, config] for config in configs for verb in ("plan", "deploy")]
        rows.append(measure(f"{args.agents} runs: plan + deploy each", fake, steps, repo, env)[0])

        change(repo, 3)
        matrix = json.loads(cli(repo, env, "changed", "--since", "HEAD~1", glob))
        named = [entry["config"] for entry in matrix["include"]]
        steps = [["changed", "--since", "HEAD~1", glob]] + [[verb, c] for c in named for verb in ("plan", "deploy")]
        rows.append(measure(f"changed + matrix ({len(named)} agent)", fake, steps, repo, env)[0])
    finally:
        fake.stop()
        remove_images(f"{REGISTRY}/bench/{run_id}-")
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    print_table(args, statuses, rows)


if __name__ == "__main__":
    main()
