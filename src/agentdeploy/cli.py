"""Command line: the parser and `main`. Errors are caught here and only here, printed without a traceback.

The handlers live in cli_config.py (commands that read a config and print) and cli_release.py (commands that
go through release/commands.py); what a person reads is rendered by cli_text.py. Heavy modules (pydantic,
jinja2, docker, azure) are imported inside the handlers so that `agentdeploy --help` starts fast and needs
none of them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

from agentdeploy import __version__
from agentdeploy.cli_config import (
    cmd_base_build,
    cmd_changed,
    cmd_context,
    cmd_dockerfile,
    cmd_image,
    cmd_schema,
    cmd_validate,
)
from agentdeploy.cli_release import (
    cmd_deploy,
    cmd_destroy,
    cmd_github,
    cmd_logs,
    cmd_plan,
    cmd_preview,
    cmd_promote,
    cmd_push,
    cmd_repair,
    cmd_rollback,
    cmd_status,
)
from agentdeploy.console import Console
from agentdeploy.errors import AgentDeployError, ExitCode

Handler = Callable[[argparse.Namespace, Console, Mapping[str, str]], int]


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return number


def _output_flags(parser: argparse.ArgumentParser, *, default: bool | str) -> None:
    """`default`: False on the main parser, argparse.SUPPRESS on a command's (a flag given before it stays)."""
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


class _Commands:
    """The subcommands: each with the output flags, its CONFIG (or CONFIGs) and --json unless told otherwise."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        self,
        name: str,
        handler: Handler,
        help_text: str,
        *,
        config: bool = True,
        json_flag: bool = True,
        several: bool = False,
    ) -> argparse.ArgumentParser:
        # help is %-formatted by argparse (a literal % is written %%), the description is printed as it is
        sub = self.subparsers.add_parser(name, help=help_text, description=help_text.replace("%%", "%"))
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


def _target_flags(sub: argparse.ArgumentParser, *, health: bool = False) -> argparse.ArgumentParser:
    sub.add_argument(
        "--target",
        metavar="NAME",
        help="use this target instead of target.provider: docker, azure, or one a plugin adds",
    )
    if health:
        sub.add_argument("--health-timeout", type=float, metavar="SECONDS", help="overrides health.timeout_seconds")
    return sub


def _attestation_flag(sub: argparse.ArgumentParser, what: str) -> None:
    sub.add_argument(
        "--require-attestation",
        action="store_true",
        help=f"{what} only a digest GitHub holds a build provenance attestation for",
    )


def _image_flags(sub: argparse.ArgumentParser, pull_help: str) -> None:
    sub.add_argument("--pull", action="store_true", help=pull_help)
    sub.add_argument(
        "--move-tag", action="store_true", help="point a registry tag that names other content at this build"
    )


def _config_commands(commands: _Commands) -> None:
    validate = commands.add("validate", cmd_validate, "check agent.yaml, the files it names and the image tag")
    validate.add_argument("--resolve", action="store_true", help="also require every ${VAR} a deploy needs to be set")
    commands.add("dockerfile", cmd_dockerfile, "print the generated Dockerfile", json_flag=False)
    context = commands.add("context", cmd_context, "write the build context (Dockerfile + agent files) to a directory")
    context.add_argument("--out", required=True, metavar="DIR", help="new or empty directory")
    commands.add("image", cmd_image, "print the image reference and OCI labels a build would use")
    commands.add(
        "schema", cmd_schema, "print the JSON Schema of the deployment: section", config=False, json_flag=False
    )


def _plan_and_deploy(commands: _Commands) -> None:
    planning = _target_flags(
        commands.add(
            "plan", cmd_plan, "what deploy would do: CREATE, UPDATE, NO_CHANGE or DRIFT, per resource", several=True
        )
    )
    planning.add_argument("--fail-on-drift", action="store_true", help="exit 8 when the live deployment drifted")
    deploy = commands.add(
        "deploy", cmd_deploy, "build, push, run behind the health gate; roll back when unhealthy", several=True
    )
    _target_flags(deploy, health=True)
    deploy.add_argument(
        "--parallel",
        type=_positive,
        default=4,
        metavar="N",
        help="with several agents: releases at once (default 4); images are built one after another",
    )
    deploy.add_argument("--force", action="store_true", help="deploy even when the plan says NO_CHANGE")
    deploy.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="give the agent this variable (NAME alone: this shell's value), as a secret; repeatable",
    )
    deploy.add_argument("--fail-on-drift", action="store_true", help="stop (exit 8) when the live deployment drifted")
    _image_flags(deploy, "pull the base image first and build on it when it changed (a redeploy)")
    _attestation_flag(deploy, "deploy")
    push = deploy.add_mutually_exclusive_group()
    push.add_argument("--push", dest="push", action="store_true", default=None, help="push (default with a registry)")
    push.add_argument("--no-push", dest="push", action="store_false", help="build locally only, do not push")


def _push_rollback_promote(commands: _Commands) -> None:
    pushing = commands.add(
        "push",
        cmd_push,
        "build (or skip) and push the image, verify its digest; no target, no state (attest it, then deploy)",
    )
    _image_flags(pushing, "pull the base image first and build on it when it changed")
    rollback = commands.add("rollback", cmd_rollback, "go back to an earlier deployment, without a rebuild")
    rollback.add_argument("--to", default="previous", metavar="previous|TAG|DIGEST|REVISION", help="default: previous")
    rollback.add_argument(
        "--require-attestation",
        action="store_true",
        help="go back only to a digest GitHub holds a build provenance attestation for",
    )
    _target_flags(rollback, health=True)
    commands.add(
        "github",
        cmd_github,
        "run as the GitHub Action: inputs from AGENTDEPLOY_* variables, outputs to GITHUB_OUTPUT",
        config=False,
        json_flag=False,
    )
    promote = commands.add(
        "promote",
        cmd_promote,
        "blue/green: move all traffic to the verified candidate revision; or finish a paused canary",
    )
    _target_flags(promote, health=True)
    promote.add_argument(
        "--require-attestation",
        action="store_true",
        help="promote only a candidate whose digest GitHub holds a build provenance attestation for",
    )
    preview = commands.add(
        "preview", cmd_preview, "a pull request's own revision at 0%% of the traffic, verified at its URL"
    )
    preview.add_argument("--name", required=True, metavar="pr-N", help="the preview's name, its revision's label")
    preview.add_argument("--remove", action="store_true", help="remove the preview: its label, its revision stops")
    _target_flags(preview, health=True)


def _base_commands(commands: _Commands) -> None:
    bases = commands.subparsers.add_parser(
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


def _reading_and_repair_commands(commands: _Commands) -> None:
    _target_flags(
        commands.add("status", cmd_status, "what is deployed, and how it is doing (reads only)", several=True)
    )
    repairing = commands.add(
        "repair", cmd_repair, "finish what a run that died mid-release left: put back the version that last served"
    )
    _target_flags(repairing)
    _attestation_flag(repairing, "put back")
    changed = commands.add(
        "changed",
        cmd_changed,
        "the agents whose deploy inputs changed since a commit, as JSON for a GitHub strategy.matrix",
        json_flag=False,
        several=True,
    )
    changed.add_argument(
        "--since", required=True, metavar="REF", help="the commit (sha, branch or tag) to compare HEAD with"
    )
    logs = _target_flags(commands.add("logs", cmd_logs, "print the agent's container output", json_flag=False))
    logs.add_argument("--tail", type=int, default=100, help="lines from the end (default 100)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new output")
    logs.add_argument("--system", action="store_true", help="the platform's events instead (azure: pulls, probes)")
    destroy = _target_flags(commands.add("destroy", cmd_destroy, "remove the deployed agent", json_flag=False))
    destroy.add_argument("--yes", action="store_true", help="confirm")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentdeploy",
        description="Ship a HoloDeck agent (agent.yaml) to Azure Container Apps or the local Docker engine.",
        epilog="Exit codes are listed in the README (0 ok, 3 invalid config, 4 missing files, ...).",
    )
    parser.add_argument("--version", action="version", version=f"agentdeploy {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    _output_flags(parser, default=False)
    commands = _Commands(parser)
    _config_commands(commands)
    _plan_and_deploy(commands)
    _push_rollback_promote(commands)
    _base_commands(commands)
    _reading_and_repair_commands(commands)
    from agentdeploy.setup.command import register as register_setup

    register_setup(commands.subparsers, _output_flags)  # `setup azure CONFIG [--check]`
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
