"""`agentdeploy github`: the Action's front end. It parses the inputs (inputs.py), calls the same commands as the
CLI (release/commands.py, release/many.py, release/changed.py), and renders what comes back on the runner's
channels (console.py: masks, log groups, annotations, step outputs; summary.py: the job summary). The record
travels through state/sync.py (none, artifact or commit).

Secret values are masked before anything is printed, each stage is a log group, the docker build/push output is
wrapped in ::stop-commands::, config errors become annotations with file and line, and the results become step
outputs (a `results` list, as with several agents) and a job summary.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from agentdeploy.errors import AgentDeployError, ExitCode, UsageError
from agentdeploy.github.attestations import lookup_from_environ
from agentdeploy.github.console import GitHubConsole, annotate, append_summary, results_json, write_outputs
from agentdeploy.github.inputs import (
    PREVIEW_COMMANDS,
    SECRET_INPUTS,
    ActionInputs,
    config_arguments,
    run_environment,
)
from agentdeploy.github.summary import (
    Details,
    changed_summary_markdown,
    several_summary_markdown,
    summary_markdown,
    why_listed,
)
from agentdeploy.jsonvalue import JsonValue
from agentdeploy.release.changed import changed_agents, matrix
from agentdeploy.release.commands import Command, Invocation, Output, Result
from agentdeploy.release.many import expand, run_many, several
from agentdeploy.release.outcomes import Outcome, worst
from agentdeploy.release.pipeline import DeployOptions, Services
from agentdeploy.state.record import Status
from agentdeploy.state.sync import Restored, StateSync


def run(environ: Mapping[str, str], out: TextIO | None = None) -> int:
    """The action's entry point. Returns the exit code."""
    from agentdeploy.release.defaults import default_services

    console = GitHubConsole(out or sys.stdout)
    console.mask([environ.get(name, "") for name in SECRET_INPUTS])
    try:
        inputs = ActionInputs.from_env(environ)
    except AgentDeployError as error:
        _report(console, error)
        write_outputs(console, {"status": Status.FAILED})
        return int(error.exit_code)
    if inputs.command == "changed":
        return _run_changed(inputs, environ, console)
    if inputs.command == "agents":
        return _run_agents(inputs, console)
    arguments = config_arguments(inputs.config)
    env = run_environment(environ)
    services = default_services(console, env, lookup_from_environ(env))
    if inputs.command in PREVIEW_COMMANDS and several(arguments):
        return _refuse_several_previews(inputs, console)
    template = _invocation(inputs, arguments[0], services)
    if several(arguments):
        return _run_several(inputs, arguments, template, environ, console)
    return _run_one(inputs, template, environ, console)


def _invocation(inputs: ActionInputs, config: str, services: Services) -> Invocation:
    options = DeployOptions(
        target=inputs.target,
        health_timeout=inputs.health_timeout,
        force=inputs.force,
        fail_on_drift=inputs.fail_on_drift,
        pull=inputs.pull,
        move_tag=inputs.move_tag,
        require_attestation=inputs.require_attestation,
    )
    return Invocation(
        command=Command(inputs.command),
        config=Path(config),
        display_name=config,
        options=options,
        services=services,
        to=inputs.to,
        dry_run=inputs.dry_run,
        confirmed=inputs.confirm_destroy,
        confirm_hint="set the input confirm-destroy: true",
        name=inputs.preview_name,
    )


def _report(console: GitHubConsole, error: AgentDeployError) -> None:
    console.info(error.render())
    annotate(console, error)


def output_texts(outputs: Mapping[str, Output]) -> dict[str, str]:
    """A command's outputs as step outputs: the same names with `-` for `_` (previous_revision ->
    previous-revision), booleans as true/false."""
    return {
        name.replace("_", "-"): ("true" if value else "false") if isinstance(value, bool) else value
        for name, value in outputs.items()
    }


# -- one agent ---------------------------------------------------------------------------------------------------


@dataclass
class _OneRun:
    """What a run of one agent gathers for its outputs and job summary, whatever way it ends."""

    outcome: Outcome
    outputs: dict[str, str] = field(default_factory=dict)
    details: Details = field(default_factory=Details)
    sync: StateSync | None = None
    restored: Restored | None = None
    code: int = int(ExitCode.OK)


def _run_one(inputs: ActionInputs, template: Invocation, environ: Mapping[str, str], console: GitHubConsole) -> int:
    one = _OneRun(Outcome(config=inputs.config))
    try:
        result = _execute_one(inputs, template, console, one)
    except AgentDeployError as error:
        _report(console, error)
        one.outputs.setdefault(
            "status", Status.ROLLED_BACK if error.exit_code == ExitCode.ROLLED_BACK else Status.FAILED
        )
        one.code = int(error.exit_code)
        one.outcome.fail(error)
        # What the target reported of the failed release (a canary's steps), and the agent's last lines (folded).
        one.details = replace(Details.read(error.details), log=tuple(error.log))
    else:
        one.details = Details.read(result.details)
        one.outputs |= output_texts(result.outputs)
        one.outcome.result, one.outcome.status = result, one.outputs.get("status", "")
    if one.sync is not None and one.restored is not None and inputs.records:
        one.code = _commit(one.sync, one.restored, console, one.outputs, one.code)
    _finish_one(inputs, environ, console, one)
    return one.code


def _execute_one(inputs: ActionInputs, template: Invocation, console: GitHubConsole, one: _OneRun) -> Result:
    """The record restored (push reads and writes none), then the command."""
    from agentdeploy.release import pipeline
    from agentdeploy.release.commands import execute
    from agentdeploy.release.planner import PlanItem, render_table, render_variables

    store = pipeline.state_store(template.config, template.display_name, template.options, template.services)
    one.outcome.agent, one.outcome.target = store.agent, store.target
    if inputs.command in PREVIEW_COMMANDS:
        return _preview(inputs, template, store.agent)
    if inputs.command != "push":
        one.sync = _state_sync(inputs, template)
        one.restored = one.sync.restore(store, template.config.parent)
        if one.restored.artifact:
            one.outputs["state-artifact"] = one.restored.artifact

    def show_plan(items: list[PlanItem]) -> None:
        console.info(render_table(items))
        console.info(render_variables(items))

    invocation = replace(template, show_plan=show_plan)
    if inputs.command == "plan" or (inputs.command == "deploy" and inputs.dry_run):
        with console.stage("plan"):
            return execute(invocation)
    return execute(invocation)


def _finish_one(inputs: ActionInputs, environ: Mapping[str, str], console: GitHubConsole, one: _OneRun) -> None:
    outputs = one.outputs
    if console.timings:  # also for a failed run: how long the gate waited before the rollback, say
        outputs["timings"] = json.dumps(console.timings, separators=(",", ":"))
    one.outcome.timings = console.timings
    entry = one.outcome.as_json()
    if outputs.get("state-commit"):
        entry["state_commit"] = outputs["state-commit"]
    outputs["results"] = results_json(console, [entry])  # as with several agents: a list
    write_outputs(console, outputs)
    details = one.details
    if inputs.state == "artifact" and inputs.command != "push":
        source = one.restored.source if one.restored is not None else ""
        details = replace(details, state_source=source or "no trusted artifact: a new record")
    markdown = summary_markdown(inputs.config, inputs, outputs, details, timing=console.timing_summary())
    append_summary(environ, console, markdown)


def _state_sync(inputs: ActionInputs, template: Invocation) -> StateSync:
    services = template.services
    return StateSync(
        inputs.state,
        services.environ,
        services.console,
        branch=inputs.state_branch,
        workflows=inputs.state_workflows,
    )


def _commit(sync: StateSync, restored: Restored, console: GitHubConsole, outputs: dict[str, str], code: int) -> int:
    """Commit the record the run wrote (state: commit), whatever the run's outcome; a failed commit is reported
    and sets the exit code when the run had none."""
    try:
        committed = sync.commit(restored)
    except AgentDeployError as error:
        _report(console, error)
        return code or int(error.exit_code)
    if committed is not None:
        outputs["state-commit"] = committed.commit
        outputs.setdefault("state-file", str(restored.store.path))
    return code


# -- several agents ----------------------------------------------------------------------------------------------


def _run_several(
    inputs: ActionInputs,
    arguments: list[str],
    template: Invocation,
    environ: Mapping[str, str],
    console: GitHubConsole,
) -> int:
    """Several agents (lines of the config input, or a glob): release/many.py runs them; each agent's outcome is
    an entry of the `results` output (and, when the glob matched one agent, the single outputs are set too); the
    job summary is one table; state: commit reads and commits each agent's record."""
    try:
        configs = expand(arguments)
        if inputs.state == "artifact" and inputs.records:
            raise UsageError(
                f"state: artifact keeps one agent's record per run, and this {inputs.command} has several agents",
                hint="use state: commit, or deploy each agent in its own job (a matrix from command changed); "
                "status and plan read several agents' artifacts",
            )
        sync = _state_sync(inputs, template)
        restored = _restore_each(sync, configs, template)
        many = run_many(template, configs, parallel=inputs.parallel)
    except AgentDeployError as error:
        _report(console, error)
        write_outputs(console, {"status": Status.FAILED, "results": "[]"})
        return int(error.exit_code)
    code = many.exit_code
    entries: list[JsonValue] = []
    for outcome in many.outcomes:
        if outcome.problem is not None:
            annotate(console, outcome.problem)
        entry = outcome.as_json()
        kept = restored.get(outcome.config)
        if kept is not None and inputs.records and kept.written():
            committed: dict[str, str] = {}
            code = worst([code, _commit(sync, kept, console, committed, code)])
            entry["state_commit"] = committed.get("state-commit", "")
        entries.append(entry)
    outputs = {"results": results_json(console, entries)}
    if len(many.outcomes) == 1:  # a glob that matched one agent: the single outputs as well
        [one] = many.outcomes
        if one.result is not None:
            outputs |= output_texts(one.result.outputs)
        outputs["status"] = one.status
    write_outputs(console, outputs)
    append_summary(environ, console, several_summary_markdown(inputs, many))
    return code


def _restore_each(sync: StateSync, configs: list[str], template: Invocation) -> dict[str, Restored]:
    """Each agent's record taken in (state: artifact for status and plan, state: commit); an agent whose config
    cannot be read has none (the run reports its error itself)."""
    from agentdeploy.release import pipeline

    restored: dict[str, Restored] = {}
    if sync.mode == "none":
        return restored
    for config in configs:
        try:
            store = pipeline.state_store(Path(config), config, template.options, template.services)
        except AgentDeployError:
            continue
        restored[config] = sync.restore(store, Path(config).parent, staged=False)
    return restored


# -- changed -----------------------------------------------------------------------------------------------------


def _run_changed(inputs: ActionInputs, environ: Mapping[str, str], console: GitHubConsole) -> int:
    """command changed: the agents whose deploy inputs changed since `since`, as the `matrix` output (for a
    matrix job's strategy) and `any-changed`; the job summary lists every agent, deployed or not, and why."""
    try:
        found = changed_agents(expand(config_arguments(inputs.config)), inputs.since)
    except AgentDeployError as error:
        _report(console, error)
        write_outputs(console, {"status": Status.FAILED, "matrix": json.dumps({"include": []}), "any-changed": "false"})
        return int(error.exit_code)
    for entry in found:
        console.info(f"{entry.config} ({entry.agent or '?'}): {why_listed(entry)}")
    write_outputs(
        console,
        {
            "status": Status.PLANNED,
            "matrix": json.dumps(matrix(found), separators=(",", ":")),
            "any-changed": "true" if any(entry.listed for entry in found) else "false",
        },
    )
    append_summary(environ, console, changed_summary_markdown(inputs, found))
    return int(ExitCode.OK)


def _run_agents(inputs: ActionInputs, console: GitHubConsole) -> int:
    """command agents: every agent the config input names, read from its config alone (no target, record or git
    asked), as the `matrix` output and `targets`, so that a job can pick its runner from the agents' targets."""
    from agentdeploy.git import NO_COMMIT

    try:
        found = changed_agents(expand(config_arguments(inputs.config)), NO_COMMIT)  # all zeros: every agent listed
    except AgentDeployError as error:  # a pattern that matches no config
        _report(console, error)
        write_outputs(console, {"status": Status.FAILED, "matrix": json.dumps({"include": []}), "targets": "[]"})
        return int(error.exit_code)
    for entry in found:
        console.info(f"{entry.config} ({entry.agent or '?'}): target {entry.target or '? (its config cannot be read)'}")
    targets = sorted({entry.target for entry in found if entry.target})
    write_outputs(
        console,
        {
            "status": Status.PLANNED,
            "matrix": json.dumps(matrix(found), separators=(",", ":")),
            "targets": json.dumps(targets, separators=(",", ":")),
        },
    )
    return int(ExitCode.OK)


def _refuse_several_previews(inputs: ActionInputs, console: GitHubConsole) -> int:
    error = UsageError(f"command {inputs.command} previews one agent, and config names several")
    _report(console, error)
    write_outputs(console, {"status": Status.FAILED})
    return int(error.exit_code)


def _preview(inputs: ActionInputs, invocation: Invocation, agent: str) -> Result:
    """preview / preview-remove: a pull request of this repository (a fork's is refused before anything is built),
    the target's preview in a record of its own (production's is not restored or written: release/preview.py),
    then the pull request's comment and deployment (github/pulls.py)."""
    from agentdeploy.github.pulls import announce, announce_failure, check_preview_event
    from agentdeploy.release.commands import execute

    environ = invocation.services.environ
    check_preview_event(environ)
    try:
        result = execute(invocation)
    except AgentDeployError as error:
        ran = error.details.get("preview")  # a preview that ran and failed its gate: the pull request hears of it
        if inputs.command == "preview" and isinstance(ran, Mapping):
            announce_failure(environ, agent, inputs.preview_name, ran, error.message)
        raise
    published = announce(inputs.command, environ, agent, inputs.preview_name, result.outputs)
    invocation.services.console.info(
        f"pull request comment {published.comment_id}, environment {published.environment}"
    )
    return result


def main() -> None:
    sys.exit(run(os.environ))
