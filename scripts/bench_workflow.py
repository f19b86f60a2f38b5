"""The release workflow's own overhead: what examples/workflows/release.yml costs besides docker and Azure.

The harness of tests/action (tests/action/harness.py) runs release.yml as GitHub's runner runs it: a fresh runner
per job, actions/checkout, every step of action.yml (the real install step: uv fetched from PyPI, or pip),
actions/cache between jobs, actions/upload-artifact to a local stand-in of GitHub's artifacts API. Azure is the fake
(tests/fakes/serve.py as a process, with a provisioning delay per long-running operation); the image goes to the
registry on 127.0.0.1:5000 under a repository of its own, built on the busybox test base (imported under a tag of
its own, the way tests/conftest.py `base_image` does it). The repository is made by tests/action/test_workflows.py's
`Repository` (examples/azure-agent and the example workflows, the config pointed at 127.0.0.1:5000 and the local
base). At the end the fake is stopped, and the images, the base and the temporary directory are removed.

release.yml has two jobs: `agent` (reads the config: the matrix) and `deploy` (the action twice: `push`, then the
deploy of the attested digest). A row is one workflow run, all its jobs together (their wall times in sequence).

Releases, each a new commit and tag (`v1.N.0`, a change to instructions.md, so each builds and deploys):
  cold: the first, with an empty actions cache, no uv on PATH and empty uv and pip caches (fresh directories per
        run: a fresh GitHub-hosted runner). Its first use of the action (the `agent` job) installs for real; the
        two uses in the `deploy` job restore what that job saved, as on GitHub. The "installs" line says which.
  warm: --runs more, the agentdeploy environment restored by actions/cache (each job still a fresh runner).

Each job is timed from outside (time.perf_counter around the harness's own methods, in a subclass of its Job: the
harness is not changed): checkout, the composite's steps (look for Python, key, cache restore, install, run), the
rest of the composite (upload-artifact, which is local here), the post steps (actions/cache saving the environment
on a miss), and the job's wall time. Inside the run step (`python -m agentdeploy github`), each line of its output
is stamped as it arrives (a pipe through a small filter): start-up is process start to the first `::group::` (plan),
the tail is the last `::endgroup::` to the process's exit (outputs, job summary, exit). plan, image (pull, build,
push) and release (gate) come from the Action's own `timings` output.

    overhead (the workflow's own) = run wall - image - release
    tool's share                  = look for Python + key + install + start-up + plan + tail

The tool's share is the sum of those measured parts (each a duration, never negative), not the run step's wall
minus the stages (two clocks whose difference came out negative before).

image is docker's work (build, push) and release is Azure's: every long-running ARM operation (the fake makes each
last --delay seconds: "prov" in the table is their count x --delay) and the health gate happen inside the
release stage, so they leave with it and are not subtracted twice. The rest of the release stage (agentdeploy's own
ARM reads, the patch, the lease tag) leaves with it too, so the overhead is low by that much (release - gate -
prov, shown as "rel-own"). The runner's share (checkout, actions/cache restore and save, upload-artifact,
the harness's own bookkeeping) is overhead - tool's share; here it is local copies, on GitHub a download and upload.

Usage: python scripts/bench_workflow.py [--runs 2] [--delay 1.0] [--json] [--keep DIR]
       python scripts/bench_workflow.py --smoke   (the cold release alone at 0.2 s provisioning: checks that the
                                                   benchmark works; never fails on a timing)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from action.harness import Artifacts, FakeAzureProcess, World, copy_action, run_workflow  # noqa: E402
from action.test_workflows import OPENAI_KEY, WORKFLOWS, Repository  # noqa: E402
from testkit import busybox_rootfs  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from bench_workflow_jobs import TimedJob, installers, timed_jobs, tool_share  # noqa: E402

REGISTRY = "127.0.0.1:5000"
GOAL = 60.0
INSTRUCTIONS = "examples/azure-agent/instructions.md"


@dataclass
class Row:
    run: str
    tag: str
    installers: str  # each use of the action in the run, in order: "uv 4s, cached, cached"
    checkout: float
    python: float  # the composite's "Look for Python" step
    key: float
    restore: float  # actions/cache: a restore (the environment copied in) or a miss
    install: float
    run_step: float
    startup: float
    plan: float
    image: float
    pull: float
    build: float
    push: float
    release: float
    gate: float
    tail: float
    between: float  # the run step outside start-up, the stages' groups and the tail
    rest_of_action: float  # upload-artifact (local here) and the composite's own bookkeeping
    post: float  # actions/cache saving the environment (a miss only)
    job: float
    lros: int
    provisioning: float
    overhead: float
    python_and_key: float
    tool: float
    runner: float
    release_own: float
    status: str


def wait_registry() -> None:
    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=5).close()
    except OSError as exc:
        raise SystemExit(f"no registry at {REGISTRY} ({exc}): start it with `sudo .ci/services`") from None


def fake_get(fake: FakeAzureProcess, route: str) -> list[dict[str, Any]]:
    import requests

    answer = requests.get(
        f"{fake.env['AGENTDEPLOY_ARM_ENDPOINT']}/_fake/{route}", verify=fake.env["REQUESTS_CA_BUNDLE"], timeout=30
    )
    answer.raise_for_status()
    return list(answer.json()["value"])


def release(world: World, fake: FakeAzureProcess, tag: str, label: str, delay: float, caches: Path) -> Row:
    # A fresh runner: empty uv and pip caches (only the cold run installs, but every job gets its own).
    runner_caches = caches / tag
    world.extra_env = {"UV_CACHE_DIR": str(runner_caches / "uv"), "PIP_CACHE_DIR": str(runner_caches / "pip")}
    since = len(fake_get(fake, "requests"))
    TimedJob.made.clear()
    start = time.perf_counter()
    with timed_jobs():
        run_workflow(world, WORKFLOWS / "release.yml", event_name="push", ref=f"refs/tags/{tag}")
    wall = time.perf_counter() - start
    return row_of(ran_jobs(tag), fake, since, label, tag, wall, delay)


def ran_jobs(tag: str) -> list[TimedJob]:
    # Every job of the run that ran steps: `agent` (reads the config), then `deploy` (push, deploy). The harness
    # also makes a job that never runs, to evaluate the matrix expression.
    jobs = [job for job in TimedJob.made if job.steps]
    for job in jobs:
        if job.failed:
            sys.stderr.write(job.log)
            raise SystemExit(f"release {tag} failed in job {job.name} (its log is above)")
    return jobs


def row_of(
    jobs: list[TimedJob], fake: FakeAzureProcess, since: int, label: str, tag: str, wall: float, delay: float
) -> Row:
    [deploy_job] = [job for job in jobs if job.name == "deploy"]
    outputs = deploy_job.outputs("deploy")
    timings = {key: float(value) for key, value in json.loads(outputs["timings"]).items()}
    pushed = {key: float(value) for key, value in json.loads(deploy_job.outputs("image")["timings"]).items()}
    marks = [run for job in jobs for run in job.run_marks()]
    writes = [w for w in fake_get(fake, "writes") if w["index"] >= since]
    lros = sum(1 for w in writes if {"Location", "Azure-AsyncOperation"} & set(w["response_headers"]))
    seconds: dict[str, float] = defaultdict(float)
    for job in jobs:
        for name, value in job.seconds.items():
            seconds[name] += value
    image, release_stage = pushed.get("image", 0.0), timings.get("release", 0.0)
    plan = timings.get("plan", 0.0) + pushed.get("plan", 0.0)
    startup, tail = sum(m.startup for m in marks), sum(m.tail for m in marks)
    python_and_key = seconds["python"] + seconds["key"]
    tool = tool_share(python_and_key, seconds["install"], startup, plan, tail)
    overhead = wall - image - release_stage
    composite = sum(seconds[name] for name in ("python", "key", "restore", "install", "run"))
    return Row(
        run=label,
        tag=tag,
        installers=installers([log for job in jobs for log in job.install_logs]),
        checkout=seconds["checkout"],
        python=seconds["python"],
        key=seconds["key"],
        restore=seconds["restore"],
        install=seconds["install"],
        run_step=seconds["run"],
        startup=startup,
        plan=plan,
        image=image,
        pull=pushed.get("pull", 0.0),
        build=pushed.get("build", 0.0),
        push=pushed.get("push", 0.0),
        release=release_stage,
        gate=timings.get("gate", 0.0),
        tail=tail,
        between=seconds["run"] - sum(m.startup + m.grouped + m.tail for m in marks),
        rest_of_action=seconds["action"] - composite,
        post=seconds["post"],
        job=wall,
        lros=lros,
        provisioning=lros * delay,
        overhead=overhead,
        python_and_key=python_and_key,
        tool=tool,
        runner=overhead - tool,
        release_own=release_stage - timings.get("gate", 0.0) - lros * delay,
        status=outputs["status"],
    )


def cleanup(client: Any, containers_before: set[str], image_repository: str, base: str) -> None:
    """What this run made on the engine: containers of its images (none are expected: builds remove theirs), every
    tag of its image repository, and its base. Other images and containers are left alone."""
    import docker.errors

    ours = f"{REGISTRY}/{image_repository}:"
    for container in client.containers.list(all=True):  # other runs' containers come and go meanwhile
        try:
            if container.id not in containers_before and str(container.attrs["Config"]["Image"]).startswith(ours):
                container.remove(force=True)
        except docker.errors.APIError as error:
            print(f"cleanup: {error}", file=sys.stderr)
    tags = [tag for image in client.images.list(name=ours[:-1]) for tag in image.tags if tag.startswith(ours)]
    for tag in [*tags, base]:  # the base last: the images built on it first
        try:
            client.images.remove(tag)
        except docker.errors.APIError as error:
            print(f"cleanup: {error}", file=sys.stderr)


COLUMNS = (
    ("run", "run", 9),
    ("checkout", "checkout", 8),
    ("restore", "restore", 7),
    ("python_and_key", "py+key", 6),
    ("install", "install", 7),
    ("startup", "start-up", 8),
    ("plan", "plan", 6),
    ("image", "image", 6),
    ("release", "release", 7),
    ("gate", "gate", 6),
    ("provisioning", "prov", 5),
    ("release_own", "rel-own", 7),
    ("tail", "tail", 6),
    ("post", "post", 6),
    ("job", "wall", 6),
    ("overhead", "overhead", 8),
    ("tool", "tool", 6),
)


def table(rows: list[Row]) -> str:
    header = " ".join(f"{title:>{width}}" if i else f"{title:<{width}}" for i, (_, title, width) in enumerate(COLUMNS))
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = []
        for i, (name, _, width) in enumerate(COLUMNS):
            value = getattr(row, name)
            text = f"{value:.2f}" if isinstance(value, float) else str(value)
            cells.append(f"{text:>{width}}" if i else f"{text:<{width}}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2, help="warm releases after the cold one (default 2)")
    parser.add_argument("--delay", type=float, default=1.0, help="the fake's provisioning delay, seconds (default 1)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temporary directory)")
    parser.add_argument("--smoke", action="store_true", help="the cold release alone, 0.2 s provisioning")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.delay = 0, 0.2

    import docker

    client = docker.from_env()
    client.ping()
    wait_registry()
    unique = uuid.uuid4().hex[:10]
    base = f"agentdeploy-bench-base:wf-{unique}"  # a tag of its own: a base another run uses is never touched
    client.api.import_image_from_data(busybox_rootfs(), repository=base.split(":")[0], tag=base.split(":")[1])
    image_repository = f"bench/wf-{unique}"  # its own, so no run sees another's tags
    containers_before = {str(c.id) for c in client.containers.list(all=True)}

    work = args.keep or Path(tempfile.mkdtemp(prefix="agentdeploy-bench-workflow-"))
    work.mkdir(parents=True, exist_ok=True)
    TimedJob.scratch = work / "marks"
    TimedJob.scratch.mkdir(exist_ok=True)
    try:
        rows = releases(work, base, image_repository, args.runs, args.delay)
    finally:
        cleanup(client, containers_before, image_repository, base)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    report(rows, args.delay, args.json)


def releases(work: Path, base: str, image_repository: str, runs: int, delay: float) -> list[Row]:
    """The cold release, then `runs` warm ones, through the harness against the fake Azure as a process."""
    artifacts = Artifacts()
    fake: FakeAzureProcess | None = None
    rows: list[Row] = []
    try:
        fake = FakeAzureProcess(work / "fake-azure", provisioning_delay=delay)
        repository = Repository(work / "repository", base, image_repository)
        world = World(
            tmp=work / "runs",
            action=copy_action(work / "actions" / "your-org" / "agentdeploy" / "v1"),
            cache=work / "actions-cache",  # empty: the first job misses and installs
            artifacts=artifacts,
        )
        world.cache.mkdir()
        world.connect(fake, repository.origin, {"OPENAI_API_KEY": OPENAI_KEY})
        # GitHub's hosted runners have no uv: the install step fetches it (as the harness's test_install does).
        world.path = os.pathsep.join(
            p for p in os.environ["PATH"].split(os.pathsep) if p and not (Path(p) / "uv").exists()
        )
        for number in range(runs + 1):
            tag = f"v1.{number}.0"
            change = None
            if number:
                change = {INSTRUCTIONS: f"keep answers short=>keep answers short (release {number})"}
            repository.release(tag, change)
            label = "cold" if number == 0 else f"warm {number}"
            print(f"release {tag} ({label}) ...", file=sys.stderr, flush=True)
            rows.append(release(world, fake, tag, label, delay, work / "runner-caches"))
        stopped = fake.stop()
        if stopped["server_errors"]:
            raise SystemExit(f"the fake Azure failed: {stopped['server_errors']}")
    finally:
        if fake is not None:
            fake.kill()
        artifacts.close()
    return rows


def report(rows: list[Row], delay: float, as_json: bool) -> None:
    warm = [row.overhead for row in rows if row.run != "cold"]
    verdict = statistics.median(warm) if warm else rows[0].overhead
    if as_json:
        print(
            json.dumps(
                {
                    "delay": delay,
                    "runs": [asdict(row) for row in rows],
                    "warm_overhead_median": round(verdict, 2),
                    "goal": GOAL,
                    "overhead": "wall - image - release",
                    "tool": "python + key + install + startup + plan + tail",
                },
                indent=2,
            )
        )
        return
    print(f"release.yml through the harness; fake Azure provisioning {delay:g} s per long-running operation")
    print(f"installs, each use of the action in order: {'; '.join(f'{row.run}: {row.installers}' for row in rows)}")
    print(table(rows))
    print(
        "seconds, each row one run of release.yml (its jobs `agent` and `deploy` together; wall = their wall time).\n"
        "overhead = wall - image - release. tool = py+key + install + start-up + plan + tail, each measured (so never\n"
        "negative); the rest of the overhead is the runner's (checkout, restore, post: actions/cache saving the\n"
        "environment). start-up = each run step's start to its first stage (the whole `agents` step, which has\n"
        "none); tail = its last stage's end to its exit (outputs, job summary); plan = the plans of `push` and\n"
        "the deploy. prov = long-running ARM operations x the delay and rel-own = release - gate - prov: both inside\n"
        "release, so not in the overhead."
    )
    runner = "a warm runner" if warm else "a cold runner (no warm release was run)"
    print(f"our overhead on {runner}: {verdict:.1f} s (goal < {GOAL:.0f} s)")


if __name__ == "__main__":
    main()
