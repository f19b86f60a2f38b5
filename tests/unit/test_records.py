"""A record's words are enums in memory and the same strings in the state file, which keeps its format."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agentdeploy.errors import ExitCode, StateError
from agentdeploy.state.record import Action, DeploymentRecord, DeploymentState, Status
from agentdeploy.state.store import StateStore, parse_state, render_state

IMAGE = "127.0.0.1:5000/team/hello@sha256:" + "a" * 64


def _state_text() -> str:
    """A state file as agentdeploy 1 writes it: one record a field a line, every word a record can hold."""
    entries = [
        {"action": action, "status": status, "started_at": f"2026-11-0{index + 1}T10:00:00Z", "image": IMAGE}
        for index, (action, status) in enumerate(
            [("destroy", "destroyed"), ("promote", "promoted"), ("rollback", "rolled-back"), ("deploy", "succeeded")]
        )
    ]
    data = {
        "schema_version": 1,
        "agent": "hello",
        "environment": "local",
        "target": "docker",
        "current": None,
        "history": entries,
        "pending": {"action": "deploy", "status": "pending", "started_at": "2026-11-05T10:00:00Z"},
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def test_a_state_file_loads_as_enums_and_is_written_back_unchanged() -> None:
    text = _state_text()
    state = parse_state(text, DeploymentState("hello", "local", "docker"), where="hello.local.json")
    assert [(r.action, r.status) for r in state.history] == [
        (Action.DESTROY, Status.DESTROYED),
        (Action.PROMOTE, Status.PROMOTED),
        (Action.ROLLBACK, Status.ROLLED_BACK),
        (Action.DEPLOY, Status.SUCCEEDED),
    ]
    assert state.pending is not None and state.pending.status is Status.PENDING
    written = json.loads(render_state(state))
    assert [(r["action"], r["status"]) for r in written["history"]] == [
        ("destroy", "destroyed"),
        ("promote", "promoted"),
        ("rollback", "rolled-back"),
        ("deploy", "succeeded"),
    ]
    assert written["pending"]["status"] == "pending"


def test_a_record_made_from_words_holds_the_enums_and_saves_the_words(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "hello.local.json", agent="hello", environment="local", target="docker")
    state = DeploymentState("hello", "local", "docker")
    state.add(DeploymentRecord(action="deploy", status="succeeded", started_at="t", image=IMAGE))
    store.save(state)
    loaded = store.load()
    assert loaded.current is not None
    assert (type(loaded.current.action), type(loaded.current.status)) == (Action, Status)
    saved = json.loads((tmp_path / "hello.local.json").read_text())
    assert (saved["current"]["action"], saved["current"]["status"]) == ("deploy", "succeeded")


HOLD_THE_LOCK = """
import sys
from pathlib import Path
from agentdeploy.state.store import StateStore
with StateStore(Path(sys.argv[1]), agent="hello", environment="local", target="docker").locked():
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_a_second_run_is_told_which_run_holds_the_lock(tmp_path: Path) -> None:
    """Two deploys of one agent at once: the second stops (exit 10) naming the first run's user@host and pid."""
    path = tmp_path / ".agentdeploy" / "hello.local.json"
    environ = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTOR"}
    first = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**environ, "USER": "alice"},
        text=True,
    )
    try:
        assert first.stdout is not None and first.stdout.readline() == "held\n"
        with (
            pytest.raises(StateError) as raised,
            StateStore(path, agent="hello", environment="local", target="docker").locked(),
        ):
            pass
        held_by = re.escape(f"alice@{socket.gethostname()} pid {first.pid}")
        assert re.fullmatch(
            rf"another agentdeploy run holds the lock on {re.escape(str(path))}: {held_by}, since "
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
            raised.value.message,
        ), raised.value.message
        assert raised.value.exit_code == ExitCode.STATE
    finally:
        assert first.stdin is not None
        first.stdin.write("\n")
        first.stdin.close()
        assert first.wait(30) == 0
    with StateStore(path, agent="hello", environment="local", target="docker", owner="bob@here pid 1").locked():
        assert (path.parent / "hello.local.lock.owner").read_text().startswith("bob@here pid 1, since ")
    assert not (path.parent / "hello.local.lock.owner").exists()  # the holder's name goes with its lock


def test_a_recorded_version_without_a_health_timeout_gets_the_configs_default() -> None:
    """One default for the health timeout: a record that names no timeout is judged as a config without one is."""
    from agentdeploy.config.models import DEFAULT_HEALTH_TIMEOUT_SECONDS, HealthConfig

    record = DeploymentRecord(
        action="deploy", status="succeeded", started_at="t", deployment='{"health":{"path":"/h"}}'
    )
    assert record.health() == ("/h", float(HealthConfig().timeout_seconds))
    assert HealthConfig().timeout_seconds == DEFAULT_HEALTH_TIMEOUT_SECONDS


def test_a_recorded_version_is_a_manifest_digest_only_when_it_ran_from_a_registry() -> None:
    from agentdeploy.release.records import image_of

    image_id = "sha256:" + "b" * 64
    local = DeploymentRecord(
        action="deploy",
        status="succeeded",
        started_at="t",
        image=image_id,
        image_id=image_id,
        digest=image_id,  # records of a local image always held its id here
    )
    pushed = DeploymentRecord(
        action="deploy",
        status="succeeded",
        started_at="t",
        image=IMAGE,
        repository=IMAGE.partition("@")[0],
        digest=IMAGE.partition("@")[2],
        image_id=image_id,
    )
    assert (image_of(local).manifest_digest, image_of(local).image_id, image_of(local).pushed) == (
        None,
        image_id,
        False,
    )
    assert (image_of(pushed).manifest_digest, image_of(pushed).pushed) == (IMAGE.partition("@")[2], True)
    with pytest.raises(AttributeError):
        image_of(pushed).reference = "elsewhere"  # frozen: what a run made stays what it made


def test_the_record_keeps_the_gates_results_and_refuses_a_gate_that_is_not_json() -> None:
    from agentdeploy.image.builder import ImageResult
    from agentdeploy.release.records import history_entry
    from agentdeploy.state.record import record_problems
    from agentdeploy.targets.base import TargetOutcome

    evaluation = {"passed": False, "pass_rate": 0.5, "cases": [{"name": "refund", "latency_ms": 120, "tokens": 30}]}
    outcome = TargetOutcome(
        status=Status.ROLLED_BACK,
        url="https://app.example",
        revision="app--v1",
        previous="app--v1",
        attempted="app--v2",
        details={"evaluation": evaluation, "traffic_after": [{"revisionName": "app--v1", "weight": 100}]},
    )
    image = ImageResult(
        reference=IMAGE,
        tag="v2",
        repository="127.0.0.1:5000/team/hello",
        manifest_digest="sha256:" + "a" * 64,
        image_id="sha256:" + "b" * 64,
        inputs_digest="sha256:" + "c" * 64,
        skipped_build=False,
    )
    record = history_entry(
        Action.DEPLOY, outcome, image, config_hash="", git_sha="", git_ref="", started="t", actor_fields={}
    )
    assert json.loads(record.gate) == {"evaluation": evaluation}  # the gate's own results, not the traffic
    assert record_problems({"action": "deploy", "status": "rolled-back", "gate": "[1, 2]"}) == [
        ("gate", "is not a JSON object")
    ]
