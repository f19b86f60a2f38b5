"""`agentdeploy github`: the Action's front end (workflow commands through actions-toolkit). The state's
GitHub side, the artifact API and the branch, lives in state/.

action.yml maps every input to an AGENTDEPLOY_* variable in the step's `env:` (composite actions
get no INPUT_* variables, and `${{ inputs.x }}` inside `run:` would be a script-injection hole).
Here they become a normal run: secret values are masked before anything is printed, each stage is
a log group, the docker build/push output is wrapped in ::stop-commands::, config errors become
annotations with file and line, and the results become step outputs and a job summary.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from agentdeploy.console import Console
from agentdeploy.errors import AgentDeployError, ExitCode, UsageError
from agentdeploy.release.commands import Command, Invocation
from agentdeploy.release.many import (
    DEFAULT_PARALLEL,
    Changed,
    Many,
    Outcome,
    changed_agents,
    expand,
    matrix,
    run_many,
    several,
    summary_rows,
    worst,
)
from agentdeploy.state.artifact import artifact_name, fetch_state_artifact, trusted_workflows
from agentdeploy.state.branch import Git, StateBranch, bot_identity, push_record, restore_from_branch, state_branch
from agentdeploy.state.store import StateStore

COMMANDS = ("deploy", "plan", "rollback", "promote", "status", "destroy", "changed", "agents", "push", "repair")
PREVIEW_COMMANDS = ("preview", "preview-remove")  # a pull request's own revision (github/pulls.py: its comment)
STATE_MODES = ("none", "artifact", "commit")
# action input -> the variable the pipeline reads (credentials keep their usual names)
CREDENTIAL_INPUTS = {
    "AGENTDEPLOY_REGISTRY_USERNAME": "REGISTRY_USERNAME",
    "AGENTDEPLOY_REGISTRY_PASSWORD": "REGISTRY_PASSWORD",
    "AGENTDEPLOY_AZURE_CLIENT_ID": "AZURE_CLIENT_ID",
    "AGENTDEPLOY_AZURE_TENANT_ID": "AZURE_TENANT_ID",
    "AGENTDEPLOY_AZURE_SUBSCRIPTION_ID": "AZURE_SUBSCRIPTION_ID",
}
SECRET_INPUTS = ("AGENTDEPLOY_REGISTRY_PASSWORD", "GITHUB_TOKEN")


class GitHubConsole(Console):
    """Everything on stdout, in order, so the runner sees commands and text as they happened. Plain text
    always (a runner's log is no terminal); the build output whole, each outermost stage a log group.

    The runner carries out every workflow command it finds in the step's output, so only `command` issues
    them (masks, groups, annotations; escaped as the toolkit's command.ts does: %, CR and LF in the message,
    also `:` and `,` in a property). Any other text the runner could read as a command (what an agent, a
    target or the docker build said, quoted in a message) is fenced by `Console._write`."""

    def __init__(self, out: TextIO) -> None:
        super().__init__(out, out, environ={"GITHUB_ACTIONS": "true"}, interactive=False)

    def command(self, name: str, properties: Mapping[str, object] | None = None, message: str = "") -> None:
        """Issue a workflow command: its message and properties masked and escaped. Inside a block of outside
        output the runner reads no command, so the block is closed around it and opened again."""
        from actions_toolkit.command import Command

        shown = {key: self.redact(str(value)) for key, value in (properties or {}).items()}
        line = str(Command(name, shown, message if name == "add-mask" else self.redact(message)))
        with self.lock:
            fence = self._shared.fence
            if fence is not None:
                self.out.write(f"::{fence}::\n")
            self.out.write(line + "\n")
            if fence is not None:
                self._shared.fence = self._open_fence(line)
            self.out.flush()

    def _open_fence(self, text: str) -> str:
        token = self._fence_token(text)
        self.out.write(f"::stop-commands::{token}\n")
        return token

    def mask(self, values: list[str]) -> None:
        with self.lock:  # the command is a line of its own, also with several agents writing at once
            for value in values:
                if value.strip() and value not in self._secrets:
                    # ::add-mask:: before the value can appear anywhere; GitHub masks a line at a time, so each
                    # line of a multi-line value too.
                    lines = [line for line in value.splitlines() if line.strip()]
                    for form in dict.fromkeys([value, *(lines if len(lines) > 1 else [])]):
                        self.command("add-mask", {}, form)
            super().mask(values)

    def _section_start(self, name: str) -> None:
        self.command("group", {}, name)

    def _section_end(self, name: str, *, failed: bool, seconds: float) -> None:
        self.command("endgroup")

    @contextlib.contextmanager
    def untrusted(self) -> Iterator[None]:
        with self.lock:
            if self._shared.fence is not None:  # already inside a block (another agent's build)
                opened = False
            else:
                self._shared.fence, opened = self._open_fence(""), True
                self.out.flush()
        try:
            yield
        finally:
            if opened:
                with self.lock:
                    self.out.write(f"::{self._shared.fence}::\n")
                    self._shared.fence = None
                    self.out.flush()


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
            state=_state_mode(text("STATE", "none")),
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


def _state_mode(value: str) -> str:
    if value not in STATE_MODES:
        raise UsageError(f"input state {value!r} must be one of {', '.join(STATE_MODES)}")
    return value


def _event(environ: Mapping[str, str]) -> dict[str, Any]:
    """The webhook payload of this run (for the default branch); empty when there is none to read."""
    path = environ.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _restore_state(
    environ: Mapping[str, str], state_file: Path, name: str, console: Console, workflows: str = ""
) -> str:
    """No record in this checkout: take the newest one an earlier trusted run uploaded (state/artifact.py: this
    repository, not a fork; this workflow or one `workflows` names; the default branch or a tag). Which run it
    came from, or ""."""
    if state_file.exists():
        return ""
    repository, token = environ.get("GITHUB_REPOSITORY"), environ.get("GITHUB_TOKEN")
    if not repository or not token:
        console.info("note: no GITHUB_REPOSITORY/GITHUB_TOKEN, so no earlier state artifact was looked up")
        return ""
    trusted = trusted_workflows(environ.get("GITHUB_WORKFLOW_REF", ""), workflows)
    if not trusted:
        console.info("note: no GITHUB_WORKFLOW_REF and no state-workflows, so no run's state artifact is trusted")
        return ""
    lookup = fetch_state_artifact(
        api_url=environ.get("GITHUB_API_URL", "https://api.github.com"),
        repository=repository,
        token=token,
        name=name,
        destination=state_file,
        workflows=trusted,
    )
    skipped = f" (skipped: {'; '.join(lookup.skipped)})" if lookup.skipped else ""
    if lookup.found is None:
        console.info(f"state: no artifact {name} yet from a trusted run; a new record starts{skipped}")
        return ""
    console.info(f"state: restored from artifact {name} of {lookup.found.describe()}{skipped}")
    return f"artifact {name} of {lookup.found.describe()}"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def _commit_record(
    store: StateStore, branch: StateBranch, console: GitHubConsole, outputs: dict[str, str], code: int
) -> int:
    """Record the run on the branch, whatever its outcome (a rollback is worth recording too)."""
    try:
        with console.stage(f"state to branch {branch.branch}"):
            result = push_record(store, branch, identity=bot_identity())
            if result.commit:
                tries = f" after {result.attempts} attempts" if result.attempts > 1 else ""
                console.info(f"state: committed {branch.path} to {branch.branch} as {result.commit[:12]}{tries}")
            else:
                console.info(f"state: branch {branch.branch} already holds this record")
        outputs["state-commit"] = result.commit
        outputs.setdefault("state-file", str(store.path))
        return code
    except AgentDeployError as error:
        console.info(error.render())
        _annotate(console, error)
        return code or int(error.exit_code)


def _write_outputs(console: Console, outputs: Mapping[str, str]) -> None:
    from actions_toolkit import core

    for name, value in outputs.items():
        core.set_output(name, console.redact(value))  # file command with a random delimiter


def _results(console: Console, entries: list[dict[str, Any]]) -> str:
    """The `results` output: the entries masked before they are written as JSON (so an escaped secret is too)."""
    return json.dumps(console.redact_value(entries), separators=(",", ":"))


def _append_summary(environ: Mapping[str, str], console: Console, markdown: str) -> None:
    path = environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(console.redact(markdown)[: 1024 * 1024 - 1024] + "\n")  # GitHub keeps 1 MiB per step


# -- text from outside in the job summary: shown as text, never as markdown or HTML ----------------------------

# Text from outside in the summary is shown as it is when it can make no markup: letters, digits and a few marks
# (no emphasis, code, link, HTML, entity, image, table, strikethrough or math characters, and nothing GitHub turns
# into a link by itself: `://`, `www.`, `@`). Anything else goes in a code span, where markdown reads nothing
# (escapes and autolinks included); only a table still splits a code span at `|`, so there it is written `\|`.
_PLAIN_TEXT = re.compile(r"(?:[^\W_]|[ .,;:()/'\"=+%#?{}-])*")
_AUTOLINK = re.compile(r"://|www\.", re.IGNORECASE)
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9.~/:%?=&+-]*)?")


def md_code(text: str, *, table: bool = True) -> str:
    """`text` as a code span on one line (fenced with more backticks than it holds, so it cannot close it)."""
    text = " ".join(text.split())
    if table:
        text = text.replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_text(text: str, *, table: bool = True) -> str:
    """Text from outside (an error that quotes an agent, a name, a path): as it is when it can make no markup,
    else as a code span, so it makes no link, tag, emphasis, image, heading or table cell."""
    text = " ".join(text.split())
    return text if _PLAIN_TEXT.fullmatch(text) and not _AUTOLINK.search(text) else md_code(text, table=table)


def md_folded_log(lines: list[str]) -> str:
    """The agent's last lines, folded (`<details>`), in a code block fenced with more backticks than any line
    holds, so no line can close it or make markup; the summary is masked as a whole (`_append_summary`)."""
    fence = "`" * max(3, max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0) + 1)
    body = "\n".join(line.replace("\r", "") for line in lines)
    title = f"The agent's last {len(lines)} log line(s)"
    return f"\n<details><summary>{title}</summary>\n\n{fence}text\n{body}\n{fence}\n\n</details>\n"


def md_url(text: str) -> str:
    """A URL a target gave: as it is (GitHub links it) when it is a plain http(s) URL; else as code."""
    return text if _PLAIN_URL.fullmatch(text) else md_code(text)


def _traffic_lines(traffic: list[dict[str, Any]]) -> str:
    if not traffic:
        return "-"
    lines = []
    for entry in traffic:
        notes = [md_text(str(entry["label"]))] if entry.get("label") else []
        if entry.get("latestRevision"):
            notes.append("latest")
        name = md_text(str(entry.get("revisionName") or "latest revision"))
        lines.append(f"{name}: {md_text(str(entry.get('weight')))}%" + (f" ({', '.join(notes)})" if notes else ""))
    return "<br>".join(lines)


def _variables_cell(variables: list[dict[str, Any]]) -> str:
    """`OPENAI_API_KEY` (secret) ...: each variable forwarded to the agent, the container name it fills when it
    differs, and how it travels. Names only: a value never reaches the summary."""
    if not variables:
        return "none forwarded"
    cells = []
    for variable in variables:
        renamed = f" as `{variable['as']}`" if variable["as"] != variable["variable"] else ""
        cells.append(f"`{variable['variable']}`{renamed} ({'secret' if variable['secret'] else 'plain'})")
    return "<br>".join(cells)


def summary_markdown(
    agent_config: str, inputs: ActionInputs, outputs: Mapping[str, str], extra: Mapping[str, Any], timing: str = ""
) -> str:
    def code(name: str) -> str:
        return md_code(outputs[name]) if outputs.get(name) else "-"

    rows = [
        ("Agent config", md_code(agent_config)),
        ("Command", inputs.command + (" (dry run)" if inputs.dry_run else "")),
        ("Status", f"**{md_text(outputs.get('status', ''))}**"),
        ("URL", md_url(outputs["url"]) if outputs.get("url") else "-"),
        ("Revision", code("revision")),
        ("Previous", code("previous-revision")),
        ("Image", code("image")),
        ("Digest", code("digest")),
        ("Plan", md_text(outputs["plan"]) if outputs.get("plan") else "-"),
    ]
    if extra.get("traffic_before") or extra.get("traffic_after"):
        rows.append(("Traffic before", _traffic_lines(list(extra.get("traffic_before") or []))))
        rows.append(("Traffic after", _traffic_lines(list(extra.get("traffic_after") or []))))
    if "variables" in extra:  # plan and deploy: what of this run's environment reaches the agent, by name only
        rows.append(("Variables", _variables_cell(list(extra["variables"]))))
    if extra.get("label_url"):
        rows.append(("Candidate", f"{md_url(str(extra['label_url']))} (0% until promote)"))
    if outputs.get("attestation"):  # require-attestation: the build provenance checked before anything changed
        attestation = outputs["attestation"]
        link = f"[build provenance]({attestation})" if _PLAIN_URL.fullmatch(attestation) else md_text(attestation)
        rows.append(("Attestation", f"{link}, checked before the release"))
    if extra.get("state_source"):  # state: artifact: which run's record this run started from
        text = str(extra["state_source"])
        source, _, url = text.rpartition(" ")  # "<what> <run URL>": the URL stays a link
        cell = f"{md_text(source)} {md_url(url)}" if source and _PLAIN_URL.fullmatch(url) else md_text(text)
        rows.append(("State", cell))
    if timing:
        rows.append(("Time", timing))
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    env = f" in environment {md_code(inputs.environment, table=False)}" if inputs.environment else ""
    markdown = f"### agentdeploy {inputs.command}{env}\n\n| | |\n|---|---|\n{table}\n"
    if extra.get("log"):
        markdown += md_folded_log([str(line) for line in extra["log"]])
    if inputs.command in ("deploy", "rollback", "promote") and not inputs.dry_run:
        markdown += (
            "\nTo roll back: run the rollback workflow with `previous` (or a tag, digest or revision), or "
            f"{md_code(f'agentdeploy rollback {agent_config} --to previous', table=False)} locally.\n"
        )
    return markdown


def _annotate(console: GitHubConsole, error: AgentDeployError) -> None:
    """::error annotations, on the file and line when there is one (masked and escaped by `console.command`)."""

    def emit(message: str, title: str, location: Any = None) -> None:
        # Only the properties there are: core.error would write every one, empty ones too.
        spot = {}
        if location is not None:
            spot = {
                "file": location.file,
                "line": location.line,
                "endLine": location.line,
                "col": location.column,
                "endColumn": location.column,
            }
        console.command("error", {"title": title} | {k: v for k, v in spot.items() if v is not None}, message)

    def with_hint(message: str, hint: str | None) -> str:
        return message + (f" (fix: {hint})" if hint else "")

    located = [p for p in error.problems if p.location is not None and p.location.line is not None]
    if error.location is not None and error.location.line is not None:
        emit(error.message, "agentdeploy", error.location)
    for problem in located:
        emit(with_hint(problem.message, problem.hint), problem.key or "agentdeploy", problem.location)
    if not located and error.location is None:
        emit(with_hint(error.message, error.hint), "agentdeploy")


def run(environ: Mapping[str, str], out: TextIO | None = None) -> int:
    """The action's entry point. Returns the exit code."""
    from agentdeploy.github.pulls import announce, check_preview_event
    from agentdeploy.image.engine import connect
    from agentdeploy.release import pipeline
    from agentdeploy.release.commands import execute
    from agentdeploy.release.planner import PlanItem, render_table, render_variables
    from agentdeploy.targets.azure.auth import arm_client_factory, arm_token_source

    console = GitHubConsole(out or sys.stdout)
    console.mask([environ.get(name, "") for name in SECRET_INPUTS])
    env = dict(environ)
    for source, target in CREDENTIAL_INPUTS.items():
        if environ.get(source):
            env[target] = environ[source]
    outputs: dict[str, str] = {}
    extra: dict[str, Any] = {}
    inputs: ActionInputs | None = None
    # state: commit, once the branch's record is read: the store, the branch, and the file's text then.
    keeper: tuple[StateStore, StateBranch, str] | None = None
    state_source = ""  # state: artifact: the run the record came from, for the job summary
    outcome = Outcome(config="")  # this run's entry in the `results` output
    try:
        inputs = ActionInputs.from_env(environ)
        if inputs.command == "changed":
            return _run_changed(inputs, environ, console)
        if inputs.command == "agents":
            return _run_agents(inputs, console)
        outcome.config = inputs.config
        services = pipeline.Services(
            environ=env,
            console=console,
            docker=connect,
            azure_token=arm_token_source(env),
            azure_client=arm_client_factory(env),
        )
        options = pipeline.DeployOptions(
            target=inputs.target,
            health_timeout=inputs.health_timeout,
            force=inputs.force,
            fail_on_drift=inputs.fail_on_drift,
            pull=inputs.pull,
            move_tag=inputs.move_tag,
            require_attestation=inputs.require_attestation,
        )
        arguments = config_arguments(inputs.config)
        if inputs.command in PREVIEW_COMMANDS and several(arguments):
            raise UsageError(f"command {inputs.command} previews one agent, and config names several")
        if several(arguments):
            return _run_several(
                inputs,
                arguments,
                Invocation(
                    command=Command(inputs.command),
                    config=Path(arguments[0]),
                    display_name=arguments[0],
                    options=options,
                    services=services,
                    to=inputs.to,
                    dry_run=inputs.dry_run,
                    confirmed=inputs.confirm_destroy,
                    confirm_hint="set the input confirm-destroy: true",
                ),
                environ,
                console,
            )
        config = Path(inputs.config)
        store = pipeline.state_store(config, inputs.config, options, services)
        outcome.agent, outcome.target = store.agent, store.target
        if inputs.command in PREVIEW_COMMANDS:
            check_preview_event(env)  # a pull request of this repository, before anything is built
        if inputs.command in ("push", *PREVIEW_COMMANDS):
            pass  # push: the image alone, no record; a preview: its own record, never production's (release/preview.py)
        elif inputs.state == "artifact":
            outputs["state-artifact"] = artifact_name(store.agent, store.environment)
            state_source = _restore_state(env, store.path, outputs["state-artifact"], console, inputs.state_workflows)
        elif inputs.state == "commit":
            branch = StateBranch(
                Git(config.parent, env), store.path, state_branch(inputs.state_branch, environ, _event(environ))
            )
            with console.stage(f"state from branch {branch.branch}"):
                found = restore_from_branch(store, branch)
                console.info(
                    f"state: read {branch.path} from branch {branch.branch}"
                    if found
                    else f"state: branch {branch.branch} has no {branch.path} yet; a new record starts"
                )
            keeper = (store, branch, _read(store.path))
        planning = inputs.command == "plan" or (inputs.command == "deploy" and inputs.dry_run)

        def show_plan(items: list[PlanItem]) -> None:
            console.info(render_table(items))
            console.info(render_variables(items))

        invocation = Invocation(
            command=Command(inputs.command),
            config=config,
            display_name=inputs.config,
            options=options,
            services=services,
            to=inputs.to,
            dry_run=inputs.dry_run,
            confirmed=inputs.confirm_destroy,
            confirm_hint="set the input confirm-destroy: true",
            show_plan=show_plan,
            name=inputs.preview_name,
        )
        if planning:
            with console.stage("plan"):
                result = execute(invocation)
        else:
            result = execute(invocation)
        if inputs.command in PREVIEW_COMMANDS:
            published = announce(inputs.command, env, store.agent, inputs.preview_name, result.outputs)
            console.info(f"pull request comment {published.comment_id}, environment {published.environment}")
        extra = dict(result.details)
        # The one mapping (release.commands), spelled as outputs are: previous_revision -> previous-revision.
        outputs |= {name.replace("_", "-"): _output_text(value) for name, value in result.outputs.items()}
        outcome.result, outcome.status = result, outputs.get("status", "")
        code = int(ExitCode.OK)
    except AgentDeployError as error:
        console.info(error.render())
        _annotate(console, error)
        outputs.setdefault("status", "rolled-back" if error.exit_code == ExitCode.ROLLED_BACK else "failed")
        code = int(error.exit_code)
        if error.log:
            extra["log"] = list(error.log)  # the agent's last lines: folded in the job summary
        outcome.fail(error)
    if keeper is not None and inputs is not None and inputs.records:
        store, branch, before = keeper
        if _read(store.path) != before:  # this run recorded something (nothing when it stopped early)
            code = _commit_record(store, branch, console, outputs, code)
    if console.timings:  # also for a failed run: how long the gate waited before the rollback, say
        outputs["timings"] = json.dumps(console.timings, separators=(",", ":"))
    if inputs is not None:
        outcome.timings = console.timings
        entry = outcome.as_json()
        if outputs.get("state-commit"):
            entry["state_commit"] = outputs["state-commit"]
        outputs["results"] = _results(console, [entry])  # as with several agents: a list
    _write_outputs(console, outputs)
    if inputs is not None:
        if inputs.state == "artifact" and inputs.command != "push":
            extra["state_source"] = state_source or "no trusted artifact: a new record"
        _append_summary(
            environ, console, summary_markdown(inputs.config, inputs, outputs, extra, timing=console.timing_summary())
        )
    return code


def config_arguments(text: str) -> list[str]:
    """The config input: one path or glob per line (`config: agents/*/agent.yaml`, or a block of lines)."""
    return [line.strip() for line in text.splitlines() if line.strip()] or ["agent.yaml"]


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
    outputs: dict[str, str] = {}
    keepers: dict[str, tuple[StateStore, StateBranch, str]] = {}
    try:
        configs = expand(arguments)
        if inputs.state == "artifact" and inputs.records:
            raise UsageError(
                f"state: artifact keeps one agent's record per run, and this {inputs.command} has several agents",
                hint="use state: commit, or deploy each agent in its own job (a matrix from command changed); "
                "status and plan read several agents' artifacts",
            )
        if inputs.state == "artifact":  # status, plan: each agent's newest record, read only
            for config in configs:
                _restore_artifact(config, template, environ, inputs.state_workflows)
        if inputs.state == "commit":
            for config in configs:
                keeper = _restore_branch(inputs, config, template, environ)
                if keeper is not None:
                    keepers[config] = keeper
        many = run_many(template, configs, parallel=inputs.parallel)
    except AgentDeployError as error:
        console.info(error.render())
        _annotate(console, error)
        _write_outputs(console, {"status": "failed", "results": "[]"})
        return int(error.exit_code)
    code = many.exit_code
    entries = []
    for outcome in many.outcomes:
        if outcome.problem is not None:
            _annotate(console, outcome.problem)
        entry = outcome.as_json()
        keeper = keepers.get(outcome.config)
        if keeper is not None and inputs.records and _read(keeper[0].path) != keeper[2]:
            committed: dict[str, str] = {}
            code = worst([code, _commit_record(keeper[0], keeper[1], console, committed, code)])
            entry["state_commit"] = committed.get("state-commit", "")
        entries.append(entry)
    outputs["results"] = _results(console, entries)
    if len(many.outcomes) == 1:  # a glob that matched one agent: the single outputs as well
        [one] = many.outcomes
        if one.result is not None:
            outputs |= {name.replace("_", "-"): _output_text(value) for name, value in one.result.outputs.items()}
        outputs["status"] = one.status
    _write_outputs(console, outputs)
    _append_summary(environ, console, several_summary_markdown(inputs, many))
    return code


def _run_changed(inputs: ActionInputs, environ: Mapping[str, str], console: GitHubConsole) -> int:
    """command changed: the agents whose deploy inputs changed since `since`, as the `matrix` output (for a
    matrix job's strategy) and `any-changed`; the job summary lists every agent, deployed or not, and why."""
    try:
        found = changed_agents(expand(config_arguments(inputs.config)), inputs.since)
    except AgentDeployError as error:
        console.info(error.render())
        _annotate(console, error)
        _write_outputs(console, {"status": "failed", "matrix": json.dumps({"include": []}), "any-changed": "false"})
        return int(error.exit_code)
    for entry in found:
        console.info(f"{entry.config} ({entry.agent or '?'}): {_why(entry)}")
    listed = matrix(found)
    _write_outputs(
        console,
        {
            "status": "planned",
            "matrix": json.dumps(listed, separators=(",", ":")),
            "any-changed": "true" if any(entry.listed for entry in found) else "false",
        },
    )
    _append_summary(environ, console, changed_summary_markdown(inputs, found))
    return int(ExitCode.OK)


def _run_agents(inputs: ActionInputs, console: GitHubConsole) -> int:
    """command agents: every agent the config input names, read from its config alone (no target, record or git
    asked), as the `matrix` output and `targets`, so that a job can pick its runner from the agents' targets."""
    from agentdeploy.image.git import NO_COMMIT

    try:
        found = changed_agents(expand(config_arguments(inputs.config)), NO_COMMIT)  # all zeros: every agent listed
    except AgentDeployError as error:  # a pattern that matches no config
        console.info(error.render())
        _annotate(console, error)
        _write_outputs(console, {"status": "failed", "matrix": json.dumps({"include": []}), "targets": "[]"})
        return int(error.exit_code)
    for entry in found:
        console.info(f"{entry.config} ({entry.agent or '?'}): target {entry.target or '? (its config cannot be read)'}")
    targets = sorted({entry.target for entry in found if entry.target})
    _write_outputs(
        console,
        {
            "status": "planned",
            "matrix": json.dumps(matrix(found), separators=(",", ":")),
            "targets": json.dumps(targets, separators=(",", ":")),
        },
    )
    return int(ExitCode.OK)


def _why(entry: Changed) -> str:
    if entry.reason:
        return f"deploy: {entry.reason}"
    if entry.paths:
        shown = ", ".join(entry.paths[:5]) + (f" and {len(entry.paths) - 5} more" if len(entry.paths) > 5 else "")
        return f"deploy: {shown} changed"
    return "unchanged"


def changed_summary_markdown(inputs: ActionInputs, found: list[Changed]) -> str:
    """Every agent the config input names, with whether this push deploys it and why."""
    deployed = sum(1 for entry in found if entry.listed)
    since = inputs.since[:12]
    lines = [
        f"### agentdeploy changed since {md_code(since, table=False)}: {deployed} of {len(found)} agents to deploy\n",
        "| Agent | Config | Target | Deploys | Why |",
        "|---|---|---|---|---|",
    ]
    for entry in found:
        why = md_text(_why(entry).removeprefix("deploy: "))
        verdict = "**yes**" if entry.listed else "no"
        agent, target = md_text(entry.agent or "-"), md_text(entry.target or "-")
        lines.append(f"| {agent} | {md_code(entry.config)} | {target} | {verdict} | {why} |")
    return "\n".join(lines) + "\n"


def _restore_branch(
    inputs: ActionInputs, config: str, template: Invocation, environ: Mapping[str, str]
) -> tuple[StateStore, StateBranch, str] | None:
    """state: commit with several agents: one agent's record read from the branch (None when its config cannot be
    read: the run reports that for the agent)."""
    from agentdeploy.release import pipeline

    services = template.services
    try:
        store = pipeline.state_store(Path(config), config, template.options, services)
    except AgentDeployError:
        return None
    branch = StateBranch(
        Git(Path(config).parent, services.environ),
        store.path,
        state_branch(inputs.state_branch, environ, _event(environ)),
    )
    found = restore_from_branch(store, branch)
    services.console.info(
        f"state: read {branch.path} from branch {branch.branch}"
        if found
        else f"state: branch {branch.branch} has no {branch.path} yet; a new record starts"
    )
    return store, branch, _read(store.path)


def _restore_artifact(config: str, template: Invocation, environ: Mapping[str, str], workflows: str) -> None:
    """state: artifact with several agents (status, plan): one agent's newest uploaded record, if it has one."""
    from agentdeploy.release import pipeline

    try:
        store = pipeline.state_store(Path(config), config, template.options, template.services)
    except AgentDeployError:
        return  # the run reports this agent's config error itself
    _restore_state(
        environ,
        store.path,
        artifact_name(store.agent, store.environment),
        template.services.console,
        workflows,
    )


def _parallel(text: str) -> int:
    """The parallel input: agents released at once (default 4)."""
    if not text:
        return DEFAULT_PARALLEL
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"input parallel {text!r} must be a whole number of at least 1", hint="parallel: 2")
    return int(text)


def several_summary_markdown(inputs: ActionInputs, many: Many) -> str:
    """The job summary of several agents: one row each, and what stopped those that failed."""
    env = f" in environment {md_code(inputs.environment, table=False)}" if inputs.environment else ""
    lines = [
        f"### agentdeploy {inputs.command}{env}: {len(many.outcomes)} agents\n",
        "| Agent | Target | Status | URL | Image | Time |",
        "|---|---|---|---|---|---|",
    ]
    for agent, target, status, url, image, seconds in summary_rows(many):
        image_cell = md_code(image) if image != "-" else image
        url_cell = md_url(url) if url != "-" else url
        lines.append(f"| {md_text(agent)} | {md_text(target)} | **{status}** | {url_cell} | {image_cell} | {seconds} |")
    failures = [outcome for outcome in many.outcomes if outcome.error]
    if failures:
        lines.append("")
        for outcome in failures:
            hint = f" (fix: {md_text(outcome.hint, table=False)})" if outcome.hint else ""
            name, error = md_text(outcome.agent or outcome.config, table=False), md_text(outcome.error, table=False)
            lines.append(f"- **{name}**: {error}{hint}")
    return "\n".join(lines) + "\n"


def _output_text(value: str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def main() -> None:
    sys.exit(run(os.environ))
