"""The example workflows, copied into a repository as a team copies them, run by the harness (action/harness.py)
as GitHub's runner runs them: tag pushes run release.yml, workflow_dispatch runs rollback.yml and promote.yml,
each job on a fresh runner with the real install step, against the fake Azure as a process and the registry on
127.0.0.1:5000. The record travels between runs as GitHub artifacts, as the examples say."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from action.harness import (
    ACTION_REFS,
    FakeAzureProcess,
    Job,
    WorkflowRun,
    World,
    evaluate,
    read_file_command,
    run_workflow,
)
from agentdeploy.github import action
from testkit import GIT_IDENTITY, ROOT, git, offline_agent_env

WORKFLOWS = ROOT / "examples" / "workflows"
AGENT = "examples/azure-agent/agent.yaml"  # where the workflows look for it, in the copy as in this repository
OPENAI_KEY = "sk-from-the-secret-0123456789"
CHANGING = ("deploy", "rollback", "promote")  # the commands that change what serves
PREVIEWS = ("preview", "preview-remove")  # a pull request's own revision: never the production traffic or record
# The one queue of an agent in an environment, the same in every example, and the runner that reaches its target.
AGENT_GROUP = "agentdeploy-${{ matrix.agent }}-production"
AGENT_HOST = ["self-hosted", "agent-host"]
REFUSAL = "The agent's target is reachable from this runner"


@pytest.fixture
def fake_azure(tmp_path: Path) -> Iterator[FakeAzureProcess]:
    fake = FakeAzureProcess(tmp_path / "fake-azure")
    try:
        yield fake
    finally:
        fake.kill()


class Repository:
    """The team's repository: a working clone, and the bare one standing for GitHub. The agents are copied from
    examples/ (the Azure one always), the workflows from examples/workflows/."""

    def __init__(
        self, root: Path, base_image: str, image_repository: str, docker_agents: dict[str, DockerAgent] | None = None
    ) -> None:
        self.work, self.origin = root / "work", root / "origin.git"
        for name in ("azure-agent", *(docker_agents or {})):
            shutil.copytree(
                ROOT / "examples" / name, self.work / "examples" / name, ignore=shutil.ignore_patterns(".agentdeploy")
            )
        shutil.copytree(WORKFLOWS, self.work / ".github" / "workflows")
        config = self.work / AGENT
        text = config.read_text()
        # The one change the fake needs: it cannot be an Azure Container Registry, so the image goes to the registry
        # on 127.0.0.1:5000 and Azure (the fake) pulls it anonymously, with no registry_identity (which the rules
        # refuse for a registry that is not ACR). And a local base image: nothing can be pulled here.
        edited = re.sub(r"^ +registry_identity: .*\n", "", text, flags=re.M)
        edited = edited.replace("url: myagents.azurecr.io", "url: 127.0.0.1:5000")
        edited = edited.replace("repository: agents/azure-agent", f"repository: {image_repository}")
        assert edited.count("127.0.0.1:5000") == 1 and edited.count(image_repository) == 1
        config.write_text(edited + f"  build:\n    base_image: {base_image}\n")
        for name, agent in (docker_agents or {}).items():
            agent.stage(self.work / "examples" / name / "agent.yaml")
        git(self.work, "init", "-q", "-b", "main")
        git(self.work, "add", ".")
        git(self.work, "commit", "-q", "-m", "the agents and the example workflows")
        git(root, "init", "-q", "--bare", str(self.origin))
        git(self.work, "remote", "add", "origin", str(self.origin))
        git(self.work, "push", "-q", "origin", "main")

    def commit(self, change: dict[str, str], message: str) -> str:
        """Commit a change (path -> 'old=>new', a text replacement); the full sha."""
        for path, edit in change.items():
            old, new = edit.split("=>")
            file = self.work / path
            assert old in file.read_text(), (path, old)
            file.write_text(file.read_text().replace(old, new))
        git(self.work, "commit", "-q", "-am", message)
        return git(self.work, "rev-parse", "HEAD")

    def release(self, tag: str, change: dict[str, str] | None = None) -> str:
        """Commit a change (path -> (old, new) text replacement as 'old=>new'), tag it, push both; the short sha."""
        if change:
            self.commit(change, f"release {tag}")
        git(self.work, "tag", tag)
        git(self.work, "push", "-q", "origin", "main", tag)
        return git(self.work, "rev-parse", "--short=7", "HEAD")


@dataclass
class DockerAgent:
    """An example agent on the docker target as the team's self-hosted runner has it: the real HoloDeck runtime
    as its base (nothing can be pulled here), the fake model, a port and container name of its own, and its image
    repository (if it has a registry) one of its own."""

    port: int
    container: str
    base: str
    llm_url: str
    image_repository: str

    def stage(self, config: Path) -> None:
        data = yaml.safe_load(config.read_text())
        deployment = data["deployment"]
        deployment["port"] = self.port
        deployment.setdefault("target", {})["docker"] = {"container_name": self.container}
        deployment.setdefault("build", {})["base_image"] = self.base
        deployment["environment"].update(offline_agent_env(self.llm_url))
        if "registry" in deployment:
            deployment["registry"]["repository"] = self.image_repository
        config.write_text(yaml.safe_dump(data, sort_keys=False))


def changing_leg(run: WorkflowRun) -> Job:
    """The one leg of a single-agent workflow that changes what serves, after the `agent` job that read its config
    (its name and target)."""
    assert run.results["agent"] == "success", run.log
    [key] = [key for key in run.jobs if key != "agent"]
    [leg] = run.jobs[key]
    return leg


def release(world: World, tag: str) -> Job:
    run = run_workflow(world, WORKFLOWS / "release.yml", event_name="push", ref=f"refs/tags/{tag}")
    assert run.conclusion == "success", run.log
    return changing_leg(run)


def dispatch(world: World, workflow: str, **inputs: str) -> Job:
    run = run_workflow(
        world, WORKFLOWS / workflow, event_name="workflow_dispatch", ref="refs/heads/main", inputs=inputs
    )
    assert run.conclusion == "success", run.log
    return changing_leg(run)


def app(fake: FakeAzureProcess, name: str = "azure-agent") -> dict[str, Any]:
    env = fake.env
    url = f"{env['AGENTDEPLOY_ARM_ENDPOINT']}/_fake/apps/{env['FAKE_AZURE_SUBSCRIPTION_ID']}/agents-rg/{name}"
    answer = requests.get(url, verify=env["REQUESTS_CA_BUNDLE"], timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_every_example_workflow_runs_the_action_as_a_copied_workflow_uses_it() -> None:
    secrets = {name: f"${{{{ secrets.{name} }}}}" for name in ("OPENAI_API_KEY", "SUPPORT_API_KEY")}
    examples = {p.parent.name for p in (ROOT / "examples").glob("*/agent.yaml")}
    assert examples == {"azure-agent", "hello-agent", "support-agent"}  # what release-agents.yml deploys
    for workflow in sorted(WORKFLOWS.glob("*.yml")):
        for key, job in yaml.safe_load(workflow.read_text())["jobs"].items():
            uses = [step for step in job["steps"] if step.get("uses") in ACTION_REFS]
            if (workflow.name, key) == ("preview.yml", "fork"):  # it only says why a fork gets no preview
                assert uses == [] and [set(step) for step in job["steps"]] == [{"name", "env", "run"}]
                continue
            assert uses, workflow.name
            for step in uses:
                config = step["with"]["config"]
                assert config in (AGENT, "${{ inputs.config }}", "${{ matrix.config }}", "examples/*/agent.yaml")
                command = step["with"].get("command", "deploy")
                if command in PREVIEWS:  # no production record is read or written
                    assert "state" not in step["with"], workflow.name
                elif command not in ("push", "changed", "agents"):  # a protected main is no obstacle to an artifact
                    assert step["with"]["state"] == "artifact", workflow.name
                if command in (*CHANGING, "preview"):  # the secrets reach it from secrets.*, only those
                    one = {"OPENAI_API_KEY": secrets["OPENAI_API_KEY"]}
                    single = workflow.name in ("release.yml", "preview.yml")
                    assert step["env"] == (one if single else secrets), workflow.name
                else:  # push, changed, agents and status read no secret of the agent's
                    assert "env" not in step, workflow.name
    assert (ROOT / AGENT).exists()
    # Several agents: each leg runs in its own agent's GitHub environment, which holds that agent's secrets only.
    deploy_job = yaml.safe_load((WORKFLOWS / "release-agents.yml").read_text())["jobs"]["deploy"]
    assert deploy_job["environment"]["name"] == "production-${{ matrix.agent }}"
    assert {p.name for p in WORKFLOWS.glob("*.yml")} == {
        "preview.yml",
        "release.yml",
        "release-agents.yml",
        "rollback.yml",
        "promote.yml",
    }


def action_commands(job: dict[str, Any]) -> set[str]:
    return {step["with"].get("command", "deploy") for step in job["steps"] if step.get("uses") in ACTION_REFS}


def changing_jobs() -> list[tuple[str, str, dict[str, Any]]]:
    """(workflow, job key, job) of every example job whose action step deploys, rolls back or promotes."""
    found = []
    for workflow in sorted(WORKFLOWS.glob("*.yml")):
        for key, job in yaml.safe_load(workflow.read_text())["jobs"].items():
            if action_commands(job) & set(CHANGING):
                found.append((workflow.name, key, job))
    return found


def test_every_job_that_changes_an_agent_queues_in_its_one_group_on_a_runner_that_reaches_its_target() -> None:
    """A release, a rollback and a promote of one agent wait for each other: one concurrency group per agent and
    environment, the same expression in every example, never cancelled half-way; different agents never share
    one, and no workflow-wide group makes them wait. A docker agent's job runs on its own machine (the agent-host
    label), an Azure agent's on a hosted runner; the agent, its config and target come from a job that read them."""
    jobs = changing_jobs()
    assert [(workflow, key) for workflow, key, _ in jobs] == [
        ("promote.yml", "promote"),
        ("release-agents.yml", "deploy"),
        ("release.yml", "deploy"),
        ("rollback.yml", "rollback"),
    ]
    for workflow in WORKFLOWS.glob("*.yml"):
        assert "concurrency" not in yaml.safe_load(workflow.read_text()), workflow.name
    agents = {"azure-agent": "azure", "hello-agent": "docker", "support-agent": "docker"}
    for workflow, _, job in jobs:
        assert job["concurrency"] == {"group": AGENT_GROUP, "cancel-in-progress": False}, workflow
        placed = {}
        for agent, target in agents.items():
            context = {"matrix": {"agent": agent, "config": f"examples/{agent}/agent.yaml", "target": target}}
            placed[agent] = (evaluate(job["runs-on"], context), evaluate(job["concurrency"]["group"], context))
        assert placed == {
            "azure-agent": ("ubuntu-latest", "agentdeploy-azure-agent-production"),
            "hello-agent": (AGENT_HOST, "agentdeploy-hello-agent-production"),
            "support-agent": (AGENT_HOST, "agentdeploy-support-agent-production"),
        }, workflow
        document = yaml.safe_load((WORKFLOWS / workflow).read_text())
        source = "changes" if workflow == "release-agents.yml" else "agent"
        assert (
            job["needs"] == source
            and job["strategy"]["matrix"] == f"${{{{ fromJSON(needs.{source}.outputs.matrix) }}}}"
        )
        if source == "agent":  # the config the dispatch or the release names, read alone on a hosted runner
            reader = document["jobs"]["agent"]
            [step] = [step for step in reader["steps"] if step.get("uses") in ACTION_REFS]
            wanted = AGENT if workflow == "release.yml" else "${{ inputs.config }}"
            assert (reader["runs-on"], step["with"]) == ("ubuntu-latest", {"command": "agents", "config": wanted})
        # The refusal of a runner that cannot reach the target comes before anything that could change it.
        names = [step.get("name") for step in job["steps"]]
        first_action = min(i for i, step in enumerate(job["steps"]) if step.get("uses") in ACTION_REFS)
        assert names.count(REFUSAL) == 1 and names.index(REFUSAL) < first_action, workflow


def test_each_job_gets_the_registry_permissions_the_readme_lists_and_no_more() -> None:
    """README, "Registry permissions": only the jobs that push touch the registry. The examples push to Azure
    Container Registry (AcrPush through OIDC), so no job gets packages:; the line a ghcr.io team uncomments gives
    packages: write to exactly the jobs that push, and to no job that only reads or rolls back."""
    reading = {"contents": "read"}
    state = {"contents": "read", "actions": "read", "id-token": "write"}
    preview = {"contents": "read", "id-token": "write", "pull-requests": "write", "deployments": "write"}
    expected = {
        ("preview.yml", "fork"): reading,
        ("preview.yml", "agent"): reading,
        ("preview.yml", "preview"): preview,
        ("preview.yml", "remove"): preview,
        ("promote.yml", "agent"): reading,
        ("promote.yml", "promote"): state,
        ("release-agents.yml", "changes"): reading,
        ("release-agents.yml", "deploy"): state,
        ("release-agents.yml", "status"): state,
        ("release.yml", "agent"): reading,
        ("release.yml", "deploy"): {**state, "attestations": "write"},
        ("rollback.yml", "agent"): reading,
        ("rollback.yml", "rollback"): state,
    }
    granted, with_ghcr = {}, set()
    for workflow in sorted(WORKFLOWS.glob("*.yml")):
        text = workflow.read_text()
        document = yaml.safe_load(text)
        for key, job in document["jobs"].items():
            granted[(workflow.name, key)] = job.get("permissions", document["permissions"])
        uncommented, count = re.subn(r"^( +)# packages: write #.*$", r"\1packages: write", text, flags=re.M)
        for key, job in yaml.safe_load(uncommented)["jobs"].items():
            if (job.get("permissions") or {}).get("packages") == "write":
                with_ghcr.add((workflow.name, key))
        assert count == len([k for w, k in with_ghcr if w == workflow.name]), workflow.name  # each in a job's block
    assert granted == expected
    pushing = {
        (workflow.name, key)
        for workflow in WORKFLOWS.glob("*.yml")
        for key, job in yaml.safe_load(workflow.read_text())["jobs"].items()
        if {"deploy", "preview"} & action_commands(job)
    }
    assert (
        with_ghcr
        == pushing
        == {
            ("preview.yml", "preview"),
            ("release-agents.yml", "deploy"),
            ("release.yml", "deploy"),
        }
    )


@pytest.mark.parametrize(
    ("targets", "runner"),
    [('["azure"]', "ubuntu-latest"), ('["azure","docker"]', AGENT_HOST), ('["docker"]', AGENT_HOST), ("", None)],
)
def test_the_status_job_runs_where_the_agents_it_reports_are_reached(targets: str, runner: Any) -> None:
    """release-agents.yml's status job asks every agent's target: on the docker agents' machine when there are any;
    a team with Azure agents alone (or whose changes job failed: no targets) never waits for a self-hosted runner."""
    jobs = yaml.safe_load((WORKFLOWS / "release-agents.yml").read_text())["jobs"]
    outputs = {"targets": targets} if targets else {}
    context = {"needs": {"changes": {"result": "success" if targets else "failure", "outputs": outputs}}}
    assert evaluate(jobs["status"]["runs-on"], context) == (runner or "ubuntu-latest")
    # The targets are those of the configs the status job reports, read by command agents.
    [reader] = [step for step in jobs["changes"]["steps"] if step.get("id") == "agents"]
    [status] = [step for step in jobs["status"]["steps"] if step.get("uses") in ACTION_REFS]
    assert reader["with"] == {"command": "agents", "config": status["with"]["config"]}
    assert jobs["changes"]["outputs"]["targets"] == "${{ steps.agents.outputs.targets }}"


def test_command_agents_reads_each_config_alone_and_names_the_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the `agent` and `changes` jobs pick runners from: every agent a pattern names, from its config alone (no
    engine, Azure or git asked), as a matrix and the sorted targets; a pattern that names no config is exit 2, with
    an empty matrix (a matrix job with no leg fails) and no targets."""
    monkeypatch.chdir(ROOT)

    def agents(config: str) -> tuple[int, dict[str, str], str]:
        output, printed = tmp_path / f"output-{len(list(tmp_path.iterdir()))}", io.StringIO()
        output.touch()
        monkeypatch.setenv("GITHUB_OUTPUT", str(output))  # where actions-toolkit writes the outputs
        code = action.run({"AGENTDEPLOY_COMMAND": "agents", "AGENTDEPLOY_CONFIG": config}, printed)
        return code, read_file_command(output), printed.getvalue()

    code, outputs, _ = agents("examples/*/agent.yaml")
    assert code == 0 and outputs["status"] == "planned"
    assert json.loads(outputs["matrix"]) == {
        "include": [
            {"agent": name, "config": f"examples/{name}/agent.yaml", "target": target}
            for name, target in (("azure-agent", "azure"), ("hello-agent", "docker"), ("support-agent", "docker"))
        ]
    }
    assert outputs["targets"] == '["azure","docker"]'
    assert agents(AGENT)[1]["targets"] == '["azure"]'
    code, outputs, printed = agents("agents/*/agent.yaml")
    assert (code, outputs["matrix"], outputs["targets"]) == (2, '{"include": []}', "[]")
    assert "::error title=agentdeploy::agents/*/agent.yaml matches no file" in printed


def plain_repository(root: Path, agents: tuple[str, ...]) -> Path:
    """A team's repository with these example agents as they are and the example workflows; its bare origin."""
    work, origin = root / "work", root / "origin.git"
    for name in agents:
        shutil.copytree(
            ROOT / "examples" / name, work / "examples" / name, ignore=shutil.ignore_patterns(".agentdeploy")
        )
    shutil.copytree(WORKFLOWS, work / ".github" / "workflows")
    git(work, "init", "-q", "-b", "main")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "the agents and the example workflows")
    git(root, "init", "-q", "--bare", str(origin))
    git(work, "remote", "add", "origin", str(origin))
    git(work, "push", "-q", "origin", "main")
    return origin


def test_a_team_with_azure_agents_alone_never_waits_for_a_self_hosted_runner(
    fake_azure: FakeAzureProcess, world: World, tmp_path: Path
) -> None:
    """release-agents.yml copied into a repository whose only agent is on Azure: a push that changes no agent runs
    its changes and status jobs on hosted runners (the status job's runner comes from the agents it reports)."""
    origin = plain_repository(tmp_path / "repository", ("azure-agent",))
    world.connect(fake_azure, origin, {})
    before = git(origin, "rev-parse", "main")
    run = run_workflow(
        world, WORKFLOWS / "release-agents.yml", event_name="push", ref="refs/heads/main", payload={"before": before}
    )
    assert run.results == {"changes": "success", "deploy": "skipped", "status": "success"}, run.log
    assert {key: [leg.runs_on for leg in legs] for key, legs in run.jobs.items()} == {
        "changes": ["ubuntu-latest"],
        "deploy": [],
        "status": ["ubuntu-latest"],
    }
    [changes], [status] = run.jobs["changes"], run.jobs["status"]
    assert changes.outputs("agents")["targets"] == '["azure"]'
    # It asked the fake Azure for the app (none yet): the hosted runner reaches everything it reports.
    [row] = [line for line in status.summary.splitlines() if line.startswith("| azure-agent |")]
    assert row.startswith("| azure-agent | azure | **absent** | - | - |"), status.log


@pytest.mark.parametrize("workflow", ["rollback.yml", "promote.yml"])
def test_a_docker_agent_dispatched_onto_a_hosted_runner_is_refused_before_anything_runs(
    workflow: str, world: World, tmp_path: Path
) -> None:
    """A team that had Azure agents alone pinned its dispatch workflows to a hosted runner, then added a docker
    agent. Dispatched for it, the job stops at its refusal step with one error and exit 11 (the target cannot be
    reached: the agent's engine is on its own machine): the action never runs, no record is read or written."""
    job = workflow.removesuffix(".yml")
    text = (WORKFLOWS / workflow).read_text()
    pinned, count = re.subn(r"^    runs-on: \$\{\{ matrix\.target .*$", "    runs-on: ubuntu-latest", text, flags=re.M)
    assert count == 1
    copied = tmp_path / workflow
    copied.write_text(pinned)
    world.origin = world.artifacts.origin = plain_repository(tmp_path / "repository", ("azure-agent", "hello-agent"))
    config = "examples/hello-agent/agent.yaml"
    run = run_workflow(world, copied, event_name="workflow_dispatch", ref="refs/heads/main", inputs={"config": config})
    assert run.results == {"agent": "success", job: "failure"}, run.log
    [leg] = run.jobs[job]
    assert leg.context["matrix"] == {"agent": "hello-agent", "config": config, "target": "docker"}
    assert (leg.runs_on, leg.runner["environment"]) == ("ubuntu-latest", "github-hosted")
    [checkout, refusal, action] = leg.steps
    assert checkout.outcome == "success"
    assert (refusal.name, refusal.outcome, refusal.exit_code) == (REFUSAL, "failure", 11)
    assert refusal.log.splitlines() == [
        f"::error file={config},title=agentdeploy: wrong runner::{config} deploys to the docker target, whose engine "
        "is on the agent's own machine, and this job runs on a GitHub-hosted runner: run it with runs-on: "
        "[self-hosted, agent-host]. Nothing was changed."
    ]
    assert (action.name, action.outcome, action.exit_code) == (job, "skipped", None)
    assert world.artifacts.requests == [] and world.artifacts.listed == []


@pytest.mark.docker
def test_release_rollback_and_promote_as_copied_from_the_examples(
    fake_azure: FakeAzureProcess, world: World, tmp_path: Path, base_image: str, repository_name: str
) -> None:
    repository = Repository(tmp_path / "repository", base_image, repository_name)
    world.connect(fake_azure, repository.origin, {"OPENAI_API_KEY": OPENAI_KEY})

    # v1.0.0: the first release. No record anywhere yet; the run uploads one.
    sha1 = repository.release("v1.0.0")
    first = release(world, "v1.0.0")
    v1 = first.outputs("deploy")
    assert v1["status"] == "succeeded" and v1["previous-revision"] == "", first.log
    assert v1["image-tag"] == sha1  # tag_strategy git_sha: the short commit sha, clean (no -dirty-)
    assert v1["image"] == f"127.0.0.1:5000/{repository_name}@{v1['digest']}"
    assert first.environment_url == v1["url"] and v1["url"].startswith("https://azure-agent.")
    # An Azure agent: a hosted runner, its own queue (a docker agent's release would not wait for it).
    assert (first.runs_on, first.runner["environment"]) == ("ubuntu-latest", "github-hosted")
    assert first.concurrency == {"group": "agentdeploy-azure-agent-production", "cancel-in-progress": False}
    # Pushed, attested, then deployed: the same digest, not built again, attested before anything changed.
    pushed = first.outputs("image")
    assert (pushed["status"], pushed["digest"]) == ("pushed", v1["digest"]), first.log
    assert pushed["repository"] == f"127.0.0.1:5000/{repository_name}"
    assert first.action_steps["run"]["outputs"]["skipped-build"] == "true"  # the deploy step's own
    [attested] = [step for step in first.steps if step.name == "actions/attest-build-provenance@v2"]
    assert attested.outcome == "success" and v1["attestation"].startswith(world.artifacts.attestations.url)
    assert f"| Attestation | [build provenance]({v1['attestation']})" in first.summary
    record = json.loads(Path(first.workspace, v1["state-file"]).read_text())
    assert [entry["attestation"] for entry in record["history"]] == [v1["attestation"]]
    assert first.action_steps["install"]["outputs"]["installer"] in ("uv", "cached")
    assert "state: no artifact agentdeploy-state-azure-agent-agents-env yet" in first.log
    assert world.artifacts.names() == ["agentdeploy-state-azure-agent-agents-env"]
    assert "### agentdeploy deploy in environment `production`" in first.summary
    # Masked before anything else could print it: the runner hides every later occurrence.
    assert [line for line in first.log.splitlines() if OPENAI_KEY in line] == [f"::add-mask::{OPENAI_KEY}"]
    live = app(fake_azure)
    # The secret came from secrets.* through the step's env: and went in as a Container Apps secret.
    assert {"name": "openai-api-key", "value": OPENAI_KEY} in live["app"]["properties"]["configuration"]["secrets"]

    # v1.1.0: a new version, on a fresh runner (its checkout has no record: the artifact brings it back).
    sha2 = repository.release(
        "v1.1.0", {"examples/azure-agent/instructions.md": "keep answers short=>keep answers to two sentences"}
    )
    second = release(world, "v1.1.0")
    v2 = second.outputs("deploy")
    assert v2["status"] == "succeeded" and v2["previous-revision"] == v1["revision"], second.log
    assert v2["image-tag"] == sha2 and v2["revision"] != v1["revision"]
    assert "state: restored from artifact agentdeploy-state-azure-agent-agents-env" in second.log
    assert second.action_steps["install"]["outputs"]["installer"] == "cached"  # a warm runner: no install

    # A fork's pull request ran release.yml (a fork may edit its triggers) and uploaded a newer record of the same
    # name, whose versions are images of its own: the API lists it first; every later run skips it.
    forged = json.loads(Path(second.workspace, v2["state-file"]).read_text())
    for entry in forged["history"]:
        entry["image"], entry["digest"] = f"evil.example/agent@sha256:{'e' * 64}", f"sha256:{'e' * 64}"
    world.artifacts.add_run(900, ref="refs/heads/patch-1", event="pull_request", fork=True)
    fork_artifact = world.artifacts.add(
        "agentdeploy-state-azure-agent-agents-env",
        "azure-agent.agents-env.json",
        json.dumps(forged).encode(),
        run_id=900,
        created="2099-01-01T00:00:00Z",
    )

    # rollback.yml with its default: the version before, from the record release.yml's run uploaded.
    back = dispatch(world, "rollback.yml")
    rolled = back.outputs("rollback")
    # Single revision mode takes no traffic by revision name: v1's template serves again as a new revision.
    assert rolled["revision"] == f"{v1['revision']}-r1" and rolled["image"] == v1["image"], back.log
    assert (
        f"skipped: artifact {fork_artifact}: run 900 came from another repository (a fork: head repository "
        f"{world.artifacts.FORK_ID})" in back.log
    )
    assert "| State | artifact agentdeploy-state-azure-agent-agents-env of run " in back.summary
    assert "(release.yml on v1.1.0, push," in back.summary
    assert back.environment_url == rolled["url"]
    # ... and forward again by the image tag the release printed (the short sha, as the workflow's input says).
    forward = dispatch(world, "rollback.yml", to=v2["image-tag"]).outputs("rollback")
    assert forward["revision"] == f"{v2['revision']}-r1" and forward["image"] == v2["image"]

    # Blue/green: the team turns it on in the config (as its comment says) and releases a new version, which waits
    # at 0% as the candidate; then promote.yml.
    repository.release(
        "v1.2.0",
        {
            AGENT: "  # rollout:\n  #   strategy: blue-green\n=>  rollout:\n    strategy: blue-green\n",
            "examples/azure-agent/data/faq.md": "Free, Team and Enterprise=>Free, Team, Business and Enterprise",
        },
    )
    third = release(world, "v1.2.0")
    candidate = third.outputs("deploy")
    assert candidate["status"] == "candidate", third.log
    assert "(0% until promote)" in third.summary
    promoted_run = dispatch(world, "promote.yml")
    promoted = promoted_run.outputs("promote")
    assert promoted["status"] == "promoted" and promoted["revision"] == candidate["revision"], promoted_run.log

    report = fake_azure.stop()
    assert report["server_errors"] == []
    container = report["apps"]["azure-agent"]["properties"]["template"]["containers"][0]
    assert container["image"] == candidate["image"]
    # Six runs, one record: every run uploaded it, each later run started from the newest trusted one (the fork's
    # is still listed, never taken).
    assert len(world.artifacts.listed) == 7


@pytest.mark.docker
def test_a_release_whose_digest_was_not_attested_deploys_nothing(
    fake_azure: FakeAzureProcess, world: World, tmp_path: Path, base_image: str, repository_name: str
) -> None:
    """release.yml's deploy step refuses a digest GitHub holds no provenance for: a team that drops the attest
    step (or whose attestation went to another digest) gets exit 8 and no app."""
    repository = Repository(tmp_path / "repository", base_image, repository_name)
    workflow = tmp_path / "release-without-attestation.yml"
    document = yaml.safe_load((WORKFLOWS / "release.yml").read_text())
    job = document["jobs"]["deploy"]
    job["steps"] = [step for step in job["steps"] if step.get("uses") != "actions/attest-build-provenance@v2"]
    workflow.write_text(yaml.safe_dump(document, sort_keys=False))
    world.connect(fake_azure, repository.origin, {"OPENAI_API_KEY": OPENAI_KEY})
    repository.release("v1.0.0")
    run = run_workflow(world, workflow, event_name="push", ref="refs/tags/v1.0.0")
    assert run.results == {"agent": "success", "deploy": "failure"}, run.log
    leg = changing_leg(run)
    pushed, deployed = leg.outputs("image"), leg.outputs("deploy")
    assert pushed["status"] == "pushed" and deployed["status"] == "failed", leg.log
    assert json.loads(deployed["results"])[0]["exit_code"] == 8
    assert f"{pushed['digest']} has no build provenance attestation in GitHub; nothing was deployed" in leg.log
    asked = f"/repos/org/agents/attestations/{pushed['digest']}?predicate_type=provenance&per_page=30"
    assert world.artifacts.attestations.requests == [("GET", asked)]
    assert writes_to(fake_azure, "azure-agent", 0) == []  # no app, no lease: nothing was written


def readme_block(containing: str) -> str:
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    [block] = [b for b in blocks if containing in b]
    return str(block)


@pytest.mark.docker
def test_a_dedicated_state_branch_as_the_readme_says_with_a_protected_default_branch(
    fake_azure: FakeAzureProcess, world: World, tmp_path: Path, base_image: str, repository_name: str
) -> None:
    repository = Repository(tmp_path / "repository", base_image, repository_name)
    # main is protected: a push of the workflow's (a commit by github-actions[bot]) is refused there.
    hook = repository.origin / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\nwhile read old new ref; do\n"
        '  if [ "$ref" = refs/heads/main ] && [ "$(git log -1 --format=%an "$new")" = "github-actions[bot]" ]; then\n'
        "    echo 'GH006: Protected branch update failed for refs/heads/main.' >&2; exit 1\n  fi\ndone\n"
    )
    hook.chmod(0o755)
    # The README's one-time commands, as the team types them in its clone.
    subprocess.run(
        ["bash", "-eo", "pipefail", "-c", readme_block("refs/heads/agentdeploy-state")],
        cwd=repository.work,
        env={**os.environ, **GIT_IDENTITY},
        check=True,
        capture_output=True,
    )
    assert git(repository.work, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    # The README's changes to each workflow.
    workflows = tmp_path / "state-branch-workflows"
    workflows.mkdir()
    for name in ("release.yml", "rollback.yml"):
        text = (WORKFLOWS / name).read_text()
        edited = re.sub(
            r"^( +)state: artifact.*$", r"\1state: commit\n\1state-branch: agentdeploy-state", text, flags=re.M
        )
        # In the permissions of the job that deploys (the one before it only reads the config).
        edited = re.sub(r"^( +)contents: read.*\n +actions: read.*\n", r"\1contents: write\n", edited, flags=re.M)
        jobs = yaml.safe_load(edited)["jobs"]
        attesting = {"attestations": "write"} if name == "release.yml" else {}
        changing = jobs["deploy" if name == "release.yml" else "rollback"]["permissions"]
        assert changing == {"contents": "write", "id-token": "write", **attesting}, name
        assert "permissions" not in jobs["agent"], name  # the workflow's contents: read
        (workflows / name).write_text(edited)

    world.connect(fake_azure, repository.origin, {"OPENAI_API_KEY": OPENAI_KEY})
    main = git(repository.origin, "rev-parse", "main")

    repository.release("v1.0.0")
    first = run_workflow(world, workflows / "release.yml", event_name="push", ref="refs/tags/v1.0.0")
    assert first.conclusion == "success", first.log
    v1 = changing_leg(first).outputs("deploy")
    assert v1["state-commit"] == git(repository.origin, "rev-parse", "agentdeploy-state"), first.log
    record = "examples/azure-agent/.agentdeploy/azure-agent.agents-env.json"
    assert git(repository.origin, "ls-tree", "-r", "--name-only", "agentdeploy-state") == record
    assert git(repository.origin, "rev-parse", "main") == main  # the protected branch is untouched
    assert world.artifacts.listed == []

    repository.release("v1.1.0", {"examples/azure-agent/instructions.md": "keep answers short=>be brief"})
    second = run_workflow(world, workflows / "release.yml", event_name="push", ref="refs/tags/v1.1.0")
    assert second.conclusion == "success", second.log
    assert (
        changing_leg(second).outputs("deploy")["previous-revision"] == v1["revision"]
    )  # it started from the branch's record
    back = run_workflow(
        world, workflows / "rollback.yml", event_name="workflow_dispatch", ref="refs/heads/main", inputs={}
    )
    assert back.conclusion == "success", back.log
    assert (
        changing_leg(back).outputs("rollback")["revision"] == f"{v1['revision']}-r1"
    )  # Single mode: a copy of v1's template
    assert git(repository.origin, "rev-list", "--count", "agentdeploy-state") == "4"  # the empty start + 3 runs


def writes_to(fake: FakeAzureProcess, app_name: str, since: int) -> list[str]:
    """The ARM writes (method path) made to one app since the request numbered `since`."""
    env = fake.env
    answer = requests.get(
        f"{env['AGENTDEPLOY_ARM_ENDPOINT']}/_fake/writes?since={since}", verify=env["REQUESTS_CA_BUNDLE"], timeout=30
    )
    assert answer.status_code == 200, answer.text
    return [f"{w['method']} {w['path']}" for w in answer.json()["value"] if f"/containerApps/{app_name}" in w["path"]]


def request_count(fake: FakeAzureProcess) -> int:
    env = fake.env
    answer = requests.get(
        f"{env['AGENTDEPLOY_ARM_ENDPOINT']}/_fake/requests", verify=env["REQUESTS_CA_BUNDLE"], timeout=30
    )
    return len(answer.json()["value"])


def legs(run: WorkflowRun, job: str) -> dict[str, dict[str, str]]:
    """A matrix job's legs: agent -> the agentdeploy step's outputs."""
    return {leg.context["matrix"]["agent"]: leg.outputs("deploy") for leg in run.jobs[job]}


@pytest.mark.docker
@pytest.mark.realruntime
def test_three_agents_release_only_what_changed_and_roll_back_and_promote_from_dispatch(
    fake_azure: FakeAzureProcess,
    world: World,
    tmp_path: Path,
    base_image: str,
    real_base: str,
    fake_llm: Any,
    free_port: Any,
    docker_client: Any,
    repository_name: str,
) -> None:
    """The issue's "done when": a repository with three agents copied from examples/ (the Azure one, and two on
    the docker target running the real HoloDeck runtime) runs release-agents.yml on each push to main."""
    hello = DockerAgent(free_port(), f"wf-hello-{free_port()}", real_base, fake_llm.base_url, "")
    support = DockerAgent(
        free_port(), f"wf-support-{free_port()}", real_base, fake_llm.base_url, repository_name + "-s"
    )
    repository = Repository(
        tmp_path / "repository", base_image, repository_name, {"hello-agent": hello, "support-agent": support}
    )
    # No repository secret: each agent's key lives in its own environment (release-agents.yml runs each leg there);
    # rollback.yml and promote.yml run in `production`, which holds what they may be given.
    own = {
        "production-azure-agent": {"OPENAI_API_KEY": OPENAI_KEY},
        "production-hello-agent": {"OPENAI_API_KEY": "sk-hello-secret-1234567890"},
        "production-support-agent": {"SUPPORT_API_KEY": "sk-support-secret-9876543210"},
    }
    production = {"OPENAI_API_KEY": OPENAI_KEY, "SUPPORT_API_KEY": own["production-support-agent"]["SUPPORT_API_KEY"]}
    world.connect(fake_azure, repository.origin, {}, {**own, "production": production})
    workflow = WORKFLOWS / "release-agents.yml"

    def push(before: str) -> WorkflowRun:
        git(repository.work, "push", "-q", "origin", "main")
        run = run_workflow(world, workflow, event_name="push", ref="refs/heads/main", payload={"before": before})
        return run

    try:
        # The push that made the branch (GitHub's `before` is all zeros): every agent deploys, each in its own job.
        first = push("0" * 40)
        assert first.results == {"changes": "success", "deploy": "success", "status": "success"}, first.log
        deployed = legs(first, "deploy")
        assert sorted(deployed) == ["azure-agent", "hello-agent", "support-agent"], first.log
        assert {agent: out["status"] for agent, out in deployed.items()} == dict.fromkeys(deployed, "succeeded")
        runners = {leg.context["matrix"]["agent"]: leg.runs_on for leg in first.jobs["deploy"]}
        assert runners == {"azure-agent": "ubuntu-latest", "hello-agent": AGENT_HOST, "support-agent": AGENT_HOST}
        queues = {leg.context["matrix"]["agent"]: leg.concurrency["group"] for leg in first.jobs["deploy"]}
        assert queues == {agent: f"agentdeploy-{agent}-production" for agent in runners}
        # Docker agents are there, so the status job runs on their machine (it asks their engine).
        assert [leg.runs_on for leg in first.jobs["status"]] == [AGENT_HOST]
        # Each leg saw its own agent's secrets and no other's; each agent runs with its own key.
        seen = {leg.environment_name: leg.context["secrets"] for leg in first.jobs["deploy"]}
        assert seen == own
        for agent, key in ((hello, "sk-hello-secret-1234567890"), (support, "sk-support-secret-9876543210")):
            env = docker_client.containers.get(agent.container).attrs["Config"]["Env"]
            assert f"OPENAI_API_KEY={key}" in env, agent.container
        hello_container = docker_client.containers.get(hello.container).id
        azure_before = request_count(fake_azure)
        v1_support = deployed["support-agent"]

        # A change to the support agent's FAQ: only that agent deploys; the summary still shows all three.
        before = git(repository.work, "rev-parse", "HEAD")
        repository.commit(
            {"examples/support-agent/data/faq.md": "within 30 days=>within 45 days"}, "support: a longer return window"
        )
        second = push(before)
        assert second.results == {"changes": "success", "deploy": "success", "status": "success"}, second.log
        [changes] = second.jobs["changes"]
        matrix = json.loads(changes.outputs("changed")["matrix"])
        assert matrix == {
            "include": [{"agent": "support-agent", "config": "examples/support-agent/agent.yaml", "target": "docker"}]
        }
        assert list(legs(second, "deploy")) == ["support-agent"]
        v2_support = legs(second, "deploy")["support-agent"]
        assert v2_support["status"] == "succeeded" and v2_support["image"] != v1_support["image"], second.log
        assert v2_support["previous-revision"] == v1_support["image"]
        assert writes_to(fake_azure, "azure-agent", azure_before) == []  # Azure was only read
        assert docker_client.containers.get(hello.container).id == hello_container  # never touched
        summary = second.summary
        assert "changed since `" + before[:12] + "`: 1 of 3 agents to deploy" in summary
        assert (
            "| support-agent | `examples/support-agent/agent.yaml` | docker | **yes** | "
            "examples/support-agent/data/faq.md changed |"
        ) in summary
        assert "| hello-agent | `examples/hello-agent/agent.yaml` | docker | no | unchanged |" in summary
        [status] = second.jobs["status"]
        status_table = status.summary
        assert "### agentdeploy status in environment `production`: 3 agents" in status_table, status_table
        for agent, image in (
            ("azure-agent", deployed["azure-agent"]["image"]),
            ("hello-agent", deployed["hello-agent"]["image"]),
            ("support-agent", v2_support["image"]),
        ):
            [row] = [line for line in status_table.splitlines() if line.startswith(f"| {agent} |")]
            assert "| **succeeded** | " in row and f"`{image.rsplit('@', 1)[-1][:19]}`" in row, (agent, row)

        # rollback.yml from workflow_dispatch, for the support agent: v1 serves again, no rebuild.
        back = dispatch(world, "rollback.yml", config="examples/support-agent/agent.yaml")
        # On the support agent's machine, in its queue: the refusal of a hosted runner had nothing to refuse.
        assert (back.runs_on, back.runner["environment"]) == (AGENT_HOST, "self-hosted")
        assert back.concurrency == {"group": "agentdeploy-support-agent-production", "cancel-in-progress": False}
        assert [step.outcome for step in back.steps if step.name == REFUSAL] == ["skipped"]
        rolled = back.outputs("rollback")
        assert rolled["image"] == v1_support["image"] and rolled["status"] == "succeeded", back.log
        assert docker_client.containers.get(support.container).attrs["Config"]["Image"] == v1_support["image"]

        # Blue/green for the Azure agent: its push deploys only it, as the candidate; promote.yml promotes it.
        before = git(repository.work, "rev-parse", "HEAD")
        repository.commit(
            {
                AGENT: "  # rollout:\n  #   strategy: blue-green\n=>  rollout:\n    strategy: blue-green\n",
                "examples/azure-agent/data/faq.md": "Free, Team and Enterprise=>Free, Team, Business and Enterprise",
            },
            "azure: blue/green, and a new plan in the FAQ",
        )
        third = push(before)
        assert list(legs(third, "deploy")) == ["azure-agent"], third.log
        candidate = legs(third, "deploy")["azure-agent"]
        assert candidate["status"] == "candidate", third.log
        promoted_run = dispatch(world, "promote.yml")
        promoted = promoted_run.outputs("promote")
        assert promoted["status"] == "promoted" and promoted["revision"] == candidate["revision"], promoted_run.log

        # A push that touches no agent: the matrix job is skipped (not failed), the status job still reports.
        before = git(repository.work, "rev-parse", "HEAD")
        (repository.work / "NOTES.md").write_text("release notes\n")
        git(repository.work, "add", "NOTES.md")
        git(repository.work, "commit", "-q", "-m", "notes")
        quiet = push(before)
        assert quiet.results == {"changes": "success", "deploy": "skipped", "status": "success"}, quiet.log
        assert "0 of 3 agents to deploy" in quiet.summary and "status in environment `production`: 3 agents" in (
            quiet.summary
        )
    finally:
        for agent in (hello, support):
            for name in (agent.container, agent.container + "-previous"):
                with contextlib.suppress(Exception):  # already gone
                    docker_client.containers.get(name).remove(force=True)
