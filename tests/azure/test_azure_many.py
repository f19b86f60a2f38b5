"""Container Apps serialises writes within one managed environment (FACTS.md; microsoft/aspire#18682): while one
app's operation is in progress, a create or update of another app in the same environment is refused with
ContainerAppOperationInProgress. Four agents deployed to one environment at once, by four CLI processes against
the fake ARM (which refuses those writes as the service does), must all succeed: each waits the refusal out.

The helpers mirror tests/azure/test_azure_cli.py (environ_for, write_agent, start_cli): the real build and push to
the loopback registry, the production credential path (GitHub OIDC -> Entra -> ARM, all fakes), the real SDK."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agentdeploy.cli import main
from agentdeploy.errors import ExitCode
from fakes.arm import FakeArm, RecordedRequest
from fakes.arm_state import OPERATION_IN_PROGRESS, ApiError, ArmState, Clock
from testkit import AZURE_ENVIRONMENT, AZURE_RESOURCE_GROUP, AZURE_SUBSCRIPTION, azure_cli_environ, write_azure_agent

SUB, RG, ENV = AZURE_SUBSCRIPTION, AZURE_RESOURCE_GROUP, AZURE_ENVIRONMENT
AGENTS = ("ava", "ben", "cas", "dot")


def environ_for(arm: FakeArm) -> dict[str, str]:
    return azure_cli_environ(arm, API_KEY="sk-many-sentinel-77")


def start_cli(environ: dict[str, str], *argv: str) -> subprocess.Popen[str]:
    env = {
        **environ,
        "REQUESTS_CA_BUNDLE": os.environ["REQUESTS_CA_BUNDLE"],
        "PYTHONPATH": os.pathsep.join(sys.path),
        "HOME": os.environ.get("HOME", "/tmp"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "agentdeploy", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def busy_answers(arm: FakeArm) -> list[tuple[str, str, str]]:
    """(method, app, code) of every write the fake refused because another was in flight."""
    found = []
    for request in arm.requests:
        body = request.response_body if isinstance(request.response_body, dict) else {}
        code = str((body.get("error") or body).get("code", "")) if request.status == 409 else ""
        if code in (OPERATION_IN_PROGRESS, "ContainerAppLockConflict"):
            found.append((request.method, request.path.rsplit("/", 1)[-1], code))
    return found


def test_the_fake_refuses_a_write_while_another_app_of_its_environment_is_busy() -> None:
    state = ArmState(provisioning_delay=5.0, env_domain="example.io", clock=Clock())
    state.base_url = "https://127.0.0.1"
    env = state.add_environment(SUB, RG, ENV, "eastus", None)
    other = state.add_environment(SUB, RG, "other-env", "eastus", None)

    def body(environment: str) -> dict[str, object]:
        return {
            "location": "eastus",
            "properties": {
                "environmentId": environment,
                "template": {
                    "containers": [{"name": "c", "image": "img:1", "resources": {"cpu": 0.5, "memory": "1Gi"}}]
                },
            },
        }

    state.put_app(SUB, RG, "first", body(env.id), "2024-03-01")  # its create is in progress for 5 s
    with pytest.raises(ApiError) as refused:
        state.put_app(SUB, RG, "second", body(env.id), "2024-03-01")
    reply = refused.value.reply
    assert reply.status == 409 and reply.body["error"]["code"] == OPERATION_IN_PROGRESS
    assert reply.body["error"]["message"].startswith(
        "Cannot modify a container app 'second' because there is an active provisioning operation in progress."
    )
    state.put_app(SUB, RG, "elsewhere", body(other.id), "2024-03-01")  # another environment: not held up
    state.clock.offset += 6  # the first create is done
    state.put_app(SUB, RG, "second", body(env.id), "2024-03-01")


@pytest.mark.docker
def test_four_agents_deploy_to_one_environment_at_once_and_all_succeed(
    start_arm: Callable[..., FakeArm], tmp_path: Path, base_image: str, repository_name: str
) -> None:
    arm = start_arm(provisioning_delay=0.3)
    environ = environ_for(arm)
    configs = [
        write_azure_agent(tmp_path / name, f"{repository_name}-{name}", base_image, name=name, health_timeout=60)
        for name in AGENTS
    ]
    # First, one after another: the four images are built and pushed and the apps created, so that in the round
    # that matters every run goes straight to ARM (a runtime setting changes: no image input does, and the build
    # is skipped; the new tag only keeps a rebuild possible, should another test session re-import the base).
    for config in configs:
        out, err = io.StringIO(), io.StringIO()
        assert main(["deploy", str(config), "--json"], environ=environ, out=out, err=err) == 0, err.getvalue()
    for config in configs:
        config.write_text(
            config.read_text()
            .replace("LOG_LEVEL: info", "LOG_LEVEL: debug")
            .replace("custom_tag: v1", "custom_tag: v2")
        )
    arm.provisioning_delay = 1.5  # every write holds the environment for 1.5 s
    first_request = len(arm.requests)

    runs = [start_cli(environ, "deploy", str(config), "--json") for config in configs]
    finished = [(process.wait(240), *process.communicate()) for process in runs]

    for name, (code, out, err) in zip(AGENTS, finished, strict=True):
        assert code == ExitCode.OK, f"{name}:\n{err}"
        result = json.loads(out)
        assert result["status"] == "succeeded" and result["image_tag"] == "v2", err
        app = arm.app(SUB, RG, name)
        assert app is not None and app["properties"]["latestReadyRevisionName"] == result["revision"]
        env = app["properties"]["template"]["containers"][0]["env"]
        assert {"name": "LOG_LEVEL", "value": "debug"} in env
        assert app["tags"]["agentdeploy-lease"].endswith(";held=0")
        assert "sk-many-sentinel-77" not in out + err
    arm_requests = arm.requests[first_request:]
    refused = busy_answers(arm)
    assert any(code == OPERATION_IN_PROGRESS for _, _, code in refused), refused  # the fake did hold them up
    waited = "\n".join(err for _, _, err in finished)
    assert "another app's change in its environment (ContainerAppOperationInProgress)" in waited
    assert all(r.status in (200, 201, 202, 204, 409) for r in arm_requests if _is_arm_write(r)), [
        (r.method, r.path, r.status) for r in arm_requests if _is_arm_write(r)
    ]


def _is_arm_write(request: RecordedRequest) -> bool:
    return request.method in ("PUT", "PATCH", "DELETE") and "/containerApps/" in request.path
