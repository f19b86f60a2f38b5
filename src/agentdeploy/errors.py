"""The one error tree. Every failure a user can cause or meet is an AgentDeployError.

Each error says what happened, where (file:line:column when a file is at fault) and what to do,
and carries the process exit code. The CLI catches them in one place (cli.main) and prints
them without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes. Documented in README.md ("Exit codes"); keep both in step."""

    OK = 0
    FAILURE = 1  # generic failure that has no narrower code
    USAGE = 2  # bad command line (argparse uses 2 as well)
    CONFIG = 3  # agent.yaml is invalid, or a ${VAR} it needs is missing
    CONTEXT = 4  # a file the config names is missing or escapes the project
    GIT = 5  # the image tag cannot be derived from git
    BUILD = 6  # docker build failed
    REGISTRY = 7  # registry login, push or digest check failed
    DEPLOY = 8  # the target refused or failed the deployment
    ROLLED_BACK = 9  # the new version was unhealthy and the previous one was restored
    STATE = 10  # the state file is unreadable, newer than this tool, or locked
    TARGET_UNAVAILABLE = 11  # docker engine / Azure cannot be reached or refused our credentials
    NOTHING_TO_ROLL_BACK = 12  # rollback: no earlier version is recorded, or the one named serves now
    INTERNAL = 70  # a bug in agentdeploy (EX_SOFTWARE)
    INTERRUPTED = 130  # Ctrl-C


@dataclass(frozen=True)
class Location:
    """A place in a file. line and column are 1-based, as editors show them."""

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.file
        if self.column is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One broken rule: what is wrong, where, and how to fix it."""

    message: str
    location: Location | None = None
    hint: str | None = None
    key: str | None = None  # dotted path inside the config, e.g. deployment.target.azure.memory

    def render(self) -> str:
        where = f"{self.location}: " if self.location else ""
        key = f"{self.key}: " if self.key else ""
        text = f"{where}{key}{self.message}"
        if self.hint:
            text += f"\n    fix: {self.hint}"
        return text


class AgentDeployError(Exception):
    """Base of every error agentdeploy reports to a user."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        problems: Iterable[Problem] = (),
        location: Location | None = None,
        log: Sequence[str] = (),
        details: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.problems: Sequence[Problem] = tuple(problems)
        self.location = location
        self.log = tuple(log)  # the agent's last lines when it failed its gate (each after its container/revision)
        # What the target reported of a release that failed its gate (a canary's steps, the evaluation's cases):
        # the job summary shows it as for a release that succeeded.
        self.details: Mapping[str, object] = dict(details or {})

    def render(self) -> str:
        head = f"{self.location}: {self.message}" if self.location else self.message
        lines = [f"error: {head}"]
        for problem in self.problems:
            lines.append("  " + problem.render().replace("\n", "\n  "))
        if self.log:
            lines.append(f"  the agent's last {len(self.log)} log line(s):")
            lines.extend(f"    {line}" for line in self.log)
        if self.hint:
            lines.append(f"  fix: {self.hint}")
        return "\n".join(lines)


class ConfigError(AgentDeployError):
    """agent.yaml is not valid (syntax, schema, or a rule upstream lacks)."""

    exit_code = ExitCode.CONFIG


class MissingVariablesError(ConfigError):
    """${VAR} placeholders that the environment does not provide at deploy time."""


class UnsupportedProviderError(ConfigError):
    """The config targets a provider agentdeploy does not deploy to."""


class ContextError(AgentDeployError):
    """A file the config names is missing, or lies outside the project."""

    exit_code = ExitCode.CONTEXT


class GitError(AgentDeployError):
    """The image tag or labels cannot be derived from git."""

    exit_code = ExitCode.GIT


class BuildError(AgentDeployError):
    exit_code = ExitCode.BUILD


class RegistryError(AgentDeployError):
    exit_code = ExitCode.REGISTRY


class TagInUseError(RegistryError):
    """The tag already names other content in the registry: it is not moved without being asked."""


class DeployError(AgentDeployError):
    exit_code = ExitCode.DEPLOY


class AttestationError(DeployError):
    """The image is required to carry a build provenance attestation and does not (or it cannot be checked)."""


class GitHubApiError(DeployError):
    """GitHub's REST API refused or failed a request of a preview (its pull request comment or deployment)."""


class RolledBackError(DeployError):
    """The new version failed its health gate; the previous one serves again."""

    exit_code = ExitCode.ROLLED_BACK


class NothingToRollBackError(AgentDeployError):
    """`rollback` has no earlier version to go to: nothing failed, nothing was changed."""

    exit_code = ExitCode.NOTHING_TO_ROLL_BACK


class InterruptedRelease(AgentDeployError):
    """A signal stopped the release at a safe point; what served before serves again."""

    exit_code = ExitCode.INTERRUPTED


class StateError(AgentDeployError):
    exit_code = ExitCode.STATE


class UntrustedRecordError(StateError):
    """A record names a version this config never deploys (another registry, a bare tag, no attestation, not in the
    history): refused before anything changes."""


class ConcurrentReleaseError(StateError):
    """Another run releases to the same place: this one stops, reversing nothing."""


class TargetUnavailableError(AgentDeployError):
    """The docker engine or Azure cannot be reached, or refused our credentials."""

    exit_code = ExitCode.TARGET_UNAVAILABLE


class UsageError(AgentDeployError):
    exit_code = ExitCode.USAGE
