"""`agentdeploy setup azure CONFIG [--check]`: the command line of the set-up (cli.py registers it with one call).
Importing this module loads nothing heavy: `agentdeploy --help` stays fast."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from agentdeploy.errors import ExitCode

if TYPE_CHECKING:
    from agentdeploy.console import Console
    from agentdeploy.setup.model import SetupPlan

    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]

HELP = "print the az commands that set Azure up for this config, or check (--check, read-only) which are done"


def register(commands: Subcommands, output_flags: Callable[..., None]) -> None:
    """Add `setup azure` to the CLI's subcommands (`commands` is argparse's subparsers action)."""
    setup = commands.add_parser("setup", help="one-time cloud set-up for an agent config", description=HELP)
    targets = setup.add_subparsers(dest="setup_target", metavar="TARGET", required=True)
    azure = targets.add_parser("azure", help=HELP, description=HELP)
    output_flags(azure, default=argparse.SUPPRESS)
    azure.set_defaults(handler=cmd_setup_azure)
    azure.add_argument("config", metavar="CONFIG", help="path of the agent.yaml")
    azure.add_argument(
        "--repo",
        metavar="OWNER/NAME",
        help="the GitHub repository whose workflows deploy (default: GITHUB_REPOSITORY, else the git remote origin)",
    )
    azure.add_argument(
        "--github-environment",
        action="append",
        default=[],
        metavar="NAME",
        help="a GitHub environment the workflows deploy from (repeat; default: production and production-<agent>, "
        "as in examples/workflows)",
    )
    azure.add_argument(
        "--branch",
        action="append",
        default=[],
        metavar="NAME",
        help="a branch whose jobs sign in without an environment (repeat; default: main, for the status job)",
    )
    azure.add_argument(
        "--identity", metavar="NAME", help="the deployer identity's name (default: agentdeploy-<repository name>)"
    )
    azure.add_argument(
        "--key-vault",
        action="append",
        default=[],
        metavar="NAME",
        help="a Key Vault the app's secret references point at: its identity gets Key Vault Secrets User (repeat)",
    )
    azure.add_argument(
        "--check", action="store_true", help="read Azure (GETs only) and say per step: present, or missing and what"
    )
    azure.add_argument("--json", action="store_true", help="print machine-readable JSON")


def cmd_setup_azure(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    from agentdeploy.config.loader import load_config
    from agentdeploy.setup.inputs import SetupOptions, azure_setup, remote_url
    from agentdeploy.setup.plan import plan_azure
    from agentdeploy.setup.render import plan_json, script

    config = load_config(Path(args.config), display_name=args.config)
    options = SetupOptions(
        repository=args.repo,
        github_environments=args.github_environment,
        branches=args.branch,
        identity=args.identity,
        key_vaults=args.key_vault,
        resolve_all=args.check,
    )
    setup = azure_setup(config, environ, options, remote_url(config.project_dir))
    plan = plan_azure(setup)
    if args.check:
        return _check(args, console, environ, setup.subscription, plan)
    if args.json:
        console.json(plan_json(plan))
    else:
        header = f"Azure set-up for agent {setup.agent} ({args.config}), deployed by {setup.repository.slug}"
        console.data(script(plan, header).rstrip("\n"))
    return ExitCode.OK


def _check(
    args: argparse.Namespace, console: Console, environ: Mapping[str, str], subscription: str, plan: SetupPlan
) -> int:
    from agentdeploy.setup.armread import SdkArmReader
    from agentdeploy.setup.check import MISSING, check_plan
    from agentdeploy.setup.render import plan_json, report_lines
    from agentdeploy.targets.azure.auth import arm_client_factory

    reader = SdkArmReader(arm_client_factory(environ)(subscription), environ.get("AGENTDEPLOY_ARM_ENDPOINT"))
    verdicts = check_plan(plan, reader)
    missing = sum(1 for status, _ in verdicts if status == MISSING)
    if args.json:
        steps = plan_json(plan)["steps"]
        assert isinstance(steps, list)
        for step, (status, detail) in zip(steps, verdicts, strict=True):
            assert isinstance(step, dict)
            step.update(status=status, detail=detail)
        console.json({"steps": steps, "missing": missing})
    else:
        for line in report_lines(plan, verdicts):
            console.data(line)
    if missing:
        console.info(
            f"{missing} step(s) missing: run their commands (agentdeploy setup azure {args.config} prints them), "
            "then check again"
        )
        return ExitCode.FAILURE
    return ExitCode.OK
