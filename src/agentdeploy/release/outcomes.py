"""What a run of several agents reports (release/many.py): one `Outcome` per agent, the run's `Many`, the exit code
of the worst, and the rows of the summary table both front ends show (the CLI as text, the Action as markdown)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from agentdeploy.errors import AgentDeployError, ExitCode
from agentdeploy.jsonvalue import JsonObject, JsonValue, array, to_object
from agentdeploy.release.commands import Command, Result
from agentdeploy.release.planner import PlanItem
from agentdeploy.state.record import Status
from agentdeploy.terminal import seconds_text

# The worst outcome first: the exit code of a run of several agents is the first of these any agent ended with.
# Ranked by how far the agent may be from "what served before still serves, and the record says so":
# a bug (anything may have happened), an interrupted run, a record in question (unreadable, locked, another
# run's lease), a refused or failed release, a release rolled back (the previous version serves), then the
# failures that changed nothing on the target (unreachable, registry, build), then what was refused before
# anything ran (git, files, config, usage), and last a generic failure and an empty rollback.
WORST_FIRST: tuple[ExitCode, ...] = (
    ExitCode.INTERNAL,
    ExitCode.INTERRUPTED,
    ExitCode.STATE,
    ExitCode.DEPLOY,
    ExitCode.ROLLED_BACK,
    ExitCode.TARGET_UNAVAILABLE,
    ExitCode.REGISTRY,
    ExitCode.BUILD,
    ExitCode.GIT,
    ExitCode.CONTEXT,
    ExitCode.CONFIG,
    ExitCode.USAGE,
    ExitCode.FAILURE,
    ExitCode.NOTHING_TO_ROLL_BACK,
    ExitCode.OK,
)


def worst(codes: Iterable[int]) -> int:
    """The worst of these exit codes by WORST_FIRST (0 for none); a code it does not know ranks as 1 does."""

    def rank(code: int) -> int:
        return WORST_FIRST.index(ExitCode(code)) if code in WORST_FIRST else WORST_FIRST.index(ExitCode.FAILURE)

    return int(min(codes, key=rank, default=ExitCode.OK))


def status_of(error: AgentDeployError) -> Status:
    """How an agent that ended with this error is reported: rolled-back, interrupted or failed."""
    if error.exit_code == ExitCode.ROLLED_BACK:
        return Status.ROLLED_BACK
    return Status.INTERRUPTED if error.exit_code == ExitCode.INTERRUPTED else Status.FAILED


@dataclass
class Outcome:
    """One agent's part of a run of several."""

    config: str  # as given (or as the glob matched it)
    agent: str = ""  # "" when its config could not be read
    name: str = ""  # the `[name]` its lines are prefixed with: the agent, or the config (unreadable, or a shared name)
    target: str = ""
    status: str = ""  # a single run's statuses, or failed, rolled-back, interrupted, skipped
    exit_code: int = int(ExitCode.OK)
    error: str = ""
    hint: str = ""
    result: Result | None = None
    timings: dict[str, float] = field(default_factory=dict)
    problem: AgentDeployError | None = None  # what refused or failed it (the Action annotates it)

    @property
    def seconds(self) -> float:
        """The agent's time: its command's total (deploy, plan, status), the wait for its turn to build included."""
        return next(iter(self.timings.values()), 0.0)

    def fail(self, error: AgentDeployError) -> None:
        """This agent ended with `error`."""
        self.status, self.exit_code, self.problem = status_of(error), int(error.exit_code), error
        self.error, self.hint = error.message, error.hint or ""

    def output(self, name: str) -> str:
        value = self.result.outputs.get(name, "") if self.result else ""
        return ("true" if value else "false") if isinstance(value, bool) else value

    def as_json(self) -> JsonObject:
        """The agent's entry in `--json` (a list) and in the Action's `results`: a single run's JSON, plus who it
        is and how it ended."""
        data: JsonObject = {
            "agent": self.agent,
            "config": self.config,
            "target": self.target,
            "status": self.status,
            "exit_code": self.exit_code,
            "error": self.error,
            "hint": self.hint,
            "seconds": round(self.seconds, 2),
        }
        if self.problem is not None and self.problem.problems:
            data["problems"] = array(problem.render() for problem in self.problem.problems)
        if self.result is not None:
            outputs: JsonObject = {k: v for k, v in self.result.outputs.items() if k not in ("status", "plan")}
            data.update(outputs)
            if self.result.command == Command.PLAN:
                data["items"] = array(to_object(item.as_json()) for item in self.result.items)
            if self.result.report:
                data["report"] = to_object(self.result.report)
        data["timings"] = to_object(self.timings)
        return data


@dataclass
class Many:
    command: Command
    outcomes: list[Outcome]

    @property
    def exit_code(self) -> int:
        return worst(outcome.exit_code for outcome in self.outcomes)

    def as_json(self) -> list[JsonValue]:
        return [outcome.as_json() for outcome in self.outcomes]

    @property
    def items(self) -> list[PlanItem]:
        return [item for outcome in self.outcomes if outcome.result for item in outcome.result.items]


@dataclass(frozen=True)
class SummaryRow:
    """One agent's row of the summary table of a run of several."""

    agent: str
    target: str
    status: str  # with `(exit N)` when it did not end well
    url: str
    image: str  # tag and short digest (deploy, plan)
    revision: str  # what serves (status)
    time: str


def summary_rows(many: Many) -> list[SummaryRow]:
    """The summary table of both front ends: one row per agent, "-" where there is nothing to show."""
    rows = []
    for outcome in many.outcomes:
        tag, digest, revision = outcome.output("image_tag"), outcome.output("digest"), outcome.output("revision")
        image = " ".join(part for part in (tag, digest[:19] if digest else "") if part)
        rows.append(
            SummaryRow(
                agent=outcome.agent or outcome.config,
                target=outcome.target or "-",
                status=outcome.status + (f" (exit {outcome.exit_code})" if outcome.exit_code else ""),
                url=outcome.output("url") or "-",
                image=image or "-",
                revision=revision or "-",
                time=seconds_text(outcome.seconds) if outcome.timings else "-",
            )
        )
    return rows
