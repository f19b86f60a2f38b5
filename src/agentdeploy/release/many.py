"""Several agents in one run (`deploy`, `plan`, `status` with several configs or a glob), and `changed`: which
agents a range of commits touched. Both front ends call `run_many` and `changed_agents`; the pipeline stays
per agent.

deploy, with several agents:

1. every config is checked first, with nothing changed anywhere (`pipeline.check_deploy`: the config, its
   target, its ${VAR}s, the files it names, the push rules; two configs that would write the same record are
   refused too). When any is refused, nothing is deployed: each refused agent says why, and the others are
   planned (reads only) and reported `skipped`;
2. then the agents run, up to `parallel` at once, each through the same `commands.execute` as a single run.
   Their image stages take turns (one build at a time: one engine), so one agent releases while the next
   builds. A runtime failure of one agent (a build, its health gate, Azure) stops only that agent;
3. one outcome per agent, and the exit code of the worst (`worst`).

Signals: handlers can only be installed in the main thread, so it holds `Interrupts.deferred()` while the
agents run. A Ctrl-C (or a cancelled workflow's SIGTERM) then only sets the flag every agent's target reads
at its safe points: a release under way rolls back, an agent that has not built yet does not start, and one
that has built releases nothing. Every agent exits 130 then (or 9 when its own gate had already failed).

plan and status, with several agents, run one agent after another (reads only); a failure of one is reported
for it and the others are still planned.
"""

from __future__ import annotations

import fnmatch
import glob
import io
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from agentdeploy.config.loader import LoadedConfig
from agentdeploy.console import Console, seconds_text
from agentdeploy.errors import AgentDeployError, ExitCode, InterruptedRelease, UsageError
from agentdeploy.image.builder import BuildServices, ImageResult, ImageStage, ImageStageFactory
from agentdeploy.image.registry import RegistryCredentials
from agentdeploy.image.spec import ImagePlan
from agentdeploy.interrupts import Interrupts
from agentdeploy.jsonvalue import JsonObject, JsonValue, array, to_object
from agentdeploy.release import pipeline
from agentdeploy.release.commands import Command, Invocation, Result, execute
from agentdeploy.release.planner import PlanItem, render_table, render_variables

DEFAULT_PARALLEL = 4
GLOB_CHARS = frozenset("*?[")

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


# -- which configs ---------------------------------------------------------------------------------------------


def is_pattern(text: str) -> bool:
    return bool(GLOB_CHARS & set(text))


def several(arguments: Sequence[str]) -> bool:
    """Whether these CONFIG arguments ask for the several-agent run (a list of outcomes), whatever they match."""
    return len(arguments) != 1 or is_pattern(arguments[0])


def expand(arguments: Sequence[str]) -> list[str]:
    """The configs CONFIG|GLOB arguments name, in order, each once. Globs are expanded here (`**` included), so
    a quoted pattern works, and on Windows too; a pattern that matches no file is a usage error."""
    found: list[str] = []
    seen: set[str] = set()
    for argument in arguments:
        if is_pattern(argument):
            matches = sorted(path for path in glob.glob(argument, recursive=True) if os.path.isfile(path))
            if not matches:
                raise UsageError(
                    f"{argument} matches no file", hint="check the pattern; it is read from the current directory"
                )
        else:
            matches = [argument]
        for match in matches:
            key = os.path.normcase(os.path.abspath(match))
            if key not in seen:
                seen.add(key)
                found.append(match)
    if not found:
        raise UsageError("no agent config given", hint="name one or more agent.yaml files, or a glob")
    return found


# -- outcomes --------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One agent's part of a run of several."""

    config: str  # as given (or as the glob matched it)
    agent: str = ""  # "" when its config could not be read
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


def summary_rows(many: Many) -> list[tuple[str, str, str, str, str, str]]:
    """(agent, target, status, URL, image/tag, time) per agent: the summary table of both front ends."""
    rows = []
    for outcome in many.outcomes:
        status = outcome.status + (f" (exit {outcome.exit_code})" if outcome.exit_code else "")
        tag, digest = outcome.output("image_tag"), outcome.output("digest")
        image = " ".join(part for part in (tag, digest[:19] if digest else "") if part)
        rows.append(
            (
                outcome.agent or outcome.config,
                outcome.target or "-",
                status,
                outcome.output("url") or "-",
                image or "-",
                seconds_text(outcome.seconds) if outcome.timings else "-",
            )
        )
    return rows


def render_summary(many: Many) -> str:
    """The summary table as text: aligned columns, one line per agent."""
    header = ("AGENT", "TARGET", "STATUS", "URL", "IMAGE", "TIME")
    rows = [header, *summary_rows(many)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    )


# -- the run ---------------------------------------------------------------------------------------------------


@dataclass
class _Agent:
    config: str
    console: Console
    outcome: Outcome


def run_many(
    template: Invocation, configs: Sequence[str], *, parallel: int = DEFAULT_PARALLEL, show_plans: bool = True
) -> Many:
    """Run `template`'s command (deploy, plan or status) for each config: see the module's docstring. With
    `show_plans`, each agent's plan (plan, deploy --dry-run) is printed with its messages (the CLI prints one
    table of them all instead)."""
    if parallel < 1:
        raise UsageError(f"--parallel {parallel}: run at least one agent at a time")
    if template.command not in (Command.DEPLOY, Command.PLAN, Command.STATUS):
        raise UsageError(f"{template.command} takes one agent config at a time")
    agents = _name_agents(template, configs)
    planning = template.command == Command.PLAN or template.dry_run
    if template.command == Command.DEPLOY and not planning:
        _deploy(template, agents, parallel)
    else:
        for agent in agents:
            if not agent.outcome.status:
                _execute(template, agent)
                if show_plans and planning:
                    _show_plan(agent)
    return Many(Command.PLAN if planning else template.command, [agent.outcome for agent in agents])


def _name_agents(template: Invocation, configs: Sequence[str]) -> list[_Agent]:
    """Each config's agent name and target (the prefix of its lines); a config that cannot be read is reported
    and its agent stops here."""
    from agentdeploy.config.loader import load_config

    console = template.services.console
    agents: list[_Agent] = []
    for config in configs:
        outcome = Outcome(config=config)
        try:
            loaded = load_config(Path(config), display_name=config)
        except AgentDeployError as error:
            agent = _Agent(config, console.child(config), outcome)
            _failed(agent, error)
        else:
            outcome.agent = loaded.agent.name
            outcome.target = template.options.target or loaded.deploy.target.provider
            agent = _Agent(config, console, outcome)
        agents.append(agent)
    names = [agent.outcome.agent for agent in agents]
    for agent in agents:
        if agent.outcome.agent:
            # Two configs of one agent name (two targets, say): their lines are told apart by the path.
            prefix = agent.outcome.agent if names.count(agent.outcome.agent) == 1 else agent.config
            agent.console = console.child(prefix)
    return agents


def _execute(template: Invocation, agent: _Agent, image_stage: ImageStageFactory | None = None) -> None:
    """One agent's command, as a single run does it; its failure is its outcome, never the others'."""
    outcome = agent.outcome
    services = replace(template.services, console=agent.console)
    if image_stage is not None:
        services.image_stage = image_stage
    try:
        result = execute(replace(template, config=Path(agent.config), display_name=agent.config, services=services))
    except AgentDeployError as error:
        _failed(agent, error)
    except Exception as error:  # a bug: this agent says so, the others go on
        outcome.status, outcome.exit_code = "failed", int(ExitCode.INTERNAL)
        outcome.error = f"internal error: {type(error).__name__}: {error}"
        outcome.hint = "this is a bug in agentdeploy; rerun the agent alone with --debug and report the traceback"
        agent.console.info(f"{outcome.error}\n  {outcome.hint}")
    else:
        outcome.result = result
        outcome.status = str(result.outputs.get("status", ""))
    outcome.timings = agent.console.timings


def _show_plan(agent: _Agent) -> None:
    if agent.outcome.result is not None and agent.outcome.result.items:
        agent.console.info(render_table(agent.outcome.result.items))
        agent.console.info(render_variables(agent.outcome.result.items))


def _failed(agent: _Agent, error: AgentDeployError) -> None:
    agent.outcome.fail(error)
    agent.console.info(error.render())


def status_of(error: AgentDeployError) -> str:
    """How an agent that ended with this error is reported: rolled-back, interrupted or failed."""
    if error.exit_code == ExitCode.ROLLED_BACK:
        return "rolled-back"
    return "interrupted" if error.exit_code == ExitCode.INTERRUPTED else "failed"


def _deploy(template: Invocation, agents: list[_Agent], parallel: int) -> None:
    ready = [agent for agent in agents if not agent.outcome.status]
    _check(template, ready)
    refused = [agent for agent in agents if agent.outcome.status]
    if refused:
        planning = replace(template, command=Command.PLAN, dry_run=True)
        for agent in agents:
            if agent.outcome.status:
                continue
            _execute(planning, agent)  # what it would have done: planned, never deployed
            _show_plan(agent)
            if agent.outcome.exit_code == 0:
                names = ", ".join(other.outcome.agent or other.config for other in refused)
                agent.outcome.status = "skipped"
                agent.outcome.error = f"not deployed: the run stopped before any change, since {names} was refused"
        return
    interrupts = template.services.interrupts
    lock = threading.Lock()
    stage = _one_at_a_time(template.services.image_stage, lock, interrupts)

    def work(agent: _Agent) -> None:
        signal = interrupts.requested()
        if signal:
            _failed(agent, InterruptedRelease(f"interrupted by {signal} before it started: nothing was changed"))
            return
        _execute(template, agent, image_stage=stage)

    with interrupts.deferred(), ThreadPoolExecutor(parallel, thread_name_prefix="agentdeploy") as pool:
        for future in [pool.submit(work, agent) for agent in agents]:
            future.result()


def _check(template: Invocation, agents: list[_Agent]) -> None:
    """Everything a deploy refuses, for every agent, before any of them changes anything. What a check prints is
    shown only for an agent it refuses (a deploy that goes ahead prints its warnings itself)."""
    records: dict[Path, _Agent] = {}
    for agent in agents:
        quiet = agent.console.child(agent.console.prefix)
        quiet.err = io.StringIO()
        try:
            store = pipeline.check_deploy(
                Path(agent.config), agent.config, template.options, replace(template.services, console=quiet)
            )
        except AgentDeployError as error:
            with agent.console.lock:
                agent.console.err.write(quiet.err.getvalue())
            _failed(agent, error)
            continue
        other = records.setdefault(store.path.resolve(), agent)
        if other is not agent:
            for one in (other, agent):
                _failed(
                    one,
                    UsageError(
                        f"{other.config} and {agent.config} both deploy agent {store.agent!r} to "
                        f"{store.environment} (one record, {store.path})",
                        hint="name each agent and place once in a run",
                    ),
                )


class _Turn:
    """An agent's image stage in a run of several: one build at a time on the one engine, and none started (nor
    released after) once a signal asked the run to stop."""

    def __init__(self, stage: ImageStage, lock: threading.Lock, interrupts: Interrupts) -> None:
        self.stage, self.lock, self.interrupts = stage, lock, interrupts

    @property
    def plan(self) -> ImagePlan:
        return self.stage.plan

    @property
    def credentials(self) -> RegistryCredentials | None:
        return self.stage.credentials

    def inputs(self) -> str:
        return self.stage.inputs()

    def inputs_files(self) -> dict[str, str]:
        return self.stage.inputs_files()

    def run(self, *, push: bool, pull: bool = False, move_tag: bool = False) -> ImageResult:
        with self.lock:
            self._stop_if_asked("before its image was built: nothing was changed")
            result = self.stage.run(push=push, pull=pull, move_tag=move_tag)
        self._stop_if_asked("after its image was built: nothing was released")
        return result

    def _stop_if_asked(self, when: str) -> None:
        signal = self.interrupts.requested()
        if signal:
            raise InterruptedRelease(f"interrupted by {signal} {when}")


def _one_at_a_time(factory: ImageStageFactory, lock: threading.Lock, interrupts: Interrupts) -> ImageStageFactory:
    def make(config: LoadedConfig, plan: ImagePlan, services: BuildServices) -> ImageStage:
        return _Turn(factory(config, plan, services), lock, interrupts)

    return make


# -- changed ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Changed:
    config: str  # as given
    agent: str  # "" when the config cannot be read
    paths: tuple[str, ...]  # what changed among its inputs, relative to the checkout's top
    reason: str = ""  # why it is listed without a path (a config that cannot be read, a first push)
    target: str = ""  # deployment.target.provider ("" when the config cannot be read), for the job's runs-on

    @property
    def listed(self) -> bool:
        """Whether it goes into the matrix (deployed)."""
        return bool(self.paths or self.reason)

    def matrix_entry(self) -> JsonObject:
        return {
            "agent": self.agent or Path(self.config).parent.name,
            "config": Path(self.config).as_posix(),
            "target": self.target,
        }


@dataclass
class _Inputs:
    files: set[Path]
    directories: set[Path]
    patterns: list[str]
    state: Path  # the record's directory: never an input (a state: commit run commits to it)

    def covers(self, path: Path) -> bool:
        if self.state == path or self.state in path.parents:
            return False
        if path in self.files or any(directory == path or directory in path.parents for directory in self.directories):
            return True
        return any(fnmatch.fnmatch(path.as_posix(), pattern) for pattern in self.patterns)


def deploy_inputs(config: LoadedConfig) -> _Inputs:
    """What an agent's deploy is made from, in the checkout: its config (the base image and every setting are in
    it), each file it names and the directories and patterns they come from (a deleted file under a named
    directory counts), and, with its own Dockerfile, the whole directory (the build context). Raises ContextError
    when a named file is missing."""
    from agentdeploy.image.context import collect, required_files
    from agentdeploy.state.store import STATE_DIR

    root = config.project_dir.resolve()
    entries, _ = collect(config)
    inputs = _Inputs(
        files={config.path.resolve(), *(entry.source for entry in entries)},
        directories=set(),
        patterns=[],
        state=root / STATE_DIR,
    )
    for requirement in required_files(config):
        named = Path(os.path.normpath(root / requirement.path))
        if requirement.pattern:
            inputs.patterns.append(named.as_posix())
        elif named.is_dir():
            inputs.directories.add(named)
    if config.deploy.build.dockerfile:
        inputs.directories.add(root)
    return inputs


def changed_agents(configs: Sequence[str], since: str) -> list[Changed]:
    """For each config, what changed among its deploy's inputs between `since` and HEAD (committed changes).
    `since` all zeros (GitHub's `before` on the push that made a branch) lists every agent. A config that cannot
    be read is listed (its deploy will say why). GitError (exit 5) when `since` names no commit."""
    from agentdeploy.config.loader import load_config
    from agentdeploy.git import NO_COMMIT, resolve_commit

    if not since.strip():
        raise UsageError("--since needs a commit, a branch or a tag")
    diffs: dict[Path, list[Path]] = {}  # checkout top -> changed paths, asked once per checkout
    found: list[Changed] = []
    for config in configs:
        directory = Path(config).resolve().parent
        commit = "" if since == NO_COMMIT else resolve_commit(directory, since)
        try:
            loaded = load_config(Path(config), display_name=config)
        except AgentDeployError as error:
            found.append(Changed(config, "", (), f"its config cannot be read ({error.message})"))
            continue
        name, target = loaded.agent.name, loaded.deploy.target.provider
        if not commit:
            found.append(Changed(config, name, (), f"{since} is no commit: a new branch", target))
            continue
        try:
            inputs = deploy_inputs(loaded)
        except AgentDeployError as error:
            found.append(Changed(config, name, (), f"it names files that are missing ({error.message})", target))
            continue
        top, paths = _diff(diffs, directory, commit)
        hits = tuple(path.relative_to(top).as_posix() for path in paths if inputs.covers(path))
        found.append(Changed(config, name, hits, target=target))
    return found


def _diff(cache: dict[Path, list[Path]], directory: Path, commit: str) -> tuple[Path, list[Path]]:
    from agentdeploy.git import changed_since

    for top, paths in cache.items():
        if directory == top or top in directory.parents:
            return top, paths
    top, paths = changed_since(directory, commit)
    cache[top] = paths
    return top, paths


def matrix(found: Iterable[Changed]) -> JsonObject:
    """`strategy.matrix` for the agents to deploy: {"include": [{"agent": ..., "config": ..., "target": ...}]}."""
    return {"include": array(entry.matrix_entry() for entry in found if entry.listed)}
