"""The Action's inputs: action.yml maps every input to an AGENTDEPLOY_* variable in the step's `env:` (composite
actions get no INPUT_* variables, and `${{ inputs.x }}` inside `run:` would be a script-injection hole); here
they are read and checked, each bad one a usage error naming the input."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agentdeploy.errors import UsageError
from agentdeploy.release.many import DEFAULT_PARALLEL
from agentdeploy.state.sync import state_mode

COMMANDS = ("deploy", "plan", "rollback", "promote", "status", "destroy", "changed", "agents", "push", "repair")
PREVIEW_COMMANDS = ("preview", "preview-remove")  # a pull request's own revision (github/pulls.py: its comment)
# action input -> the variable the pipeline reads (credentials keep their usual names)
CREDENTIAL_INPUTS = {
    "AGENTDEPLOY_REGISTRY_USERNAME": "REGISTRY_USERNAME",
    "AGENTDEPLOY_REGISTRY_PASSWORD": "REGISTRY_PASSWORD",
    "AGENTDEPLOY_AZURE_CLIENT_ID": "AZURE_CLIENT_ID",
    "AGENTDEPLOY_AZURE_TENANT_ID": "AZURE_TENANT_ID",
    "AGENTDEPLOY_AZURE_SUBSCRIPTION_ID": "AZURE_SUBSCRIPTION_ID",
}
SECRET_INPUTS = ("AGENTDEPLOY_REGISTRY_PASSWORD", "GITHUB_TOKEN")


def run_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment the run reads: the step's, with the credential inputs under their usual names."""
    env = dict(environ)
    for source, target in CREDENTIAL_INPUTS.items():
        if environ.get(source):
            env[target] = environ[source]
    return env


@dataclass(frozen=True)
class ActionInputs:
    command: str
    config: str
    to: str
    target: str | None
    dry_run: bool
    force: bool
    fail_on_drift: bool
    pull: bool
    move_tag: bool
    require_attestation: bool
    confirm_destroy: bool
    health_timeout: float | None
    environment: str
    state: str
    state_branch: str = ""
    state_workflows: str = ""  # state: artifact: the other workflow files whose runs' records are trusted
    since: str = ""  # command changed: the commit to compare HEAD with
    parallel: int = DEFAULT_PARALLEL  # several agents: releases at once
    preview_name: str = ""  # command preview: the preview's label, pr-<number>

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ActionInputs:
        def text(name: str, default: str = "") -> str:
            return environ.get(f"AGENTDEPLOY_{name}", "").strip() or default

        def flag(name: str) -> bool:
            value = text(name, "false").lower()
            if value not in ("true", "false"):
                raise UsageError(f"input {name.lower().replace('_', '-')} must be true or false, not {value!r}")
            return value == "true"

        command = text("COMMAND", "deploy")
        if command not in COMMANDS + PREVIEW_COMMANDS:
            raise UsageError(f"input command {command!r} is not one of {', '.join(COMMANDS + PREVIEW_COMMANDS)}")
        since = text("SINCE")
        if command == "changed" and not since:
            raise UsageError(
                "input since is empty: command changed compares HEAD with a commit",
                hint="on a push it defaults to the commit before the push (github.event.before); on other events "
                "give since: a sha, branch or tag (and actions/checkout with fetch-depth: 0)",
            )
        if command in PREVIEW_COMMANDS and not text("PREVIEW_NAME"):
            raise UsageError(
                f"input preview-name is empty: command {command} names the preview (its revision's label)",
                hint="preview-name: pr-${{ github.event.number }}",
            )
        target = text("TARGET") or None  # the pipeline refuses a name no target answers to
        timeout = text("HEALTH_TIMEOUT")
        try:
            health_timeout = float(timeout) if timeout else None
        except ValueError:
            raise UsageError(f"input health-timeout {timeout!r} is not a number of seconds") from None
        return cls(
            command=command,
            config=text("CONFIG", "agent.yaml"),
            to=text("ROLLBACK_TO", "previous"),
            target=target,
            dry_run=flag("DRY_RUN"),
            force=flag("FORCE"),
            fail_on_drift=flag("FAIL_ON_DRIFT"),
            pull=flag("PULL"),
            move_tag=flag("MOVE_TAG"),
            require_attestation=flag("REQUIRE_ATTESTATION"),
            confirm_destroy=flag("CONFIRM_DESTROY"),
            health_timeout=health_timeout,
            environment=text("ENVIRONMENT"),
            state=state_mode(text("STATE", "none")),
            state_branch=text("STATE_BRANCH"),
            state_workflows=text("STATE_WORKFLOWS"),
            since=since,
            parallel=_parallel(text("PARALLEL")),
            preview_name=text("PREVIEW_NAME"),
        )

    @property
    def records(self) -> bool:
        """Whether this run writes a deployment record (and so has one to commit)."""
        return self.command in ("rollback", "promote", "destroy", "repair") or (
            self.command == "deploy" and not self.dry_run
        )


def config_arguments(text: str) -> list[str]:
    """The config input: one path or glob per line (`config: agents/*/agent.yaml`, or a block of lines)."""
    return [line.strip() for line in text.splitlines() if line.strip()] or ["agent.yaml"]


def _parallel(text: str) -> int:
    """The parallel input: agents released at once (default 4)."""
    if not text:
        return DEFAULT_PARALLEL
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"input parallel {text!r} must be a whole number of at least 1", hint="parallel: 2")
    return int(text)
