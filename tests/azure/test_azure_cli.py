"""`agentdeploy deploy` to Azure end to end: real build and push to the loopback registry, the
production credential path (GitHub OIDC -> Entra -> ARM, all fakes on 127.0.0.1), the real SDK."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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


def test_deploy_status_no_op_and_destroy(arm: FakeArm, tmp_path: Path, base_image: str, repository_name: str) -> None:
    config = write_azure_agent(tmp_path / "agent", repository_name, base_image)
    environ = environ_for(arm)
    code, out, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    result = json.loads(out)
    assert result["status"] == "succeeded"
    assert result["image"] == f"{REGISTRY}/{repository_name}@{result['digest']}"
    assert result["url"].startswith("https://cli-agent.")
    assert result["revision"].startswith("cli-agent--v1-")
    app = arm.app(SUB, RG, "cli-agent")
    assert app["properties"]["template"]["containers"][0]["image"] == result["image"]
    assert "sk-cli-sentinel-42" not in out + err
    assert "Container Apps will pull the image anonymously" in err  # loopback registry, no credentials
    assert arm.github_tokens_issued >= 1  # the credential went through GitHub OIDC
    state = json.loads((config.parent / ".agentdeploy" / f"cli-agent.{ENV}.json").read_text())
    assert state["current"]["revision"] == result["revision"]
    assert "sk-cli-sentinel-42" not in json.dumps(state)

    writes, state_text = len(arm.writes()), (config.parent / ".agentdeploy" / f"cli-agent.{ENV}.json").read_text()
    code, out, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    assert json.loads(out)["status"] == "unchanged"
    assert "containerapp cli-agent               NO_CHANGE" in err and "building" not in err
    assert len(arm.writes()) == writes  # the no-op deploy wrote nothing to Azure
    assert (config.parent / ".agentdeploy" / f"cli-agent.{ENV}.json").read_text() == state_text  # nor the state
    code, out, err = run(environ, "deploy", str(config), "--json", "--force")
    assert code == ExitCode.OK, err
    assert json.loads(out)["status"] == "unchanged"
    assert "nothing to build" in err and "nothing to change" in err  # forced: the skip path, still no write
    assert len(arm.writes()) == writes

    code, out, _ = run(environ, "status", str(config), "--json")
    live = json.loads(out)["live"]
    assert live["latest_ready_revision"] == result["revision"] and live["provisioning"] == "Succeeded"
    code, out, err = run(environ, "status", str(config))
    assert code == ExitCode.OK, err
    lines = out.splitlines()
    assert lines[0] == f"cli-agent: {result['url']}  image {result['image']}  tag v1"
    assert (
        lines[1]
        == f"  container app cli-agent: Succeeded, Running, Single revision mode, latest ready {result['revision']}"
    )
    assert f"    {result['revision']}: traffic 100%, active, Provisioned, Running, Healthy" in lines

    code, _, err = run(environ, "destroy", str(config))
    assert code == ExitCode.USAGE
    code, out, _ = run(environ, "destroy", str(config), "--yes")
    assert code == ExitCode.OK and out.strip() == "removed container app cli-agent"
    assert arm.app(SUB, RG, "cli-agent") is None


def test_rollback_to_a_vanished_revision_redeploys_the_recorded_digest(
    arm: FakeArm, tmp_path: Path, base_image: str, repository_name: str
) -> None:
    config = write_azure_agent(tmp_path / "agent", repository_name, base_image)
    environ = environ_for(arm)
    code, out, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    v1 = json.loads(out)
    config.write_text(
        config.read_text().replace("custom_tag: v1", "custom_tag: v2").replace("LOG_LEVEL: info", "LOG_LEVEL: debug")
    )
    code, out, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    arm.forget_revision(SUB, RG, "cli-agent", v1["revision"])  # purged: more than 100 inactive revisions later
    code, out, err = run(environ, "rollback", str(config), "--to", "v1", "--json")
    assert code == ExitCode.OK, err
    back = json.loads(out)
    assert f"revision {v1['revision']} is gone; redeploying {v1['image']}" in err
    assert back["image"] == v1["image"]
    assert f"image     rolled back to v1 ({v1['digest']}), no build" in err.splitlines()  # nothing was built
    app = arm.app(SUB, RG, "cli-agent")
    assert app["properties"]["template"]["containers"][0]["image"] == v1["image"]


def test_missing_subscription_variable_stops_before_anything(arm: FakeArm, tmp_path: Path, base_image: str) -> None:
    config = write_azure_agent(tmp_path / "agent", "it/never-pushed", base_image)
    environ = environ_for(arm)
    environ.pop("AZURE_SUBSCRIPTION_ID")
    code, _, err = run(environ, "deploy", str(config))
    assert code == ExitCode.CONFIG
    assert "${AZURE_SUBSCRIPTION_ID} is not set" in err
    assert arm.requests == []


def test_blue_green_candidate_promote_and_rollback(
    arm: FakeArm, tmp_path: Path, base_image: str, repository_name: str
) -> None:
    config = write_azure_agent(tmp_path / "agent", repository_name, base_image)
    config.write_text(config.read_text().replace("  target:\n", "  rollout: {strategy: blue-green}\n  target:\n"))
    environ = environ_for(arm)
    code, out, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    v1 = json.loads(out)
    assert v1["status"] == "succeeded"
    config.write_text(
        config.read_text().replace("custom_tag: v1", "custom_tag: v2").replace("LOG_LEVEL: info", "LOG_LEVEL: debug")
    )
    code, out, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    v2 = json.loads(out)
    assert v2["status"] == "candidate" and v2["previous_revision"] == v1["revision"]
    assert v2["label_url"].startswith("https://cli-agent---green.")

    def traffic() -> list[tuple[str, int, str]]:
        app = arm.app(SUB, RG, "cli-agent")
        return sorted(
            (t["revisionName"], t["weight"], t.get("label", ""))
            for t in app["properties"]["configuration"]["ingress"]["traffic"]
        )

    assert traffic() == sorted([(v1["revision"], 100, "blue"), (v2["revision"], 0, "green")])
    state_file = config.parent / ".agentdeploy" / f"cli-agent.{ENV}.json"
    assert json.loads(state_file.read_text())["current"]["revision"] == v1["revision"]  # production unchanged

    # The candidate as a forged record names a bare tag: promote refuses before any write.
    good = state_file.read_text()
    forged = json.loads(good)
    assert forged["history"][0]["status"] == "candidate"
    forged["history"][0]["image"] = f"{REGISTRY}/{repository_name}:v2"
    state_file.write_text(json.dumps(forged, indent=2))
    before, writes = state_file.read_bytes(), len(arm.writes())
    code, _, err = run(environ, "promote", str(config))
    assert code == ExitCode.STATE, err
    assert err.splitlines()[0] == (
        f"error: refused the state's candidate record: image: '{REGISTRY}/{repository_name}:v2' is not pinned by "
        f"digest: only {REGISTRY}/{repository_name}@sha256:<64 hex> is run; nothing was changed"
    )
    assert arm.writes()[writes:] == [] and state_file.read_bytes() == before
    assert traffic() == sorted([(v1["revision"], 100, "blue"), (v2["revision"], 0, "green")])
    state_file.write_text(good)

    code, out, err = run(environ, "promote", str(config), "--json")
    assert code == ExitCode.OK, err
    promoted = json.loads(out)
    assert promoted["status"] == "promoted" and promoted["revision"] == v2["revision"]
    assert promoted["image"] == v2["image"]
    assert traffic() == sorted([(v2["revision"], 100, "blue"), (v1["revision"], 0, "")])
    assert json.loads(state_file.read_text())["current"]["revision"] == v2["revision"]

    code, out, err = run(environ, "rollback", str(config), "--json")
    assert code == ExitCode.OK, err
    assert json.loads(out)["revision"] == v1["revision"]
    assert traffic() == [(v1["revision"], 100, "blue")]
    code, _, err = run(environ, "promote", str(config))  # the rolled-back revision is not a candidate any more
    assert code == ExitCode.DEPLOY and "has no candidate" in err


def test_private_registry_pull_uses_a_password_secret(
    arm: FakeArm, tmp_path: Path, base_image: str, repository_name: str, auth_registry: Any
) -> None:
    config = write_azure_agent(tmp_path / "agent", repository_name, base_image)
    config.write_text(config.read_text().replace(f"url: '{REGISTRY}'", f"url: '{auth_registry.host}'"))
    environ = {
        **environ_for(arm),
        "REGISTRY_USERNAME": auth_registry.username,
        "REGISTRY_PASSWORD": auth_registry.password,
    }
    code, out, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    assert auth_registry.password not in out + err
    configuration = arm.app(SUB, RG, "cli-agent")["properties"]["configuration"]
    assert configuration["registries"] == [
        {"server": auth_registry.host, "username": auth_registry.username, "passwordSecretRef": "registry-password"}
    ]
    assert {"name": "registry-password", "value": auth_registry.password} in configuration["secrets"]


def test_an_app_deployed_by_upstream_holodeck_is_migrated_but_its_tag_is_never_rolled_back_to(
    arm: FakeArm, tmp_path: Path, base_image: str, repository_name: str
) -> None:
    config = write_azure_agent(tmp_path / "agent", repository_name, base_image)
    legacy_image = f"{REGISTRY}/{repository_name}:from-holodeck"
    (config.parent / ".holodeck").mkdir()
    (config.parent / ".holodeck" / "deployments.json").write_text(
        json.dumps(
            {
                "version": "1.0",
                "deployments": {
                    "cli-agent": {
                        "provider": "azure",
                        "service_id": "x",
                        "service_name": "cli-agent",
                        "url": "https://old",
                        "status": "ContainerAppProvisioningState.SUCCEEDED",
                        "image_uri": legacy_image,
                        "config_hash": "ab",
                    }
                },
            }
        )
    )
    environ = {**environ_for(arm), "GITHUB_ACTOR": "octocat", "GITHUB_REPOSITORY": "org/agents", "GITHUB_RUN_ID": "7"}
    code, _, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    state = json.loads((config.parent / ".agentdeploy" / f"cli-agent.{ENV}.json").read_text())
    assert [h["status"] for h in state["history"]] == ["succeeded", "succeeded"]
    assert state["history"][1]["image"] == legacy_image
    assert state["current"]["actor"] == "octocat"
    assert state["current"]["run_url"] == "https://github.com/org/agents/actions/runs/7"
    # Upstream deployed by tag: a tag names whatever was pushed to it last, so rollback refuses to run it.
    before, writes = (config.parent / ".agentdeploy" / f"cli-agent.{ENV}.json").read_bytes(), len(arm.writes())
    code, _, err = run(environ, "rollback", str(config), "--json")
    assert code == ExitCode.STATE, err
    assert err.splitlines()[0] == (
        f"error: refused the state's previous record: image: '{legacy_image}' is not pinned by digest: only "
        f"{REGISTRY}/{repository_name}@sha256:<64 hex> is run; nothing was changed"
    )
    assert arm.writes()[writes:] == []
    assert (config.parent / ".agentdeploy" / f"cli-agent.{ENV}.json").read_bytes() == before


def test_plan_reports_create_update_and_drift(
    arm: FakeArm, tmp_path: Path, base_image: str, repository_name: str, tls_files: Any
) -> None:
    config = write_azure_agent(tmp_path / "agent", repository_name, base_image)
    environ = environ_for(arm)
    code, out, err = run(environ, "plan", str(config), "--json")
    assert code == ExitCode.OK, err
    assert json.loads(out)["items"] == [
        {
            "resource": "containerapp cli-agent",
            "action": "CREATE",
            "changes": ["everything"],
            "drift": [],
            "files": {},
            "variables": [{"variable": "API_KEY", "as": "API_KEY", "secret": True}],
        }
    ]
    assert arm.writes() == []  # planning only reads
    assert run(environ, "deploy", str(config))[0] == ExitCode.OK
    config.write_text(config.read_text().replace("LOG_LEVEL: info", "LOG_LEVEL: debug"))
    code, out, _ = run(environ, "plan", str(config), "--json")
    [item] = json.loads(out)["items"]
    # A runtime setting changes the app, not the image (the image's agent.yaml has no deployment section).
    assert item["action"] == "UPDATE" and item["changes"] == ["deployment.environment.LOG_LEVEL"]
    # Someone changes the image by hand in the portal.
    from azure.mgmt.appcontainers import ContainerAppsAPIClient

    from testkit import StaticCredential

    arm.allow_token("hand-token")
    sdk = ContainerAppsAPIClient(
        StaticCredential("hand-token"), SUB, base_url=arm.base_url, connection_verify=str(tls_files.ca)
    )
    app = sdk.container_apps.get(RG, "cli-agent").as_dict()
    containers = app["properties"]["template"]["containers"]
    containers[0]["image"] = "docker.io/someone/else:latest"
    sdk.container_apps.begin_update(
        RG,
        "cli-agent",
        {"properties": {"template": {"containers": containers, "revisionSuffix": "byhand"}}},
        polling_interval=0.1,
    ).result()
    code, out, _ = run(environ, "plan", str(config))
    assert code == ExitCode.OK
    assert "DRIFT" in out and "drift: runs docker.io/someone/else:latest, recorded 127.0.0.1:5000/" in out
    assert run(environ, "plan", str(config), "--fail-on-drift")[0] == ExitCode.DEPLOY
    writes = len(arm.writes())
    code, _, err = run(environ, "deploy", str(config), "--fail-on-drift")
    assert code == ExitCode.DEPLOY and "drifted from the record" in err
    assert len(arm.writes()) == writes
    code, _, err = run(environ, "deploy", str(config))  # without the flag: the config wins, with a warning
    assert code == ExitCode.OK, err
    assert "deploying the config over it" in err
    assert arm.app(SUB, RG, "cli-agent")["properties"]["template"]["containers"][0]["image"].startswith(f"{REGISTRY}/")


def test_a_rerun_after_a_failed_operation_deploys_what_never_served(
    arm: FakeArm, tmp_path: Path, base_image: str, repository_name: str
) -> None:
    config = write_azure_agent(tmp_path / "agent", repository_name, base_image)
    environ = environ_for(arm)
    code, out, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    v1 = json.loads(out)
    config.write_text(config.read_text().replace("custom_tag: v1", "custom_tag: v2").replace("Be kind", "x"))
    (config.parent / "prompt.md").write_text("Be brief.")  # new image content
    arm.fail_next_operation()
    code, _, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.DEPLOY, err
    state = json.loads((config.parent / ".agentdeploy" / f"cli-agent.{ENV}.json").read_text())
    assert [(h["tag"], h["status"]) for h in state["history"]] == [("v2", "failed"), ("v1", "succeeded")]
    assert "Operation expired" in state["history"][0]["message"]
    assert state["current"]["tag"] == "v1"  # a failure never becomes the current record

    # What serves is still v1 (the record's): an UPDATE to make, not a DRIFT someone made by hand.
    code, out, err = run(environ, "plan", str(config), "--json")
    [item] = json.loads(out)["items"]
    assert item["action"] == "UPDATE" and item["drift"] == [], item
    code, out, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    v2 = json.loads(out)
    assert v2["status"] == "succeeded" and v2["revision"] != v1["revision"]
    app = arm.app(SUB, RG, "cli-agent")
    assert app is not None and app["properties"]["latestReadyRevisionName"] == v2["revision"]
    assert app["properties"]["template"]["containers"][0]["image"] == v2["image"]


def test_a_long_burst_of_throttling_is_ridden_out(
    arm: FakeArm, tmp_path: Path, base_image: str, repository_name: str
) -> None:
    """Eight 429s in a row (more than azure-core's default 3 status retries), each with Retry-After."""
    config = write_azure_agent(tmp_path / "agent", repository_name, base_image)
    arm.inject(status=429, count=8, retry_after=0.05, method="GET", path_regex=r"/containerApps/cli-agent$")
    code, _, err = run(environ_for(arm), "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    throttled = [r for r in arm.requests if r.status == 429]
    assert len(throttled) == 8


# -- interrupted runs: a real CLI process, real signals, the fake ARM on loopback -----------------------


def start_cli(environ: dict[str, str], *argv: str) -> tuple[Any, list[str]]:
    """The CLI in its own process; its stderr lines are collected as they come."""
    import os
    import subprocess
    import sys
    import threading

    env = {
        **environ,
        "REQUESTS_CA_BUNDLE": os.environ["REQUESTS_CA_BUNDLE"],
        "PYTHONPATH": os.pathsep.join(sys.path),
        "HOME": os.environ.get("HOME", "/tmp"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "agentdeploy", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        lines.extend(line.rstrip("\n") for line in process.stderr)

    threading.Thread(target=read, daemon=True).start()
    return process, lines


def wait_for_gate(arm: FakeArm, lines: list[str], serving: str, timeout: float = 60) -> None:
    """Until the release is in its health gate: the new revision is provisioned (the update's operation has
    ended), and the run has had time to see that. Plain output prints no gate line before 15 s of waiting."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        made = [r for r in arm.revisions(SUB, RG, "cli-agent") if r["name"] != serving]
        if any(r["properties"].get("provisioningState") == "Provisioned" for r in made):
            break
        assert time.monotonic() < deadline, "no new revision was provisioned:\n" + "\n".join(lines)
        time.sleep(0.05)
    assert any("updating cli-agent" in line for line in lines), "\n".join(lines)
    time.sleep(1.0)  # the operation's poll (every 0.25 s) sees it end; the gate's first look follows


def state_of(config: Path) -> dict[str, Any]:
    return dict(json.loads((config.parent / ".agentdeploy" / f"cli-agent.{ENV}.json").read_text()))


def _second_version(config: Path) -> None:
    config.write_text(config.read_text().replace("custom_tag: v1", "custom_tag: v2"))
    (config.parent / "prompt.md").write_text("Be brief.")  # new image content


@pytest.mark.parametrize("sent", ["SIGINT", "SIGTERM"])
def test_a_signal_mid_gate_puts_the_traffic_back_and_records_it(
    arm: FakeArm, tmp_path: Path, base_image: str, repository_name: str, sent: str
) -> None:
    import signal

    config = write_azure_agent(tmp_path / "agent", repository_name, base_image)
    environ = environ_for(arm)
    code, out, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    v1 = json.loads(out)["revision"]
    arm.set_image_behaviour(f"{REGISTRY}/{repository_name}", "unhealthy")  # v2 never becomes healthy
    _second_version(config)
    process, lines = start_cli(environ, "deploy", str(config))
    wait_for_gate(arm, lines, serving=v1)
    process.send_signal(getattr(signal, sent))
    assert process.wait(60) == ExitCode.INTERRUPTED, "\n".join(lines)

    state = state_of(config)
    assert state["pending"] is None
    assert (state["history"][0]["status"], state["history"][0]["message"]) == (
        "rolled-back",
        f"interrupted by {sent} during the health gate",
    )
    assert state["current"]["revision"] == v1
    app = arm.app(SUB, RG, "cli-agent")
    assert app is not None
    # Single mode: the traffic follows the latest ready revision, v1, which v2 never replaced.
    assert app["properties"]["configuration"]["ingress"]["traffic"] == [{"weight": 100, "latestRevision": True}]
    assert app["properties"]["latestReadyRevisionName"] == v1
    v2 = next(r for r in arm.revisions(SUB, RG, "cli-agent") if r["name"] != v1)
    assert v2["properties"]["active"] is False
    assert {r["name"]: r["properties"]["trafficWeight"] for r in arm.revisions(SUB, RG, "cli-agent")}[v1] == 100
    # The entry is about what this run tried: its own revision and image, and what serves again.
    latest = state["history"][0]
    assert (latest["revision"], latest["tag"], latest["previous_image"]) == (v2["name"], "v2", v1)


def state_path_of(config: Path) -> Path:
    return config.parent / ".agentdeploy" / f"cli-agent.{ENV}.json"


def test_sigkill_mid_gate_is_reported_by_readers_repaired_by_repair_and_plan_tells_the_truth(
    arm: FakeArm, tmp_path: Path, base_image: str, repository_name: str
) -> None:
    config = write_azure_agent(tmp_path / "agent", repository_name, base_image)
    environ = environ_for(arm)
    code, out, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    v1 = json.loads(out)["revision"]
    arm.set_image_behaviour(f"{REGISTRY}/{repository_name}", "unhealthy")
    _second_version(config)
    process, lines = start_cli(environ, "deploy", str(config))
    wait_for_gate(arm, lines, serving=v1)
    process.kill()
    process.wait(30)
    pending = state_of(config)["pending"]
    assert pending["status"] == "pending" and pending["tag"] == "v2"
    v2 = next(r["name"] for r in arm.revisions(SUB, RG, "cli-agent") if r["name"] != v1)
    assert next(r for r in arm.revisions(SUB, RG, "cli-agent") if r["name"] == v2)["properties"]["active"] is True

    # status and plan report it and write nothing: not to Azure (v2 stays active), not to the record.
    writes, before = len(arm.writes()), state_path_of(config).read_bytes()
    for reader in ("status", "plan"):
        code, out, err = run(environ, reader, str(config), "--json")
        assert code == ExitCode.OK, err
        assert f"unfinished: {pending['run_id']} stopped during its deploy of v2" in err and "repaired" not in err
        assert arm.writes()[writes:] == [] and state_path_of(config).read_bytes() == before
    assert json.loads(out)["items"][0]["action"] == "UPDATE"
    assert next(r for r in arm.revisions(SUB, RG, "cli-agent") if r["name"] == v2)["properties"]["active"] is True

    code, out, err = run(environ, "repair", str(config), "--json")  # the explicit repair, which says what it did
    assert code == ExitCode.OK, err
    assert f"pid {process.pid} stopped during its deploy of v2" in err
    assert (
        f"repaired (rolled-back): {v1}, the revision that last passed the gate, still serves; deactivated {v2}" in err
    )
    state = state_of(config)
    assert state["pending"] is None and state["current"]["revision"] == v1
    assert state["history"][0]["status"] == "rolled-back" and state["history"][0]["tag"] == "v2"
    assert next(r for r in arm.revisions(SUB, RG, "cli-agent") if r["name"] == v2)["properties"]["active"] is False

    # v2 never served: the plan says UPDATE (not NO_CHANGE, not DRIFT), and a deploy converges.
    code, out, err = run(environ, "plan", str(config), "--json")
    [item] = json.loads(out)["items"]
    assert (item["action"], item["drift"]) == ("UPDATE", []), item
    arm.set_image_behaviour(f"{REGISTRY}/{repository_name}", "healthy")
    code, out, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    assert json.loads(out)["status"] == "succeeded"


def test_two_runs_from_two_checkouts_never_reverse_each_other(
    arm: FakeArm, tmp_path: Path, base_image: str, repository_name: str
) -> None:
    """One checkout releases a bad version, another a good one, at the same moment: one run holds the app's
    lease, the other stops (exit 10) naming it, and nothing either did is reversed by the other."""
    environ = environ_for(arm)
    first = write_azure_agent(tmp_path / "one", repository_name, base_image)
    code, out, err = run(environ, "deploy", str(first), "--json")
    assert code == ExitCode.OK, err
    v1 = json.loads(out)["revision"]
    second = write_azure_agent(tmp_path / "two", repository_name, base_image)  # the same app, another checkout
    for config, tag, prompt in ((first, "v3", "Broken."), (second, "v4", "Be brief.")):
        config.write_text(config.read_text().replace("custom_tag: v1", f"custom_tag: {tag}"))
        (config.parent / "prompt.md").write_text(prompt)
    # Built first, so both runs reach Azure at once; v3's content is made unhealthy there.
    for config in (first, second):
        assert run(environ, "image", str(config))[0] == ExitCode.OK
    code, out, err = run(environ, "plan", str(first), "--json")
    assert code == ExitCode.OK, err
    arm.set_image_behaviour(f"{REGISTRY}/{repository_name}", "unhealthy")  # both unhealthy until one is chosen
    runs = [start_cli(environ, "deploy", str(config), "--health-timeout", "8") for config in (first, second)]
    codes = [process.wait(120) for process, _ in runs]
    outputs = ["\n".join(lines) for _, lines in runs]

    assert sorted(codes) == sorted([ExitCode.STATE, ExitCode.ROLLED_BACK]), outputs
    loser = codes.index(ExitCode.STATE)
    winner = 1 - loser
    winner_pid = runs[winner][0].pid
    assert f"pid {winner_pid}" in outputs[loser] and "nothing" in outputs[loser], "\n=====\n".join(outputs)
    # The winner's own rollback put v1 back; the loser changed nothing and reversed nothing.
    app = arm.app(SUB, RG, "cli-agent")
    assert app is not None
    traffic = app["properties"]["configuration"]["ingress"]["traffic"]
    assert [(t.get("revisionName") or app["properties"]["latestReadyRevisionName"], t["weight"]) for t in traffic] == [
        (v1, 100)
    ]
    assert app["tags"]["agentdeploy-lease"].endswith(";held=0")
    states = [state_of(config) for config in (first, second)]
    assert states[winner]["history"][0]["status"] == "rolled-back"
    assert states[winner]["current"] is None or states[winner]["current"]["revision"] == v1
    assert states[loser]["pending"] is None
    assert states[loser]["history"][0]["status"] == "failed"
    assert f"pid {winner_pid}" in states[loser]["history"][0]["message"]


def test_an_agent_in_a_shared_environment_behind_ip_allow_and_sign_in(
    arm: FakeArm, tmp_path: Path, base_image: str, repository_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment in another resource group by its id; a public agent is warned about until ip_allow or auth
    guards it; both reach the app, a re-deploy writes nothing, and a change of either is an update that is
    recorded (the next plan is NO_CHANGE)."""
    from agentdeploy.targets.azure import target as azure_target

    monkeypatch.setattr(azure_target, "http_probe", arm.http)  # the gate's probes reach the fake's ingress
    arm.add_managed_environment(SUB, "shared-rg", "shared-env", domain="calmsea-7c1d2e3f.eastus.azurecontainerapps.io")
    environ = environ_for(arm)
    config = write_azure_agent(tmp_path / "agent", repository_name, base_image)
    shared = "/subscriptions/${AZURE_SUBSCRIPTION_ID}/resourceGroups/shared-rg/providers/Microsoft.App/managedEnvironments/shared-env"  # noqa: E501
    public = config.read_text().replace(
        f"      environment_name: {ENV}\n", f"      environment_id: {shared}\n      ingress_external: true\n"
    )
    config.write_text(public)
    code, _, err = run(environ, "plan", str(config))
    assert code == ExitCode.OK, err
    warning = (
        "deployment.target.azure.ingress_external: external ingress and neither ip_allow nor auth: anyone on the "
        "internet can chat with the agent, at your model's token cost; set deployment.target.azure.ip_allow or "
        "deployment.target.azure.auth"
    )
    assert f":{public.splitlines().index('      ingress_external: true') + 1}:25: {warning}\n" in err

    guarded = public + (
        "      ip_allow: [198.51.100.0/24]\n"  # the fake sees this machine at 198.51.100.20
        "      auth: {client_id: 11111111-2222-3333-4444-555555555555, tenant_id: '${AZURE_TENANT_ID}'}\n"
    )
    config.write_text(guarded)
    code, _, err = run(environ, "plan", str(config))
    assert code == ExitCode.OK and "neither ip_allow nor auth" not in err, err
    code, out, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    result = json.loads(out)
    assert result["status"] == "succeeded" and "neither ip_allow nor auth" not in err
    app = arm.app(SUB, RG, "cli-agent")
    assert app is not None
    assert app["properties"]["managedEnvironmentId"] == shared.replace("${AZURE_SUBSCRIPTION_ID}", SUB)
    assert [r["ipAddressRange"] for r in app["properties"]["configuration"]["ingress"]["ipSecurityRestrictions"]] == [
        "198.51.100.0/24"
    ]
    [auth] = [r for r in arm.writes() if r.path.lower().endswith("/authconfigs/current")]
    registration = auth.body["properties"]["identityProviders"]["azureActiveDirectory"]["registration"]
    assert registration == {
        "clientId": "11111111-2222-3333-4444-555555555555",
        "openIdIssuer": f"https://login.microsoftonline.com/{environ['AZURE_TENANT_ID']}/v2.0",
    }
    assert arm.http(result["url"] + "/agent/cli-agent/chat").status == 401  # no sign-in, no chat
    # The state file is named after the environment, however the config names it.
    assert (config.parent / ".agentdeploy" / "cli-agent.shared-env.json").is_file()

    writes = len(arm.writes())
    code, out, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    assert json.loads(out)["status"] == "unchanged" and len(arm.writes()) == writes

    # Another address: an UPDATE naming ip_allow, written, recorded.
    config.write_text(guarded.replace("[198.51.100.0/24]", "[198.51.100.0/24, 203.0.113.7]"))
    code, out, err = run(environ, "plan", str(config), "--json")
    assert code == ExitCode.OK, err
    [item] = json.loads(out)["items"]
    assert (item["action"], item["changes"]) == ("UPDATE", ["deployment.target.azure.ip_allow"])
    code, out, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    assert json.loads(out)["status"] == "succeeded"
    ingress = arm.app(SUB, RG, "cli-agent")["properties"]["configuration"]["ingress"]  # type: ignore[index]
    assert [r["ipAddressRange"] for r in ingress["ipSecurityRestrictions"]] == ["198.51.100.0/24", "203.0.113.7/32"]
    code, out, _ = run(environ, "plan", str(config), "--json")
    assert json.loads(out)["items"][0]["action"] == "NO_CHANGE"

    # Sign-in by redirect: only the auth config changes, and that is a release too (recorded).
    config.write_text(
        config.read_text().replace(
            "tenant_id: '${AZURE_TENANT_ID}'}", "tenant_id: '${AZURE_TENANT_ID}', unauthenticated: redirect}"
        )
    )
    code, out, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    assert json.loads(out)["status"] == "succeeded"
    last = [r for r in arm.writes() if r.path.lower().endswith("/authconfigs/current")][-1]
    assert last.body["properties"]["globalValidation"]["unauthenticatedClientAction"] == "RedirectToLoginPage"
    code, out, _ = run(environ, "plan", str(config), "--json")
    assert json.loads(out)["items"][0]["action"] == "NO_CHANGE"


def test_a_rotated_secret_is_an_update_the_plan_names_without_its_value(
    arm: FakeArm, tmp_path: Path, base_image: str, repository_name: str
) -> None:
    config = write_azure_agent(tmp_path / "agent", repository_name, base_image)
    environ = environ_for(arm)
    code, out, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    first = json.loads(out)["revision"]
    rotated = {**environ, "API_KEY": "sk-rotated-value-77"}
    code, out, err = run(rotated, "plan", str(config), "--json")
    assert code == ExitCode.OK, err
    [item] = json.loads(out)["items"]
    assert (item["action"], item["changes"]) == ("UPDATE", ["secret API_KEY (a new value)"])
    assert "sk-rotated-value-77" not in out + err and environ["API_KEY"] not in out + err
    code, out, err = run(rotated, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    assert json.loads(out)["revision"] != first  # a new revision brings the value to the agent
    code, out, _ = run(rotated, "plan", str(config), "--json")
    assert json.loads(out)["items"][0]["action"] == "NO_CHANGE"


def test_reads_never_write_and_a_forged_record_changes_nothing_in_azure(
    arm: FakeArm, tmp_path: Path, base_image: str, repository_name: str
) -> None:
    config = write_azure_agent(tmp_path / "agent", repository_name, base_image)
    environ = environ_for(arm)
    code, out, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    v1 = json.loads(out)
    config.write_text(
        config.read_text().replace("custom_tag: v1", "custom_tag: v2").replace("LOG_LEVEL: info", "LOG_LEVEL: debug")
    )
    code, out, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    v2 = json.loads(out)
    path = config.parent / ".agentdeploy" / f"cli-agent.{ENV}.json"
    good = json.loads(path.read_text())

    # A record pushed to the state branch that names an image of another registry: rollback refuses it.
    forged = json.loads(json.dumps(good))
    forged["history"][1]["image"] = f"evil.example/{repository_name}@{v1['digest']}"
    path.write_text(json.dumps(forged, indent=2))
    before, writes = path.read_bytes(), len(arm.writes())
    code, _, err = run(environ, "rollback", str(config))
    assert code == ExitCode.STATE, err
    assert err.splitlines()[0] == (
        f"error: refused the state's previous record: image: 'evil.example/{repository_name}@{v1['digest']}' is in "
        f"evil.example/{repository_name}, not this config's registry/repository {REGISTRY}/{repository_name}; "
        "nothing was changed"
    )
    assert arm.writes()[writes:] == [] and path.read_bytes() == before
    assert arm.app(SUB, RG, "cli-agent")["properties"]["latestRevisionName"] == v2["revision"]

    # A record whose image is in the right repository but not what its revision runs.
    other = f"{REGISTRY}/{repository_name}@sha256:{'d' * 64}"
    forged = json.loads(json.dumps(good))
    forged["history"][1]["image"], forged["history"][1]["digest"] = other, f"sha256:{'d' * 64}"
    path.write_text(json.dumps(forged, indent=2))
    before, writes = path.read_bytes(), len(arm.writes())
    code, _, err = run(environ, "rollback", str(config))
    assert code == ExitCode.STATE, err
    assert (
        f"error: the record's revision {v1['revision']} runs {v1['image']}, not the recorded image {other}; "
        "nothing was changed"
    ) in err.splitlines()
    assert arm.writes()[writes:] == [] and path.read_bytes() == before

    # A pending entry (a dead run's rollback to v1): status and plan report it and write nothing.
    pending = {**good["history"][1], "action": "rollback", "status": "pending", "finished_at": "", "run_id": "x pid 9"}
    path.write_text(json.dumps({**good, "pending": pending}, indent=2))
    before, writes = path.read_bytes(), len(arm.writes())
    for reader in ("status", "plan"):
        code, _, err = run(environ, reader, str(config))
        assert code == ExitCode.OK, err
        assert f"unfinished: x pid 9 stopped during its rollback of v1 (started {pending['started_at']})" in err
        assert f"{v2['image']} serves now. Nothing was changed" in err
        assert arm.writes()[writes:] == [] and path.read_bytes() == before
    app = arm.app(SUB, RG, "cli-agent")
    assert app["properties"]["latestReadyRevisionName"] == v2["revision"]
    assert app["properties"]["configuration"]["ingress"]["traffic"] == [{"latestRevision": True, "weight": 100}]

    # repair: v2, the version that last passed the gate, keeps the traffic; the record says what happened.
    code, out, err = run(environ, "repair", str(config), "--json")
    assert code == ExitCode.OK, err
    assert json.loads(out)["revision"] == v2["revision"]
    state = json.loads(path.read_text())
    assert state["pending"] is None and state["history"][0]["message"].startswith("repaired after x pid 9 died")
    assert state["current"]["revision"] == v2["revision"]
