"""examples/workflows/preview.yml, run by the harness (action/harness.py) as GitHub runs it on `pull_request`: a
pull request from a fork runs no preview and says why, once; one from this repository runs the agent's preview in
the queue of that agent and pull request, and its closing the removal."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from action.harness import (
    ACTION_REFS,
    FakeAzureProcess,
    World,
    condition,
    evaluate,
    read_file_command,
    run_workflow,
)
from action.test_workflows import AGENT, WORKFLOWS, plain_repository
from agentdeploy.github import action
from testkit import ROOT, git

PREVIEW = WORKFLOWS / "preview.yml"
NOTICE = (
    "::notice title=agentdeploy preview::No preview for this pull request: it comes from the fork someone/agents, "
    "and GitHub gives a pull request from a fork no secrets and a read-only token, so nothing is deployed or "
    "commented. To preview it, a maintainer pushes its branch to this repository and opens a pull request from there."
)


@pytest.fixture
def fake_azure(tmp_path: Path) -> Iterator[FakeAzureProcess]:
    fake = FakeAzureProcess(tmp_path / "fake-azure")
    try:
        yield fake
    finally:
        fake.kill()


def pull_request(action_name: str, head: str = "org/agents", number: int = 7) -> dict[str, Any]:
    """The webhook payload of a `pull_request` event (its `number`, and the pull request's head and base)."""
    return {
        "action": action_name,
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"ref": "topic", "sha": "a" * 40, "repo": {"full_name": head}},
            "base": {"ref": "main", "repo": {"full_name": "org/agents"}},
        },
    }


def test_the_preview_jobs_queue_per_agent_and_pull_request_on_a_hosted_runner() -> None:
    """A preview and the removal of one pull request wait for each other, never cancelled half-way; they never join
    the production queue (agentdeploy-<agent>-production), where a waiting preview would replace a waiting release."""
    jobs = yaml.safe_load(PREVIEW.read_text())["jobs"]
    context = {
        "matrix": {"agent": "azure-agent", "config": AGENT, "target": "azure"},
        "github": {"event": pull_request("synchronize"), "repository": "org/agents"},
    }
    for key, command in (("preview", "preview"), ("remove", "preview-remove")):
        job = jobs[key]
        assert evaluate(job["concurrency"], context) == {
            "group": "agentdeploy-azure-agent-preview-pr-7",
            "cancel-in-progress": False,
        }
        assert evaluate(job["runs-on"], context) == "ubuntu-latest"
        [step] = [step for step in job["steps"] if step.get("uses") in ACTION_REFS]
        given = evaluate(step["with"], context)
        assert (given["command"], given["preview-name"], given["config"]) == (command, "pr-7", AGENT)


def test_each_job_that_deploys_or_removes_excludes_a_fork_by_its_own_condition() -> None:
    """Each job that reaches Azure or writes to the pull request says itself that the head repository must be this
    one (not only through `needs`, which a later edit could drop): with every job it needs succeeded, a fork's
    pull request still runs none of them; this repository's runs the preview while open and the removal on close."""
    jobs = yaml.safe_load(PREVIEW.read_text())["jobs"]

    def runs(key: str, activity: str, head: str) -> bool:
        github = {"event": pull_request(activity, head), "repository": "org/agents", "event_name": "pull_request"}
        return condition(jobs[key]["if"], {"github": github}, failed=False)

    wanted = {
        ("opened", "org/agents"): {"fork": False, "agent": True, "preview": True, "remove": False},
        ("closed", "org/agents"): {"fork": False, "agent": True, "preview": False, "remove": True},
        ("opened", "someone/agents"): {"fork": True, "agent": False, "preview": False, "remove": False},
        ("closed", "someone/agents"): {"fork": False, "agent": False, "preview": False, "remove": False},
    }
    for (activity, head), expected in wanted.items():
        assert {key: runs(key, activity, head) for key in jobs} == expected, (activity, head)


@pytest.mark.parametrize("activity", ["opened", "synchronize", "reopened"])
def test_a_pull_request_from_a_fork_runs_no_preview_and_says_why_once(world: World, activity: str) -> None:
    run = run_workflow(
        world,
        PREVIEW,
        event_name="pull_request",
        ref="refs/pull/7/merge",
        payload=pull_request(activity, "someone/agents"),
    )
    assert run.results == {"fork": "success", "agent": "skipped", "preview": "skipped", "remove": "skipped"}, run.log
    [job] = run.jobs["fork"]
    [step] = job.steps
    assert step.log.splitlines() == [NOTICE]
    assert world.artifacts.requests == []  # nothing asked of GitHub's API


def test_the_close_of_a_forks_pull_request_runs_nothing(world: World) -> None:
    run = run_workflow(
        world,
        PREVIEW,
        event_name="pull_request",
        ref="refs/pull/7/merge",
        payload=pull_request("closed", "someone/agents"),
    )
    assert run.results == dict.fromkeys(("fork", "agent", "preview", "remove"), "skipped")


def test_a_pull_request_of_this_repository_runs_the_preview_and_its_close_the_removal(
    fake_azure: FakeAzureProcess, world: World, tmp_path: Path
) -> None:
    """The same-repository pull request: the agent job reads the config, the preview job runs the Action with
    command preview in its queue, against the fake Azure: the app was never deployed, so the preview is refused
    before anything is built (a preview is a revision beside production). The close runs preview-remove: nothing
    to remove on Azure, and on the pull request (the fake GitHub API behind the harness's) nothing to retire."""
    origin = plain_repository(tmp_path / "repository", ("azure-agent",))
    git(origin, "update-ref", "refs/pull/7/merge", "main")  # GitHub's merge commit of the pull request
    world.connect(fake_azure, origin, {"OPENAI_API_KEY": "sk-preview-secret-0123456789"})
    opened = run_workflow(
        world, PREVIEW, event_name="pull_request", ref="refs/pull/7/merge", payload=pull_request("opened")
    )
    assert opened.results == {"fork": "skipped", "agent": "success", "preview": "failure", "remove": "skipped"}
    [leg] = opened.jobs["preview"]
    assert leg.concurrency == {"group": "agentdeploy-azure-agent-preview-pr-7", "cancel-in-progress": False}
    [checkout, step] = leg.steps
    assert checkout.log.startswith("checked out refs/pull/7/merge at ")
    assert (step.outcome, step.outputs["status"]) == ("failure", "failed"), leg.log
    refusal = (
        "::error title=agentdeploy::container app azure-agent does not exist: a preview is a revision of the deployed "
        "app; nothing was deployed (fix: deploy the agent once (agentdeploy deploy), then preview pull requests "
        "beside it)"
    )
    assert refusal in step.log.splitlines(), step.log
    assert "image: build, push, verify" not in step.log  # refused before the build
    assert world.artifacts.pulls.comments_of(7) == []

    closed = run_workflow(
        world, PREVIEW, event_name="pull_request", ref="refs/pull/7/merge", payload=pull_request("closed")
    )
    [leg] = closed.jobs["remove"]
    assert closed.results == {"fork": "skipped", "agent": "success", "preview": "skipped", "remove": "success"}, leg.log
    assert leg.steps[1].outputs["plan"] == "no preview pr-7: nothing to remove", leg.log
    # The removal asked the pull request's comments and the environment's deployments, and wrote nothing.
    assert [entry.split("?")[0] for entry in world.artifacts.pulls.log] == [
        "GET /repos/org/agents/deployments",
        "GET /repos/org/agents/issues/7/comments",
    ]


def run_action(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **inputs: str) -> tuple[int, dict[str, str], str]:
    monkeypatch.chdir(ROOT)
    output, printed = tmp_path / "output", io.StringIO()
    output.touch()
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    code = action.run({f"AGENTDEPLOY_{k.upper()}": v for k, v in inputs.items()}, printed)
    return code, read_file_command(output), printed.getvalue()


def test_the_preview_commands_need_a_name_and_one_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, outputs, printed = run_action(tmp_path, monkeypatch, command="preview", config=AGENT)
    assert (code, outputs["status"]) == (2, "failed")
    assert (
        "::error title=agentdeploy::input preview-name is empty: command preview names the preview (its revision's "
        "label) (fix: preview-name: pr-${{ github.event.number }})"
    ) in printed.splitlines()
    code, outputs, printed = run_action(
        tmp_path, monkeypatch, command="preview", config="examples/*/agent.yaml", preview_name="pr-7"
    )
    assert (code, outputs["status"]) == (2, "failed")
    assert (
        "::error title=agentdeploy::command preview previews one agent, and config names several"
    ) in printed.splitlines()
