"""`agentdeploy preview` end to end: a real build and push to the loopback registry, the credential path through
the fakes, the real SDK against the fake ARM; production's traffic and its record stay as they were."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from action.harness import read_file_command
from agentdeploy.errors import ExitCode
from fakes.arm import FakeArm
from testkit import (
    AZURE_ENVIRONMENT,
    AZURE_RESOURCE_GROUP,
    AZURE_SUBSCRIPTION,
    REGISTRY,
    azure_cli_environ,
    run_cli,
    write_azure_agent,
)

pytestmark = pytest.mark.docker

SUB, RG, ENV = AZURE_SUBSCRIPTION, AZURE_RESOURCE_GROUP, AZURE_ENVIRONMENT


@pytest.fixture
def arm(start_arm: Callable[..., FakeArm]) -> FakeArm:
    return start_arm()


def environ_for(arm: FakeArm) -> dict[str, str]:
    return azure_cli_environ(arm, API_KEY="sk-cli-sentinel-42")


run = run_cli  # testkit.run_cli: the CLI in this process


def traffic(arm: FakeArm) -> list[tuple[str, int, str | None]]:
    app = arm.app(SUB, RG, "cli-agent")
    assert app is not None
    entries = app["properties"]["configuration"]["ingress"]["traffic"]
    return [(t.get("revisionName", "latest"), t["weight"], t.get("label")) for t in entries]


def test_preview_then_remove_beside_production(
    arm: FakeArm, tmp_path: Path, base_image: str, repository_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentdeploy.targets.azure import target as azure_target

    probed: list[str] = []

    def probe(url: str) -> object:  # the probe log: the gate's probes reach the fake's ingress
        probed.append(url)
        return arm.http(url)

    monkeypatch.setattr(azure_target, "http_probe", probe)
    config = write_azure_agent(tmp_path / "agent", repository_name, base_image)
    config.write_text(config.read_text() + "      revision_mode: multiple\n      ingress_external: true\n")
    environ = environ_for(arm)
    code, out, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    production = json.loads(out)
    production_state = config.parent / ".agentdeploy" / f"cli-agent.{ENV}.json"
    recorded = production_state.read_text()

    # The pull request's change: another prompt, its own tag.
    (config.parent / "prompt.md").write_text("You are cli-agent, previewed. Be kind.")
    config.write_text(config.read_text().replace("custom_tag: v1", "custom_tag: pr-7"))
    code, out, err = run(environ, "preview", str(config), "--name", "pr-7", "--json")
    assert code == ExitCode.OK, err
    made = json.loads(out)
    assert made["status"] == "succeeded"
    assert made["url"] == production["url"].replace("https://cli-agent.", "https://cli-agent---pr-7.")
    assert made["digest"].startswith("sha256:") and made["digest"] != production["digest"]
    assert made["image"] == f"{REGISTRY}/{repository_name}@{made['digest']}"
    assert made["revision"].startswith("cli-agent--pr-7-pr-7-")
    assert traffic(arm) == [(production["revision"], 100, None), (made["revision"], 0, "pr-7")]
    assert arm.probe(made["url"] + "/health") == 200
    assert made["url"] + "/health" in probed  # the preview was verified at its label URL
    assert made["url"] + "/health" in probed  # the preview was verified at its label URL
    assert production_state.read_text() == recorded  # production's record untouched
    own = json.loads((config.parent / ".agentdeploy" / f"cli-agent.{ENV}-preview-pr-7.json").read_text())
    assert (own["current"]["revision"], own["current"]["digest"]) == (made["revision"], made["digest"])
    assert "sk-cli-sentinel-42" not in out + err + json.dumps(own)

    code, out, err = run(environ, "preview", str(config), "--name", "pr-7", "--remove", "--json")
    assert code == ExitCode.OK, err
    removed = json.loads(out)
    assert (removed["status"], removed["plan"]) == ("succeeded", f"removed label pr-7, revision {made['revision']}")
    assert traffic(arm) == [(production["revision"], 100, None)]
    assert production_state.read_text() == recorded
    own = json.loads((config.parent / ".agentdeploy" / f"cli-agent.{ENV}-preview-pr-7.json").read_text())
    assert own["current"] is None and own["history"][0]["status"] == "destroyed"


def test_a_bad_name_and_the_docker_target_are_refused_before_anything_runs(arm: FakeArm, tmp_path: Path) -> None:
    config = write_azure_agent(tmp_path / "agent", "team/never-built", "python:3.12-slim")
    environ = environ_for(arm)
    code, out, err = run(environ, "preview", str(config), "--name", "PR-7")
    assert code == ExitCode.USAGE and out == ""
    assert (
        "error: preview name 'PR-7' cannot be a revision label: a label is lower-case letters, digits and single "
        + ("hyphens, starting with a letter and not ending with a hyphen; nothing was deployed")
        in err
    )
    code, out, err = run(environ, "preview", str(config), "--name", "pr-7", "--target", "docker")
    assert code == ExitCode.USAGE and out == ""
    assert "error: the docker target has no previews: nothing was deployed" in err
    assert arm.requests == [] and not (config.parent / ".agentdeploy").exists()


def test_the_action_previews_comments_once_updates_in_place_and_removes(
    arm: FakeArm, tmp_path: Path, base_image: str, repository_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`command: preview` on a pull_request event: the preview on the fake Azure, then one sticky comment on the
    fake GitHub API with its URL and digest, edited in place on the next push; `preview-remove` on close."""
    from agentdeploy.github import action
    from agentdeploy.targets.azure import target as azure_target
    from fakes.github_api import FakeGitHubApi

    monkeypatch.setattr(azure_target, "http_probe", arm.http)  # the gate's probes reach the fake's ingress
    config = write_azure_agent(tmp_path / "agent", repository_name, base_image)
    config.write_text(config.read_text() + "      revision_mode: multiple\n      ingress_external: true\n")
    environ = environ_for(arm)
    assert run(environ, "deploy", str(config))[0] == ExitCode.OK
    github = FakeGitHubApi(pulls=(7,))
    github.token("ghs_preview_token_0123456789")
    monkeypatch.chdir(config.parent)
    event = tmp_path / "event.json"
    head = {"sha": "c" * 40, "repo": {"full_name": "org/agents"}}
    pull = {"number": 7, "head": head, "base": {"repo": {"full_name": "org/agents"}}}
    event.write_text(json.dumps({"action": "opened", "number": 7, "pull_request": pull}))

    def step(command: str) -> tuple[int, dict[str, str], str]:
        output = tmp_path / f"output-{command}"
        output.write_text("")
        monkeypatch.setenv("GITHUB_OUTPUT", str(output))
        printed = io.StringIO()
        code = action.run(
            {
                **environ,
                "AGENTDEPLOY_COMMAND": command,
                "AGENTDEPLOY_CONFIG": "agent.yaml",
                "AGENTDEPLOY_PREVIEW_NAME": "pr-7",
                "GITHUB_EVENT_NAME": "pull_request",
                "GITHUB_EVENT_PATH": str(event),
                "GITHUB_API_URL": github.url,
                "GITHUB_REPOSITORY": "org/agents",
                "GITHUB_TOKEN": "ghs_preview_token_0123456789",
                "GITHUB_SERVER_URL": "https://github.com",
                "GITHUB_RUN_ID": "4242",
            },
            printed,
        )
        return code, read_file_command(output), printed.getvalue()

    try:
        code, outputs, log = step("preview")
        assert code == ExitCode.OK, log
        assert outputs["status"] == "succeeded" and outputs["url"].startswith("https://cli-agent---pr-7.")
        [comment] = github.comments_of(7)
        assert f"| URL | {outputs['url']} |" in comment["body"].splitlines()
        assert f"| Digest | `{outputs['digest']}` |" in comment["body"].splitlines()
        [deployment] = github.environment("preview-cli-agent-pr-7")
        assert [(s["state"], s["environment_url"]) for s in deployment.statuses] == [("success", outputs["url"])]

        (config.parent / "prompt.md").write_text("You are cli-agent, pushed again.")
        config.write_text(config.read_text().replace("custom_tag: v1", "custom_tag: pr-7-2"))
        code, again, log = step("preview")
        assert code == ExitCode.OK, log
        [edited] = github.comments_of(7)  # the same comment, edited in place
        assert edited["id"] == comment["id"] and f"| Digest | `{again['digest']}` |" in edited["body"].splitlines()
        assert again["digest"] != outputs["digest"]

        code, _, log = step("preview-remove")
        assert code == ExitCode.OK, log
        assert traffic(arm)[1:] == []  # production alone
        [final] = github.comments_of(7)
        assert final["id"] == comment["id"] and "Removed: pull request #7 is closed" in final["body"]
    finally:
        github.close()
