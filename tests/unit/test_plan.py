"""Planning (pure): desired vs recorded vs live -> CREATE / UPDATE / NO_CHANGE / DRIFT."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentdeploy.release.planner import (
    CREATE,
    DRIFT,
    NO_CHANGE,
    UPDATE,
    Desired,
    Live,
    PlanItem,
    Recorded,
    changed_fields,
    plan_release,
    render_table,
)

DEPLOYMENT = {"port": 8080, "environment": {"LOG_LEVEL": "info"}, "target": {"azure": {"cpu": 1.0}}}
DESIRED = Desired("sha256:c1", "sha256:i1", DEPLOYMENT)
RECORDED = Recorded("sha256:c1", "sha256:i1", DEPLOYMENT, "reg/app@sha256:d1")
LIVE = Live(exists=True, image="reg/app@sha256:d1")


def test_create_and_no_change() -> None:
    assert plan_release("app", DESIRED, None, Live(exists=False)).action == CREATE
    assert plan_release("app", DESIRED, RECORDED, LIVE).action == NO_CHANGE


def test_update_lists_the_fields_that_change() -> None:
    changed = {**DEPLOYMENT, "environment": {"LOG_LEVEL": "debug", "NEW": "1"}, "target": {"azure": {"cpu": 0.5}}}
    item = plan_release("app", Desired("sha256:c2", "sha256:i1", changed), RECORDED, LIVE)
    assert item.action == UPDATE
    assert item.changes == [
        "deployment.environment.LOG_LEVEL",
        "deployment.environment.NEW",
        "deployment.target.azure.cpu",
    ]
    item = plan_release("app", Desired("sha256:c3", "sha256:i2", DEPLOYMENT), RECORDED, LIVE)
    assert item.changes == [
        "agent config outside deployment:",
        "image content (agent files, Dockerfile, platform or build args)",
    ]


def test_drift() -> None:
    assert plan_release("app", DESIRED, RECORDED, Live(exists=False)).drift == [
        "recorded as deployed, but it does not exist"
    ]
    item = plan_release("app", DESIRED, RECORDED, Live(exists=True, image="other@sha256:x"))
    assert item.action == DRIFT and item.drift == ["runs other@sha256:x, recorded reg/app@sha256:d1"]
    assert plan_release("app", DESIRED, RECORDED, Live(exists=True, image=LIVE.image, serving=False)).action == DRIFT
    assert plan_release("app", DESIRED, None, LIVE).action == DRIFT  # exists, but never deployed by us


def test_changed_fields_and_table() -> None:
    assert changed_fields({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}, "d": 3}) == ["deployment.a.c", "deployment.d"]
    table = render_table([plan_release("containerapp app", DESIRED, None, Live(exists=False))])
    assert table.splitlines() == [
        "RESOURCE                             ACTION     DETAILS",
        "containerapp app                     CREATE     change: everything",
    ]


# -- which files changed ------------------------------------------------------------------------------

FILES = {"Dockerfile": "d1", "app/agent.yaml": "a1", "app/prompt.md": "p1"}


def _update(old: dict[str, str], new: dict[str, str]) -> PlanItem:
    recorded = Recorded("sha256:c1", "sha256:i1", DEPLOYMENT, "reg/app@sha256:d1", old)
    return plan_release("app", Desired("sha256:c1", "sha256:i2", DEPLOYMENT, new), recorded, LIVE)


def test_an_update_names_the_files_that_were_added_removed_or_changed() -> None:
    item = _update(FILES, {**FILES, "app/prompt.md": "p2", "app/data/faq.md": "f1"} | {"Dockerfile": "d1"})
    assert item.action == UPDATE
    assert item.changes == ["image content: app/data/faq.md added, app/prompt.md changed"]
    assert item.files == {"added": ["app/data/faq.md"], "changed": ["app/prompt.md"]}
    removed = _update(FILES, {k: v for k, v in FILES.items() if k != "app/prompt.md"})
    assert removed.changes == ["image content: app/prompt.md removed"]
    assert removed.as_json()["files"] == {"removed": ["app/prompt.md"]}
    assert "change: image content: app/prompt.md removed" in render_table([removed])


def test_a_long_list_of_files_is_cut_after_five() -> None:
    many = {f"app/docs/{n:02}.md": "old" for n in range(12)}
    item = _update(many, {**{path: "new" for path in many}, "app/zz.md": "z"})
    assert item.changes == [
        "image content: app/docs/00.md changed, app/docs/01.md changed, app/docs/02.md changed, "
        "app/docs/03.md changed, app/docs/04.md changed and 8 more"
    ]
    assert len(item.files["changed"]) == 12 and item.files["added"] == ["app/zz.md"]  # --json has them all


def test_without_a_recorded_manifest_the_reason_stays_general() -> None:
    old_record = _update({}, FILES)  # a record written before agentdeploy kept per-file digests
    assert old_record.changes == ["image content (agent files, Dockerfile, platform or build args)"]
    assert old_record.files == {}
    same_files = _update(FILES, dict(FILES))  # the digest also covers the platform and the build args
    assert same_files.changes == ["image content (platform or build args)"]


def test_the_record_keeps_the_manifest_on_the_newest_and_current_entries_only() -> None:
    from agentdeploy.state.store import DeploymentRecord, DeploymentState, merge_states, parse_state, render_state

    def record(tag: str, status: str = "succeeded") -> DeploymentRecord:
        files = DeploymentRecord.files_text({"app/prompt.md": tag})
        return DeploymentRecord(action="deploy", status=status, started_at=tag, tag=tag, inputs_files=files)

    state = DeploymentState("toy", "local", "docker")
    for tag in ("v1", "v2"):
        state.add(record(tag))
    state.add(record("v3", "rolled-back"))  # v2 still serves: it keeps its manifest
    assert [r.files() for r in state.history] == [{"app/prompt.md": "v3"}, {"app/prompt.md": "v2"}, {}]
    loaded = parse_state(render_state(state), DeploymentState("toy", "local", "docker"), where="x")
    assert loaded.current is not None and loaded.current.files() == {"app/prompt.md": "v2"}
    # A file written before the field existed loads, with no manifest.
    old = '{"schema_version": 1, "current": {"action": "deploy", "status": "succeeded", "started_at": "t"}}'
    assert parse_state(old, DeploymentState("toy", "local", "docker"), where="x").current.files() == {}  # type: ignore[union-attr]
    # Two copies of one run, one with its manifest dropped, are still one run when records are merged.
    theirs = parse_state(render_state(state), DeploymentState("toy", "local", "docker"), where="x")
    theirs.history[1].inputs_files = ""
    assert len(merge_states(state, theirs).history) == 3


def test_plan_names_the_file_that_changed_since_the_last_deploy(tmp_path: Path, free_port: Callable[[], int]) -> None:
    """The real image stage (its context and per-file digests) over a stand-in engine, the process target."""
    from agentdeploy import targets
    from agentdeploy.console import Console
    from agentdeploy.release.commands import Command, Invocation, execute
    from agentdeploy.release.pipeline import DeployOptions, Services
    from fakes.offline_cli import FakeDockerClient, WaitingProcessTarget

    config = tmp_path / "agent.yaml"
    (tmp_path / "prompt.md").write_text("Be kind.")
    config.write_text(
        "name: toy\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {file: prompt.md}\n"
        f"deployment:\n  port: {free_port()}\n  health: {{timeout_seconds: 5}}\n  environment: {{LOG_LEVEL: info}}\n"
    )

    def run(command: Command, **fields: Any) -> Any:
        services = Services(environ={}, console=Console(io.StringIO(), io.StringIO()), docker=FakeDockerClient)
        options = DeployOptions(target="process")
        return execute(
            Invocation(
                command=command, config=config, display_name="agent.yaml", options=options, services=services, **fields
            )
        )

    targets.register("process", WaitingProcessTarget)
    try:
        assert run(Command.DEPLOY).outputs["status"] == "succeeded"
        state_file = tmp_path / ".agentdeploy" / "toy.process.json"
        recorded = json.loads(json.loads(state_file.read_text())["current"]["inputs_files"])
        assert set(recorded) == {"Dockerfile", "agentdeploy/check-runtime.sh", "app/agent.yaml", "app/prompt.md"}
        assert recorded["app/prompt.md"] == hashlib.sha256(b"Be kind.").hexdigest()
        assert [item.action for item in run(Command.PLAN).items] == [NO_CHANGE]

        (tmp_path / "prompt.md").write_text("Be brief.")
        [item] = run(Command.PLAN).items
        assert (item.action, item.changes, item.files) == (
            UPDATE,
            ["image content: app/prompt.md changed"],
            {"changed": ["app/prompt.md"]},
        )

        (tmp_path / "brief.md").write_text("Be brief.")
        config.write_text(config.read_text().replace("file: prompt.md", "file: brief.md").replace("info", "debug"))
        [item] = run(Command.PLAN).items
        assert item.changes == [
            "deployment.environment.LOG_LEVEL",
            "image content: app/agent.yaml changed, app/brief.md added, app/prompt.md removed",
        ]

        # A record from before the manifest: the plan still sees the change, without naming files.
        data = json.loads(state_file.read_text())
        del data["current"]["inputs_files"]
        state_file.write_text(json.dumps(data))
        [item] = run(Command.PLAN).items
        assert item.changes[-1] == "image content (agent files, Dockerfile, platform or build args)"
    finally:
        with contextlib.suppress(Exception):
            run(Command.DESTROY, confirmed=True)
        targets.unregister("process")
