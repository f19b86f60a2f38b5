"""The preview's GitHub side (github/pulls.py, github/rest.py) against the fake GitHub REST API on 127.0.0.1
(fakes/github_api.py): one sticky comment per agent and pull request, edited in place on every push and found on
any page; a transient deployment per preview whose status carries its URL, the earlier ones and all of them on
removal marked inactive; every refusal one clear error that never shows the token."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from agentdeploy.errors import ExitCode, GitHubApiError, TargetUnavailableError, UsageError
from agentdeploy.github.pulls import (
    GateSummary,
    PreviewReport,
    PullRequest,
    announce_preview,
    announce_removal,
    environment_name,
    marker,
    publish_preview,
    retire_preview,
)
from agentdeploy.github.rest import GitHubRest, Response
from fakes.github_api import FakeGitHubApi

TOKEN = "ghs_preview_write_token_0123456789"
READ_ONLY = "ghs_fork_read_only_token_987654321"
SHA1, SHA2 = "a" * 40, "b" * 40
BASE = "/repos/org/agents"


@pytest.fixture
def github() -> Iterator[FakeGitHubApi]:
    fake = FakeGitHubApi(pulls=(7,))
    fake.token(TOKEN)
    fake.token(READ_ONLY, write=False)
    try:
        yield fake
    finally:
        fake.close()


def rest(fake: FakeGitHubApi, token: str = TOKEN) -> GitHubRest:
    environ = {"GITHUB_API_URL": fake.url, "GITHUB_REPOSITORY": "org/agents", "GITHUB_TOKEN": token}
    return GitHubRest.from_environ(environ)


def pull(sha: str = SHA1) -> PullRequest:
    return PullRequest(number=7, head_sha=sha, head_repository="org/agents", base_repository="org/agents")


def report(digest: str = "sha256:" + "1" * 64, gate: GateSummary | None = None) -> PreviewReport:
    return PreviewReport(
        agent="azure-agent",
        name="pr-7",
        url="https://azure-agent---pr-7.example.azurecontainerapps.io",
        image=f"myagents.azurecr.io/agents/azure-agent@{digest}",
        digest=digest,
        gate=gate,
    )


def writes(fake: FakeGitHubApi, since: int = 0) -> list[str]:
    return [entry.split("?")[0] for entry in fake.log[since:] if not entry.startswith("GET ")]


def test_the_comment_is_created_once_then_edited_in_place_on_the_next_push(github: FakeGitHubApi) -> None:
    api = rest(github)
    first = publish_preview(api, pull(SHA1), report(gate=GateSummary(passed=True, cases_passed=3, cases_total=3)))
    assert first.comment_created
    assert writes(github)[-1] == f"POST {BASE}/issues/7/comments"
    mark = len(github.log)
    second = publish_preview(api, pull(SHA2), report("sha256:" + "2" * 64))
    assert (second.comment_id, second.comment_created) == (first.comment_id, False)
    assert [w for w in writes(github, mark) if "/comments" in w] == [f"PATCH {BASE}/issues/comments/{first.comment_id}"]
    [comment] = github.comments_of(7)
    body = comment["body"]
    assert body.splitlines()[0] == "<!-- agentdeploy-preview:azure-agent -->"
    rows = [line for line in body.splitlines() if line.startswith("| ") and line != "| | |"]
    assert rows == [
        "| URL | https://azure-agent---pr-7.example.azurecontainerapps.io |",
        "| Label | `pr-7` |",
        f"| Commit | `{SHA2[:12]}` |",
        f"| Image | `myagents.azurecr.io/agents/azure-agent@sha256:{'2' * 64}` |",
        f"| Digest | `sha256:{'2' * 64}` |",
        "| Gate | no test cases ran |",
    ]
    assert comment["user"]["login"] == "github-actions[bot]"


def test_a_failed_gate_shows_in_the_comment_and_as_a_failed_deployment_with_its_url(github: FakeGitHubApi) -> None:
    publish_preview(rest(github), pull(), report(gate=GateSummary(passed=False, cases_passed=1, cases_total=3)))
    [comment] = github.comments_of(7)
    assert "| Gate | failed (1 of 3 test cases) |" in comment["body"].splitlines()
    [deployment] = github.environment("preview-azure-agent-pr-7")
    assert [(s["state"], s["environment_url"]) for s in deployment.statuses] == [("failure", report().url)]


def test_ours_is_found_on_page_two_among_150_comments_and_a_quoted_marker_is_left_alone(
    github: FakeGitHubApi,
) -> None:
    """GitHub gives at most 100 comments a page: ours, the 111th, is on page 2, reached through the link header.
    A person who pasted the marker into a comment on page 1 keeps their comment as they wrote it."""
    quoting = github.add_comment(7, marker("azure-agent") + "\nwhat is this marker?", login="octocat")
    for number in range(109):
        github.add_comment(7, f"review note {number}", login="reviewer")
    ours = github.add_comment(7, marker("azure-agent") + "\nold preview", login="github-actions[bot]", kind="Bot")
    for number in range(40):
        github.add_comment(7, f"later note {number}", login="reviewer")
    assert len(github.comments_of(7)) == 151
    mark = len(github.log)
    published = publish_preview(rest(github), pull(), report())
    assert (published.comment_id, published.comment_created) == (ours, False)
    listing = [entry for entry in github.log[mark:] if "/issues/7/comments" in entry]
    assert listing == [
        f"GET {BASE}/issues/7/comments?per_page=100",
        f"GET {BASE}/issues/7/comments?per_page=100&page=2",
    ]
    assert [w for w in writes(github, mark) if "/comments" in w] == [f"PATCH {BASE}/issues/comments/{ours}"]
    assert github.comments[quoting]["body"] == marker("azure-agent") + "\nwhat is this marker?"
    assert "| Label | `pr-7` |" in github.comments[ours]["body"]
    assert len(github.comments_of(7)) == 151


def test_a_deployment_per_push_with_its_url_the_earlier_inactive_and_all_inactive_on_removal(
    github: FakeGitHubApi,
) -> None:
    """The head commit has checks still running and is behind main: the deployment is created all the same
    (required_contexts [] and auto_merge false), transient, with a success status carrying the preview's URL."""
    for sha in (SHA1, SHA2):
        github.pending_contexts[sha] = ["ci/test"]
        github.behind_default.add(sha)
    api = rest(github)
    environment = environment_name("azure-agent", 7)
    assert environment == "preview-azure-agent-pr-7"
    first = publish_preview(api, pull(SHA1), report())
    [deployment] = github.environment(environment)
    assert [body for where, body in github.bodies if where == f"POST {BASE}/deployments"] == [
        {
            "ref": SHA1,
            "environment": environment,
            "transient_environment": True,
            "production_environment": False,
            "auto_merge": False,
            "required_contexts": [],
            "description": "azure-agent preview pr-7",
        }
    ]
    assert deployment.data["id"] == first.deployment_id
    assert [(s["state"], s["environment_url"]) for s in deployment.statuses] == [("success", report().url)]

    second = publish_preview(api, pull(SHA2), report("sha256:" + "2" * 64))
    assert second.deactivated == (first.deployment_id,)  # GitHub leaves a transient one active: we do not
    states = {d.data["id"]: [s["state"] for s in d.statuses] for d in github.environment(environment)}
    assert states == {first.deployment_id: ["success", "inactive"], second.deployment_id: ["success"]}

    mark = len(github.log)
    removed = retire_preview(api, pull(SHA2), "azure-agent", "pr-7")
    assert removed.deactivated == (second.deployment_id,)  # the first one was already inactive: not written again
    states = {d.data["id"]: [s["state"] for s in d.statuses] for d in github.environment(environment)}
    assert states == {first.deployment_id: ["success", "inactive"], second.deployment_id: ["success", "inactive"]}
    assert writes(github, mark) == [
        f"POST {BASE}/deployments/{second.deployment_id}/statuses",
        f"PATCH {BASE}/issues/comments/{first.comment_id}",
    ]
    [comment] = github.comments_of(7)
    assert comment["body"].splitlines()[:4] == [
        marker("azure-agent"),
        "### Preview of azure-agent",
        "",
        "Removed: pull request #7 is closed, the revision labelled `pr-7` no longer runs.",
    ]


def test_removing_a_preview_that_never_ran_writes_nothing(github: FakeGitHubApi) -> None:
    removed = retire_preview(rest(github), pull(), "azure-agent", "pr-7")
    assert (removed.comment_id, removed.deactivated, writes(github)) == (0, (), [])


def test_a_read_only_token_is_refused_with_one_clear_error_and_nothing_is_written(github: FakeGitHubApi) -> None:
    """A fork's pull request gets a read-only token: the first write is refused (403), exit 8, the token unshown."""
    with pytest.raises(GitHubApiError) as caught:
        publish_preview(rest(github, READ_ONLY), pull(), report())
    error = caught.value
    assert error.exit_code == ExitCode.DEPLOY
    assert error.render().splitlines() == [
        "error: GitHub refused creating a deployment for preview-azure-agent-pr-7 in org/agents "
        "(HTTP 403: Resource not accessible by integration)",
        "  fix: the job's token may not do this: give the job `permissions: pull-requests: write` (the comment) and "
        "`deployments: write` (the deployment); a pull request from a fork gets a read-only token",
    ]
    assert READ_ONLY not in error.render()
    assert github.deployments == {} and github.comments == {}


def test_a_job_without_deployments_write_is_refused_at_its_deployment_with_the_permission_to_add(
    github: FakeGitHubApi,
) -> None:
    """A job that may comment but was given no `deployments: write`: the deployment is refused (403) before the
    comment is written, so the pull request never shows a preview GitHub has no deployment of."""
    token = github.token("ghs_comments_only_token_5555555555", permissions={"pull-requests": "write"})
    with pytest.raises(GitHubApiError) as caught:
        publish_preview(rest(github, token), pull(), report())
    assert caught.value.message == (
        "GitHub refused creating a deployment for preview-azure-agent-pr-7 in org/agents "
        "(HTTP 403: Resource not accessible by integration)"
    )
    assert caught.value.hint == (
        "the job's token may not do this: give the job `permissions: pull-requests: write` (the comment) and "
        "`deployments: write` (the deployment); a pull request from a fork gets a read-only token"
    )
    assert github.deployments == {} and github.comments == {}


def test_a_wrong_token_and_no_token_are_refused_before_anything_is_sent(github: FakeGitHubApi) -> None:
    with pytest.raises(GitHubApiError) as caught:
        retire_preview(rest(github, "ghs_expired_token_000000000000"), pull(), "azure-agent", "pr-7")
    assert caught.value.message == (
        "GitHub refused listing the deployments of preview-azure-agent-pr-7 in org/agents (HTTP 401: Bad credentials)"
    )
    assert "ghs_expired" not in caught.value.render()
    with pytest.raises(GitHubApiError) as missing:
        GitHubRest.from_environ({"GITHUB_API_URL": github.url, "GITHUB_REPOSITORY": "org/agents"})
    assert missing.value.message == (
        "the preview's pull request comment and deployment need the GitHub API, but GITHUB_TOKEN is not set"
    )
    assert github.log == ["GET /repos/org/agents/deployments?environment=preview-azure-agent-pr-7&per_page=100"]


def test_an_unreachable_api_is_exit_11_naming_the_host_only(free_port: Callable[[], int]) -> None:
    port = free_port()  # nothing listens there
    api = GitHubRest(api_url=f"http://127.0.0.1:{port}", repository="org/agents", token=TOKEN)
    with pytest.raises(TargetUnavailableError) as caught:
        publish_preview(api, pull(), report())
    assert caught.value.exit_code == ExitCode.TARGET_UNAVAILABLE
    assert caught.value.message == f"cannot reach the GitHub API at 127.0.0.1:{port}: ConnectionRefusedError"


def test_a_next_page_on_another_host_is_not_followed_with_the_token() -> None:
    calls: list[tuple[str, str]] = []

    def transport(method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
        calls.append((method, url))
        return Response(200, [], '<https://collector.example/repos/org/agents/issues/7/comments?page=2>; rel="next"')

    api = GitHubRest(api_url="https://api.github.com", repository="org/agents", token=TOKEN, transport=transport)
    with pytest.raises(GitHubApiError) as caught:
        retire_preview(api, pull(), "azure-agent", "pr-7")
    assert "on another host (collector.example): not followed" in caught.value.message
    listing = "https://api.github.com/repos/org/agents/deployments?environment=preview-azure-agent-pr-7&per_page=100"
    assert calls == [("GET", listing)]


def event(tmp_path: Path, payload: dict[str, object]) -> dict[str, str]:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(payload))
    return {"GITHUB_EVENT_PATH": str(path), "GITHUB_EVENT_NAME": "pull_request", "GITHUB_REPOSITORY": "org/agents"}


def test_the_pull_request_comes_from_the_event_and_a_fork_is_told_apart(tmp_path: Path) -> None:
    def payload(head: str) -> dict[str, object]:
        return {
            "number": 7,
            "pull_request": {
                "number": 7,
                "head": {"sha": SHA1, "repo": {"full_name": head}},
                "base": {"repo": {"full_name": "org/agents"}},
            },
        }

    own = PullRequest.from_event(event(tmp_path, payload("org/agents")))
    assert (own.number, own.head_sha, own.from_fork) == (7, SHA1, False)
    assert PullRequest.from_event(event(tmp_path, payload("someone/agents"))).from_fork
    with pytest.raises(UsageError) as caught:
        PullRequest.from_event({**event(tmp_path, {"ref": "refs/heads/main"}), "GITHUB_EVENT_NAME": "push"})
    assert caught.value.message == "a preview belongs to a pull request, and this run's event (push) names none"
    assert caught.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize("name", ["Azure-Agent", "a--b", "agent-->", "x\n-->"])
def test_a_name_that_could_break_out_of_the_marker_is_refused(name: str) -> None:
    with pytest.raises(UsageError) as caught:
        marker(name)
    assert caught.value.message == f"agent name {name!r} cannot name a preview"


def run_environ(tmp_path: Path, fake: FakeGitHubApi, head: str = "org/agents") -> dict[str, str]:
    """What the runner gives the Action's step on a pull_request event."""
    payload = {
        "action": "synchronize",
        "number": 7,
        "pull_request": {
            "number": 7,
            "head": {"sha": SHA1, "repo": {"full_name": head}},
            "base": {"repo": {"full_name": "org/agents"}},
        },
    }
    return {
        **event(tmp_path, payload),
        "GITHUB_API_URL": fake.url,
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "4242",
    }


def test_the_action_side_takes_the_pull_request_from_the_event_and_links_the_run(
    tmp_path: Path, github: FakeGitHubApi
) -> None:
    environ = run_environ(tmp_path, github)
    published = announce_preview(environ, report())
    run = "https://github.com/org/agents/actions/runs/4242"
    [comment] = github.comments_of(7)
    assert comment["id"] == published.comment_id and f"[The run that deployed it]({run})" in comment["body"]
    [deployment] = github.environment("preview-azure-agent-pr-7")
    assert deployment.data["ref"] == SHA1
    assert [(s["state"], s["log_url"]) for s in deployment.statuses] == [("success", run)]
    removed = announce_removal(environ, "azure-agent", "pr-7")
    assert removed.deactivated == (published.deployment_id,)
    assert [s["state"] for s in deployment.statuses] == ["success", "inactive"]


def test_a_forks_pull_request_is_refused_before_any_request(tmp_path: Path, github: FakeGitHubApi) -> None:
    environ = run_environ(tmp_path, github, head="someone/agents")
    for attempt in (
        lambda: announce_preview(environ, report()),
        lambda: announce_removal(environ, "azure-agent", "pr-7"),
    ):
        with pytest.raises(UsageError) as caught:
            attempt()
        assert caught.value.message == (
            "pull request #7 comes from the fork someone/agents: a fork's run gets no secrets and a read-only token, "
            "so it gets no preview"
        )
    assert github.log == []


def test_the_token_is_in_no_representation_of_the_client(github: FakeGitHubApi) -> None:
    assert TOKEN not in repr(rest(github)) and TOKEN not in str(rest(github))


def test_a_preview_that_fails_its_gate_tells_the_pull_request_with_what_it_ran(
    tmp_path: Path, github: FakeGitHubApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Action's preview: the target's preview failed its gate (the run exits with it), and the comment and a
    `failure` deployment still say so, with the URL, image and digest it ran (github/action.py _preview)."""
    from types import SimpleNamespace

    from agentdeploy.errors import RolledBackError
    from agentdeploy.github import action
    from agentdeploy.github.inputs import ActionInputs
    from agentdeploy.release import commands

    ran = report()
    reason = "the new version failed its health gate (verify turn 1: HTTP 500)"

    def failing(invocation: object) -> object:
        raise RolledBackError(reason, details={"preview": {"url": ran.url, "image": ran.image, "digest": ran.digest}})

    monkeypatch.setattr(commands, "execute", failing)
    environ = run_environ(tmp_path, github)
    inputs = ActionInputs.from_env({"AGENTDEPLOY_COMMAND": "preview", "AGENTDEPLOY_PREVIEW_NAME": "pr-7"})
    invocation = SimpleNamespace(services=SimpleNamespace(environ=environ, console=None))

    with pytest.raises(RolledBackError):
        action._preview(inputs, invocation, "azure-agent")  # type: ignore[arg-type]

    [comment] = github.comments_of(7)
    assert f"| Gate | failed: {reason} |" in comment["body"].splitlines()
    assert ran.digest in comment["body"]
    [deployment] = github.environment("preview-azure-agent-pr-7")
    assert [(s["state"], s["environment_url"]) for s in deployment.statuses] == [("failure", ran.url)]
