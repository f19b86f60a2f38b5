"""Write tests/fixtures/az_cli_params.json: the options, required options and choices of every `az` command that
`agentdeploy setup azure` prints, read from the az CLI's own argument parser (built as `az` builds it for one
command). tests/unit/test_setup_az_cli.py checks every printed command against it.

Run it with the Python of an azure-cli install, e.g.:
    python3 -m venv /tmp/az && /tmp/az/bin/pip install azure-cli     # about 90 s and 730 MB here
    AZURE_CONFIG_DIR=$(mktemp -d) /tmp/az/bin/python scripts/az_cli_params.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COMMANDS = (
    "account set",
    "account show",
    "provider register",
    "group create",
    "containerapp env show",
    "containerapp env create",
    "acr create",
    "acr show",
    "identity create",
    "identity show",
    "identity federated-credential create",
    "role assignment create",
    "keyvault show",
)
FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "az_cli_params.json"


def command_parser(name: str) -> Any:
    """The argparse parser `az` builds for one command, the way azure.cli.core's invocation builds it."""
    from azure.cli.core import get_default_cli
    from azure.cli.core.commands.events import EVENT_INVOKER_PRE_LOAD_ARGUMENTS
    from knack.events import EVENT_INVOKER_POST_CMD_TBL_CREATE

    cli = get_default_cli()
    invocation = cli.invocation_cls(
        cli_ctx=cli, parser_cls=cli.parser_cls, commands_loader_cls=cli.commands_loader_cls, help_cls=cli.help_cls
    )
    cli.invocation = invocation
    invocation.data["command_string"] = name
    loader = invocation.commands_loader
    loader.load_command_table(name.split())
    cli.raise_event(EVENT_INVOKER_PRE_LOAD_ARGUMENTS, commands_loader=loader)
    loader.command_name = name
    loader.load_arguments(name)
    cli.raise_event(EVENT_INVOKER_POST_CMD_TBL_CREATE, commands_loader=loader)
    invocation.parser.load_command_table(loader)
    words = name.split()
    return invocation.parser.subparsers[tuple(words[:-1])].choices[words[-1]]


def options_of(parser: Any) -> dict[str, Any]:
    options = {}
    for action in parser._actions:
        if not action.option_strings or action.help == "==SUPPRESS==":
            continue
        options[max(action.option_strings, key=len)] = {
            "aliases": sorted(action.option_strings),
            "required": bool(action.required),
            "choices": sorted(str(choice) for choice in action.choices) if action.choices else None,
            "takes_value": action.nargs != 0,
        }
    return options


def main() -> None:
    from azure.cli.core import __version__

    table = {name: options_of(command_parser(name)) for name in COMMANDS}
    FIXTURE.write_text(json.dumps({"azure-cli": __version__, "commands": table}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE} (azure-cli {__version__}, {len(table)} commands)", file=sys.stderr)


if __name__ == "__main__":
    main()
