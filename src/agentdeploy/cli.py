"""Command line. Errors are caught here and only here, printed without a traceback.

Heavy modules (pydantic, jinja2, docker, azure) are imported inside the handlers so that
`agentdeploy --help` starts fast and needs none of them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from agentdeploy import __version__
from agentdeploy.console import Console
from agentdeploy.errors import AgentDeployError, ExitCode, UsageError

if TYPE_CHECKING:
    from agentdeploy.config.loader import LoadedConfig
    from agentdeploy.image.tags import GitFacts
    from agentdeploy.release.commands import Invocation, Result
    from agentdeploy.release.many import Many
    from agentdeploy.release.pipeline import DeployOptions, Services
    from agentdeploy.release.planner import PlanItem


def _load(args: argparse.Namespace, console: Console) -> LoadedConfig:
    from agentdeploy.config.loader import load_config

    config = load_config(Path(args.config), display_name=args.config)
    for warning in config.warnings:
        console.warn(warning)
    return config


def _created(git: GitFacts, environ: Mapping[str, str]) -> str:
    from agentdeploy.image.tags import created_timestamp

    return created_timestamp(git, environ, datetime.now(UTC))


def cmd_validate(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    from agentdeploy.config.loader import require_supported_target, resolve_for_deploy
    from agentdeploy.image.context import collect, env_files_left_out
    from agentdeploy.image.git import git_facts
    from agentdeploy.image.spec import plan_image

    config = _load(args, console)
    provider = require_supported_target(config)
    entries, skipped = collect(config)
    for note in env_files_left_out(config):
        console.warn(note)
    git = git_facts(config, environ)
    image = plan_image(config, git, created=_created(git, environ))
    if args.resolve:
        resolve_for_deploy(config, environ)
    summary = {
        "config": args.config,
        "agent": config.agent.name,
        "provider": provider,
        "image": image.reference,
        "files": [entry.target.as_posix() for entry in entries],
        "skipped_secret_files": skipped,
        "warnings": [w.render() for w in config.warnings],
    }
    if args.json:
        console.json(summary)
    else:
        console.data(
            f"{args.config}: valid. agent {config.agent.name!r}, target {provider}, "
            f"image {image.reference}, {len(entries)} file(s) in the build context"
        )
    return ExitCode.OK


def cmd_dockerfile(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    from agentdeploy.image.dockerfile import render_dockerfile, spec_from_config

    config = _load(args, console)
    if config.deploy.build.dockerfile:
        raise UsageError(
            f"{args.config} brings its own Dockerfile ({config.deploy.build.dockerfile}); there is nothing to generate"
        )
    console.data(render_dockerfile(spec_from_config(config)))
    return ExitCode.OK


def cmd_context(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    from agentdeploy.image.context import collect, env_files_left_out, write_context
    from agentdeploy.image.dockerfile import render_dockerfile, spec_from_config

    config = _load(args, console)
    entries, skipped = collect(config)
    for note in env_files_left_out(config):
        console.warn(note)
    context = write_context(entries, Path(args.out), render_dockerfile(spec_from_config(config)), skipped)
    for secret_file in skipped:
        console.info(f"note: {secret_file} left out of the image (it holds secrets)")
    if args.json:
        console.json(
            {
                "directory": str(context.directory),
                "files": [f.as_posix() for f in context.files],
                "digest": context.digest,
                "skipped_secret_files": context.skipped,
            }
        )
    else:
        console.data(f"build context written to {context.directory} ({len(context.files)} files)")
        for file in context.files:
            console.data(f"  app/{file}")
        console.data(f"digest {context.digest}")
    return ExitCode.OK


def cmd_image(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    from agentdeploy.image.git import git_facts
    from agentdeploy.image.spec import plan_image

    config = _load(args, console)
    git = git_facts(config, environ)
    image = plan_image(config, git, created=_created(git, environ))
    if args.json:
        console.json({"reference": image.reference, "tag": image.tag, "labels": image.labels})
    else:
        console.data(image.reference)
        for key, value in sorted(image.labels.items()):
            console.data(f"  {key}={value}")
    return ExitCode.OK


def cmd_schema(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    from agentdeploy.config.models import DeploymentConfig

    schema = DeploymentConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "agentdeploy deployment section of a HoloDeck agent.yaml"
    console.json(schema)
    return ExitCode.OK


def cmd_base_build(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    """A HoloDeck base built here (image/base.py): found by its content key, or built; on stdout the line to put
    in agent.yaml."""
    from agentdeploy.image import base
    from agentdeploy.image.engine import connect

    recipe = base.parse_recipe(args.holodeck_version, args.extras)
    console.info(f"HoloDeck base: {recipe.requirement} from PyPI")
    client = connect()
    with console.untrusted():  # the docker build's output
        made = base.ensure_base(
            client, recipe, from_image=args.from_image, tag=args.tag, rebuild=args.rebuild, on_line=console.info
        )
    verb = f"built in {made.seconds:.0f}s" if made.built else "found (built earlier from the same recipe)"
    console.info(f"{made.name}: {verb}, key {made.key}, on {made.start}")
    if args.json:
        console.json(
            {
                "image": made.name,
                "key": made.key,
                "built": made.built,
                "from": made.start,
                "holodeck": recipe.requirement,
                "base_image_line": base.config_line(made.name),
            }
        )
    else:
        console.data(base.config_line(made.name))
    return ExitCode.OK


def _services(console: Console, environ: Mapping[str, str]) -> Services:
    from agentdeploy.image.engine import connect
    from agentdeploy.release.pipeline import Services
    from agentdeploy.targets.azure.auth import arm_client_factory, arm_token_source

    return Services(
        environ=environ,
        console=console,
        docker=connect,
        azure_token=arm_token_source(environ),
        azure_client=arm_client_factory(environ),
    )


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
    )


def _invocation(
    args: argparse.Namespace,
    console: Console,
    environ: Mapping[str, str],
    command: str,
    show_plan: Callable[[list[PlanItem]], None] = lambda items: None,
) -> Invocation:
    from agentdeploy.release.commands import Command, Invocation

    return Invocation(
        command=Command(command),
        config=Path(args.config),
        display_name=args.config,
        options=_options(args),
        services=_services(console, environ),
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
    configs: list[str] = args.configs
    if len(configs) == 1 and not any(char in configs[0] for char in "*?["):
        args.config = configs[0]
        return False
    return True


def _many(args: argparse.Namespace, console: Console, environ: Mapping[str, str], command: str) -> Many:
    """The several-agent run (release/many.py): every agent's lines prefixed with its name, one outcome each."""
    from agentdeploy.release.many import expand, run_many

    configs = expand(args.configs)
    args.config = configs[0]  # the template's; each agent gets its own
    invocation = _invocation(args, console, environ, command)
    return run_many(invocation, configs, parallel=getattr(args, "parallel", 1), show_plans=False)


def _many_json(many: Many) -> list[object]:
    return list(many.as_json())


def _release(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    """deploy, rollback and promote: a summary on stderr (the image by digest, the revision, the time each
    stage took), then on stdout the outputs as JSON, or one line with the status and the URL."""
    result = _invoke(args, console, environ, args.command)
    outputs = result.outputs
    image = str(outputs.get("image") or "")
    if image and outputs.get("skipped_build") and outputs.get("status") != "unchanged":
        image += " (nothing built: identical inputs)"
    revision, previous = str(outputs.get("revision") or ""), str(outputs.get("previous_revision") or "")
    if revision and previous and previous != revision:
        revision += f" (before: {previous})"
    console.summary([("image", image), ("revision", revision), ("time", console.timing_summary())])
    if args.json:
        console.json({**{key: value for key, value in outputs.items() if key != "plan"}, "timings": result.timings})
    else:
        label = outputs.get("label_url")
        candidate = f" (candidate at {label}, 0% of traffic until promote)" if label else ""
        console.done(str(outputs["status"]), f"{outputs['url']}{candidate}")
    return ExitCode.OK


cmd_rollback = cmd_promote = _release


def cmd_preview(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    """A pull request's own revision (release/preview.py): its URL, or with --remove what went."""
    from agentdeploy.release.preview import preview, preview_outputs, remove_preview

    run = remove_preview if args.remove else preview
    outputs = preview_outputs(
        run(Path(args.config), args.config, args.name, _options(args), _services(console, environ))
    )
    console.summary([("image", str(outputs["image"])), ("revision", str(outputs["revision"]))])
    if args.json:
        console.json(outputs)
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
    from agentdeploy.release.many import render_summary

    many = _many(args, console, environ, "deploy")
    if args.json:
        console.info(render_summary(many))
        console.json(_many_json(many))
    else:
        console.data(render_summary(many))
    return many.exit_code


def cmd_plan(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    from agentdeploy.release.planner import render_table, render_variables

    if _several(args):
        many = _many(args, console, environ, "plan")
        if args.json:
            console.json(_many_json(many))
        elif many.items:
            console.data(render_table(many.items))  # one table: each row names its resource
            console.data("\n" + render_variables(many.items))  # names only, secret or plain: never a value
        return many.exit_code

    def show(items: list[PlanItem]) -> None:
        if args.json:
            console.json({"items": [item.as_json() for item in items]})
        else:
            console.data(render_table(items))
            console.data("\n" + render_variables(items))  # names only, secret or plain: never a value

    _invoke(args, console, environ, "plan", show_plan=show)
    return ExitCode.OK


def cmd_github(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    from agentdeploy.github.action import run

    return run(environ, console.out)


def cmd_status(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    if _several(args):
        many = _many(args, console, environ, "status")
        if args.json:
            console.json(_many_json(many))
        else:
            for outcome in many.outcomes:
                if outcome.result is not None:
                    _print_status(console, outcome.result)
        return many.exit_code
    result = _invoke(args, console, environ, "status")
    if args.json:
        console.json(result.report)
        return ExitCode.OK
    _print_status(console, result)
    return ExitCode.OK


def _print_status(console: Console, result: Result) -> None:
    report = result.report
    current = report["current"]
    live = report.get("live", {})
    if current is None:
        console.data(f"{report['agent']}: not deployed ({report['target']})")
    else:
        console.data(f"{report['agent']}: {current['url']}  image {current['image']}  tag {current['tag']}")
    for line in live.get("summary", []):
        console.data(f"  {line}")
    pending = report.get("pending")
    if pending:  # reported, never acted on: `repair` (or the next deploy or rollback) finishes it
        console.data(
            f"  {pending['state']}: {pending['action']} of {pending['tag'] or pending['image']} by "
            f"{pending['run_id'] or 'an earlier run'} since {pending['started_at']}; "
            f"serving now: {pending['serving'] or 'nothing'}"
        )
    for entry in report["history"]:
        console.data(
            f"  {entry['finished_at']}  {entry['action']:<8} {entry['status']:<11} {entry['tag'] or entry['image']}"
        )


def cmd_changed(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    """The agents whose deploy inputs changed since a commit, as a strategy.matrix (one line of JSON on stdout,
    for `echo "matrix=$(...)" >> "$GITHUB_OUTPUT"`); what changed for each on stderr."""
    import json

    from agentdeploy.release.many import changed_agents, expand, matrix

    found = changed_agents(expand(args.configs), args.since)
    for entry in found:
        name = f"{entry.config} ({entry.agent})" if entry.agent else entry.config
        if entry.reason:
            console.info(f"{name}: listed: {entry.reason}")
        elif entry.paths:
            console.info(f"{name}: changed: {', '.join(entry.paths)}")
        else:
            console.info(f"{name}: unchanged")
    console.data(json.dumps(matrix(found), separators=(",", ":")))
    return ExitCode.OK


def cmd_logs(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    from agentdeploy.release import pipeline

    lines = pipeline.logs(
        Path(args.config),
        args.config,
        _options(args),
        _services(console, environ),
        tail=args.tail,
        follow=args.follow,
        system=args.system,
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


Handler = Callable[[argparse.Namespace, Console, Mapping[str, str]], int]


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return number


def _output_flags(parser: argparse.ArgumentParser, *, default: Any) -> None:
    parser.add_argument(
        "--no-color",
        action="store_true",
        default=default,
        help="no colour (as NO_COLOR=1); pipes and CI logs get plain text anyway",
    )
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        default=default,
        help="show the whole docker build and push output (a terminal shows a line per build step)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentdeploy",
        description="Ship a HoloDeck agent (agent.yaml) to Azure Container Apps or the local Docker engine.",
        epilog="Exit codes are listed in the README (0 ok, 3 invalid config, 4 missing files, ...).",
    )
    parser.add_argument("--version", action="version", version=f"agentdeploy {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    _output_flags(parser, default=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        name: str,
        handler: Handler,
        help_text: str,
        *,
        config: bool = True,
        json_flag: bool = True,
        several: bool = False,
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _output_flags(sub, default=argparse.SUPPRESS)  # before or after the command; given once is enough
        if several:
            sub.add_argument(
                "configs",
                nargs="+",
                metavar="CONFIG",
                help="agent.yaml paths or globs ('agents/*/agent.yaml', expanded here when quoted); with several "
                "agents each one is an outcome of a list",
            )
        elif config:
            sub.add_argument("config", metavar="CONFIG", help="path of the agent.yaml")
        if json_flag:
            sub.add_argument("--json", action="store_true", help="print machine-readable JSON")
        sub.set_defaults(handler=handler)
        return sub

    validate = add("validate", cmd_validate, "check agent.yaml, the files it names and the image tag")
    validate.add_argument("--resolve", action="store_true", help="also require every ${VAR} a deploy needs to be set")
    add("dockerfile", cmd_dockerfile, "print the generated Dockerfile", json_flag=False)
    context = add("context", cmd_context, "write the build context (Dockerfile + agent files) to a directory")
    context.add_argument("--out", required=True, metavar="DIR", help="new or empty directory")
    add("image", cmd_image, "print the image reference and OCI labels a build would use")
    add(
        "schema",
        cmd_schema,
        "print the JSON Schema of the deployment: section",
        config=False,
        json_flag=False,
    )

    def target_flags(sub: argparse.ArgumentParser, *, health: bool = False) -> None:
        sub.add_argument(
            "--target",
            metavar="NAME",
            help="use this target instead of target.provider: docker, azure, or one a plugin adds",
        )
        if health:
            sub.add_argument("--health-timeout", type=float, metavar="SECONDS", help="overrides health.timeout_seconds")

    planning = add(
        "plan", cmd_plan, "what deploy would do: CREATE, UPDATE, NO_CHANGE or DRIFT, per resource", several=True
    )
    target_flags(planning)
    planning.add_argument("--fail-on-drift", action="store_true", help="exit 8 when the live deployment drifted")
    deploy = add(
        "deploy", cmd_deploy, "build, push, run behind the health gate; roll back when unhealthy", several=True
    )
    target_flags(deploy, health=True)
    deploy.add_argument(
        "--parallel",
        type=_positive,
        default=4,
        metavar="N",
        help="with several agents: releases at once (default 4); images are built one after another",
    )
    deploy.add_argument("--force", action="store_true", help="deploy even when the plan says NO_CHANGE")
    deploy.add_argument(
        "--pull", action="store_true", help="pull the base image first and build on it when it changed (a redeploy)"
    )
    deploy.add_argument("--fail-on-drift", action="store_true", help="stop (exit 8) when the live deployment drifted")
    deploy.add_argument(
        "--move-tag", action="store_true", help="point a registry tag that names other content at this build"
    )
    deploy.add_argument(
        "--require-attestation",
        action="store_true",
        help="deploy only a digest GitHub holds a build provenance attestation for",
    )
    push = deploy.add_mutually_exclusive_group()
    push.add_argument("--push", dest="push", action="store_true", default=None, help="push (default with a registry)")
    push.add_argument("--no-push", dest="push", action="store_false", help="build locally only, do not push")
    pushing = add(
        "push",
        cmd_push,
        "build (or skip) and push the image, verify its digest; no target, no state (attest it, then deploy)",
    )
    pushing.add_argument(
        "--pull", action="store_true", help="pull the base image first and build on it when it changed"
    )
    pushing.add_argument(
        "--move-tag", action="store_true", help="point a registry tag that names other content at this build"
    )
    rollback = add("rollback", cmd_rollback, "go back to an earlier deployment, without a rebuild")
    rollback.add_argument("--to", default="previous", metavar="previous|TAG|DIGEST|REVISION", help="default: previous")
    rollback.add_argument(
        "--require-attestation",
        action="store_true",
        help="go back only to a digest GitHub holds a build provenance attestation for",
    )
    target_flags(rollback, health=True)
    add(
        "github",
        cmd_github,
        "run as the GitHub Action: inputs from AGENTDEPLOY_* variables, outputs to GITHUB_OUTPUT",
        config=False,
        json_flag=False,
    )
    promote = add("promote", cmd_promote, "blue/green: move all traffic to the verified candidate revision")
    target_flags(promote, health=True)
    preview = add("preview", cmd_preview, "a pull request's own revision at 0%% of the traffic, verified at its URL")
    preview.add_argument("--name", required=True, metavar="pr-N", help="the preview's name, its revision's label")
    preview.add_argument("--remove", action="store_true", help="remove the preview: its label, its revision stops")
    target_flags(preview, health=True)
    bases = commands.add_parser(
        "base", help="HoloDeck base images built on this machine", description="HoloDeck base images"
    ).add_subparsers(dest="base_command", metavar="ACTION", required=True)
    base_help = (
        "build a HoloDeck base here (holodeck-ai from PyPI on a Debian or python slim image), for when "
        "ghcr.io/justinbarias/holodeck-base cannot be pulled; prints the deployment.build.base_image line to use"
    )
    base_build = bases.add_parser("build", help=base_help, description=base_help)
    _output_flags(base_build, default=argparse.SUPPRESS)
    base_build.set_defaults(handler=cmd_base_build)
    base_build.add_argument(
        "--holodeck-version", metavar="V", help="holodeck-ai version (default: the one agentdeploy pins)"
    )
    base_build.add_argument(
        "--extras",
        metavar="A,B",
        help="holodeck-ai extras, comma-separated (default: openai-agents, what provider: openai needs; '' for none)",
    )
    base_build.add_argument(
        "--from",
        dest="from_image",
        metavar="IMAGE",
        help="start from this image (Python 3.10+ with venv, e.g. python:3.11-slim; pulled when absent); default: "
        "a python:3.x-slim or Debian image the engine has, else a Debian rootfs made with mmdebstrap",
    )
    base_build.add_argument("--tag", metavar="NAME", help="name the image (default: agentdeploy/holodeck-base:V-KEY)")
    base_build.add_argument(
        "--rebuild", action="store_true", help="build from nothing even when an image of the same recipe exists"
    )
    base_build.add_argument("--json", action="store_true", help="print machine-readable JSON")
    promote.add_argument(
        "--require-attestation",
        action="store_true",
        help="promote only a candidate whose digest GitHub holds a build provenance attestation for",
    )
    target_flags(add("status", cmd_status, "what is deployed, and how it is doing (reads only)", several=True))
    repairing = add(
        "repair", cmd_repair, "finish what a run that died mid-release left: put back the version that last served"
    )
    target_flags(repairing)
    repairing.add_argument(
        "--require-attestation",
        action="store_true",
        help="put back only a digest GitHub holds a build provenance attestation for",
    )
    changed = add(
        "changed",
        cmd_changed,
        "the agents whose deploy inputs changed since a commit, as JSON for a GitHub strategy.matrix",
        json_flag=False,
        several=True,
    )
    changed.add_argument(
        "--since", required=True, metavar="REF", help="the commit (sha, branch or tag) to compare HEAD with"
    )
    logs = add("logs", cmd_logs, "print the agent's container output", json_flag=False)
    target_flags(logs)
    logs.add_argument("--tail", type=int, default=100, help="lines from the end (default 100)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new output")
    logs.add_argument("--system", action="store_true", help="the platform's events instead (azure: pulls, probes)")
    destroy = add("destroy", cmd_destroy, "remove the deployed agent", json_flag=False)
    target_flags(destroy)
    destroy.add_argument("--yes", action="store_true", help="confirm")
    from agentdeploy.setup.command import register as register_setup

    register_setup(commands, _output_flags)  # `setup azure CONFIG [--check]`
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    console = Console(
        out or sys.stdout,
        err or sys.stderr,
        environ=env,
        no_color=getattr(args, "no_color", False),
        verbose=getattr(args, "verbose", False),
    )
    try:
        handler: Handler = args.handler
        return int(handler(args, console, env))
    except AgentDeployError as exc:
        console.info(exc.render())
        return int(exc.exit_code)
    except KeyboardInterrupt:
        console.info("interrupted")
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:  # a bug: say so plainly, keep the traceback for --debug
        if args.debug:
            raise
        console.info(
            f"internal error: {type(exc).__name__}: {exc}\n"
            "  this is a bug in agentdeploy; rerun with --debug and report the traceback"
        )
        return int(ExitCode.INTERNAL)


def _terminated(number: int, frame: object) -> None:
    raise KeyboardInterrupt  # a cancelled workflow sends SIGTERM after SIGINT: both end the run alike


def run() -> None:
    import signal

    from agentdeploy.streams import guarded

    signal.signal(signal.SIGTERM, _terminated)  # during a release it only asks the gate to stop (interrupts.py)
    sys.exit(main(out=guarded(sys.stdout), err=guarded(sys.stderr)))
