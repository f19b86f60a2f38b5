"""Pure parts of a release: build log accounting, push errors, rollback lookup, state, masking."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
from pathlib import Path

import pytest

from agentdeploy.console import Console
from agentdeploy.errors import ExitCode, StateError
from agentdeploy.image.builder import inputs_digest
from agentdeploy.image.engine import BuildAccounting, classify_push_error
from agentdeploy.image.registry import is_acr, is_loopback
from agentdeploy.release.pipeline import find_rollback_record
from agentdeploy.state.store import SCHEMA_VERSION, DeploymentRecord, DeploymentState, StateStore


def test_build_lines_are_passed_on_as_they_complete() -> None:
    seen: list[str] = []
    accounting = BuildAccounting(seen.append)
    accounting.feed({"stream": "Step 1/3 : FROM base\n ---> abc\nStep 2/3 : COPY"})
    assert seen == ["Step 1/3 : FROM base", " ---> abc"]  # the partial line waits for its end
    accounting.feed({"stream": " app/ /app/\n ---> Using cache\n"})
    assert seen[-2:] == ["Step 2/3 : COPY app/ /app/", " ---> Using cache"]
    accounting.feed({"stream": "Step 3/3 : CMD []\n ---> Using cache\n"})
    accounting.feed({"aux": {"ID": "sha256:feed"}})
    accounting.finish()
    result = accounting.result
    assert (result.image_id, result.steps, result.cached_steps, result.from_steps) == ("sha256:feed", 3, 2, 1)
    assert result.fully_cached


def test_build_error_is_kept() -> None:
    accounting = BuildAccounting(lambda line: None)
    accounting.feed({"errorDetail": {"message": "COPY failed: no such file"}, "error": "COPY failed"})
    assert accounting.error == "COPY failed: no such file"


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("unauthorized: authentication required", "auth"),
        ("no basic auth credentials", "auth"),
        ("denied: requested access to the resource is denied", "auth"),
        ('Get "http://127.0.0.1:5999/v2/": dial tcp 127.0.0.1:5999: connect: connection refused', "transient"),
        ("received unexpected HTTP status: 503 Service Unavailable", "transient"),
        ("net/http: TLS handshake timeout", "transient"),
        ("manifest invalid: manifest invalid", "fatal"),
    ],
)
def test_push_errors_are_classified(message: str, kind: str) -> None:
    assert classify_push_error(message) == kind


def test_registry_host_kinds() -> None:
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost:5000") and is_loopback("localhost")
    assert not is_loopback("ghcr.io") and not is_loopback("10.0.0.1:5000")
    assert is_acr("myreg.azurecr.io") and not is_acr("ghcr.io")


def test_inputs_digest_covers_platform_and_build_args() -> None:
    base = inputs_digest("sha256:ctx", "linux/amd64", {"A": "1"})
    assert base == inputs_digest("sha256:ctx", "linux/amd64", {"A": "1"})
    assert base != inputs_digest("sha256:ctx", "linux/arm64", {"A": "1"})
    assert base != inputs_digest("sha256:ctx", "linux/amd64", {"A": "2"})
    assert base != inputs_digest("sha256:other", "linux/amd64", {"A": "1"})


def digest_of(tag: str) -> str:
    return "sha256:" + hashlib.sha256(tag.encode()).hexdigest()


def record(tag: str, status: str = "succeeded", action: str = "deploy") -> DeploymentRecord:
    return DeploymentRecord(
        action=action, status=status, started_at="t", image=f"reg/app@{digest_of(tag)}", digest=digest_of(tag), tag=tag
    )


def test_rollback_lookup() -> None:
    state = DeploymentState("a", "local", "docker")
    for entry in (record("v1"), record("v2", "rolled-back"), record("v3"), record("v4")):
        state.add(entry)
    assert state.current is not None and state.current.tag == "v4"
    previous = find_rollback_record(state, "previous")
    assert previous is not None and previous.tag == "v3"  # v2 never served
    by_tag = find_rollback_record(state, "v1")
    assert by_tag is not None and by_tag.tag == "v1"
    by_digest = find_rollback_record(state, digest_of("v3"))
    assert by_digest is not None and by_digest.tag == "v3"
    assert find_rollback_record(state, "v2") is None
    state.add(DeploymentRecord(action="destroy", status="destroyed", started_at="t"))
    assert state.current is None


def test_state_round_trip_and_atomic_write(tmp_path: Path) -> None:
    path = tmp_path / ".agentdeploy" / "a.local.json"
    store = StateStore(path, agent="a", environment="local", target="docker")
    state = store.load()
    assert state.current is None and state.history == []
    state.add(record("v1"))
    store.save(state)
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["current"]["tag"] == "v1"
    assert [p.name for p in path.parent.iterdir()] == ["a.local.json"]  # no temporary file left
    again = store.load()
    assert again.current == state.current


def test_state_history_is_bounded(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.json", agent="a", environment="local", target="docker")
    state = store.load()
    for number in range(60):
        state.add(record(f"v{number}"))
    assert len(state.history) == 50 and state.history[0].tag == "v59"


def test_state_read_is_lenient_but_refuses_newer_and_corrupted(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = StateStore(path, agent="a", environment="local", target="docker")
    path.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "current": {
                    "tag": "v1",
                    "status": "succeeded",
                    "action": "deploy",
                    "started_at": "t",
                    "future_field": 1,
                },
                "history": [],
            }
        )
    )
    assert store.load().current is not None
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(StateError) as exc:
        store.load()
    assert exc.value.exit_code == ExitCode.STATE and "upgrade agentdeploy" in (exc.value.hint or "")
    path.write_text("{not json")
    with pytest.raises(StateError) as exc:
        store.load()
    assert "corrupted" in exc.value.message
    [aside] = list(tmp_path.glob("s.json.corrupt-*"))
    assert aside.read_text() == "{not json"  # kept, never overwritten
    assert not path.exists()
    assert store.load().current is None  # the next run starts a new record


def _hold_lock(path: str, ready: multiprocessing.synchronize.Event, release: multiprocessing.synchronize.Event) -> None:
    store = StateStore(Path(path), agent="a", environment="local", target="docker")
    with store.locked():
        ready.set()
        release.wait(10)


def test_a_second_run_cannot_take_the_lock(tmp_path: Path) -> None:
    path = str(tmp_path / "s.json")
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(path, ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with (
            pytest.raises(StateError) as exc,
            StateStore(Path(path), agent="a", environment="local", target="docker").locked(),
        ):
            pass
        assert "holds the lock" in exc.value.message
    finally:
        release.set()
        holder.join(10)
    with StateStore(Path(path), agent="a", environment="local", target="docker").locked():
        pass  # free again


def test_console_masks_registered_secrets() -> None:
    out, err = io.StringIO(), io.StringIO()
    console = Console(out, err)
    console.mask(["s3cr3t", "s3cr3t-longer", "", "x"])  # "x" is too short to mask usefully
    console.info("token=s3cr3t-longer and s3cr3t")
    console.info("examples")
    console.data("s3cr3t")
    assert err.getvalue() == "token=*** and ***\nexamples\n"
    assert out.getvalue() == "***\n"


UPSTREAM_STATE = {
    "version": "1.0",
    "deployments": {
        "support-agent": {
            "provider": "azure",
            "service_id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/support-agent",
            "service_name": "support-agent",
            "url": "https://support-agent.nice.eastus.azurecontainerapps.io",
            "status": "ContainerAppProvisioningState.SUCCEEDED",
            "created_at": "2026-05-01T10:00:00Z",
            "updated_at": "2026-05-02T10:00:00Z",
            "image_uri": "ghcr.io/org/support-agent:abc1234",
            "config_hash": "0f00",
        },
        "other-agent": {
            "provider": "azure",
            "service_id": "x",
            "service_name": "x",
            "status": "Succeeded",
            "image_uri": "ghcr.io/org/other:1",
            "config_hash": "1",
        },
    },
}


def test_upstream_state_is_read_and_migrated(tmp_path: Path) -> None:
    legacy = tmp_path / ".holodeck" / "deployments.json"
    legacy.parent.mkdir()
    legacy.write_text(json.dumps(UPSTREAM_STATE))
    path = tmp_path / ".agentdeploy" / "support-agent.env.json"
    store = StateStore(path, agent="support-agent", environment="env", target="azure", legacy_path=legacy)
    state = store.load()
    assert state.current is not None
    current = state.current
    assert (current.status, current.image, current.tag, current.url) == (
        "succeeded",
        "ghcr.io/org/support-agent:abc1234",
        "abc1234",
        "https://support-agent.nice.eastus.azurecontainerapps.io",
    )
    assert current.config_hash == "holodeck-1.0:0f00"  # never mistaken for one of ours
    assert "ContainerAppProvisioningState.SUCCEEDED" in current.message
    store.save(state)
    assert json.loads(path.read_text())["current"]["image"] == "ghcr.io/org/support-agent:abc1234"
    assert json.loads(legacy.read_text()) == UPSTREAM_STATE  # upstream's file is only read
    # Another provider, or an agent it does not know: nothing to migrate.
    assert (
        StateStore(path.with_name("x.json"), agent="nobody", environment="e", target="azure", legacy_path=legacy)
        .load()
        .current
        is None
    )
    assert (
        StateStore(
            path.with_name("y.json"), agent="support-agent", environment="e", target="docker", legacy_path=legacy
        )
        .load()
        .current
        is None
    )


def test_broken_upstream_state_is_reported(tmp_path: Path) -> None:
    legacy = tmp_path / "deployments.json"
    store = StateStore(tmp_path / "s.json", agent="a", environment="e", target="azure", legacy_path=legacy)
    legacy.write_text("{oops")
    with pytest.raises(StateError) as exc:
        store.load()
    assert "is corrupted" in exc.value.message
    legacy.write_text(json.dumps({"version": "2.0", "deployments": {}}))
    with pytest.raises(StateError):
        store.load()


def test_provenance_from_github() -> None:
    from agentdeploy.state.store import provenance

    environ = {
        "GITHUB_ACTOR": "octocat",
        "GITHUB_REPOSITORY": "org/agents",
        "GITHUB_RUN_ID": "42",
        "GITHUB_RUN_ATTEMPT": "2",
        "GITHUB_SERVER_URL": "https://github.com",
    }
    assert provenance(environ) == {
        "actor": "octocat",
        "run_url": "https://github.com/org/agents/actions/runs/42/attempts/2",
    }
    assert provenance({"USER": "dev"}) == {"actor": "dev", "run_url": ""}


def _append_records(path: str, worker: int, count: int) -> None:
    import time as clock

    store = StateStore(Path(path), agent="a", environment="local", target="docker")
    written = 0
    while written < count:
        try:
            with store.locked():
                state = store.load()
                state.add(record(f"w{worker}-{written}"))
                store.save(state)
            written += 1
        except StateError:
            clock.sleep(0.005)  # another writer holds the lock: try again


def test_concurrent_writers_never_lose_or_corrupt_records(tmp_path: Path) -> None:
    path = str(tmp_path / "s.json")
    workers = [multiprocessing.Process(target=_append_records, args=(path, n, 8)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    data = json.loads(Path(path).read_text())
    assert len(data["history"]) == 32
    assert len({entry["tag"] for entry in data["history"]}) == 32


def _die_while_writing(path: str) -> None:
    import signal

    store = StateStore(Path(path), agent="a", environment="local", target="docker")
    state = store.load()
    for number in range(40):
        state.add(record(f"new-{number}"))

    def killed_before_replace(source: str, target: str) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    os.replace = killed_before_replace  # type: ignore[assignment]
    store.save(state)


def test_a_process_killed_during_a_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = StateStore(path, agent="a", environment="local", target="docker")
    state = store.load()
    state.add(record("old"))
    store.save(state)
    before = path.read_text()
    writer = multiprocessing.Process(target=_die_while_writing, args=(str(path),))
    writer.start()
    writer.join(30)
    assert writer.exitcode == -9
    assert path.read_text() == before  # the old file, whole
    assert json.loads(path.read_text())["current"]["tag"] == "old"
    assert len(list(tmp_path.glob(".s.json.*"))) == 1  # the dead writer's temporary file
    with store.locked():  # the next run cleans up after it
        assert list(tmp_path.glob(".s.json.*")) == []
        store.save(state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.lock"]


def _record(tag: str, started: str, status: str = "succeeded", action: str = "deploy") -> DeploymentRecord:
    return DeploymentRecord(action=action, status=status, started_at=started, finished_at=started, tag=tag)


def _state(*records: DeploymentRecord) -> DeploymentState:
    state = DeploymentState("a", "prod", "azure")
    for record in records:
        state.add(record)
    return state


def test_merging_a_record_with_itself_changes_nothing() -> None:
    from agentdeploy.state.store import merge_states, render_state

    state = _state(_record("v1", "2026-11-23T10:00:00Z"), _record("v2", "2026-11-23T11:00:00Z", "rolled-back"))
    assert render_state(merge_states(state, state)) == render_state(state)


def test_merging_two_runs_keeps_every_entry_once_and_the_newest_serving() -> None:
    from agentdeploy.state.store import merge_states

    common = _record("v1", "2026-11-23T10:00:00Z")
    ours = _state(common, _record("v3", "2026-11-23T12:00:00Z"))
    theirs = _state(common, _record("v2", "2026-11-23T11:00:00Z"), _record("v4", "2026-11-23T13:00:00Z", "failed"))
    merged = merge_states(ours, theirs)
    assert [r.tag for r in merged.history] == ["v4", "v3", "v2", "v1"]
    assert merged.current is not None and merged.current.tag == "v3"  # v4 failed: v3 still serves
    assert merge_states(theirs, ours).history == merged.history


def test_a_newer_destroy_on_either_side_wins() -> None:
    from agentdeploy.state.store import merge_states

    ours = _state(_record("v1", "2026-11-23T10:00:00Z"))
    theirs = _state(_record("v1", "2026-11-23T10:00:00Z"), _record("", "2026-11-23T11:00:00Z", "destroyed", "destroy"))
    assert merge_states(ours, theirs).current is None


def test_a_slow_run_that_went_live_last_is_the_one_serving() -> None:
    from agentdeploy.state.store import merge_states, render_state

    base = _record("v0", "2026-11-23T09:00:00Z")
    slow = DeploymentRecord("deploy", "succeeded", "2026-11-23T10:00:00Z", "2026-11-23T10:30:00Z", tag="slow")
    quick = DeploymentRecord("deploy", "succeeded", "2026-11-23T10:05:00Z", "2026-11-23T10:10:00Z", tag="quick")
    merged = merge_states(_state(base, slow), _state(base, quick))
    assert [r.tag for r in merged.history] == ["slow", "quick", "v0"]
    assert merged.current is not None and merged.current.tag == "slow"
    in_turn = _state(base, quick, slow)  # the file the two runs would have written one after the other
    assert render_state(merged) == render_state(in_turn)
    assert render_state(merge_states(in_turn, in_turn)) == render_state(in_turn)


def test_the_serving_record_survives_falling_out_of_one_sides_history() -> None:
    from agentdeploy.state.store import MAX_HISTORY, merge_states

    old, serving = _record("old", "2026-11-01T00:00:00Z"), _record("serving", "2026-11-02T00:00:00Z")
    failures = [_record(f"bad{i}", f"2026-11-03T00:00:{i:02d}Z", "failed") for i in range(MAX_HISTORY)]
    branch = _state(old, serving, *failures)  # serving fell out of this history, but is still current
    assert branch.current is not None and branch.current.tag == "serving"
    assert all(r.tag != "serving" for r in branch.history)
    checkout = _state(old)  # an old tag's copy
    merged = merge_states(checkout, branch)
    assert merged.current is not None and merged.current.tag == "serving"


def _file_with(tmp_path: Path, **fields: object) -> StateStore:
    entry = {"action": "deploy", "status": "succeeded", "started_at": "t", **fields}
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"schema_version": 1, "current": entry, "history": [entry]}, indent=2))
    return StateStore(path, agent="a", environment="local", target="docker")


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"revision": "../../containerApps/other"}, "revision: '../../containerApps/other' is not a revision name"),
        ({"tag": "v1\n::add-mask::x"}, "tag: holds a control character"),
        ({"run_id": "x\n::stop-commands::y"}, "run_id: holds a control character"),
        ({"digest": "sha256:abc"}, "digest: 'sha256:abc' is not sha256:<64 hex>"),
        ({"image": "reg/app@sha256:" + "A" * 64}, "image: 'reg/app@sha256:" + "A" * 64 + "' is not an image"),
        ({"image": "reg/app; rm -rf /"}, "image: 'reg/app; rm -rf /' is not an image reference"),
        ({"deployment": '{"health": {"path": "http://evil/"}}'}, "deployment: its health path 'http://evil/'"),
        ({"action": "exec"}, "action: 'exec' is not one of deploy, rollback, promote"),
        ({"revision": 7}, "revision: is a int, not a string"),
    ],
)
def test_a_record_field_out_of_its_format_is_refused_and_the_file_kept(
    tmp_path: Path, fields: dict[str, object], problem: str
) -> None:
    store = _file_with(tmp_path, **fields)
    before = store.path.read_bytes()
    with pytest.raises(StateError) as raised:
        store.load()
    assert raised.value.exit_code == ExitCode.STATE
    rendered = [p.render() for p in raised.value.problems]
    assert {line.split(": ", 1)[0] for line in rendered} == {f"{store.path}:{line}" for line in _lines(before, fields)}
    assert all(problem in line for line in rendered), rendered
    assert [p.key for p in raised.value.problems] == [
        f"current.{next(iter(fields))}",
        f"history[0].{next(iter(fields))}",
    ]
    assert store.path.read_bytes() == before and not list(tmp_path.glob("*.corrupt-*"))  # never moved aside


def _lines(text: bytes, fields: dict[str, object]) -> set[int]:
    key, value = next(iter(fields.items()))
    return {
        n
        for n, line in enumerate(text.decode().splitlines(), 1)
        if line.strip().startswith(f'"{key}": {json.dumps(value)}')
    }


@pytest.mark.parametrize("version", ['"1"', "true", "1.0", "null"])
def test_schema_version_must_be_an_integer(tmp_path: Path, version: str) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"schema_version": ' + version + ', "history": []}')
    with pytest.raises(StateError) as raised:
        StateStore(path, agent="a", environment="local", target="docker").load()
    assert raised.value.message == f"state file {path}: schema_version is {version}, not an integer"
    assert path.read_text() == '{"schema_version": ' + version + ', "history": []}'
