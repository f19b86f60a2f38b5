"""A release whose gate failed shows the agent's last lines in the error itself (and the fix its log points to), and
the Action folds them into the job summary, masked like every other channel."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from agentdeploy.errors import DeployError, ExitCode, RolledBackError
from agentdeploy.image.builder import ImageResult
from agentdeploy.release.prepare import finish as _finish
from agentdeploy.targets.base import Status, TargetOutcome

IMAGE = ImageResult(
    reference="img",
    tag="v2",
    repository="repo",
    manifest_digest=None,
    image_id="sha256:1",
    inputs_digest="",
    skipped_build=True,
)
LINES = ["agentdeploy-hello: Starting", "agentdeploy-hello: OPENAI_API_KEY is required for provider 'openai'"]


def outcome(status: Status, **details: Any) -> TargetOutcome:
    return TargetOutcome(
        status=status, url="http://127.0.0.1:8080", revision="agentdeploy-hello (1a2b3c4d5e6f)", previous="v1",
        reason="verify turn 1 ('hi'): the chat request got HTTP 500", details=details,
    )  # fmt: skip


def test_a_rolled_back_release_names_the_agents_last_lines_and_the_targets_fix(tmp_path: Path) -> None:
    hint = "only deployment.environment and deployment.secrets reach the container; OPENAI_API_KEY was not given to it"
    with pytest.raises(RolledBackError) as failed:
        _finish(outcome(Status.ROLLED_BACK, log=LINES, hint=hint), IMAGE, tmp_path / "s.json")

    assert failed.value.render().splitlines() == [
        "error: the new version failed its health gate (verify turn 1 ('hi'): the chat request got HTTP 500); "
        "rolled back to v1, which serves at http://127.0.0.1:8080 again",
        "  the agent's last 2 log line(s):",
        "    agentdeploy-hello: Starting",
        "    agentdeploy-hello: OPENAI_API_KEY is required for provider 'openai'",
        f"  fix: {hint}",
    ]


def test_without_a_log_the_error_is_as_before(tmp_path: Path) -> None:
    with pytest.raises(DeployError) as failed:
        _finish(outcome(Status.FAILED), IMAGE, tmp_path / "s.json")
    assert failed.value.log == ()
    assert failed.value.render().splitlines()[1:] == ["  fix: read the output above"]


def test_the_action_folds_the_lines_into_the_job_summary_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentdeploy.github import action
    from agentdeploy.release import commands

    secret = "hunter2-registry-password"
    lines = [f"agentdeploy-hello: login with {secret} failed", "agentdeploy-hello: a ``` fence and <b>markup</b>"]

    steps = ["5%: passed (restarts 0)", "25%: failed (restarts 2)", "failed at 25%: the replicas restarted"]

    def failing(invocation: Any) -> Any:
        raise RolledBackError(
            "the new version failed its health gate (HTTP 500); rolled back to v1",
            log=lines,
            details={"canary_summary": steps},  # what a rolled-back canary reports (targets/azure/canary.py)
        )

    monkeypatch.setattr(commands, "execute", failing)
    (tmp_path / "agent.yaml").write_text(
        "name: hello\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: Be kind.}\n"
    )
    summary = tmp_path / "summary.md"
    out = io.StringIO()
    environ = {
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(tmp_path / "outputs"),
        "GITHUB_WORKSPACE": str(tmp_path),
        "AGENTDEPLOY_CONFIG": str(tmp_path / "agent.yaml"),
        "AGENTDEPLOY_REGISTRY_PASSWORD": secret,
        "PATH": "/usr/bin:/bin",
    }
    monkeypatch.chdir(tmp_path)

    code = action.run(environ, out)

    assert code == ExitCode.ROLLED_BACK
    text = summary.read_text()
    shown = [line for line in out.getvalue().splitlines() if line != f"::add-mask::{secret}"]  # GitHub's own mask
    assert secret not in text and secret not in "\n".join(shown)
    folded = text[text.index("<details>") : text.index("</details>\n") + len("</details>\n")]
    assert folded == (
        "<details><summary>The agent's last 2 log line(s)</summary>\n\n"
        "````text\n"
        "agentdeploy-hello: login with *** failed\n"
        "agentdeploy-hello: a ``` fence and <b>markup</b>\n"
        "````\n\n</details>\n"
    )
    assert shown[shown.index("  the agent's last 2 log line(s):") + 1] == "    agentdeploy-hello: login with *** failed"
    # The failed release's own report reaches the summary too: a rolled-back canary's steps.
    [row] = [line for line in text.splitlines() if line.startswith("| Canary |")]
    assert row == "| Canary | " + "<br>".join(steps) + " |"  # plain text: none of them makes markup
