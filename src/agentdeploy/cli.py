"""Command line. Errors are caught here and only here, printed without a traceback.

Heavy modules (pydantic, jinja2, docker, azure) are imported inside the handlers so that
`agentdeploy --help` starts fast and needs none of them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from agentdeploy import __version__
from agentdeploy.errors import AgentDeployError, ExitCode, Problem, UsageError

if TYPE_CHECKING:
    from agentdeploy.build.tags import GitFacts
    from agentdeploy.config.loader import LoadedConfig


class Console:
    """Where output goes. Data on stdout, messages on stderr, so `--json | jq` works."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err

    def data(self, text: str) -> None:
        self.out.write(text if text.endswith("\n") else text + "\n")

    def json(self, value: Any) -> None:
        self.data(json.dumps(value, indent=2, sort_keys=True))

    def info(self, text: str) -> None:
        self.err.write(text + "\n")

    def warn(self, problem: Problem) -> None:
        self.err.write("warning: " + problem.render().replace("\n", "\n  ") + "\n")


def _load(args: argparse.Namespace, console: Console) -> LoadedConfig:
    from agentdeploy.config.loader import load_config

    config = load_config(Path(args.config), display_name=args.config)
    for warning in config.warnings:
        console.warn(warning)
    return config


def _created(git: GitFacts, environ: Mapping[str, str]) -> str:
    from agentdeploy.build.tags import created_timestamp

    return created_timestamp(git, environ, datetime.now(UTC))


def cmd_validate(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    from agentdeploy.build.context import collect, env_files_left_out
    from agentdeploy.build.git import read_git_facts
    from agentdeploy.build.plan import plan_image
    from agentdeploy.config.loader import require_supported_target, resolve_for_deploy

    config = _load(args, console)
    provider = require_supported_target(config)
    entries, skipped = collect(config)
    for note in env_files_left_out(config):
        console.warn(note)
    git = read_git_facts(config.project_dir, environ)
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
    from agentdeploy.build.dockerfile import render_dockerfile, spec_from_config

    config = _load(args, console)
    if config.deploy.build.dockerfile:
        raise UsageError(
            f"{args.config} brings its own Dockerfile ({config.deploy.build.dockerfile}); there is nothing to generate"
        )
    console.data(render_dockerfile(spec_from_config(config)))
    return ExitCode.OK


def cmd_context(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    from agentdeploy.build.context import collect, env_files_left_out, write_context
    from agentdeploy.build.dockerfile import render_dockerfile, spec_from_config

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
    from agentdeploy.build.git import read_git_facts
    from agentdeploy.build.plan import plan_image

    config = _load(args, console)
    git = read_git_facts(config.project_dir, environ)
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


Handler = Callable[[argparse.Namespace, Console, Mapping[str, str]], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentdeploy",
        description="Ship a HoloDeck agent (agent.yaml) to Azure Container Apps or the local Docker engine.",
        epilog="Exit codes are listed in the README (0 ok, 3 invalid config, 4 missing files, ...).",
    )
    parser.add_argument("--version", action="version", version=f"agentdeploy {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        name: str, handler: Handler, help_text: str, *, config: bool = True, json_flag: bool = True
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if config:
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
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    console = Console(out or sys.stdout, err or sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
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


def run() -> None:
    sys.exit(main())
