"""The commands that read a config and print, with no target and no record: validate, dockerfile, context, image,
schema, base build, changed. Heavy modules are imported inside each handler, so `--help` needs none of them."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from agentdeploy.console import Console
from agentdeploy.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from agentdeploy.config.loader import LoadedConfig
    from agentdeploy.image.tags import GitFacts


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


def cmd_changed(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    """The agents whose deploy inputs changed since a commit, as a strategy.matrix (one line of JSON on stdout,
    for `echo "matrix=$(...)" >> "$GITHUB_OUTPUT"`); what changed for each on stderr."""
    import json

    from agentdeploy.release.changed import changed_agents, matrix
    from agentdeploy.release.many import expand

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
