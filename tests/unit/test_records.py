"""A record's words are enums in memory and the same strings in the state file, which keeps its format."""

from __future__ import annotations

import json
from pathlib import Path

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
    state.add(DeploymentRecord(action="deploy", status="succeeded", started_at="t", image=IMAGE))  # type: ignore[arg-type]
    store.save(state)
    loaded = store.load()
    assert loaded.current is not None
    assert (type(loaded.current.action), type(loaded.current.status)) == (Action, Status)
    saved = json.loads((tmp_path / "hello.local.json").read_text())
    assert (saved["current"]["action"], saved["current"]["status"]) == ("deploy", "succeeded")
