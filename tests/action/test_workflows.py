"""The example workflows, copied into a repository as a team copies them, run by the harness (action/harness.py)
as GitHub's runner runs them: tag pushes run release.yml, workflow_dispatch runs rollback.yml and promote.yml,
each job on a fresh runner with the real install step, against the fake Azure as a process and the registry on
127.0.0.1:5000. The record travels between runs as GitHub artifacts, as the examples say."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from action.harness import ACTION_REFS, FakeAzureProcess, WorkflowRun, World, run_workflow
from testkit import GIT_IDENTITY, ROOT, git

WORKFLOWS = ROOT / "examples" / "workflows"
AGENT = "examples/azure-agent/agent.yaml"  # where the workflows look for it, in the copy as in this repository
OPENAI_KEY = "sk-from-the-secret-0123456789"


@pytest.fixture
def fake_azure(tmp_path: Path) -> Iterator[FakeAzureProcess]:
    fake = FakeAzureProcess(tmp_path / "fake-azure")
    try:
        yield fake
    finally:
        fake.kill()


class Repository:
    """The team's repository: a working clone, and the bare one standing for GitHub."""

    def __init__(self, root: Path, base_image: str, image_repository: str) -> None:
        self.work, self.origin = root / "work", root / "origin.git"
        shutil.copytree(
            ROOT / "examples" / "azure-agent",
            self.work / "examples" / "azure-agent",
            ignore=shutil.ignore_patterns(".agentdeploy"),
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
        git(self.work, "init", "-q", "-b", "main")
        git(self.work, "add", ".")
        git(self.work, "commit", "-q", "-m", "the azure agent and the example workflows")
        git(root, "init", "-q", "--bare", str(self.origin))
        git(self.work, "remote", "add", "origin", str(self.origin))
        git(self.work, "push", "-q", "origin", "main")

    def release(self, tag: str, change: dict[str, str] | None = None) -> str:
        """Commit a change (path -> (old, new) text replacement as 'old=>new'), tag it, push both; the short sha."""
        for path, edit in (change or {}).items():
            old, new = edit.split("=>")
            file = self.work / path
            assert old in file.read_text(), (path, old)
            file.write_text(file.read_text().replace(old, new))
        if change:
            git(self.work, "commit", "-q", "-am", f"release {tag}")
        git(self.work, "tag", tag)
        git(self.work, "push", "-q", "origin", "main", tag)
        return git(self.work, "rev-parse", "--short=7", "HEAD")


def release(world: World, tag: str) -> WorkflowRun:
    run = run_workflow(world, WORKFLOWS / "release.yml", event_name="push", ref=f"refs/tags/{tag}")
    assert run.conclusion == "success", run.job.log
    return run


def dispatch(world: World, workflow: str, **inputs: str) -> WorkflowRun:
    run = run_workflow(
        world, WORKFLOWS / workflow, event_name="workflow_dispatch", ref="refs/heads/main", inputs=inputs
    )
    assert run.conclusion == "success", run.job.log
    return run


def app(fake: FakeAzureProcess, name: str = "azure-agent") -> dict[str, Any]:
    env = fake.env
    url = f"{env['AGENTDEPLOY_ARM_ENDPOINT']}/_fake/apps/{env['FAKE_AZURE_SUBSCRIPTION_ID']}/agents-rg/{name}"
    answer = requests.get(url, verify=env["REQUESTS_CA_BUNDLE"], timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_every_example_workflow_runs_the_action_as_a_copied_workflow_uses_it() -> None:
    for workflow in sorted(WORKFLOWS.glob("*.yml")):
        [job] = yaml.safe_load(workflow.read_text())["jobs"].values()
        uses = [step for step in job["steps"] if step.get("uses") in ACTION_REFS]
        assert len(uses) == 1, workflow.name
        assert uses[0]["with"]["config"] in (AGENT, "${{ inputs.config }}"), workflow.name
        assert uses[0]["with"]["state"] == "artifact", workflow.name  # works on a protected default branch
        assert uses[0]["env"] == {"OPENAI_API_KEY": "${{ secrets.OPENAI_API_KEY }}"}, workflow.name
        assert (ROOT / AGENT).exists()
    assert {p.name for p in WORKFLOWS.glob("*.yml")} == {"release.yml", "rollback.yml", "promote.yml"}


@pytest.mark.docker
def test_release_rollback_and_promote_as_copied_from_the_examples(
    fake_azure: FakeAzureProcess, world: World, tmp_path: Path, base_image: str, repository_name: str
) -> None:
    repository = Repository(tmp_path / "repository", base_image, repository_name)
    env = fake_azure.env
    world.origin = repository.origin
    world.job_env = fake_azure.env_lines  # as if a step before ours had started the fake (the self-test does)
    world.vars = {
        "AZURE_CLIENT_ID": env["FAKE_AZURE_CLIENT_ID"],
        "AZURE_TENANT_ID": env["FAKE_AZURE_TENANT_ID"],
        "AZURE_SUBSCRIPTION_ID": env["FAKE_AZURE_SUBSCRIPTION_ID"],
    }
    world.secrets = {"OPENAI_API_KEY": OPENAI_KEY}

    # v1.0.0: the first release. No record anywhere yet; the run uploads one.
    sha1 = repository.release("v1.0.0")
    first = release(world, "v1.0.0")
    v1 = first.outputs("deploy")
    assert v1["status"] == "succeeded" and v1["previous-revision"] == "", first.job.log
    assert v1["image-tag"] == sha1  # tag_strategy git_sha: the short commit sha, clean (no -dirty-)
    assert v1["image"] == f"127.0.0.1:5000/{repository_name}@{v1['digest']}"
    assert first.environment_url == v1["url"] and v1["url"].startswith("https://azure-agent.")
    assert first.job.action_steps["install"]["outputs"]["installer"] in ("uv", "cached")
    assert "state: no artifact agentdeploy-state-azure-agent-agents-env yet" in first.job.log
    assert world.artifacts.names() == ["agentdeploy-state-azure-agent-agents-env"]
    assert "### agentdeploy deploy in environment `production`" in first.job.summary
    # Masked before anything else could print it: the runner hides every later occurrence.
    assert [line for line in first.job.log.splitlines() if OPENAI_KEY in line] == [f"::add-mask::{OPENAI_KEY}"]
    live = app(fake_azure)
    # The secret came from secrets.* through the step's env: and went in as a Container Apps secret.
    assert {"name": "openai-api-key", "value": OPENAI_KEY} in live["app"]["properties"]["configuration"]["secrets"]

    # v1.1.0: a new version, on a fresh runner (its checkout has no record: the artifact brings it back).
    sha2 = repository.release(
        "v1.1.0", {"examples/azure-agent/instructions.md": "keep answers short=>keep answers to two sentences"}
    )
    second = release(world, "v1.1.0")
    v2 = second.outputs("deploy")
    assert v2["status"] == "succeeded" and v2["previous-revision"] == v1["revision"], second.job.log
    assert v2["image-tag"] == sha2 and v2["revision"] != v1["revision"]
    assert "state: restored from artifact agentdeploy-state-azure-agent-agents-env" in second.job.log
    assert second.job.action_steps["install"]["outputs"]["installer"] == "cached"  # a warm runner: no install

    # rollback.yml with its default: the version before.
    back = dispatch(world, "rollback.yml")
    rolled = back.outputs("rollback")
    assert rolled["revision"] == v1["revision"] and rolled["image"] == v1["image"], back.job.log
    assert back.environment_url == rolled["url"]
    # ... and forward again by the image tag the release printed (the short sha, as the workflow's input says).
    forward = dispatch(world, "rollback.yml", to=v2["image-tag"]).outputs("rollback")
    assert forward["revision"] == v2["revision"] and forward["image"] == v2["image"]

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
    assert candidate["status"] == "candidate", third.job.log
    assert "(0% until promote)" in third.job.summary
    promoted_run = dispatch(world, "promote.yml")
    promoted = promoted_run.outputs("promote")
    assert promoted["status"] == "promoted" and promoted["revision"] == candidate["revision"], promoted_run.job.log

    report = fake_azure.stop()
    assert report["server_errors"] == []
    container = report["apps"]["azure-agent"]["properties"]["template"]["containers"][0]
    assert container["image"] == candidate["image"]
    # Six runs, one record: every run uploaded it, each later run started from the newest.
    assert len(world.artifacts.listed) == 6


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
        edited = re.sub(r"^  contents: read.*\n  actions: read.*\n", "  contents: write\n", edited, flags=re.M)
        permissions = yaml.safe_load(edited)["permissions"]
        assert permissions == {"contents": "write", "id-token": "write"}, name
        (workflows / name).write_text(edited)

    env = fake_azure.env
    world.origin, world.job_env = repository.origin, fake_azure.env_lines
    world.vars = {
        "AZURE_CLIENT_ID": env["FAKE_AZURE_CLIENT_ID"],
        "AZURE_TENANT_ID": env["FAKE_AZURE_TENANT_ID"],
        "AZURE_SUBSCRIPTION_ID": env["FAKE_AZURE_SUBSCRIPTION_ID"],
    }
    world.secrets = {"OPENAI_API_KEY": OPENAI_KEY}
    main = git(repository.origin, "rev-parse", "main")

    repository.release("v1.0.0")
    first = run_workflow(world, workflows / "release.yml", event_name="push", ref="refs/tags/v1.0.0")
    assert first.conclusion == "success", first.job.log
    v1 = first.outputs("deploy")
    assert v1["state-commit"] == git(repository.origin, "rev-parse", "agentdeploy-state"), first.job.log
    record = "examples/azure-agent/.agentdeploy/azure-agent.agents-env.json"
    assert git(repository.origin, "ls-tree", "-r", "--name-only", "agentdeploy-state") == record
    assert git(repository.origin, "rev-parse", "main") == main  # the protected branch is untouched
    assert world.artifacts.listed == []

    repository.release("v1.1.0", {"examples/azure-agent/instructions.md": "keep answers short=>be brief"})
    second = run_workflow(world, workflows / "release.yml", event_name="push", ref="refs/tags/v1.1.0")
    assert second.conclusion == "success", second.job.log
    assert second.outputs("deploy")["previous-revision"] == v1["revision"]  # it started from the branch's record
    back = run_workflow(
        world, workflows / "rollback.yml", event_name="workflow_dispatch", ref="refs/heads/main", inputs={}
    )
    assert back.conclusion == "success", back.job.log
    assert back.outputs("rollback")["revision"] == v1["revision"]
    assert git(repository.origin, "rev-list", "--count", "agentdeploy-state") == "4"  # the empty start + 3 runs
