"""`state: commit`: keep the state file on a branch of the repository, as a commit pushed by the run.

Written with git plumbing (hash-object, a private index, commit-tree, push <sha>:refs/heads/<branch>), so
it works the same from a tag push's detached HEAD, a shallow checkout, or a branch, and never touches
the checkout's HEAD, index or other files. When another run pushed first, the push is rejected; the
branch is fetched again, the two records are merged (every run's entries kept) and the push retried, a
bounded number of times. Commits carry `[skip ci]`; pushes made with GITHUB_TOKEN trigger no workflow
anyway.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentdeploy.errors import StateError, UsageError
from agentdeploy.git import run_git
from agentdeploy.retry import backoff
from agentdeploy.state.store import (
    CorruptStateError,
    DeploymentState,
    StateStore,
    merge_states,
    parse_state,
    render_state,
)

BASE_REF = "refs/agentdeploy/state-base"  # private ref: the branch tip each attempt builds on
BOT_NAME = "github-actions[bot]"
BOT_EMAIL = "41898282+github-actions[bot]@users.noreply.github.com"
DEFAULT_ATTEMPTS = 5
# Push rejections that mean "someone else moved the branch": fetch, merge and try again.
_RACE = re.compile(
    r"\[rejected\]|non-fast-forward|fetch first|stale info|cannot lock ref|failed to update ref|"
    r"incorrect old value|unable to update local ref|failed to lock"
)
# Failures of the connection or the server, not of the request: worth another try too.
_TRANSIENT = re.compile(
    r"RPC failed|remote end hung up|early EOF|HTTP 5\d\d|returned error: 5\d\d|Internal Server Error|"
    r"Connection (reset|timed out|refused)|Operation timed out",
    re.I,
)
# git check-ref-format's rules for a branch, as far as an input can break them.
_BRANCH = re.compile(r"(?!-)(?!.*\.\.)(?!.*//)(?!.*/\.)(?!\.)(?!.*@\{)[A-Za-z0-9._/@-]+(?<![./])")
FETCH_ATTEMPTS = 3
CREDENTIALS_HINT = "the job needs contents: write and actions/checkout with persist-credentials (the default)"


class GitCommandError(StateError):
    """A git command failed; one that nothing here expects reaches the user as a state error (exit 10)."""

    def __init__(self, args: Sequence[str], returncode: int, output: str) -> None:
        super().__init__(
            f"git {args[0]} failed while recording the state (exit {returncode}): {_clean(output)}",
            hint="check that the checkout's .git directory is writable by this job",
        )
        self.returncode = returncode
        self.output = output


class Git:
    """The adapter: runs git in one directory. Tests wrap it to interleave other runs."""

    def __init__(self, directory: Path, environ: Mapping[str, str] | None = None) -> None:
        self.directory = directory
        self.environ = dict(os.environ if environ is None else environ)

    def run(self, args: Sequence[str], *, stdin: str | None = None, env: Mapping[str, str] | None = None) -> str:
        try:
            result = run_git(
                self.directory,
                args,
                stdin=stdin,
                env={**self.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})},
                timeout=120,
            )
        except FileNotFoundError:
            raise StateError("state: commit needs git, and git is not installed") from None
        except subprocess.TimeoutExpired:
            raise StateError(f"git {args[0]} did not finish within 120 s") from None
        if result.returncode != 0:
            raise GitCommandError(args, result.returncode, (result.stderr + result.stdout).strip())
        return result.stdout


@dataclass(frozen=True)
class CommitResult:
    branch: str
    commit: str  # the pushed commit; "" when the branch already held this record
    attempts: int
    text: str  # the state file as it now stands on the branch


def state_branch(explicit: str, environ: Mapping[str, str], event: Mapping[str, Any]) -> str:
    """The branch that keeps the record: the input, else the branch this run is on, else (a tag push,
    a pull request) the repository's default branch."""
    if explicit:
        if not _BRANCH.fullmatch(explicit) or explicit.endswith(".lock"):
            raise UsageError(f"input state-branch {explicit!r} is not a branch name", hint="for example: main")
        return explicit
    ref = environ.get("GITHUB_REF", "")
    if ref.startswith("refs/heads/") and not ref.startswith("refs/heads/gh-readonly-queue/"):  # not a merge queue
        return ref.removeprefix("refs/heads/")
    default = (event.get("repository") or {}).get("default_branch")
    if isinstance(default, str) and default:
        return default
    raise UsageError(
        "state: commit cannot tell which branch keeps the record (not on a branch, no default branch known)",
        hint="set the input state-branch, for example state-branch: main",
    )


def commit_message(agent: str, environment: str, action: str, status: str, version: str) -> str:
    # [skip ci] keeps push-triggered workflows from running on the record itself.
    return f"agentdeploy: {agent} ({environment}) {action} {status} {version}".rstrip() + " [skip ci]"


def _clean(output: str) -> str:
    """git's own words, without credentials a remote URL might carry."""
    return re.sub(r"(https?://)[^/@\s]+@", r"\1***@", output).strip()


def _push_refusal(output: str) -> str:
    """What the server said and the reason on the ref's line, without git's progress and URLs."""
    said = [line.removeprefix("remote:").strip() for line in output.splitlines() if line.startswith("remote:")]
    reasons = re.findall(r"^!\t\S+\t(.*)$", output, re.M)  # --porcelain: "!<tab>src:dst<tab>[rejected] (why)"
    found = [line for line in said if line] + reasons
    return _clean("; ".join(found) if found else output)


class StateBranch:
    """One state file on one branch of `origin`."""

    def __init__(self, git: Git, state_file: Path, branch: str, *, remote: str = "origin") -> None:
        self.git = git
        self.branch = branch
        self.remote = remote
        try:  # one process for both facts
            root_line, shallow = git.run(["rev-parse", "--show-toplevel", "--is-shallow-repository"]).split("\n")[:2]
        except GitCommandError:
            raise StateError(
                f"state: commit needs a git checkout, and {git.directory} is not in one",
                hint="check out the repository first (actions/checkout), or use state: artifact",
            ) from None
        root = Path(root_line.strip())
        try:
            self.path = state_file.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            raise StateError(f"the state file {state_file} lies outside the repository {root}") from None
        self.shallow = shallow.strip() == "true"

    def fetch(self, sleep: Callable[[float], None] = time.sleep) -> tuple[str, str | None]:
        """The branch tip and the state file's text there (None when the branch has no such file yet)."""
        tip = self._remote_tip(sleep)
        if not self._has_commit(tip):
            # --depth=1 only for a commit this clone lacks: deepening or cutting the checkout's own
            # history would change what later steps of the job see.
            depth = ["--depth=1"] if self.shallow else []
            self._retrying(
                ["fetch", "--quiet", "--no-tags", *depth, self.remote, f"+refs/heads/{self.branch}:{BASE_REF}"], sleep
            )
            tip = self.git.run(["rev-parse", "--verify", f"{BASE_REF}^{{commit}}"]).strip()
        try:
            text = self.git.run(["cat-file", "blob", f"{tip}:{self.path}"])
        except GitCommandError:
            text = None
        return tip, text

    def _remote_tip(self, sleep: Callable[[float], None]) -> str:
        listed = self._retrying(["ls-remote", "--heads", self.remote, f"refs/heads/{self.branch}"], sleep)
        for line in listed.splitlines():
            sha, _, ref = line.partition("\t")
            if ref == f"refs/heads/{self.branch}":
                return sha
        raise StateError(
            f"branch {self.branch!r} does not exist on {self.remote}, so the state cannot be recorded there",
            hint="create the branch, or name another with state-branch",
        )

    def _has_commit(self, sha: str) -> bool:
        try:
            self.git.run(["cat-file", "-e", f"{sha}^{{commit}}"])
            return True
        except GitCommandError:
            return False

    def _retrying(self, args: list[str], sleep: Callable[[float], None]) -> str:
        waits = backoff(2.0)
        for attempt in range(1, FETCH_ATTEMPTS + 1):
            try:
                return self.git.run(args)
            except GitCommandError as exc:
                if attempt == FETCH_ATTEMPTS or not _TRANSIENT.search(exc.output):
                    raise StateError(
                        f"cannot read branch {self.branch!r} from {self.remote} to record the state: "
                        f"{_clean(exc.output)}",
                        hint=CREDENTIALS_HINT,
                    ) from None
                sleep(next(waits))
        raise AssertionError("unreachable")

    def _commit(self, tip: str, text: str, message: str, identity: Mapping[str, str]) -> str:
        blob = self.git.run(["hash-object", "-w", "--stdin"], stdin=text).strip()
        with tempfile.TemporaryDirectory(prefix="agentdeploy-index-") as scratch:
            # A private index: the checkout's own index and files stay as they are.
            index = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            self.git.run(["read-tree", tip], env=index)
            self.git.run(["update-index", "--add", "--cacheinfo", f"100644,{blob},{self.path}"], env=index)
            tree = self.git.run(["write-tree"], env=index).strip()
        return self.git.run(["commit-tree", tree, "-p", tip, "-m", message], env=identity).strip()

    def record(
        self,
        merge: Callable[[str | None], str],
        message: str,
        *,
        identity: Mapping[str, str],
        attempts: int = DEFAULT_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> CommitResult:
        """Push `merge(text on the branch)` as the state file; on a lost race, fetch and merge again."""
        last = ""
        waits = backoff(2.0, jitter=True)  # apart, so two runs do not collide again
        for attempt in range(1, attempts + 1):
            tip, theirs = self.fetch(sleep)
            text = merge(theirs)
            if text == theirs:
                return CommitResult(self.branch, "", attempt, text)
            commit = self._commit(tip, text, message, identity)
            try:
                # --no-verify: the job's own pre-push hooks (lint, tests) are not about this record.
                self.git.run(["push", "--porcelain", "--no-verify", self.remote, f"{commit}:refs/heads/{self.branch}"])
                return CommitResult(self.branch, commit, attempt, text)
            except GitCommandError as exc:
                last = _push_refusal(exc.output)
                if not _RACE.search(exc.output) and not _TRANSIENT.search(exc.output):
                    raise StateError(
                        f"the push of the state record to {self.branch!r} was refused: {last}",
                        hint="the job needs permissions contents: write and actions/checkout with "
                        "persist-credentials (the default); for a protected branch, name another in state-branch",
                    ) from None
            if attempt < attempts:
                sleep(next(waits))
        raise StateError(
            f"the state record could not be pushed to {self.branch!r} in {attempts} attempts: {last}",
            hint="other runs keep pushing to that branch; run again, or use a concurrency group",
        )


def bot_identity() -> dict[str, str]:
    return {
        "GIT_AUTHOR_NAME": BOT_NAME,
        "GIT_AUTHOR_EMAIL": BOT_EMAIL,
        "GIT_COMMITTER_NAME": BOT_NAME,
        "GIT_COMMITTER_EMAIL": BOT_EMAIL,
    }


def _branch_state(text: str, store: StateStore, branch: StateBranch) -> DeploymentState:
    where = f"{branch.path} on branch {branch.branch}"
    try:
        return parse_state(text, DeploymentState(store.agent, store.environment, store.target), where=where)
    except CorruptStateError as exc:
        raise StateError(
            f"the state file {where} is corrupted ({exc}); it was left as it is",
            hint="restore it on the branch from an earlier commit (git log -- the file), then run again",
        ) from None


def restore_from_branch(store: StateStore, branch: StateBranch) -> bool:
    """Start from the record on the branch (a tag's checkout may hold an older one), merged with the local one."""
    _, text = branch.fetch()
    if text is None:
        return False
    theirs = _branch_state(text, store, branch)
    with store.locked():
        merged = merge_states(store.load(), theirs) if store.path.exists() else theirs
        store.write_text(render_state(merged))
    return True


def push_record(
    store: StateStore,
    branch: StateBranch,
    *,
    identity: Mapping[str, str],
    attempts: int = DEFAULT_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> CommitResult:
    """Commit this run's record to the branch; the local file ends up as the branch has it."""
    with store.locked():
        ours = store.load()
        latest = ours.history[0] if ours.history else None
        message = commit_message(
            store.agent,
            store.environment,
            latest.action if latest else "record",
            latest.status if latest else "",
            (latest.tag or latest.digest[:19]) if latest else "",
        )

        def merge(text: str | None) -> str:
            return render_state(ours if text is None else merge_states(ours, _branch_state(text, store, branch)))

        result = branch.record(merge, message, identity=identity, attempts=attempts, sleep=sleep)
        store.write_text(result.text)
    return result
