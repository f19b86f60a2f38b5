"""`agentdeploy logs` on Azure and a failed gate's last lines, through the Container Apps log stream API the Azure
CLI uses (getAuthToken, then the revision's replica/container logstream with that token), served by the fake
(tests/fakes/logstream.py) over HTTPS on 127.0.0.1."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from agentdeploy.config.loader import load_config, resolve_for_deploy
from agentdeploy.errors import ExitCode, TargetUnavailableError
from agentdeploy.targets.azure.logs import http_lines
from agentdeploy.targets.azure.release import AzureRelease
from fakes.arm import FakeArm, RecordedRequest
from fakes.logstream import replica_name
from testkit import (
    AZURE_ENVIRONMENT,
    AZURE_RESOURCE_GROUP,
    AZURE_SUBSCRIPTION,
    StaticCredential,
    app_spec,
    arm_client,
    azure_cli_environ,
    run_cli,
    write_azure_agent,
)

SUB, RG, ENV = AZURE_SUBSCRIPTION, AZURE_RESOURCE_GROUP, AZURE_ENVIRONMENT
TOKEN = "static-test-token"
APP = "cli-agent"
IMAGE = "127.0.0.1:5000/team/agent@sha256:"
SECRET = "sk-cli-sentinel-42"


def image(n: int) -> str:
    return IMAGE + f"{n:064x}"


@pytest.fixture
def arm(start_arm: Callable[..., FakeArm]) -> FakeArm:
    return start_arm(token=TOKEN)


def target(arm: FakeArm, tls_files: Any) -> AzureRelease:
    """The release as target.py's factory builds it: the failed revision's log read through the app's stream."""
    from agentdeploy.targets.azure.target import azure_release
    from agentdeploy.targets.base import TargetContext

    sdk = arm_client(arm.base_url, tls_files.ca, SUB, StaticCredential(TOKEN))
    config = load_config(write_azure_agent(Path(tempfile.mkdtemp()) / "agent", "team/agent", "unused-base:1"))
    resolved = resolve_for_deploy(config, {"AZURE_SUBSCRIPTION_ID": SUB, "API_KEY": SECRET})
    context = TargetContext(
        config=config,
        resolved=resolved,
        environ={},
        on_line=lambda line: None,
        docker=lambda: None,  # type: ignore[arg-type,return-value]
        azure_client=lambda subscription: sdk,
        probe=arm.probe,
    )
    return azure_release(context, APP)


def deploy(made: AzureRelease, n: int, tag: str) -> Any:
    spec = app_spec(image=image(n), name=APP)  # the container is named after the app, as spec.py names it
    return made.deploy(spec, tag=tag, environment=ENV, timeout=10, auto_rollback=True, blue_green=False)  # type: ignore[arg-type]


def control(arm: FakeArm, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """A tester's route of the fake (tests/fakes/control.py), over its HTTPS like any other client."""
    answer = requests.post(f"{arm.base_url}/_fake/{path}", json=body, timeout=10)  # CA: REQUESTS_CA_BUNDLE
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def environ_for(arm: FakeArm) -> dict[str, str]:
    return azure_cli_environ(arm, API_KEY=SECRET)


run = run_cli  # testkit.run_cli: the CLI in this process


def streams(arm: FakeArm) -> list[RecordedRequest]:
    return [r for r in arm.requests if r.path.endswith(("/logstream", "/eventstream"))]


def tokens_given(arm: FakeArm) -> list[str]:
    return [
        r.response_body["properties"]["token"]
        for r in arm.requests
        if r.method == "POST" and r.path.lower().endswith("/getauthtoken") and r.status == 200
    ]


def test_logs_prints_the_latest_revisions_last_lines_read_with_the_apps_stream_token(
    arm: FakeArm, tls_files: Any, tmp_path: Path
) -> None:
    first = deploy(target(arm, tls_files), 1, "v1")
    assert first.status == "succeeded", first.reason
    printed = ["INFO:     Started server process [1]", "INFO:     Uvicorn running on http://0.0.0.0:8080", "ready"]
    control(arm, f"apps/{SUB}/{RG}/{APP}/revisions/{first.revision}/logs", {"lines": printed})
    config = write_azure_agent(tmp_path / "agent", "team/agent", "unused-base:1")

    code, out, err = run(environ_for(arm), "logs", str(config), "--tail", "2")

    assert code == ExitCode.OK, err
    assert out.splitlines() == printed[-2:]
    [stream] = streams(arm)
    [token] = tokens_given(arm)
    assert stream.headers["Authorization"] == f"Bearer {token}"  # the stream's own token, not the ARM one
    assert stream.path == (
        f"/subscriptions/{SUB}/resourceGroups/{RG}/containerApps/{APP}/revisions/{first.revision}"
        f"/replicas/{replica_name(first.revision, 0)}/containers/{APP}/logstream"
    )
    assert stream.query == {"follow": "false", "output": "text", "tailLines": "2"}


def test_the_stream_refuses_a_request_without_the_token_and_the_error_says_what_to_grant(
    arm: FakeArm, tls_files: Any
) -> None:
    first = deploy(target(arm, tls_files), 1, "v1")
    url = (
        f"{arm.base_url}/subscriptions/{SUB}/resourceGroups/{RG}/containerApps/{APP}/revisions/{first.revision}"
        f"/replicas/{replica_name(first.revision, 0)}/containers/{APP}/logstream?follow=false&output=text&tailLines=5"
    )
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).status_code == 401  # ARM's

    with pytest.raises(TargetUnavailableError) as refused:
        list(http_lines(url, {}))
    assert refused.value.message == "the Container Apps log stream answered HTTP 401"
    assert refused.value.hint == (
        "the stream's token comes from getAuthToken on the app: the identity needs "
        "Microsoft.App/containerApps/getAuthToken/action (Contributor has it)"
    )


def test_logs_follow_prints_what_the_replica_prints_next_until_the_stream_ends(
    arm: FakeArm, tls_files: Any, tmp_path: Path
) -> None:
    first = deploy(target(arm, tls_files), 1, "v1")
    where = f"apps/{SUB}/{RG}/{APP}/revisions/{first.revision}/logs"
    control(arm, where, {"lines": ["old line", "started"]})
    config = write_azure_agent(tmp_path / "agent", "team/agent", "unused-base:1")
    result: list[tuple[int, str, str]] = []
    reader = threading.Thread(
        target=lambda: result.append(run(environ_for(arm), "logs", str(config), "--tail", "1", "--follow"))
    )
    reader.start()
    deadline = time.monotonic() + 20
    while not streams(arm) and time.monotonic() < deadline:
        time.sleep(0.05)
    control(arm, where, {"lines": ["POST /agent/cli-agent/chat 200", "bye"], "end": True})
    reader.join(timeout=20)

    assert not reader.is_alive()
    [(code, out, err)] = result
    assert code == ExitCode.OK, err
    assert out.splitlines() == ["started", "POST /agent/cli-agent/chat 200", "bye"]
    assert streams(arm)[0].query["follow"] == "true"


def test_logs_system_reads_the_apps_event_stream(arm: FakeArm, tls_files: Any, tmp_path: Path) -> None:
    first = deploy(target(arm, tls_files), 1, "v1")
    event = {"Type": "Normal", "Reason": "ContainerStarted", "Msg": "Started container cli-agent"}
    control(arm, f"apps/{SUB}/{RG}/{APP}/revisions/{first.revision}/logs", {"system": [event]})
    config = write_azure_agent(tmp_path / "agent", "team/agent", "unused-base:1")

    code, out, err = run(environ_for(arm), "logs", str(config), "--system", "--tail", "10")

    assert code == ExitCode.OK, err
    assert [json.loads(line) for line in out.splitlines()] == [
        {"ContainerAppName": APP, "RevisionName": first.revision, **event}
    ]
    [stream] = streams(arm)
    assert stream.path == f"/subscriptions/{SUB}/resourceGroups/{RG}/containerApps/{APP}/eventstream"
    assert stream.query == {"follow": "false", "output": "json", "tailLines": "10"}
    assert stream.headers["Authorization"] == f"Bearer {tokens_given(arm)[0]}"


def test_a_tail_beyond_the_streams_limit_is_refused_before_any_request(arm: FakeArm, tmp_path: Path) -> None:
    config = write_azure_agent(tmp_path / "agent", "team/agent", "unused-base:1")

    code, out, err = run(environ_for(arm), "logs", str(config), "--tail", "301")

    assert (code, out) == (ExitCode.USAGE, "")
    assert err.splitlines()[-2:] == [
        "error: --tail 301: the Container Apps log stream gives 0 to 300 lines",
        "  fix: use --tail 300 or less; older output is in Log Analytics (ContainerAppConsoleLogs_CL)",
    ]
    assert streams(arm) == [] and tokens_given(arm) == []


def test_a_failed_gate_carries_the_failing_revisions_last_20_lines(arm: FakeArm, tls_files: Any) -> None:
    made = target(arm, tls_files)
    assert deploy(made, 1, "v1").status == "succeeded"
    printed = [f"line {n}" for n in range(25)] + ["openai.AuthenticationError: Error code: 401 - invalid_api_key"]
    control(arm, "logs", {"image": image(2), "lines": printed})
    arm.set_image_behaviour(image(2), "crashloop")

    outcome = deploy(made, 2, "v2")

    assert outcome.status == "rolled-back"
    assert outcome.details["log"] == [f"{outcome.attempted}: {line}" for line in printed[-20:]]
    [stream] = streams(arm)
    assert stream.query["tailLines"] == "20" and stream.headers["Authorization"] == f"Bearer {tokens_given(arm)[0]}"


def test_a_revision_without_a_replica_says_why_its_log_is_missing(arm: FakeArm, tls_files: Any) -> None:
    made = target(arm, tls_files)
    arm.set_image_behaviour(image(3), "activation-failed")

    outcome = deploy(made, 3, "v1")

    assert outcome.status == "failed"
    assert outcome.details["log"] == [
        f"{outcome.revision}: (its log could not be read: revision {outcome.revision} has no replica running, "
        "so it has no console log to stream)"
    ]
    assert streams(arm) == []


def test_a_failed_revisions_log_showing_a_missing_key_names_what_reaches_the_container() -> None:
    from agentdeploy.targets.azure.target import with_log_hint
    from agentdeploy.targets.base import Status, TargetOutcome

    log = [f"{APP}--v2-abc123: RuntimeError: Agent execution failed: OPENAI_API_KEY is required for provider 'openai'"]
    failed = TargetOutcome(
        status=Status.ROLLED_BACK,
        url="https://x",
        revision=f"{APP}--v1-abc123",
        previous=f"{APP}--v1-abc123",
        reason="HTTP 500",
        details={"log": list(log)},
    )

    outcome = with_log_hint(failed, {"LOG_LEVEL", "API_KEY"})

    assert outcome.details["log"] == log
    assert outcome.details["hint"] == (
        "the agent needs OPENAI_API_KEY: only deployment.environment and deployment.secrets reach the container; "
        "OPENAI_API_KEY was not given to it (add `OPENAI_API_KEY: ${OPENAI_API_KEY}` under deployment.secrets and "
        "export it where you deploy; for one deploy: --env OPENAI_API_KEY)"
    )


def test_a_stream_that_drops_the_connection_is_one_error_not_a_traceback(
    arm: FakeArm, tls_files: Any, tmp_path: Path
) -> None:
    deploy(target(arm, tls_files), 1, "v1")
    arm.inject(reset=True, path_regex=r"/logstream$", count=5)  # the stream's host drops it, ARM answers
    config = write_azure_agent(tmp_path / "agent", "team/agent", "unused-base:1")

    code, out, err = run(environ_for(arm), "logs", str(config))

    assert (code, out) == (ExitCode.TARGET_UNAVAILABLE, "")
    assert err.startswith("error: the Container Apps log stream could not be reached: ")
    assert "Traceback" not in err
