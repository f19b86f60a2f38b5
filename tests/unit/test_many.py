"""Several agents in one run (release/many.py) and `changed --since`: the glob expansion, the worst-exit-code
rule, which agents a range of commits touched (in a real git repository), and `deploy` of several agents
through the real command line with the toy process target (tests/fakes/offline_cli.py: no Docker engine)."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentdeploy import targets
from agentdeploy.cli import main
from agentdeploy.console import Console
from agentdeploy.errors import ExitCode, UsageError
from agentdeploy.release.commands import Command, Invocation
from agentdeploy.release.many import expand, run_many, several
from agentdeploy.release.outcomes import WORST_FIRST, worst
from agentdeploy.release.pipeline import DeployOptions, Services
from agentdeploy.targets.base import ReleaseRequest, Status, TargetContext, TargetOutcome
from fakes.process_target import ProcessTarget
from testkit import ROOT, git

OFFLINE_CLI = ROOT / "tests" / "fakes" / "offline_cli.py"

# -- which configs ---------------------------------------------------------------------------------------------


def test_globs_are_expanded_here_in_order_each_config_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("b", "a", "c"):
        (tmp_path / "agents" / name).mkdir(parents=True)
        (tmp_path / "agents" / name / "agent.yaml").write_text("name: x\n")
    (tmp_path / "agents" / "deep" / "er").mkdir(parents=True)
    (tmp_path / "agents" / "deep" / "er" / "agent.yaml").write_text("name: y\n")
    monkeypatch.chdir(tmp_path)
    sep = os.sep
    assert expand(["agents/*/agent.yaml"]) == [f"agents{sep}{n}{sep}agent.yaml" for n in ("a", "b", "c")]
    # A path given literally and matched again by a glob counts once, where it first appeared.
    assert expand(["agents/c/agent.yaml", "agents/[ab]/agent.yaml"]) == [
        "agents/c/agent.yaml",
        f"agents{sep}a{sep}agent.yaml",
        f"agents{sep}b{sep}agent.yaml",
    ]
    assert f"agents{sep}deep{sep}er{sep}agent.yaml" in expand(["agents/**/agent.yaml"])
    assert expand(["agents/none/agent.yaml"]) == ["agents/none/agent.yaml"]  # the loader says it is missing
    with pytest.raises(UsageError) as refused:
        expand(["agents/*/missing.yaml"])
    assert (
        refused.value.exit_code == ExitCode.USAGE and "agents/*/missing.yaml matches no file" in refused.value.message
    )
    # The shape of the answer follows what was asked: one plain path is a single run, anything else a list.
    assert not several(["agents/a/agent.yaml"])
    assert several(["agents/*/agent.yaml"]) and several(["a.yaml", "b.yaml"])


def test_the_worst_exit_code_follows_the_documented_order() -> None:
    assert sorted(WORST_FIRST) == sorted(ExitCode)  # every code has its place, once
    # internal > interrupted > state > deploy > rolled back > target unavailable > registry > build > git
    # > context > config > usage > failure > nothing to roll back > ok
    assert [int(code) for code in WORST_FIRST] == [70, 130, 10, 8, 9, 11, 7, 6, 5, 4, 3, 2, 1, 12, 0]
    assert worst([]) == 0 and worst([0, 0]) == 0
    assert worst([0, 9, 3]) == 9  # a rollback outranks a refused config
    assert worst([9, 8]) == 8  # a failed release (maybe nothing serves) outranks a rollback (the old one serves)
    assert worst([8, 10]) == 10  # a record in question outranks both
    assert worst([10, 130]) == 130 and worst([130, 70]) == 70
    assert worst([12, 1]) == 1 and worst([0, 12]) == 12
    assert worst([99, 3]) == 3  # an unknown code ranks as 1 does
    for index, better in enumerate(WORST_FIRST):
        for worse in WORST_FIRST[:index]:
            assert worst([better, worse]) == worse == worst([worse, better])


# -- changed --since ---------------------------------------------------------------------------------------------


def _agent(directory: Path, name: str, prompt: str = "prompt.md", config: str = "agent.yaml", extra: str = "") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / config).write_text(
        f"name: {name}\nmodel: {{provider: openai, name: gpt-4o}}\ninstructions: {{file: {prompt}}}\n{extra}"
    )
    if not (directory / prompt).exists():
        (directory / prompt).parent.mkdir(parents=True, exist_ok=True)
        (directory / prompt).write_text(f"You are {name}.")


def _commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def changed(*argv: str) -> tuple[int, Any, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["changed", *argv], environ={}, out=out, err=err)
    text = out.getvalue()
    assert text.count("\n") <= 1, "one line, for $GITHUB_OUTPUT"
    return code, json.loads(text) if text else None, err.getvalue()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "t@example.com")
    git(root, "config", "user.name", "t")
    monkeypatch.chdir(root)
    return root


def test_changed_names_only_the_agents_whose_inputs_changed(repo: Path) -> None:
    _agent(
        repo / "agents" / "alpha",
        "alpha",
        extra="tools:\n  - {name: docs, type: vectorstore, source: data, description: d}\n",
    )
    (repo / "agents" / "alpha" / "data").mkdir()
    (repo / "agents" / "alpha" / "data" / "a.md").write_text("a")
    (repo / "agents" / "alpha" / "data" / "b.md").write_text("b")
    _agent(repo / "agents" / "beta", "beta")
    # Two configs in one directory, both naming one shared file.
    _agent(repo / "agents" / "pair", "left", prompt="shared/common.md", config="left.yaml")
    _agent(repo / "agents" / "pair", "right", prompt="shared/common.md", config="right.yaml")
    (repo / "README.md").write_text("docs")
    first = _commit(repo, "agents")
    every = ("agents/*/agent.yaml", "agents/pair/*.yaml")

    (repo / "agents" / "beta" / "prompt.md").write_text("You are beta, and brief.")
    (repo / "README.md").write_text("more docs")
    (repo / "agents" / "alpha" / ".agentdeploy").mkdir()
    (repo / "agents" / "alpha" / ".agentdeploy" / "alpha.local.json").write_text("{}")  # a committed record
    second = _commit(repo, "beta's prompt")
    code, found, err = changed("--since", first, *every)
    assert code == ExitCode.OK, err
    assert found == {"include": [{"agent": "beta", "config": "agents/beta/agent.yaml", "target": "docker"}]}
    assert "agents/beta/agent.yaml (beta): changed: agents/beta/prompt.md" in err
    assert "agents/alpha/agent.yaml (alpha): unchanged" in err

    (repo / "agents" / "pair" / "shared" / "common.md").write_text("You are one of two.")
    third = _commit(repo, "the shared prompt")
    code, found, _ = changed("--since", second, *every)
    assert [entry["agent"] for entry in found["include"]] == ["left", "right"]
    assert found["include"][0]["config"] == "agents/pair/left.yaml"

    (repo / "agents" / "alpha" / "data" / "b.md").unlink()  # a file gone from a directory the config names
    _commit(repo, "one document less")
    code, found, _ = changed("--since", third, *every)
    assert found == {"include": [{"agent": "alpha", "config": "agents/alpha/agent.yaml", "target": "docker"}]}
    code, found, _ = changed("--since", "HEAD", *every)  # nothing since HEAD
    assert (code, found) == (ExitCode.OK, {"include": []})
    code, found, _ = changed("--since", first, *every)  # a range: all of it
    assert [entry["agent"] for entry in found["include"]] == ["alpha", "beta", "left", "right"]
    # The push that made a branch (GitHub's `before` is all zeros): every agent.
    code, found, err = changed("--since", "0" * 40, "agents/beta/agent.yaml", "agents/alpha/agent.yaml")
    assert [entry["agent"] for entry in found["include"]] == ["beta", "alpha"] and "a new branch" in err


def test_changed_counts_the_config_its_settings_and_its_own_dockerfile_context(repo: Path) -> None:
    _agent(repo / "agents" / "alpha", "alpha")
    _agent(repo / "agents" / "own", "own", extra="deployment:\n  build: {dockerfile: Dockerfile}\n")
    (repo / "agents" / "own" / "Dockerfile").write_text("FROM scratch\n")
    (repo / "agents" / "own" / "tools.py").write_text("x = 1\n")
    start = _commit(repo, "agents")
    config = repo / "agents" / "alpha" / "agent.yaml"
    config.write_text(config.read_text() + "deployment:\n  build: {base_image: 'example.org/base:2'}\n")
    (repo / "agents" / "own" / "tools.py").write_text("x = 2\n")  # named by no key, but in its build context
    _commit(repo, "a new base; a tool")
    code, found, err = changed("--since", start, "agents/*/agent.yaml")
    assert code == ExitCode.OK, err
    assert [entry["agent"] for entry in found["include"]] == ["alpha", "own"]
    assert "changed: agents/alpha/agent.yaml" in err and "changed: agents/own/tools.py" in err


def test_changed_with_a_ref_that_names_no_commit_is_one_clear_error(repo: Path) -> None:
    _agent(repo / "agents" / "alpha", "alpha")
    _commit(repo, "agents")
    code, found, err = changed("--since", "no-such-branch", "agents/*/agent.yaml")
    assert (code, found) == (ExitCode.GIT, None)
    assert err.splitlines()[0] == "error: 'no-such-branch' names no commit in this checkout"
    assert "fetch-depth: 0" in err
    code, _, err = changed("--since=--output=/tmp/x", "agents/*/agent.yaml")  # never read as an option
    assert code == ExitCode.GIT and "'--output=/tmp/x' names no commit" in err


def test_changed_outside_a_git_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _agent(tmp_path / "alpha", "alpha")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    code, _, err = changed("--since", "main", "alpha/agent.yaml")
    assert code == ExitCode.GIT and "is not in a git checkout" in err


# -- deploy with several agents: the real command line, the toy process target, no Docker ----------------------


class Project:
    def __init__(self, root: Path, free_port: Callable[[], int]) -> None:
        self.root = root
        self.ports = {name: free_port() for name in ("alpha", "beta", "gamma")}
        for name in self.ports:
            self.write(name)

    def write(self, name: str, *, unhealthy: bool = False, broken: bool = False) -> None:
        directory = self.root / "agents" / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "prompt.md").write_text(f"You are {name}.")
        environment = '{AGENT_UNHEALTHY: "1"}' if unhealthy else "{LOG_LEVEL: info}"
        (directory / "agent.yaml").write_text(
            f"name: {name}\nmodel: {{provider: openai, name: gpt-4o}}\ninstructions: {{file: prompt.md}}\n"
            f"deployment:\n  port: {self.ports[name]}\n  health: {{timeout_seconds: 3}}\n"
            f"  environment: {environment}\n"
            f"  secrets: {{TOKEN: '${{TOKEN_{name.upper()}}}'}}\n"
            f"  verify: {{chat: [{{message: hello, expect: {name}}}]}}\n" + ("  prot: rest\n" if broken else "")
        )

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTDEPLOY_", "GITHUB_", "TOKEN_"))}
        env.update(
            {f"TOKEN_{name.upper()}": f"tok-{name}-secret-value-{index}" for index, name in enumerate(self.ports)}
        )
        env["AGENT_TOKEN"] = env["TOKEN_GAMMA"]  # the offline gate's live lines carry it: it must be masked
        return env

    def cli(self, *argv: str, environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(OFFLINE_CLI), *argv],
            cwd=self.root,
            env=environ or self.environ(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def destroy(self) -> None:
        for name in self.ports:
            self.cli("destroy", f"agents/{name}/agent.yaml", "--target", "process", "--yes")


@pytest.fixture
def project(tmp_path: Path, free_port: Callable[[], int]) -> Iterator[Project]:
    made = Project(tmp_path, free_port)
    yield made
    made.destroy()


def _by_agent(listed: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entry["agent"]: entry for entry in listed}


def test_deploy_of_several_agents_reports_each_and_exits_with_the_worst(project: Project) -> None:
    secrets = list(project.environ()[f"TOKEN_{n.upper()}"] for n in project.ports)
    first = project.cli("deploy", "agents/*/agent.yaml", "--target", "process", "--json")
    assert first.returncode == 0, first.stderr
    listed = json.loads(first.stdout)
    assert [entry["agent"] for entry in listed] == ["alpha", "beta", "gamma"]
    assert {entry["status"] for entry in listed} == {"succeeded"}
    assert listed[0]["url"] == f"http://127.0.0.1:{project.ports['alpha']}" and listed[0]["exit_code"] == 0
    assert set(listed[0]["timings"]) >= {"deploy", "plan", "image", "release"}
    log = first.stderr
    assert not any(secret in first.stdout + log for secret in secrets)
    # Every line is whole and names its agent; the builds took turns (one engine): each build's lines together.
    lines = log.splitlines()
    summary_at = next(i for i, line in enumerate(lines) if line.startswith("AGENT "))
    assert all(re.match(r"^\[(alpha|beta|gamma)\] ", line) for line in lines[:summary_at]), log
    builders = [line.split("]")[0] for line in lines if line.endswith("Step 1/4 : FROM agentdeploy-test-base:1")]
    for builder in builders:
        start = lines.index(f"{builder}] Step 1/4 : FROM agentdeploy-test-base:1")
        end = lines.index(f"{builder}] Successfully built e5f4a3b2c1d0")
        assert all(
            not re.match(r"^\[\w+\] (Step|Successfully)", line) or line.startswith(builder) for line in lines[start:end]
        )
    assert sorted(builders) == ["[alpha", "[beta", "[gamma"]
    # The summary table, on stderr with --json: one row per agent.
    assert re.search(rf"^alpha\s+process\s+succeeded\s+http://127\.0\.0\.1:{project.ports['alpha']}\s", log, re.M)

    project.write("gamma", unhealthy=True)  # its next version fails the health gate: rolled back
    second = project.cli("deploy", "agents/*/agent.yaml", "--target", "process", "--json", "--parallel", "3")
    assert second.returncode == ExitCode.ROLLED_BACK, second.stderr
    outcomes = _by_agent(json.loads(second.stdout))
    assert (outcomes["alpha"]["status"], outcomes["beta"]["status"]) == ("unchanged", "unchanged")
    assert (outcomes["gamma"]["status"], outcomes["gamma"]["exit_code"]) == ("rolled-back", 9)
    assert "failed its health gate" in outcomes["gamma"]["error"]
    assert re.search(r"^gamma\s+process\s+rolled-back \(exit 9\)", second.stderr, re.M)
    assert not any(secret in second.stdout + second.stderr for secret in secrets)

    # Text: the table on stdout, the worst code. Then one agent refused (a secret it needs is not set; another's
    # config unreadable): nothing is deployed, and the others are planned and reported skipped.
    project.write("gamma")
    (project.root / "agents" / "beta" / "prompt.md").write_text("You are beta, and brief.")
    environ = project.environ()
    del environ["TOKEN_ALPHA"]
    third = project.cli(
        "deploy",
        "agents/alpha/agent.yaml",
        "agents/beta/agent.yaml",
        "agents/gamma/agent.yaml",
        "--target",
        "process",
        environ=environ,
    )
    assert third.returncode == ExitCode.CONFIG, third.stderr
    assert re.search(r"^alpha\s+process\s+failed \(exit 3\)", third.stdout, re.M), third.stdout
    assert re.search(r"^beta\s+process\s+skipped\s", third.stdout, re.M)
    assert "[alpha] error: 1 environment variable(s) needed for this deployment are not set: TOKEN_ALPHA" in (
        third.stderr
    )
    assert re.search(r"^\[beta\] process beta\s+UPDATE\s+change: ", third.stderr, re.M)  # planned, not deployed
    assert "[beta] building" not in third.stderr
    state = json.loads((project.root / "agents" / "beta" / ".agentdeploy" / "beta.process.json").read_text())
    assert len(state["history"]) == 1  # nothing recorded for beta by the refused run
    project.write("gamma", broken=True)  # a config that cannot be read at all: named by its path
    listed = json.loads(project.cli("deploy", "agents/*/agent.yaml", "--target", "process", "--json").stdout)
    assert [(e["agent"], e["config"], e["status"], e["exit_code"]) for e in listed] == [
        ("alpha", "agents/alpha/agent.yaml", "skipped", 0),
        ("beta", "agents/beta/agent.yaml", "skipped", 0),
        ("", "agents/gamma/agent.yaml", "failed", 3),
    ]
    assert "agents/gamma/agent.yaml was refused" in listed[1]["error"]
    assert listed[2]["error"] == "agents/gamma/agent.yaml is not a valid agent config (1 problem)"
    assert "unknown key 'prot'" in listed[2]["problems"][0]


def test_plan_and_status_of_several_agents_report_each_one(project: Project) -> None:
    project.write("beta", broken=True)
    planned = project.cli("plan", "agents/*/agent.yaml", "--target", "process", "--json")
    assert planned.returncode == ExitCode.CONFIG
    outcomes = _by_agent(json.loads(planned.stdout))
    assert outcomes["alpha"]["status"] == "planned" and outcomes["alpha"]["items"][0]["action"] == "CREATE"
    assert outcomes["gamma"]["items"][0]["resource"] == "process gamma"  # a broken config stops no other plan
    broken = next(entry for entry in json.loads(planned.stdout) if entry["config"] == "agents/beta/agent.yaml")
    assert (broken["agent"], broken["status"], broken["exit_code"]) == ("", "failed", 3)
    table = project.cli("plan", "agents/*/agent.yaml", "--target", "process").stdout
    rows, variables = table.split("\n\n")
    assert [line.split()[1] for line in rows.splitlines()[1:]] == ["alpha", "gamma"]  # one table, each its row
    assert variables.splitlines() == [  # each agent's own secret, by name only
        f"process {agent} receives from the deploy's environment: TOKEN_{agent.upper()} as TOKEN (secret)"
        for agent in ("alpha", "gamma")
    ]
    status = project.cli(
        "status", "agents/alpha/agent.yaml", "agents/gamma/agent.yaml", "--target", "process", "--json"
    )
    assert status.returncode == 0, status.stderr
    reports = _by_agent(json.loads(status.stdout))
    assert reports["alpha"]["status"] == "absent" and reports["gamma"]["report"]["current"] is None


def test_status_of_several_agents_prefixes_each_agents_lines_and_ends_with_a_table(project: Project) -> None:
    """The README's promise for `status 'agents/*/agent.yaml'`: every line of an agent's report prefixed with its
    `[name]`, then one table (agent, target, status, revision, URL) on stdout; a config that cannot be read is
    named by its path, in its error and its row, and sets the exit code."""
    deployed = project.cli("deploy", "agents/alpha/agent.yaml", "--target", "process")
    assert deployed.returncode == 0, deployed.stderr
    project.write("gamma", broken=True)
    status = project.cli("status", "agents/*/agent.yaml", "--target", "process")
    assert status.returncode == ExitCode.CONFIG, status.stderr
    record = json.loads((project.root / "agents" / "alpha" / ".agentdeploy" / "alpha.process.json").read_text())
    current, port = record["current"], project.ports["alpha"]
    url = f"http://127.0.0.1:{port}"
    assert status.stdout.splitlines() == [
        f"[alpha] alpha: {url}  image {current['image']}  tag {current['tag']}",
        f"[alpha]   process alpha: pid {current['revision']}, port {port}",
        f"[alpha]   {current['finished_at']}  deploy   succeeded   {current['tag']}",
        "[beta] beta: not deployed (process)",
        "[beta]   process beta: absent",
        "",
        "AGENT                    TARGET   STATUS           REVISION  URL",
        f"alpha                    process  succeeded        {current['revision']:<8}  {url}",  # a pid: 8 wide
        "beta                     process  absent           -         -",
        "agents/gamma/agent.yaml  -        failed (exit 3)  -         -",
    ]
    assert status.stderr.splitlines()[0] == (
        "[agents/gamma/agent.yaml] error: agents/gamma/agent.yaml is not a valid agent config (1 problem)"
    )
    listed = project.cli("status", "agents/*/agent.yaml", "--target", "process", "--json")
    assert [entry["status"] for entry in json.loads(listed.stdout)] == ["succeeded", "absent", "failed"]
    assert listed.stderr.splitlines()[-4:] == status.stdout.splitlines()[-4:]  # the table, on stderr with --json


# -- in one process: builds take turns, releases run at once, an interrupt reaches every worker -------------------


class Recorder:
    """A target whose release takes a while and notes how many ran at once; the image stage notes its builds."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.releasing = 0
        self.most_releasing = 0
        self.building = 0
        self.most_building = 0
        self.release_seconds = 0.3
        self.on_release: Callable[[TargetContext], TargetOutcome | None] = lambda context: None


def recorded_target(recorder: Recorder) -> Callable[[TargetContext], Any]:
    class Slow(ProcessTarget):
        def release(self, request: ReleaseRequest) -> TargetOutcome:
            with recorder.lock:
                recorder.releasing += 1
                recorder.most_releasing = max(recorder.most_releasing, recorder.releasing)
            try:
                special = recorder.on_release(self.context)
                if special is not None:
                    return special
                time.sleep(recorder.release_seconds)
                return TargetOutcome(status=Status.SUCCEEDED, url=f"http://{self.agent}", revision="r1", previous="")
            finally:
                with recorder.lock:
                    recorder.releasing -= 1

    return Slow


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    made = Recorder()
    targets.register("slow", recorded_target(made))
    yield made
    targets.unregister("slow")


def _run(tmp_path: Path, recorder: Recorder, count: int, parallel: int) -> tuple[Any, str]:
    from agentdeploy.image.builder import ImageBuilder, ImageResult

    class Counting(ImageBuilder):
        def run(self, *, push: bool, pull: bool = False, move_tag: bool = False) -> ImageResult:
            with recorder.lock:
                recorder.building += 1
                recorder.most_building = max(recorder.most_building, recorder.building)
            try:
                time.sleep(0.1)
                inputs = self.inputs()
                return ImageResult(
                    reference=f"local/{self.config.agent.name}",
                    tag="v1",
                    repository="local",
                    manifest_digest=None,
                    image_id=inputs,
                    inputs_digest=inputs,
                    skipped_build=False,
                )
            finally:
                with recorder.lock:
                    recorder.building -= 1

    configs = []
    for index in range(count):
        name = f"agent{index}"
        _agent(tmp_path / name, name)
        configs.append(str(tmp_path / name / "agent.yaml"))
    err = io.StringIO()
    services = Services(environ={}, console=Console(io.StringIO(), err), docker=_no_docker, image_stage=Counting)
    template = Invocation(
        command=Command.DEPLOY,
        config=Path(configs[0]),
        display_name=configs[0],
        options=DeployOptions(target="slow", push=False),
        services=services,
    )
    return run_many(template, configs, parallel=parallel), err.getvalue()


def _no_docker() -> Any:
    raise AssertionError("no engine here")


def test_builds_take_turns_and_releases_run_at_once_up_to_the_limit(tmp_path: Path, recorder: Recorder) -> None:
    many, log = _run(tmp_path / "four", recorder, 4, parallel=4)
    assert many.exit_code == 0, log
    assert [outcome.status for outcome in many.outcomes] == ["succeeded"] * 4
    assert recorder.most_building == 1  # one engine: one build at a time
    assert recorder.most_releasing >= 2  # while one releases, the next builds and then releases too
    recorder.most_releasing = 0
    many, log = _run(tmp_path / "one-at-a-time", recorder, 3, parallel=1)
    assert many.exit_code == 0, log
    assert recorder.most_releasing == 1


def test_an_interrupt_in_the_main_thread_reaches_the_release_in_a_worker(tmp_path: Path, recorder: Recorder) -> None:
    """The main thread holds the signal deferral while workers run: a SIGINT is only noted, the release under way
    sees it through its context and rolls back, and the agents not started yet never start."""
    assert threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGINT)  # default, or ignored when the test run itself was started in background

    def interrupted_release(context: TargetContext) -> TargetOutcome:
        os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C would: delivered to the main thread
        deadline = time.monotonic() + 5
        while not context.interrupted() and time.monotonic() < deadline:
            time.sleep(0.01)
        return TargetOutcome(
            status=Status.ROLLED_BACK, url="u", revision="r0", previous="r0", interrupted=context.interrupted()
        )

    recorder.on_release = interrupted_release
    many, log = _run(tmp_path, recorder, 3, parallel=1)
    assert [(o.agent, o.status, o.exit_code) for o in many.outcomes] == [
        ("agent0", "interrupted", 130),
        ("agent1", "interrupted", 130),
        ("agent2", "interrupted", 130),
    ], log
    assert "interrupted by SIGINT during the release" in many.outcomes[0].error
    assert many.outcomes[1].error == "interrupted by SIGINT before it started: nothing was changed"
    assert many.exit_code == ExitCode.INTERRUPTED
    assert signal.getsignal(signal.SIGINT) is before  # given back afterwards


def test_children_share_masks_prefix_each_line_and_never_split_one() -> None:
    err = io.StringIO()
    console = Console(io.StringIO(), err, environ={})
    one, two = console.child("one"), console.child("two")
    one.mask(["alpha-secret-1"])
    two.info("two saw alpha-secret-1\nand a second line")  # a value another agent registered is masked here too
    console.info("the parent masks it too: alpha-secret-1")
    assert err.getvalue().splitlines() == [
        "[two] two saw ***",
        "[two] and a second line",
        "the parent masks it too: ***",
    ]
    assert one.live is False and one.timings == {} and one.prefix == "one"

    err.truncate(0)
    err.seek(0)

    def write(child: Console, mark: str) -> None:
        for index in range(300):
            child.info(f"{mark * 40} {index}")

    threads = [threading.Thread(target=write, args=(c, m)) for c, m in ((one, "a"), (two, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = err.getvalue().splitlines()
    assert len(lines) == 600
    assert all(re.fullmatch(r"\[one\] a{40} \d+|\[two\] b{40} \d+", line) for line in lines)
