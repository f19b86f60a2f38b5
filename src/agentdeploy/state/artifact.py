"""State artifacts: a later run (a rollback at 3 a.m.) finds the newest state an earlier run uploaded, from a run it
can trust.

GitHub REST: GET /repos/{repo}/actions/artifacts?name=... lists artifacts of the whole repository, newest first,
those of runs for pull requests from forks included; each names its `workflow_run` (id, repository_id,
head_repository_id, head_branch). The run (GET /repos/{repo}/actions/runs/{id}) names its workflow file (`path`)
and `event`. A record is taken only from a run of this repository (never a fork's head), of a workflow this run
trusts (its own file, or those the `state-workflows` input names), on the default branch or a tag, and never one a
pull request triggered: what dawidd6/action-download-artifact does since GHSA-5xr6-xhww-33m4 (`allow_forks:
false`). The zip comes from archive_download_url. The token needs `actions: read` (and `contents: read`).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from agentdeploy.errors import StateError

TIMEOUT = 30
WORKFLOWS_DIR = ".github/workflows/"
UNTRUSTED_EVENTS = ("pull_request", "pull_request_target", "pull_request_review", "pull_request_review_comment")


def artifact_name(agent: str, environment: str) -> str:
    """One artifact name per agent and environment, so two agents never replace each other's record."""
    return f"agentdeploy-state-{agent}-{environment}"


def trusted_workflows(workflow_ref: str, named: str) -> set[str]:
    """The workflow files whose runs' records this run takes: its own (GITHUB_WORKFLOW_REF is
    `owner/repo/.github/workflows/x.yml@refs/...`) and those `named` (file names, by spaces, commas or lines)."""
    found = set()
    own = workflow_ref.partition("@")[0]
    if WORKFLOWS_DIR in own:
        found.add(WORKFLOWS_DIR + own.split(WORKFLOWS_DIR, 1)[1])
    for name in named.replace(",", " ").split():
        found.add(name if name.startswith(WORKFLOWS_DIR) else WORKFLOWS_DIR + name.lstrip("./"))
    return found


@dataclass(frozen=True)
class StateSource:
    """The run a restored record came from, for the log and the job summary."""

    artifact_id: int
    run_id: int
    workflow: str
    branch: str
    event: str
    created_at: str
    run_url: str

    def describe(self) -> str:
        return f"run {self.run_id} ({self.workflow} on {self.branch}, {self.event}, uploaded {self.created_at})" + (
            f" {self.run_url}" if self.run_url else ""
        )


@dataclass
class ArtifactLookup:
    """The newest trusted record (None when there is none) and why each newer or other candidate was skipped."""

    found: StateSource | None = None
    skipped: list[str] = field(default_factory=list)


class _GitHub:
    def __init__(self, api_url: str, repository: str, token: str, session: Any) -> None:
        import requests

        self.base = f"{api_url.rstrip('/')}/repos/{repository}"
        self.repository = repository
        self.http = session or requests.Session()
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}

    def get(self, path: str, **params: str) -> Any:
        answer = self.http.get(self.base + path, params=params or None, headers=self.headers, timeout=TIMEOUT)
        if answer.status_code in (401, 403):
            raise StateError(
                f"GitHub refused to read {self.repository}{path or ''} (HTTP {answer.status_code})",
                hint="give the job `permissions: actions: read` (and contents: read)",
            )
        return answer


def _is_tag(github: _GitHub, name: str) -> bool:
    return bool(name) and github.get(f"/git/ref/tags/{quote(name, safe='')}").status_code == 200


def fetch_state_artifact(
    *,
    api_url: str,
    repository: str,
    token: str,
    name: str,
    destination: Path,
    workflows: Collection[str],
    session: Any = None,
) -> ArtifactLookup:
    """Write the newest unexpired artifact `name` of a trusted run (see the module) to `destination`."""
    github = _GitHub(api_url, repository, token, session)
    about = github.get("")
    if about.status_code != 200:
        raise StateError(f"reading repository {repository} failed (HTTP {about.status_code})")
    home: Mapping[str, Any] = about.json()
    repository_id, default_branch = home.get("id"), str(home.get("default_branch") or "")
    listing = github.get("/actions/artifacts", name=name, per_page="30")
    if listing.status_code != 200:
        raise StateError(f"listing the state artifacts of {repository} failed (HTTP {listing.status_code})")
    candidates = [a for a in listing.json().get("artifacts") or [] if a.get("name") == name]
    lookup = ArtifactLookup()
    for artifact in sorted(candidates, key=lambda a: str(a.get("created_at") or ""), reverse=True):
        source, why = _trusted_run(github, artifact, repository_id, default_branch, workflows)
        if source is None:
            lookup.skipped.append(f"artifact {artifact.get('id')}: {why}")
            continue
        _download(github, artifact, name, destination)
        lookup.found = source
        return lookup
    return lookup


def _trusted_run(
    github: _GitHub,
    artifact: Mapping[str, Any],
    repository_id: object,
    default_branch: str,
    workflows: Collection[str],
) -> tuple[StateSource | None, str]:
    """The run that uploaded `artifact`, when its record can be trusted; else (None, why not)."""
    if artifact.get("expired"):
        return None, "expired"
    run = artifact.get("workflow_run") or {}
    run_id = run.get("id")
    if not isinstance(run_id, int):
        return None, "names no workflow run"
    head = run.get("head_repository_id")
    if head != repository_id or run.get("repository_id") != repository_id:
        return None, f"run {run_id} came from another repository (a fork: head repository {head})"
    answer = github.get(f"/actions/runs/{run_id}")
    if answer.status_code != 200:
        return None, f"run {run_id} cannot be read (HTTP {answer.status_code})"
    details: Mapping[str, Any] = answer.json()
    if (details.get("head_repository") or {}).get("id") != repository_id:
        return None, f"run {run_id} came from another repository (a fork)"
    path, event, branch = (
        str(details.get("path") or ""),
        str(details.get("event") or ""),
        str(details.get("head_branch") or ""),
    )
    if path not in workflows:
        trusted = ", ".join(sorted(w.removeprefix(WORKFLOWS_DIR) for w in workflows)) or "none"
        return None, f"run {run_id} is of {path or 'no workflow'}, not a trusted workflow ({trusted})"
    if event in UNTRUSTED_EVENTS:
        return None, f"run {run_id} was triggered by {event}"
    if branch != default_branch and not _is_tag(github, branch):
        return (
            None,
            f"run {run_id} ran on {branch or 'no branch'}, neither the default branch {default_branch} nor a tag",
        )
    return (
        StateSource(
            artifact_id=int(artifact.get("id") or 0),
            run_id=run_id,
            workflow=path.removeprefix(WORKFLOWS_DIR),
            branch=branch,
            event=event,
            created_at=str(artifact.get("created_at") or ""),
            run_url=str(details.get("html_url") or ""),
        ),
        "",
    )


def _download(github: _GitHub, artifact: Mapping[str, Any], name: str, destination: Path) -> None:
    archive = github.http.get(artifact["archive_download_url"], headers=github.headers, timeout=TIMEOUT)
    if archive.status_code != 200:
        raise StateError(f"downloading state artifact {name} failed (HTTP {archive.status_code})")
    with zipfile.ZipFile(io.BytesIO(archive.content)) as bundle:
        files = [entry for entry in bundle.namelist() if entry.endswith(".json")]
        if len(files) != 1:
            raise StateError(f"state artifact {name} holds {len(files)} JSON files, expected one")
        data = bundle.read(files[0])
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(destination.name + ".download")
    temporary.write_bytes(data)
    temporary.replace(destination)
