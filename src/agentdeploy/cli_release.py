"""The commands that go through release/commands.py (deploy, plan, push, rollback, promote, status, repair,
destroy, logs) and the several-agent run (release/many.py): arguments -> Invocation -> execute -> text. What a
person reads is rendered here (cli_text.py); `--json` prints the outputs as they are. Heavy modules are
imported inside each handler, so `--help` needs none of them."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from agentdeploy.cli_text import release_summary, release_verdict, render_table, short_id, status_lines
from agentdeploy.console import Console
from agentdeploy.errors import ExitCode

if TYPE_CHECKING:
    from agentdeploy.release.commands import Invocation, Result
    from agentdeploy.release.outcomes import Many
    from agentdeploy.release.pipeline import DeployOptions
    from agentdeploy.release.planner import PlanItem


def _options(args: argparse.Namespace) -> DeployOptions:
    from agentdeploy.release.pipeline import DeployOptions

    return DeployOptions(
        target=getattr(args, "target", None),
        push=getattr(args, "push", None),
        health_timeout=getattr(args, "health_timeout", None),
        force=getattr(args, "force", False),
        fail_on_drift=getattr(args, "fail_on_drift", False),
        pull=getattr(args, "pull", False),
        move_tag=getattr(args, "move_tag", False),
        require_attestation=getattr(args, "require_attestation", False),
        env=tuple(getattr(args, "env", ())),
    )


def _invocation(
    args: argparse.Namespace,
    console: Console,
    environ: Mapping[str, str],
    command: str,
    show_plan: Callable[[list[PlanItem]], None] = lambda items: None,
) -> Invocation:
    from agentdeploy.github.attestations import lookup_from_environ
    from agentdeploy.release.commands import Command, Invocation
    from agentdeploy.release.defaults import default_services

    return Invocation(
        command=Command(command),
        config=Path(args.config),
        display_name=args.config,
        options=_options(args),
        services=default_services(console, environ, lookup_from_environ(environ)),
        to=getattr(args, "to", "previous"),
        confirmed=getattr(args, "yes", False),
        confirm_hint="add --yes to confirm",
        show_plan=show_plan,
    )


def _invoke(
    args: argparse.Namespace,
    console: Console,
    environ: Mapping[str, str],
    command: str,
    show_plan: Callable[[list[PlanItem]], None] = lambda items: None,
) -> Result:
    from agentdeploy.release.commands import execute

    return execute(_invocation(args, console, environ, command, show_plan))


def _several(args: argparse.Namespace) -> bool:
    """deploy, plan and status take several configs (or globs): then each agent is one outcome of a list. One
    config, not a pattern, is today's single run."""
    from agentdeploy.release.many import several

    configs: list[str] = args.configs
    if several(configs):
        return True
    args.config = configs[0]
    return False


def _many(args: argparse.Namespace, console: Console, environ: Mapping[str, str], command: str) -> Many:
    """The several-agent run (release/many.py): every agent's lines prefixed with its name, one outcome each."""
    from agentdeploy.release.many import expand, run_many

    configs = expand(args.configs)
    args.config = configs[0]  # the template's; each agent gets its own
    invocation = _invocation(args, console, environ, command)
    return run_many(invocation, configs, parallel=getattr(args, "parallel", 1), show_plans=False)


def _release(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    """deploy, rollback and promote: a summary on stderr (the image by digest, the revision, the time each
    stage took), then on stdout the outputs as JSON, or one line with the status and the URL."""
    result = _invoke(args, console, environ, args.command)
    console.summary([*release_summary(result.command, result.outputs), ("time", console.timing_summary())])
    if args.json:
        console.json(
            {**{key: value for key, value in result.outputs.items() if key != "plan"}, "timings": result.timings}
        )
    else:
        console.done(*release_verdict(result.outputs))
    return ExitCode.OK


cmd_rollback = cmd_promote = _release


def cmd_preview(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    """A pull request's own revision (release/preview.py): its URL, or with --remove what went."""
    from dataclasses import replace

    from agentdeploy.release.commands import execute

    command = "preview-remove" if args.remove else "preview"
    result = execute(replace(_invocation(args, console, environ, command), name=args.name))
    outputs = result.outputs
    console.summary([("image", str(outputs["image"])), ("revision", str(outputs["revision"]))])
    if args.json:
        console.json({**outputs, "timings": result.timings})
    else:
        console.done(str(outputs["status"]), str(outputs["url"] or outputs["plan"]))
    return ExitCode.OK


def cmd_push(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    """The image stage of deploy alone: a summary on stderr, then on stdout the outputs as JSON, or one line
    with the image by digest and whether it was built."""
    result = _invoke(args, console, environ, "push")
    outputs = result.outputs
    built = "nothing built: identical inputs" if outputs["skipped_build"] else "built"
    console.summary([("image", f"{outputs['image']} ({built})"), ("time", console.timing_summary())])
    if args.json:
        console.json({**outputs, "timings": result.timings})
    else:
        console.done(str(outputs["status"]), f"{outputs['image']} ({built})")
    return ExitCode.OK


def cmd_deploy(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    """One config: a single release. Several (or a glob): their checks first, then the releases, up to
    --parallel at once; a summary table (on stdout, or on stderr with --json and the list on stdout); the exit
    code of the worst outcome."""
    if not _several(args):
        return _release(args, console, environ)
    from agentdeploy.release.outcomes import summary_rows

    many = _many(args, console, environ, "deploy")
    header = ("AGENT", "TARGET", "STATUS", "URL", "IMAGE", "TIME")
    table = render_table(header, [(r.agent, r.target, r.status, r.url, r.image, r.time) for r in summary_rows(many)])
    _print_many(args, console, many, table)
    return many.exit_code


def _print_many(args: argparse.Namespace, console: Console, many: Many, table: str) -> None:
    """The table of several agents last: on stdout, or on stderr with --json (the list on stdout)."""
    if args.json:
        console.info(table)
        console.json(list(many.as_json()))
    else:
        console.data(table)


def cmd_plan(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    from agentdeploy.release.planner import render_table as plan_table
    from agentdeploy.release.planner import render_variables

    if _several(args):
        many = _many(args, console, environ, "plan")
        if args.json:
            console.json(list(many.as_json()))
        elif many.items:
            console.data(plan_table(many.items))  # one table: each row names its resource
            console.data("\n" + render_variables(many.items))  # names only, secret or plain: never a value
        return many.exit_code

    def show(items: list[PlanItem]) -> None:
        if args.json:
            console.json({"items": [item.as_json() for item in items]})
        else:
            console.data(plan_table(items))
            console.data("\n" + render_variables(items))  # names only, secret or plain: never a value

    _invoke(args, console, environ, "plan", show_plan=show)
    return ExitCode.OK


def cmd_github(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    from agentdeploy.github.action import run

    return run(environ, console.out)


def cmd_status(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    """One config: its report. Several (or a glob): each agent's report, every line prefixed `[name] `, then a
    table (agent, target, status, revision, URL)."""
    if _several(args):
        return _status_of_several(args, console, environ)
    result = _invoke(args, console, environ, "status")
    if args.json:
        console.json(result.report)
        return ExitCode.OK
    for line in status_lines(result.report):
        console.data(line)
    return ExitCode.OK


def _status_of_several(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    from agentdeploy.release.outcomes import summary_rows

    many = _many(args, console, environ, "status")
    if not args.json:
        for outcome in many.outcomes:
            if outcome.result is not None:
                for line in status_lines(outcome.result.report):
                    console.data(f"[{outcome.name}] {line}")
        console.data("")
    header = ("AGENT", "TARGET", "STATUS", "REVISION", "URL")
    rows = [(r.agent, r.target, r.status, short_id(r.revision), r.url) for r in summary_rows(many)]
    table = render_table(header, rows)
    _print_many(args, console, many, table)
    return many.exit_code


def cmd_logs(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    from agentdeploy.release import pipeline
    from agentdeploy.release.defaults import default_services

    services = default_services(console, environ)
    lines = pipeline.logs(
        Path(args.config), args.config, _options(args), services, tail=args.tail, follow=args.follow, system=args.system
    )
    for line in lines:
        console.data(line)
    return ExitCode.OK


def cmd_repair(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    """Finish what a run that died mid-release left; `status` and `plan` only report it."""
    result = _invoke(args, console, environ, "repair")
    outputs = result.outputs
    if args.json:
        console.json({**outputs, "timings": result.timings})
    else:
        console.done(str(outputs["status"]), str(outputs.get("plan") or ""))
    return ExitCode.OK


def cmd_destroy(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    removed = str(_invoke(args, console, environ, "destroy").outputs["plan"])
    console.data("removed " + (removed or "nothing (no container was there)"))
    return ExitCode.OK
