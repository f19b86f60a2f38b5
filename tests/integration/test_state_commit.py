"""`state: commit` against real git: a bare "origin" on disk, clones made the way actions/checkout makes
them for a tag push (shallow, detached HEAD at the tag), and runs that push their records at once."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from agentdeploy.errors import ExitCode, StateError, UsageError
from agentdeploy.state.branch import (
    BOT_EMAIL,
    Git,
    GitCommandError,
    StateBranch,
    bot_identity,
    push_record,
    restore_from_branch,
    state_branch,
)
from agentdeploy.state.store import DeploymentRecord, StateStore, state_path
from testkit import git

AGENT, ENV = "support", "production"
STATE_REL = f"agents/support/.agentdeploy/{AGENT}.{ENV}.json"
NO_SLEEP: Callable[[float], None] = lambda seconds: None  # noqa: E731


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare repository with main (one commit, tagged v1) holding an agent."""
    seed = tmp_path / "seed"
    (seed / "agents" / "support").mkdir(parents=True)
    (seed / "agents" / "support" / "agent.yaml").write_text("name: support\nmodel: {provider: openai, name: gpt-4o}\n")
    git(seed, "init", "-q", "-b", "main")
    git(seed, "commit", "-q", "--allow-empty", "-m", "a")
    git(seed, "add", ".")
    git(seed, "commit", "-q", "-m", "agent")
    git(seed, "tag", "v1")
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(bare))
    return bare


def checkout_tag(origin: Path, where: Path, tag: str = "v1") -> Path:
    """What actions/checkout does on a tag push: a depth-1 clone, HEAD detached at the tag."""
    git(origin.parent, "clone", "-q", "--depth=1", "--branch", tag, f"file://{origin}", str(where))
    assert git(where, "rev-parse", "--abbrev-ref", "HEAD") == "HEAD"  # detached
    return where


def store_in(clone: Path) -> StateStore:
    return StateStore(
        state_path(clone / "agents" / "support", AGENT, ENV), agent=AGENT, environment=ENV, target="azure"
    )


def deployed(store: StateStore, tag: str, started: str, status: str = "succeeded") -> DeploymentRecord:
    """What a run leaves in its checkout: one more record in the file."""
    record = DeploymentRecord(
        action="deploy",
        status=status,
        started_at=started,
        finished_at=started,
        tag=tag,
        digest="sha256:" + tag.encode().hex().ljust(64, "0")[:64],
        revision=f"support--{tag}",
    )
    with store.locked():
        state = store.load()
        state.add(record)
        store.save(state)
    return record


def on_main(origin: Path) -> dict[str, Any]:
    return json.loads(git(origin, "show", f"main:{STATE_REL}"))


def test_a_tag_push_checkout_commits_its_record_to_the_default_branch(origin: Path, tmp_path: Path) -> None:
    clone = checkout_tag(origin, tmp_path / "run")
    head, main_before = git(clone, "rev-parse", "HEAD"), git(origin, "rev-parse", "main")
    store = store_in(clone)
    deployed(store, "v1", "2026-11-23T10:00:00Z")
    branch = StateBranch(Git(clone / "agents" / "support"), store.path, "main")
    assert branch.shallow and branch.path == STATE_REL

    result = push_record(store, branch, identity=bot_identity(), sleep=NO_SLEEP)

    assert result.attempts == 1 and result.commit == git(origin, "rev-parse", "main")
    assert git(origin, "rev-parse", "main^") == main_before  # a fast-forward on top of what was there
    assert git(origin, "diff-tree", "--no-commit-id", "--name-only", "-r", "main") == STATE_REL  # only the record
    assert git(origin, "log", "-1", "--format=%an <%ae>%n%s", "main") == (
        f"github-actions[bot] <{BOT_EMAIL}>\nagentdeploy: support (production) deploy succeeded v1 [skip ci]"
    )
    assert on_main(origin) == json.loads(store.path.read_text())
    assert on_main(origin)["current"]["revision"] == "support--v1"
    # The checkout is left as it was: still detached at the tag, nothing staged.
    assert git(clone, "rev-parse", "HEAD") == head and git(clone, "rev-parse", "--abbrev-ref", "HEAD") == "HEAD"
    assert git(clone, "diff", "--cached", "--name-only") == ""

    again = push_record(store, branch, identity=bot_identity(), sleep=NO_SLEEP)
    assert again.commit == "" and git(origin, "rev-parse", "main") == result.commit  # nothing new to say


class InterleavedGit(Git):
    """A Git whose first push waits for `before_push` (another run pushing in between)."""

    def __init__(self, directory: Path, before_push: Callable[[], None]) -> None:
        super().__init__(directory)
        self.before_push: Callable[[], None] | None = before_push
        self.pushes = 0

    def run(self, args: Sequence[str], *, stdin: str | None = None, env: Any = None) -> str:
        if args[0] == "push":
            self.pushes += 1
            if self.before_push is not None:
                hook, self.before_push = self.before_push, None
                hook()
        return super().run(args, stdin=stdin, env=env)


def test_a_run_that_lost_the_race_fetches_merges_and_lands(origin: Path, tmp_path: Path) -> None:
    first, second = checkout_tag(origin, tmp_path / "first"), checkout_tag(origin, tmp_path / "second")
    first_store, second_store = store_in(first), store_in(second)
    deployed(first_store, "v1", "2026-11-23T10:00:00Z")
    deployed(second_store, "v2", "2026-11-23T10:00:05Z")

    def first_run_pushes() -> None:
        push_record(
            first_store, StateBranch(Git(first), first_store.path, "main"), identity=bot_identity(), sleep=NO_SLEEP
        )

    # The second run has fetched main and built its commit; the first run's push lands before its own.
    second_git = InterleavedGit(second, first_run_pushes)
    slept: list[float] = []
    result = push_record(
        second_store, StateBranch(second_git, second_store.path, "main"), identity=bot_identity(), sleep=slept.append
    )

    assert result.attempts == 2 and second_git.pushes == 2 and len(slept) == 1
    record = on_main(origin)
    assert [r["tag"] for r in record["history"]] == ["v2", "v1"]  # both runs' entries, newest first
    assert record["current"]["tag"] == "v2"
    assert git(origin, "rev-list", "--count", "main") == "4"  # two commits on top of the seed's two
    assert json.loads(second_store.path.read_text()) == record  # the checkout holds what the branch holds


def test_runs_committing_at_the_same_moment_all_land(origin: Path, tmp_path: Path) -> None:
    runs = 4
    clones = [checkout_tag(origin, tmp_path / f"run{i}") for i in range(runs)]
    stores = [store_in(clone) for clone in clones]
    for i, store in enumerate(stores):
        deployed(store, f"v1.{i}", f"2026-11-23T10:00:0{i}Z")
    together = threading.Barrier(runs)

    def push_together() -> None:
        together.wait(timeout=30)  # every run has fetched and built its commit: all push at once

    results: dict[int, Any] = {}

    def run(i: int) -> None:
        try:
            branch = StateBranch(InterleavedGit(clones[i], push_together), stores[i].path, "main")
            results[i] = push_record(stores[i], branch, identity=bot_identity(), sleep=lambda s: None)
        except Exception as exc:  # reported below, with the run it came from
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert all(not isinstance(r, Exception) for r in results.values()), results
    assert len(results) == runs and max(r.attempts for r in results.values()) >= 2  # they did collide
    record = on_main(origin)
    assert sorted(r["tag"] for r in record["history"]) == [f"v1.{i}" for i in range(runs)]
    assert record["current"]["tag"] == f"v1.{runs - 1}"  # the newest deploy is what serves
    assert git(origin, "rev-list", "--count", "main") == str(2 + runs)  # one commit per run, none lost


def test_a_refused_push_stops_at_once_and_says_why(origin: Path, tmp_path: Path) -> None:
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'GH006: Protected branch update failed for refs/heads/main.' >&2\nexit 1\n")
    hook.chmod(0o755)
    clone = checkout_tag(origin, tmp_path / "run")
    store = store_in(clone)
    deployed(store, "v1", "2026-11-23T10:00:00Z")
    before, slept = git(origin, "rev-parse", "main"), []

    with pytest.raises(StateError) as caught:
        push_record(store, StateBranch(Git(clone), store.path, "main"), identity=bot_identity(), sleep=slept.append)

    assert caught.value.exit_code == ExitCode.STATE
    assert "push of the state record to 'main' was refused" in caught.value.message
    assert "GH006: Protected branch update failed" in caught.value.message
    assert "contents: write" in (caught.value.hint or "")
    assert slept == [] and git(origin, "rev-parse", "main") == before  # not retried, nothing landed


def test_a_missing_branch_is_reported_before_anything_runs(origin: Path, tmp_path: Path) -> None:
    clone = checkout_tag(origin, tmp_path / "run")
    store = store_in(clone)
    with pytest.raises(StateError) as caught:
        restore_from_branch(store, StateBranch(Git(clone), store.path, "deployments"))
    assert (
        caught.value.message == "branch 'deployments' does not exist on origin, so the state cannot be recorded there"
    )
    assert caught.value.hint == "create the branch, or name another with state-branch"


def test_the_record_on_the_branch_is_where_a_tag_run_starts(origin: Path, tmp_path: Path) -> None:
    # The tag's tree holds an old record; main has moved on since.
    earlier = checkout_tag(origin, tmp_path / "earlier")
    deployed(store_in(earlier), "v1", "2026-11-23T10:00:00Z")
    push_record(store_in(earlier), StateBranch(Git(earlier), store_in(earlier).path, "main"), identity=bot_identity())
    later = checkout_tag(origin, tmp_path / "later")
    deployed(store_in(later), "v0", "2026-11-22T09:00:00Z")  # stands in for an old record in the checkout
    store = store_in(later)

    assert restore_from_branch(store, StateBranch(Git(later), store.path, "main")) is True

    state = store.load()
    assert [r.tag for r in state.history] == ["v1", "v0"] and state.current is not None
    assert state.current.tag == "v1"  # what the branch says serves now, not the checkout's old record


def test_a_corrupted_record_on_the_branch_is_reported_and_left_alone(origin: Path, tmp_path: Path) -> None:
    seed = checkout_tag(origin, tmp_path / "editor")
    git(seed, "fetch", "-q", "origin", "main")
    git(seed, "checkout", "-q", "FETCH_HEAD")
    (seed / STATE_REL).parent.mkdir(parents=True)
    (seed / STATE_REL).write_text('{"schema_version": 1, "history": [')
    git(seed, "add", STATE_REL)
    git(seed, "commit", "-q", "-m", "broken")
    git(seed, "push", "-q", "origin", "HEAD:main")
    broken_tip = git(origin, "rev-parse", "main")
    clone = checkout_tag(origin, tmp_path / "run")
    store = store_in(clone)

    with pytest.raises(StateError) as caught:
        restore_from_branch(store, StateBranch(Git(clone), store.path, "main"))

    assert caught.value.message.startswith(f"the state file {STATE_REL} on branch main is corrupted")
    assert git(origin, "rev-parse", "main") == broken_tip and not store.path.exists()


def test_outside_a_checkout_state_commit_says_what_to_do(tmp_path: Path) -> None:
    store = StateStore(tmp_path / ".agentdeploy" / "a.b.json", agent="a", environment="b", target="docker")
    with pytest.raises(StateError) as caught:
        StateBranch(Git(tmp_path), store.path, "main")
    assert caught.value.message == f"state: commit needs a git checkout, and {tmp_path} is not in one"


@pytest.mark.parametrize(
    ("explicit", "ref", "event", "expected"),
    [
        ("deployments", "refs/heads/main", {}, "deployments"),
        ("", "refs/heads/release/2026", {}, "release/2026"),
        ("", "refs/tags/v1.4.0", {"repository": {"default_branch": "trunk"}}, "trunk"),
        ("", "refs/pull/7/merge", {"repository": {"default_branch": "main"}}, "main"),
        ("", "refs/heads/gh-readonly-queue/main/pr-7-abc", {"repository": {"default_branch": "main"}}, "main"),
    ],
)
def test_the_branch_that_keeps_the_record(explicit: str, ref: str, event: dict[str, Any], expected: str) -> None:
    assert state_branch(explicit, {"GITHUB_REF": ref}, event) == expected


@pytest.mark.parametrize("name", ["-main", "a..b", "main.lock", "x y", "heads/", "a:b", "~1", "a/.b", ".x", "a@{1}"])
def test_a_bad_branch_name_is_refused(name: str) -> None:
    with pytest.raises(UsageError) as caught:
        state_branch(name, {}, {})
    assert caught.value.message == f"input state-branch {name!r} is not a branch name"


def test_no_branch_to_keep_the_record_is_a_clear_error() -> None:
    with pytest.raises(UsageError) as caught:
        state_branch("", {"GITHUB_REF": "refs/tags/v1"}, {})
    assert caught.value.hint == "set the input state-branch, for example state-branch: main"


def test_a_deeper_checkout_of_the_branch_keeps_its_history(origin: Path, tmp_path: Path) -> None:
    clone = tmp_path / "run"
    git(origin.parent, "clone", "-q", "--depth=2", "--branch", "main", f"file://{origin}", str(clone))
    store = store_in(clone)
    deployed(store, "v1", "2026-11-23T10:00:00Z")
    push_record(store, StateBranch(Git(clone), store.path, "main"), identity=bot_identity(), sleep=NO_SLEEP)
    assert git(clone, "rev-list", "--count", "HEAD") == "2"  # the tip was here already: nothing fetched, nothing cut


def test_the_jobs_own_pre_push_hook_does_not_stop_the_record(origin: Path, tmp_path: Path) -> None:
    clone = checkout_tag(origin, tmp_path / "run")
    hook = clone / ".git" / "hooks" / "pre-push"
    hook.write_text("#!/bin/sh\necho 'lint failed' >&2\nexit 1\n")
    hook.chmod(0o755)
    store = store_in(clone)
    deployed(store, "v1", "2026-11-23T10:00:00Z")
    result = push_record(store, StateBranch(Git(clone), store.path, "main"), identity=bot_identity(), sleep=NO_SLEEP)
    assert result.commit == git(origin, "rev-parse", "main")


class FlakyGit(Git):
    """A Git whose first push fails the way a GitHub outage does."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.failed = False

    def run(self, args: Sequence[str], *, stdin: str | None = None, env: Any = None) -> str:
        if args[0] == "push" and not self.failed:
            self.failed = True
            raise GitCommandError(args, 1, "error: RPC failed; HTTP 502 curl 22 The requested URL returned error: 502")
        return super().run(args, stdin=stdin, env=env)


def test_a_server_error_during_the_push_is_tried_again(origin: Path, tmp_path: Path) -> None:
    clone = checkout_tag(origin, tmp_path / "run")
    store = store_in(clone)
    deployed(store, "v1", "2026-11-23T10:00:00Z")
    slept: list[float] = []
    result = push_record(
        store, StateBranch(FlakyGit(clone), store.path, "main"), identity=bot_identity(), sleep=slept.append
    )
    assert result.attempts == 2 and len(slept) == 1 and result.commit == git(origin, "rev-parse", "main")


def test_a_git_failure_inside_the_commit_is_a_state_error(origin: Path, tmp_path: Path) -> None:
    # On the branch, a directory sits where the state file goes: git cannot put a file there.
    editor = checkout_tag(origin, tmp_path / "editor")
    git(editor, "fetch", "-q", "origin", "main")
    git(editor, "checkout", "-q", "FETCH_HEAD")
    (editor / STATE_REL / "oops").mkdir(parents=True)
    (editor / STATE_REL / "oops" / "file").write_text("x")
    git(editor, "add", ".")
    git(editor, "commit", "-q", "-m", "odd")
    git(editor, "push", "-q", "origin", "HEAD:main")
    clone = checkout_tag(origin, tmp_path / "run")
    store = store_in(clone)
    deployed(store, "v1", "2026-11-23T10:00:00Z")
    with pytest.raises(StateError) as caught:
        push_record(store, StateBranch(Git(clone), store.path, "main"), identity=bot_identity(), sleep=NO_SLEEP)
    assert caught.value.exit_code == ExitCode.STATE
    assert caught.value.message.startswith("git update-index failed while recording the state (exit 128)")


def test_the_sync_object_reads_the_branch_before_a_run_and_commits_back_only_what_a_run_wrote(
    origin: Path, tmp_path: Path
) -> None:
    """state/sync.py, as both of the Action's paths (one agent, several) use it: restore, run, commit."""
    import io
    import os

    from agentdeploy.console import Console
    from agentdeploy.state.sync import StateSync

    err = io.StringIO()
    sync = StateSync("commit", dict(os.environ), Console(io.StringIO(), err, environ={}), branch="main")
    first = checkout_tag(origin, tmp_path / "first")
    restored = sync.restore(store_in(first), first / "agents" / "support")
    assert restored.before == "" and not restored.written()
    main_before = git(origin, "rev-parse", "main")
    assert sync.commit(restored) is None and git(origin, "rev-parse", "main") == main_before  # nothing written
    deployed(restored.store, "v1", "2026-11-23T10:00:00Z")
    committed = sync.commit(restored)
    assert committed is not None and committed.attempts == 1
    assert committed.commit == git(origin, "rev-parse", "main") != main_before
    assert on_main(origin)["current"]["revision"] == "support--v1"

    second = checkout_tag(origin, tmp_path / "second")  # the next run, in a fresh checkout of the tag
    again = sync.restore(store_in(second), second / "agents" / "support")
    assert json.loads(again.before)["current"]["revision"] == "support--v1" and not again.written()
    assert sync.commit(again) is None
    assert [line for line in err.getvalue().splitlines() if line.startswith("state:")] == [
        f"state: branch main has no {STATE_REL} yet; a new record starts",
        f"state: committed {STATE_REL} to main as {committed.commit[:12]}",
        f"state: read {STATE_REL} from branch main",
    ]
