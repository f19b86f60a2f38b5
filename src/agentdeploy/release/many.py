"""Several agents in one run (`deploy`, `plan`, `status` with several configs or a glob). Both front ends call
`run_many` (what it returns: release/outcomes.py); the pipeline stays per agent. `changed`: release/changed.py.

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

import glob
import io
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from agentdeploy.config.loader import LoadedConfig
from agentdeploy.console import Console
from agentdeploy.errors import AgentDeployError, ExitCode, InterruptedRelease, UsageError
from agentdeploy.image.builder import BuildServices, ImageResult, ImageStage, ImageStageFactory
from agentdeploy.image.registry import RegistryCredentials
from agentdeploy.image.spec import ImagePlan
from agentdeploy.interrupts import Interrupts
from agentdeploy.release import pipeline
from agentdeploy.release.commands import Command, Invocation, execute
from agentdeploy.release.outcomes import Many, Outcome
from agentdeploy.release.planner import render_table, render_variables
from agentdeploy.state.record import Status

DEFAULT_PARALLEL = 4
GLOB_CHARS = frozenset("*?[")


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
        agent.outcome.name = agent.console.prefix
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
        outcome.status, outcome.exit_code = Status.FAILED, int(ExitCode.INTERNAL)
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
                agent.outcome.status = Status.SKIPPED
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
