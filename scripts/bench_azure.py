"""Azure deploy numbers against the fake ARM (tests/fakes) over HTTPS, driven by the real SDK.

1. agentdeploy's own overhead: wall time of a deploy (new image -> new revision -> health gate)
   minus the fake's provisioning delay, median of several runs.
2. The same deploy done the way upstream HoloDeck does it: `holodeck-ai[deploy-azure]` from PyPI in
   a separate virtual environment (made here on first use), its AzureContainerAppsDeployer pointed
   at the same fake (only the endpoint and the credential are swapped in); wall time and the ratio.
3. ARM requests per deploy and per no-op deploy (and how many of those are writes).
4. The request budget, counted in the fake's request log (FakeArm.budget): requests of a deploy that changes the
   image (observe + release, gate polls apart), reads of a no-op, and Entra token requests of one process that
   deploys several agents (their ARM clients and the registry's token exchange).

The last line is the headline: the request counts, then the deploy overhead (and upstream's, when measured).

Usage: python scripts/bench_azure.py [--runs N] [--delay SECONDS] [--upstream-venv DIR] [--skip-upstream]
       python scripts/bench_azure.py --smoke   (one deploy, upstream skipped: checks that the benchmark works)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from agentdeploy.targets.azure.body import AppSpec  # noqa: E402
from fakes.arm import FakeArm  # noqa: E402
from testkit import StaticCredential, app_spec, azure_release, make_tls  # noqa: E402

SUB = "0b1f6471-1bf0-4dda-aec3-111122223333"
RG, ENV, TOKEN = "bench-rg", "bench-env", "bench-token"
UPSTREAM = "holodeck-ai[deploy-azure]==0.7.1"

# Runs inside the upstream venv: upstream's deployer, unchanged, with the endpoint and credential
# pointed at the fake (upstream offers no setting for either).
UPSTREAM_HARNESS = r"""
import json, sys, time
import azure.identity
import azure.mgmt.appcontainers as appcontainers
from azure.core.credentials import AccessToken

args = json.loads(sys.argv[1])

class Static:
    def get_token(self, *scopes, **kwargs):
        return AccessToken(args["token"], 4102444800)

azure.identity.DefaultAzureCredential = lambda *a, **k: Static()
original = appcontainers.ContainerAppsAPIClient

def pointed(credential, subscription_id, *a, **k):
    k.setdefault("base_url", args["base_url"])
    k.setdefault("connection_verify", args["ca"])
    return original(credential, subscription_id, *a, **k)

appcontainers.ContainerAppsAPIClient = pointed
from holodeck.models.deployment import AzureContainerAppsConfig
from holodeck.deploy.deployers.azure_containerapps import AzureContainerAppsDeployer

config = AzureContainerAppsConfig(subscription_id=args["sub"], resource_group=args["rg"],
                                  environment_name=args["env"], cpu=0.5, memory="1Gi", ingress_external=True)
deployer = AzureContainerAppsDeployer(config)
start = time.perf_counter()
result = deployer.deploy(service_name=args["name"], image_uri=args["image"], port=8080,
                         env_vars={"LOG_LEVEL": "info"}, health_check_path="/health")
print(json.dumps({"seconds": time.perf_counter() - start, "status": str(getattr(result, "status", ""))}))
"""


def spec(name: str, n: int) -> AppSpec:
    return app_spec(
        name=name, image=f"127.0.0.1:5000/bench/agent@sha256:{n:064x}", secret_env={"OPENAI_API_KEY": "sk-bench"}
    )  # type: ignore[return-value]


def ours(arm: FakeArm, ca: Path, runs: int, delay: float) -> dict[str, float]:
    """The median wall time and overhead of a deploy, and its requests (all, writes; a no-op's)."""
    from azure.mgmt.appcontainers import ContainerAppsAPIClient

    client = ContainerAppsAPIClient(StaticCredential(TOKEN), SUB, base_url=arm.base_url, connection_verify=str(ca))
    target = azure_release(client, resource_group=RG, app_name="bench-agent", probe=arm.probe)
    arm.provisioning_delay = 0.0
    target.deploy(spec("bench-agent", 0), tag="v0", environment=ENV, timeout=60, auto_rollback=True, blue_green=False)
    arm.provisioning_delay = delay
    overheads, requests, writes, walls = [], [], [], []
    for run in range(1, runs + 1):
        before, before_writes = len(arm.requests), len(arm.writes())
        start = time.perf_counter()
        outcome = target.deploy(
            spec("bench-agent", run), tag=f"v{run}", environment=ENV, timeout=120, auto_rollback=True, blue_green=False
        )
        wall = time.perf_counter() - start
        assert outcome.status == "succeeded", outcome.reason
        overheads.append(wall - delay)
        walls.append(wall)
        requests.append(len(arm.requests) - before)
        writes.append(len(arm.writes()) - before_writes)
    before, before_writes = len(arm.requests), len(arm.writes())
    start = time.perf_counter()
    noop = target.deploy(
        spec("bench-agent", runs), tag=f"v{runs}", environment=ENV, timeout=60, auto_rollback=True, blue_green=False
    )
    noop_wall = time.perf_counter() - start
    assert noop.status == "unchanged"
    print(
        f"agentdeploy: deploy overhead (wall - {delay:g} s provisioning) median {statistics.median(overheads):.2f} s "
        f"over {runs} runs (min {min(overheads):.2f}, max {max(overheads):.2f})"
    )
    print(
        f"agentdeploy: ARM requests per deploy median {statistics.median(requests):g} "
        f"(writes {statistics.median(writes):g}); no-op deploy {len(arm.requests) - before} requests, "
        f"{len(arm.writes()) - before_writes} writes, {noop_wall:.2f} s"
    )
    return {
        "wall": statistics.median(walls),
        "overhead": statistics.median(overheads),
        "requests": statistics.median(requests),
        "writes": statistics.median(writes),
    }


def budget(arm: FakeArm, ca: Path, agents: int) -> dict[str, int]:
    """Counts, not times: one deploy that changes the image and one no-op, each as a run makes them (observe for
    the plan, then the release), in Single and Multiple mode; then the tokens of a process with `agents` agents."""
    from azure.mgmt.appcontainers import ContainerAppsAPIClient

    from agentdeploy.targets.azure.auth import arm_client_factory, arm_token_source

    arm.provisioning_delay = 0.0  # one operation poll per write: the counts are exact
    counts: dict[str, int] = {"agents": agents}
    for mode, multiple in (("single", False), ("multiple", True)):
        name = f"budget-{mode}"

        def run(n: int, name: str = name, multiple: bool = multiple) -> tuple[str, dict[str, int]]:
            client = ContainerAppsAPIClient(StaticCredential(TOKEN), SUB, base_url=arm.base_url, polling_interval=0.05)
            target = azure_release(client, resource_group=RG, app_name=name, probe=arm.probe, poll_interval=0.05)
            since = len(arm.requests)
            if target.live("").exists:  # what ContainerAppTarget.observe asks
                target.session.secret_values()
            outcome = target.deploy(
                replace(spec(name, n), multiple=multiple),
                tag=f"v{n}",
                environment=ENV,
                timeout=60,
                auto_rollback=True,
                blue_green=False,
            )
            return outcome.status, arm.budget(since)

        run(1)
        status, changed = run(2)
        counts[mode] = changed["requests"] - changed["gate_polls"]
        counts[f"{mode}_writes"], counts["gate_polls"] = changed["writes"], changed["gate_polls"]
        assert status == "succeeded", status
        status, noop = run(2)
        assert status == "unchanged", status
        counts[f"{mode}_noop"] = noop["requests"]
        print(
            f"budget ({mode} mode): deploy that changes the image {changed['requests'] - changed['gate_polls']} ARM "
            f"requests ({changed['writes']} writes, {changed['reads']} reads, operation polls included) + "
            f"{changed['gate_polls']} gate polls; no-op {noop['requests']} requests ({noop['reads']} reads)"
        )
    environ = {
        "ACTIONS_ID_TOKEN_REQUEST_URL": arm.oidc_request_url,
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": arm.oidc_request_token,
        "AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
        "AZURE_TENANT_ID": "66666666-7777-8888-9999-000000000000",
        "AZURE_AUTHORITY_HOST": arm.base_url,
        "AGENTDEPLOY_ARM_ENDPOINT": arm.base_url,
    }
    since = len(arm.requests)
    make = arm_client_factory(environ)
    for n in range(agents):
        azure_release(make(SUB), resource_group=RG, app_name=f"token-agent-{n}", probe=arm.probe).session.get_app()
    arm_token_source(environ)()  # the registry's token exchange
    counts["tokens"] = arm.budget(since)["tokens"]
    print(
        f"budget: {counts['tokens']} Entra token request(s) for one process deploying {agents} agents "
        "(their ARM clients and the ACR token exchange)"
    )
    return counts


def headline(counts: dict[str, int], deploy: dict[str, float] | None, delay: float) -> str:
    """The summary line: the request counts first (they do not depend on the machine), then the time."""
    line = (
        f"headline: a deploy that changes the image makes {counts['single']} ARM requests "
        f"({counts['single_writes']} writes) + {counts['gate_polls']} gate polls (multiple mode {counts['multiple']}), "
        f"a no-op {counts['single_noop']} reads, {counts['tokens']} Entra token request(s) "
        f"for {counts['agents']} agents"
    )
    if deploy is not None:
        line += (
            f"; a deploy takes {deploy['wall']:.2f} s with the fake's {delay:g} s provisioning (which it waits about "
            f"twice), {deploy['requests']:g} ARM requests ({deploy['writes']:g} writes) "
            "with operation polls at that delay"
        )
    return line


def ensure_upstream_venv(venv: Path) -> Path:
    """The upstream package in a virtual environment of its own (made before any test CA is trusted)."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with {UPSTREAM} (one time, several minutes)")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", UPSTREAM], check=True)
    return python


def upstream(arm: FakeArm, ca: Path, python: Path, runs: int, delay: float, ours_wall: float) -> str:
    arm.allow_token(TOKEN)
    arm.provisioning_delay = delay
    times, requests = [], []
    for run in range(1, runs + 1):
        args = {
            "token": TOKEN,
            "base_url": arm.base_url,
            "ca": str(ca),
            "sub": SUB,
            "rg": RG,
            "env": ENV,
            "name": "upstream-agent",
            "image": f"127.0.0.1:5000/bench/agent@sha256:{run + 100:064x}",
        }
        before = len(arm.requests)
        start = time.perf_counter()
        result = subprocess.run(
            [str(python), "-c", UPSTREAM_HARNESS, json.dumps(args)],
            capture_output=True,
            text=True,
            env={**os.environ, "REQUESTS_CA_BUNDLE": str(ca)},
            check=False,
        )
        wall = time.perf_counter() - start
        if result.returncode != 0:
            print("upstream deploy failed:\n" + result.stderr[-2000:])
            return "upstream: failed"
        inner = json.loads(result.stdout.strip().splitlines()[-1])
        times.append(inner["seconds"])
        requests.append(len(arm.requests) - before)
        print(
            f"  upstream run {run}: deploy() {inner['seconds']:.2f} s "
            f"(process {wall:.2f} s), status {inner['status']!r}"
        )
    median = statistics.median(times)
    print(
        f"upstream holodeck-ai 0.7.1: deploy() median {median:.2f} s with {delay:g} s provisioning "
        f"(overhead {median - delay:.2f} s), ARM requests per deploy median {statistics.median(requests):g}"
    )
    print(
        f"ratio upstream / agentdeploy wall time: {median / ours_wall:.1f}x "
        f"(agentdeploy {ours_wall:.2f} s includes the health gate; upstream waits for provisioning only)"
    )
    return (
        f"upstream holodeck-ai 0.7.1: {statistics.median(requests):g} ARM requests per deploy, "
        f"{median / ours_wall:.1f}x agentdeploy's wall time"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--delay", type=float, default=5.0)
    parser.add_argument(
        "--upstream-venv", type=Path, default=Path(tempfile.gettempdir()) / "agentdeploy-bench-holodeck"
    )
    parser.add_argument("--skip-upstream", action="store_true")
    parser.add_argument("--agents", type=int, default=20, help="agents in one process, for the token count")
    parser.add_argument("--budget-only", action="store_true", help="only the request and token counts")
    parser.add_argument(
        "--smoke", action="store_true", help="one deploy at 0.2 s provisioning, 2 agents, upstream skipped"
    )
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.delay, args.agents, args.skip_upstream = 1, 0.2, 2, True
    python = None if args.skip_upstream or args.budget_only else ensure_upstream_venv(args.upstream_venv)
    with tempfile.TemporaryDirectory(prefix="agentdeploy-bench-tls-") as temporary:
        tls = make_tls(Path(temporary))
        os.environ["REQUESTS_CA_BUNDLE"] = str(tls.ca)
        with FakeArm(tls.cert, tls.key) as arm:
            arm.add_resource_group(SUB, RG)
            arm.add_managed_environment(SUB, RG, ENV)
            arm.allow_token(TOKEN)
            counts = budget(arm, tls.ca, args.agents)
            if args.budget_only:
                print(headline(counts, None, args.delay))
                return
            deploy = ours(arm, tls.ca, args.runs, args.delay)
            theirs = None
            if python is not None:
                theirs = upstream(arm, tls.ca, python, min(args.runs, 3), args.delay, deploy["wall"])
            print(headline(counts, deploy, args.delay) + (f"; {theirs}" if theirs else ""))


if __name__ == "__main__":
    main()
