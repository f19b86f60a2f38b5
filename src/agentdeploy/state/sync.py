"""Where a run's record comes from before it runs, and where it goes after: one object for every front end.

- `none`: the record is the file in the checkout (the command line; the Action's default);
- `artifact`: no file in the checkout, so the newest one an earlier trusted run uploaded is taken (artifact.py:
  this repository, not a fork; this workflow or one `workflows` names; the default branch or a tag); the
  workflow uploads the file again after the run;
- `commit`: the record is read from a branch before the run and committed back to it after (branch.py).

`restore` takes the record in; `commit` sends it back when the run wrote one. Errors are raised, never printed:
the front end reports them its own way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agentdeploy.console import Console
from agentdeploy.errors import UsageError
from agentdeploy.jsonvalue import JsonObject, to_object
from agentdeploy.state.artifact import artifact_name, fetch_state_artifact, trusted_workflows
from agentdeploy.state.branch import Git, StateBranch, bot_identity, push_record, restore_from_branch, state_branch
from agentdeploy.state.store import StateStore

STATE_MODES = ("none", "artifact", "commit")


def state_mode(value: str) -> str:
    if value not in STATE_MODES:
        raise UsageError(f"input state {value!r} must be one of {', '.join(STATE_MODES)}")
    return value


@dataclass(frozen=True)
class Restored:
    """A record as the run found it: where it came from, and the file's text then (so a commit happens only when
    the run wrote something)."""

    store: StateStore
    before: str
    source: str = ""  # artifact: "artifact NAME of <run>"; "" when none was taken
    artifact: str = ""  # artifact: the name the workflow uploads the record under
    branch: StateBranch | None = None  # commit: where it goes back to

    def written(self) -> bool:
        return _read(self.store.path) != self.before


@dataclass(frozen=True)
class Committed:
    commit: str  # "" when the branch already held this record
    attempts: int


class StateSync:
    """One mode (`none`, `artifact`, `commit`) for every agent of a run."""

    def __init__(
        self,
        mode: str,
        environ: Mapping[str, str],
        console: Console,
        *,
        branch: str = "",
        workflows: str = "",
    ) -> None:
        self.mode = state_mode(mode)
        self.environ = environ
        self.console = console
        self.workflows = workflows  # artifact: the other workflow files whose runs' records are trusted
        # commit: the branch input, or the default (checked here, before anything runs)
        self.branch = state_branch(branch, environ, github_event(environ)) if self.mode == "commit" else ""

    def restore(self, store: StateStore, checkout: Path, *, staged: bool = True) -> Restored:
        """Take the record in before the run. `checkout`: a directory of the repository (the config's)."""
        if self.mode == "artifact":
            name = artifact_name(store.agent, store.environment)
            return Restored(store, _read(store.path), self._from_artifact(store.path, name), name)
        if self.mode == "commit":
            branch = StateBranch(Git(checkout, self.environ), store.path, self.branch)
            if staged:
                with self.console.stage(f"state from branch {branch.branch}"):
                    self._from_branch(store, branch)
            else:
                self._from_branch(store, branch)
            return Restored(store, _read(store.path), branch=branch)
        return Restored(store, _read(store.path))

    def commit(self, restored: Restored) -> Committed | None:
        """Commit the record to its branch when the run wrote one, whatever the run's outcome (a rollback is worth
        recording too); None when there is nothing to commit. Raises StateError when the push fails."""
        branch = restored.branch
        if branch is None or not restored.written():
            return None
        with self.console.stage(f"state to branch {branch.branch}"):
            result = push_record(restored.store, branch, identity=bot_identity())
            if result.commit:
                tries = f" after {result.attempts} attempts" if result.attempts > 1 else ""
                self.console.info(f"state: committed {branch.path} to {branch.branch} as {result.commit[:12]}{tries}")
            else:
                self.console.info(f"state: branch {branch.branch} already holds this record")
        return Committed(result.commit, result.attempts)

    def _from_branch(self, store: StateStore, branch: StateBranch) -> None:
        found = restore_from_branch(store, branch)
        self.console.info(
            f"state: read {branch.path} from branch {branch.branch}"
            if found
            else f"state: branch {branch.branch} has no {branch.path} yet; a new record starts"
        )

    def _from_artifact(self, state_file: Path, name: str) -> str:
        """No record in this checkout: take the newest one an earlier trusted run uploaded. Which run it came
        from, or ""."""
        if state_file.exists():
            return ""
        repository, token = self.environ.get("GITHUB_REPOSITORY"), self.environ.get("GITHUB_TOKEN")
        if not repository or not token:
            self.console.info("note: no GITHUB_REPOSITORY/GITHUB_TOKEN, so no earlier state artifact was looked up")
            return ""
        trusted = trusted_workflows(self.environ.get("GITHUB_WORKFLOW_REF", ""), self.workflows)
        if not trusted:
            self.console.info(
                "note: no GITHUB_WORKFLOW_REF and no state-workflows, so no run's state artifact is trusted"
            )
            return ""
        lookup = fetch_state_artifact(
            api_url=self.environ.get("GITHUB_API_URL", "https://api.github.com"),
            repository=repository,
            token=token,
            name=name,
            destination=state_file,
            workflows=trusted,
        )
        skipped = f" (skipped: {'; '.join(lookup.skipped)})" if lookup.skipped else ""
        if lookup.found is None:
            self.console.info(f"state: no artifact {name} yet from a trusted run; a new record starts{skipped}")
            return ""
        self.console.info(f"state: restored from artifact {name} of {lookup.found.describe()}{skipped}")
        return f"artifact {name} of {lookup.found.describe()}"


def github_event(environ: Mapping[str, str]) -> JsonObject:
    """The webhook payload of this run (for the default branch); empty when there is none to read."""
    path = environ.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return to_object(data)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
