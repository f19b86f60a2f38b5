"""A preview on its pull request: one sticky comment per agent, and a GitHub deployment per preview.

The comment is found by a hidden marker on its first line (`<!-- agentdeploy-preview:<agent> -->`) among the
pull request's issue comments (every page), written by the workflow's token (github-actions[bot]); found, it is
edited in place (PATCH /issues/comments/{id}), else created (POST /issues/{n}/comments). A person's comment that
quotes the marker is never taken over.

The deployment goes to an environment of its own, `preview-<agent>-pr-<n>`, created with
`transient_environment: true` (it goes away with the pull request), `auto_merge: false` (the head commit is what
was previewed, nothing is merged into it) and `required_contexts: []` (the preview runs while the pull request's
other checks still run); its status `success` carries the preview's URL as `environment_url`. GitHub marks the
earlier deployments of an environment inactive by itself only when they are not transient (REST API,
"Inactive deployments"), so each new preview marks the earlier ones of its environment inactive here; its
removal marks them all inactive (GitHub shows a transient one as destroyed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agentdeploy.errors import GitHubApiError, UsageError
from agentdeploy.github.rest import GitHubRest
from agentdeploy.github.summary import md_code, md_text, md_url
from agentdeploy.jsonvalue import JsonObject, int_at, object_at, text_at

BOT = "github-actions[bot]"  # who writes with the workflow's GITHUB_TOKEN
_AGENT = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")  # an agent's name as its config allows it


@dataclass(frozen=True, kw_only=True)
class PullRequest:
    number: int
    head_sha: str  # the commit the preview runs
    head_repository: str  # owner/name of the branch's repository: a fork's differs from the base's
    base_repository: str

    @property
    def from_fork(self) -> bool:
        return self.head_repository.casefold() != self.base_repository.casefold()

    @classmethod
    def from_event(cls, environ: Mapping[str, str]) -> PullRequest:
        """The pull request of this run's event (GITHUB_EVENT_PATH), for a run on `pull_request`."""
        path = environ.get("GITHUB_EVENT_PATH", "")
        try:
            event = json.loads(Path(path).read_text(encoding="utf-8")) if path else {}
        except (OSError, ValueError):
            event = {}
        pull = object_at(event, "pull_request")
        number = int_at(pull, "number")
        if not pull or number < 1 or not text_at(pull, "head", "sha"):
            name = environ.get("GITHUB_EVENT_NAME") or "?"
            raise UsageError(
                f"a preview belongs to a pull request, and this run's event ({name}) names none",
                hint="run the preview from a workflow `on: pull_request` (examples/workflows/preview.yml)",
            )
        return cls(
            number=number,
            head_sha=text_at(pull, "head", "sha"),
            head_repository=text_at(pull, "head", "repo", "full_name"),
            base_repository=text_at(pull, "base", "repo", "full_name") or environ.get("GITHUB_REPOSITORY", ""),
        )


@dataclass(frozen=True, kw_only=True)
class GateSummary:
    """The evaluation gate's result at the preview's URL: how many of the agent's test cases passed."""

    passed: bool
    cases_passed: int
    cases_total: int
    reason: str = ""  # why it failed, when no test case tells (the health gate, a verify turn)

    def describe(self) -> str:
        verdict = "passed" if self.passed else "failed"
        cases = f" ({self.cases_passed} of {self.cases_total} test cases)" if self.cases_total else ""
        why = f": {self.reason}" if self.reason and not self.passed else ""
        return f"{verdict}{cases}{why}"


@dataclass(frozen=True, kw_only=True)
class PreviewReport:
    """What a preview deployed: its label, the URL it answers at, the image by digest, and the gate's result."""

    agent: str
    name: str  # the label, pr-<n>
    url: str
    image: str  # registry/repository@sha256:...
    digest: str
    gate: GateSummary | None = None  # None: no test cases ran


@dataclass(frozen=True, kw_only=True)
class Publication:
    comment_id: int
    comment_created: bool  # False: the existing comment was edited
    environment: str
    deployment_id: int = 0  # 0: no deployment (a removal)
    deactivated: tuple[int, ...] = ()  # the deployments marked inactive


def marker(agent: str) -> str:
    """The hidden first line that marks this agent's preview comment (an HTML comment GitHub does not show)."""
    if not _AGENT.fullmatch(agent) or "--" in agent:
        raise UsageError(
            f"agent name {agent!r} cannot name a preview",
            hint="an agent's name is lower-case letters, digits and single hyphens",
        )
    return f"<!-- agentdeploy-preview:{agent} -->"


def environment_name(agent: str, number: int) -> str:
    """The GitHub environment of one agent's preview of one pull request."""
    marker(agent)  # refuses the names a marker refuses
    return f"preview-{agent}-pr-{number}"


def comment_body(report: PreviewReport, pr: PullRequest, log_url: str = "") -> str:
    rows = [
        ("URL", md_url(report.url)),
        ("Label", md_code(report.name)),
        ("Commit", md_code(pr.head_sha[:12]) if pr.head_sha else "-"),
        ("Image", md_code(report.image) if report.image else "-"),
        ("Digest", md_code(report.digest) if report.digest else "-"),
        ("Gate", md_text(report.gate.describe()) if report.gate else "no test cases ran"),
    ]
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    run = f"\n[The run that deployed it]({log_url})\n" if log_url.startswith("https://") else ""
    return (
        f"{marker(report.agent)}\n### Preview of {md_text(report.agent)}\n\n"
        "Its own revision, at 0% of the production traffic; updated on each push, removed when the pull request "
        f"closes.\n\n| | |\n|---|---|\n{table}\n{run}"
    )


def removed_body(agent: str, name: str, pr: PullRequest) -> str:
    return (
        f"{marker(agent)}\n### Preview of {md_text(agent)}\n\n"
        f"Removed: pull request #{pr.number} is closed, the revision labelled {md_code(name)} no longer runs.\n"
    )


def find_comment(api: GitHubRest, number: int, mark: str, author: str = BOT) -> JsonObject | None:
    """Our comment on the pull request: the first, on any page, whose first line is the marker, by `author`."""
    for comment in api.pages(f"/issues/{number}/comments", f"listing the comments of pull request #{number}"):
        body = text_at(comment, "body")
        if body.split("\n", 1)[0].strip() == mark and text_at(comment, "user", "login") == author:
            return comment
    return None


def upsert_comment(api: GitHubRest, number: int, mark: str, body: str, author: str = BOT) -> tuple[int, bool]:
    """Edit our marked comment in place, or create it: (its id, whether it was created)."""
    found = find_comment(api, number, mark, author)
    if found is not None:
        comment_id = int_at(found, "id")
        api.call("PATCH", api.url(f"/issues/comments/{comment_id}"), "updating the preview comment", {"body": body})
        return comment_id, False
    what = f"commenting on pull request #{number}"
    created = api.call("POST", api.url(f"/issues/{number}/comments"), what, {"body": body})
    return int_at(created.body, "id"), True


def create_deployment(api: GitHubRest, ref: str, environment: str, description: str) -> int:
    body: JsonObject = {
        "ref": ref,
        "environment": environment,
        "transient_environment": True,
        "production_environment": False,
        "auto_merge": False,
        "required_contexts": [],
        "description": description[:140],
    }
    what = f"creating a deployment for {environment}"
    created = api.call("POST", api.url("/deployments"), what, body)
    deployment_id = int_at(created.body, "id")
    if created.status != 201 or deployment_id < 1:  # 202: a merge instead of a deployment (auto_merge is off)
        said = text_at(created.body, "message")
        raise GitHubApiError(
            f"GitHub answered {what} in {api.repository} with no deployment (HTTP {created.status}: {said})"
        )
    return deployment_id


def set_status(api: GitHubRest, deployment_id: int, state: str, environment_url: str = "", log_url: str = "") -> None:
    body: JsonObject = {"state": state}
    if environment_url:
        body["environment_url"] = environment_url
    if log_url:
        body["log_url"] = log_url
    what = f"marking deployment {deployment_id} {state}"
    api.call("POST", api.url(f"/deployments/{deployment_id}/statuses"), what, body)


def deactivate(api: GitHubRest, environment: str, keep: int = 0) -> tuple[int, ...]:
    """Mark every deployment of `environment` but `keep` inactive, unless its newest status already is."""
    done = []
    listed = api.pages("/deployments", f"listing the deployments of {environment}", {"environment": environment})
    for deployment in listed:
        deployment_id = int_at(deployment, "id")
        if deployment_id in (0, keep):
            continue
        statuses = api.call(
            "GET", api.url(f"/deployments/{deployment_id}/statuses", {"per_page": 1}), "reading a deployment's status"
        )
        newest = statuses.body[0] if isinstance(statuses.body, list) and statuses.body else None
        if text_at(newest, "state") != "inactive":
            set_status(api, deployment_id, "inactive")
            done.append(deployment_id)
    return tuple(done)


def publish_preview(
    api: GitHubRest, pr: PullRequest, report: PreviewReport, log_url: str = "", author: str = BOT
) -> Publication:
    """A verified preview, on its pull request: the sticky comment, and a deployment whose status is `success`
    (`failure` when the gate failed) with the preview's URL; the earlier ones of its environment marked inactive."""
    environment = environment_name(report.agent, pr.number)
    body = comment_body(report, pr, log_url)
    deployment_id = create_deployment(api, pr.head_sha, environment, f"{report.agent} preview {report.name}")
    state = "failure" if report.gate is not None and not report.gate.passed else "success"
    set_status(api, deployment_id, state, environment_url=report.url, log_url=log_url)
    deactivated = deactivate(api, environment, keep=deployment_id)
    comment_id, created = upsert_comment(api, pr.number, marker(report.agent), body, author)
    return Publication(
        comment_id=comment_id,
        comment_created=created,
        environment=environment,
        deployment_id=deployment_id,
        deactivated=deactivated,
    )


def retire_preview(api: GitHubRest, pr: PullRequest, agent: str, name: str, author: str = BOT) -> Publication:
    """A removed preview: its deployments inactive, its comment (when there is one) saying it is gone."""
    environment = environment_name(agent, pr.number)
    deactivated = deactivate(api, environment)
    found = find_comment(api, pr.number, marker(agent), author)
    comment_id = int_at(found, "id") if found is not None else 0
    if comment_id:
        body: JsonObject = {"body": removed_body(agent, name, pr)}
        api.call("PATCH", api.url(f"/issues/comments/{comment_id}"), "updating the preview comment", body)
    return Publication(comment_id=comment_id, comment_created=False, environment=environment, deactivated=deactivated)


# -- what the Action's preview commands call, from the run's environment ----------------------------------------


def _run_url(environ: Mapping[str, str]) -> str:
    server = (environ.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/")
    repository, run_id = environ.get("GITHUB_REPOSITORY", ""), environ.get("GITHUB_RUN_ID", "")
    return f"{server}/{repository}/actions/runs/{run_id}" if repository and run_id else ""


def _this_repository(environ: Mapping[str, str]) -> tuple[GitHubRest, PullRequest]:
    """The API and the pull request of this run; a fork's pull request refused before any request."""
    pr = PullRequest.from_event(environ)
    if pr.from_fork:
        raise UsageError(
            f"pull request #{pr.number} comes from the fork {pr.head_repository}: a fork's run gets no secrets and a "
            "read-only token, so it gets no preview",
            hint="run the preview job only when github.event.pull_request.head.repo.full_name == github.repository "
            "(examples/workflows/preview.yml)",
        )
    return GitHubRest.from_environ(environ), pr


def announce_preview(environ: Mapping[str, str], report: PreviewReport) -> Publication:
    """`command: preview` after the target verified the preview: its comment and deployment on the run's pull
    request, linking the run."""
    api, pr = _this_repository(environ)
    return publish_preview(api, pr, report, log_url=_run_url(environ))


def announce_removal(environ: Mapping[str, str], agent: str, name: str) -> Publication:
    """`command: preview-remove` after the target removed the preview: its deployments inactive, its comment
    saying so."""
    api, pr = _this_repository(environ)
    return retire_preview(api, pr, agent, name)


def check_preview_event(environ: Mapping[str, str]) -> None:
    """Before a preview is deployed: this run's event is a pull request of this repository (not a fork's)."""
    _this_repository(environ)


def announce_failure(
    environ: Mapping[str, str], agent: str, name: str, preview: Mapping[str, object], why: str
) -> None:
    """A preview that failed its gate: the comment and a `failure` deployment say so, with what it ran."""
    report = PreviewReport(
        agent=agent,
        name=name,
        url=str(preview.get("url") or ""),
        image=str(preview.get("image") or ""),
        digest=str(preview.get("digest") or ""),
        gate=GateSummary(passed=False, cases_passed=0, cases_total=0, reason=why),
    )
    announce_preview(environ, report)


def announce(
    command: str, environ: Mapping[str, str], agent: str, name: str, outputs: Mapping[str, object]
) -> Publication:
    """After the target's preview (or its removal): the pull request's comment and deployment say so."""
    if command == "preview-remove":
        return announce_removal(environ, agent, name)
    report = PreviewReport(
        agent=agent,
        name=name,
        url=str(outputs.get("url") or ""),
        image=str(outputs.get("image") or ""),
        digest=str(outputs.get("digest") or ""),
    )
    return announce_preview(environ, report)
