"""The release pipeline against a target that is not Docker or Azure, with no Docker engine at all.

`fakes/process_target.py` runs the agent as a local process behind the Target protocol, registered at
run time: it plugs in with no change to agentdeploy. The image stage is the real one (the real build
context and its hash), except that it builds nothing: these tests are about the release logic
(unchanged, update, drift, rolled back, failed, recorded), fast and without an engine.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agentdeploy import targets
from agentdeploy.console import Console
from agentdeploy.errors import DeployError, ExitCode, RolledBackError, UsageError
from agentdeploy.image.builder import ImageResult
from agentdeploy.release.commands import Command, Invocation, Result, execute
from agentdeploy.release.pipeline import DeployOptions, Services
from fakes.process_target import make_target
from testkit import no_engine_builder, post_json

NoEngine = no_engine_builder()  # testkit: the real plan and context hash, nothing built


def no_docker() -> Any:
    raise AssertionError("these releases must not need a Docker engine")


@pytest.fixture(autouse=True)
def process_target() -> Iterator[None]:
    targets.register("process", make_target)
    yield
    targets.unregister("process")


class Agent:
    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.config = directory / "agent.yaml"
        self.err = io.StringIO()
        self.write("v1")

    def write(self, version: str, *, unhealthy: bool = False, prompt: str = "Be kind.") -> None:
        (self.directory / "prompt.md").write_text(prompt)
        environment = '{AGENT_UNHEALTHY: "1"}' if unhealthy else "{LOG_LEVEL: info}"
        self.config.write_text(
            "name: toy\n"
            "model: {provider: openai, name: gpt-4o}\n"
            "instructions: {file: prompt.md}\n"
            "deployment:\n"
            f"  port: {self.port}\n"
            f"  registry: {{url: 'local.test', repository: toy, tag_strategy: custom, custom_tag: {version}}}\n"
            "  health: {timeout_seconds: 3}\n"
            f"  environment: {environment}\n"
            "  verify: {chat: [{message: hello, expect: toy}]}\n"
        )

    def run(self, command: Command, **fields: Any) -> Result:
        options = DeployOptions(
            target="process", push=False, fail_on_drift=fields.pop("fail_on_drift", False), force=False
        )
        services = Services(
            environ={}, console=Console(io.StringIO(), self.err), docker=no_docker, image_stage=NoEngine
        )
        return execute(
            Invocation(
                command=command,
                config=self.config,
                display_name="agent.yaml",
                options=options,
                services=services,
                **fields,
            )
        )

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.directory / ".agentdeploy" / "toy.process.json").read_text()))

    def chat(self) -> str:
        status, body = post_json(f"http://127.0.0.1:{self.port}/agent/toy/chat", {"message": "hi"}, timeout=5)
        assert status == 200
        return str(body["content"])


@pytest.fixture
def agent(tmp_path: Path, free_port: Callable[[], int]) -> Iterator[Agent]:
    made = Agent(tmp_path, free_port())
    yield made
    with contextlib.suppress(Exception):  # best effort: the test may have removed it already
        made.run(Command.DESTROY, confirmed=True)


def test_a_release_succeeds_is_recorded_and_a_second_one_changes_nothing(agent: Agent) -> None:
    first = agent.run(Command.DEPLOY)
    assert first.outputs["status"] == "succeeded" and first.outputs["url"] == f"http://127.0.0.1:{agent.port}"
    assert agent.chat() == "toy v1: hi"
    state = agent.state()
    assert state["target"] == "process" and state["current"]["tag"] == "v1"
    assert state["current"]["image"] == first.outputs["image"]
    before = (agent.directory / ".agentdeploy" / "toy.process.json").read_text()
    again = agent.run(Command.DEPLOY)
    assert again.outputs["status"] == "unchanged"
    assert (agent.directory / ".agentdeploy" / "toy.process.json").read_text() == before  # nothing written


def test_an_update_then_an_unhealthy_release_is_rolled_back_and_recorded(agent: Agent) -> None:
    agent.run(Command.DEPLOY)
    agent.write("v2", prompt="Be brief.")
    plan = agent.run(Command.PLAN)
    assert [(item.resource, item.action) for item in plan.items] == [("process toy", "UPDATE")]
    assert agent.run(Command.DEPLOY).outputs["status"] == "succeeded"
    assert agent.chat() == "toy v2: hi"

    agent.write("v3", unhealthy=True, prompt="Broken.")
    with pytest.raises(RolledBackError) as raised:
        agent.run(Command.DEPLOY)
    assert raised.value.exit_code == ExitCode.ROLLED_BACK
    assert "status 'unhealthy'" in str(raised.value)
    assert agent.chat() == "toy v2: hi"  # the previous version serves again
    history = [(entry["tag"], entry["status"]) for entry in agent.state()["history"]]
    assert history == [("v3", "rolled-back"), ("v2", "succeeded"), ("v1", "succeeded")]
    assert agent.state()["current"]["tag"] == "v2"

    # Rollback runs a recorded image with the runtime settings of the config in the checkout (a known
    # limit: the recorded settings are not restored), so the checkout is fixed first.
    agent.write("v3", prompt="Broken.")
    back = agent.run(Command.ROLLBACK, to="v1")
    assert back.outputs["status"] == "succeeded" and agent.chat() == "toy v1: hi"


def test_drift_is_seen_and_can_stop_a_release(agent: Agent) -> None:
    agent.run(Command.DEPLOY)
    running = json.loads((agent.directory / ".process-target.json").read_text())
    import os
    import signal

    os.kill(running["pid"], signal.SIGKILL)  # someone stopped it by hand
    os.waitpid(running["pid"], 0)
    [item] = agent.run(Command.PLAN).items
    assert item.action == "DRIFT" and item.drift
    with pytest.raises(
        DeployError, match="process toy drifted from the record: recorded as deployed, but it does not exist"
    ):
        agent.run(Command.DEPLOY, fail_on_drift=True)


def test_a_first_release_that_fails_is_a_failure_not_a_rollback(agent: Agent) -> None:
    agent.write("v1", unhealthy=True)
    with pytest.raises(DeployError) as raised:
        agent.run(Command.DEPLOY)
    assert raised.value.exit_code == ExitCode.DEPLOY
    assert agent.state()["current"] is None


def test_capabilities_are_asked_for_not_providers(agent: Agent) -> None:
    """promote needs Promotable; the process target is not, and the refusal says why."""
    agent.run(Command.DEPLOY)
    with pytest.raises(UsageError, match="the process target has no candidates"):
        agent.run(Command.PROMOTE)
    status = agent.run(Command.STATUS)
    assert status.report["live"]["summary"][0].startswith("process toy: pid ")
    removed = agent.run(Command.DESTROY, confirmed=True)
    assert str(removed.outputs["plan"]).startswith("process ")


def test_a_release_that_a_dead_run_left_pending_is_recorded_before_the_next_one(agent: Agent) -> None:
    agent.run(Command.DEPLOY)
    path = agent.directory / ".agentdeploy" / "toy.process.json"
    state = agent.state()
    # What a run killed mid-release leaves: its intent written, no outcome.
    state["pending"] = {
        **state["current"],
        "status": "pending",
        "tag": "v2",
        "finished_at": "",
        "run_id": "ci@runner-7 pid 4242",
    }
    path.write_text(json.dumps(state))

    agent.write("v2", prompt="Be brief.")
    assert agent.run(Command.DEPLOY).outputs["status"] == "succeeded"
    err = agent.err.getvalue()
    assert "ci@runner-7 pid 4242 stopped during its deploy of v2" in err
    # The toy target has no Repairs capability: the pipeline says so and records the dead run as failed.
    assert "repaired (failed): this target cannot repair it" in err
    history = [(entry["tag"], entry["status"], entry["run_id"]) for entry in agent.state()["history"]]
    assert history[:3] == [("v2", "succeeded", ""), ("v2", "failed", "ci@runner-7 pid 4242"), ("v1", "succeeded", "")]
    assert agent.state()["pending"] is None
    assert agent.chat() == "toy v2: hi"


class PushedNoEngine(NoEngine):
    """As NoEngine, but the image counts as pushed: its digest is what a registry would name it by."""

    def run(self, *, push: bool, pull: bool = False, move_tag: bool = False) -> ImageResult:
        image = super().run(push=push, pull=pull, move_tag=move_tag)
        return replace(image, manifest_digest=image.inputs_digest if push else None)


def test_a_digest_without_a_provenance_attestation_is_never_deployed(agent: Agent) -> None:
    from agentdeploy.errors import AttestationError
    from agentdeploy.github.attestations import AttestationSource, attestations_of
    from fakes.attestations import FakeAttestationsApi

    api = FakeAttestationsApi("ghs_token")
    source = AttestationSource(api_url=api.url, repository="org/agents", token="ghs_token")

    def deploy() -> Result:
        return execute(
            Invocation(
                command=Command.DEPLOY,
                config=agent.config,
                display_name="agent.yaml",
                options=DeployOptions(target="process", push=True, require_attestation=True),
                services=Services(
                    environ={},
                    console=Console(io.StringIO(), agent.err),
                    docker=no_docker,
                    image_stage=PushedNoEngine,
                    attestations=lambda digest: attestations_of(digest, source),
                ),
            )
        )

    try:
        with pytest.raises(AttestationError) as raised:
            deploy()
        digest = str(raised.value).split(" ", 1)[0]
        assert str(raised.value) == f"{digest} has no build provenance attestation in GitHub; nothing was deployed"
        assert raised.value.exit_code == ExitCode.DEPLOY
        assert not (agent.directory / ".agentdeploy" / "toy.process.json").exists()  # nothing ran, nothing recorded

        api.attest("local/toy", digest, builder="https://github.com/org/agents/.github/workflows/release.yml@v1")
        result = deploy()
        assert result.outputs["status"] == "succeeded" and agent.chat() == "toy v1: hi"
        assert agent.state()["current"]["attestation"] == f"{api.url}/bundles/1"
    finally:
        api.close()


# -- the deployment record is an input: a record names only what this config deploys --------------------------------


def cli(agent: Agent, *argv: str) -> tuple[int, str, str]:
    """The real CLI (no engine is asked: rollback, repair, status and plan of the process target build nothing)."""
    from agentdeploy.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main([argv[0], str(agent.config), "--target", "process", *argv[1:]], environ={}, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def two_versions(agent: Agent) -> Path:
    """v1 then v2 deployed: `previous` is v1. The state file's path."""
    agent.run(Command.DEPLOY)
    agent.write("v2", prompt="Be brief.")
    agent.run(Command.DEPLOY)
    assert agent.chat() == "toy v2: hi"
    return agent.directory / ".agentdeploy" / "toy.process.json"


def running_pid(agent: Agent) -> int:
    return int(json.loads((agent.directory / ".process-target.json").read_text())["pid"])


OTHER_DIGEST = "sha256:" + "e" * 64


@pytest.mark.parametrize(
    ("forged", "refusal"),
    [
        (
            f"evil.example/toy@{OTHER_DIGEST}",
            f"error: refused the state's previous record: image: 'evil.example/toy@{OTHER_DIGEST}' is in "
            "evil.example/toy, not this config's registry/repository local.test/toy; nothing was changed",
        ),
        (
            "local.test/toy:v1",
            "error: refused the state's previous record: image: 'local.test/toy:v1' is not pinned by digest: only "
            "local.test/toy@sha256:<64 hex> is run; nothing was changed",
        ),
    ],
)
def test_rollback_refuses_a_record_naming_another_registry_or_a_bare_tag(
    agent: Agent, forged: str, refusal: str
) -> None:
    path = two_versions(agent)
    state = agent.state()
    state["history"][1]["image"] = forged  # what anyone who can push the state branch can write
    state["history"][1]["digest"] = ""
    path.write_text(json.dumps(state, indent=2))
    before, pid = path.read_bytes(), running_pid(agent)

    code, out, err = cli(agent, "rollback")
    assert code == ExitCode.STATE, err
    assert err.splitlines()[0] == refusal and "Traceback" not in err and out == ""
    assert path.read_bytes() == before  # the record is byte-identical
    assert running_pid(agent) == pid and agent.chat() == "toy v2: hi"  # the target untouched


def test_a_malformed_digest_or_a_string_schema_version_is_refused_with_the_field_and_line(agent: Agent) -> None:
    path = two_versions(agent)
    state = agent.state()
    state["history"][1]["image"] = "local.test/toy@sha256:abc"
    path.write_text(json.dumps(state, indent=2, sort_keys=True))
    before, pid = path.read_bytes(), running_pid(agent)
    line = before.decode().splitlines().index('      "image": "local.test/toy@sha256:abc",') + 1

    for command in ("rollback", "status", "plan"):
        code, _, err = cli(agent, command)
        assert code == ExitCode.STATE, err
        assert err.splitlines()[:2] == [
            f"error: state file {path} holds a record agentdeploy did not write: nothing was changed",
            f"  {path}:{line}: history[1].image: 'local.test/toy@sha256:abc' is not an image reference "
            "(registry/repository@sha256:<64 hex>) or a local image id (sha256:<64 hex>)",
        ]
        assert path.read_bytes() == before and running_pid(agent) == pid

    state = agent.state()
    state["history"][1]["image"] = state["history"][0]["image"]
    state["schema_version"] = "1"
    path.write_text(json.dumps(state, indent=2, sort_keys=True))
    before = path.read_bytes()
    code, _, err = cli(agent, "rollback")
    line = before.decode().splitlines().index('  "schema_version": "1",') + 1
    assert code == ExitCode.STATE
    assert err.splitlines()[0] == f'error: {path}:{line}: state file {path}: schema_version is "1", not an integer'
    assert path.read_bytes() == before and running_pid(agent) == pid


def pending_of(agent: Agent, path: Path) -> dict[str, Any]:
    """What a run killed mid-release leaves: its intent written, no outcome (here: a rollback to v1)."""
    state = agent.state()
    state["pending"] = {
        **state["history"][1],
        "action": "rollback",
        "status": "pending",
        "finished_at": "",
        "run_id": "ci@runner-7 pid 4242",
    }
    path.write_text(json.dumps(state, indent=2))
    return state


def test_status_and_plan_report_a_pending_entry_and_change_nothing(agent: Agent) -> None:
    path = two_versions(agent)
    state = pending_of(agent, path)
    before, pid = path.read_bytes(), running_pid(agent)
    v2_image = state["current"]["image"]

    code, out, err = cli(agent, "status", "--json")
    assert code == ExitCode.OK, err
    assert json.loads(out)["pending"] == {
        "state": "unfinished",
        "action": "rollback",
        "tag": "v1",
        "image": state["history"][1]["image"],
        "run_id": "ci@runner-7 pid 4242",
        "run_url": "",
        "started_at": state["history"][1]["started_at"],
        "serving": v2_image,
    }
    said = (
        f"unfinished: ci@runner-7 pid 4242 stopped during its rollback of v1 (started "
        f"{state['history'][1]['started_at']}) and did not finish; {v2_image} serves now. Nothing was changed: "
        "`agentdeploy repair CONFIG` (or the next deploy or rollback) repairs it"
    )
    assert said in err.splitlines()
    code, out, err = cli(agent, "plan")
    assert code == ExitCode.OK and said in err.splitlines()
    assert "process toy" in out
    assert path.read_bytes() == before  # a read wrote nothing, the pending entry is still there
    assert sorted(p.name for p in path.parent.iterdir()) == ["toy.process.json", "toy.process.lock"]
    assert running_pid(agent) == pid and agent.chat() == "toy v2: hi"


def test_repair_finishes_a_dead_runs_pending_entry_and_nothing_else(agent: Agent) -> None:
    path = two_versions(agent)
    code, out, err = cli(agent, "repair")
    assert (code, out.strip()) == (ExitCode.OK, "unchanged: nothing to repair")
    assert "nothing to repair: no release was left unfinished" in err

    state = pending_of(agent, path)
    code, out, err = cli(agent, "repair", "--json")
    # The toy target has no Repairs capability: the pending entry is recorded as failed, and the run says so.
    assert code == ExitCode.DEPLOY
    assert "ci@runner-7 pid 4242 stopped during its rollback of v1" in err
    assert "error: the repair did not leave a healthy version serving: this target cannot repair it" in err
    after = agent.state()
    assert after["pending"] is None
    assert (after["history"][0]["action"], after["history"][0]["status"]) == ("rollback", "failed")
    assert after["current"] == state["current"]


@pytest.mark.parametrize("forgery", ["other registry", "not in the history"])
def test_repair_refuses_to_put_back_a_version_this_repository_never_deployed(agent: Agent, forgery: str) -> None:
    path = two_versions(agent)
    state = pending_of(agent, path)
    if forgery == "other registry":
        forged = f"evil.example/toy@{OTHER_DIGEST}"
        state["current"]["image"] = state["history"][0]["image"] = forged
        state["current"]["digest"] = state["history"][0]["digest"] = OTHER_DIGEST
        refusal = (
            f"error: refused the state's current record: image: '{forged}' is in evil.example/toy, not this "
            "config's registry/repository local.test/toy; nothing was changed"
        )
    else:
        forged = f"local.test/toy@{OTHER_DIGEST}"  # the right repository, but never deployed
        state["current"]["image"], state["current"]["digest"] = forged, OTHER_DIGEST
        refusal = (
            f"error: refused the state's current record ({forged}): it is not in the history: repair puts back "
            "only a version this repository deployed before; nothing was changed"
        )
    path.write_text(json.dumps(state, indent=2))
    before, pid = path.read_bytes(), running_pid(agent)
    for command in ("repair", "deploy"):  # the deploy repairs first, and refuses the same
        code, _, err = cli(agent, command, *(["--no-push"] if command == "deploy" else []))
        assert code == ExitCode.STATE, err
        assert refusal in err.splitlines(), err
        assert path.read_bytes() == before and running_pid(agent) == pid
