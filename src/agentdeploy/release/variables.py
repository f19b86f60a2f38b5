"""One-off variables for the agent: `deploy --env NAME[=VALUE]` (pure).

Only the names given reach the agent, never the rest of the environment: `NAME=VALUE` as written, `NAME` alone
with this shell's value. Their values are handled as secrets (masked in every output; Container Apps secrets
on Azure) and never written to the state file, which records the deployment section only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from agentdeploy.config.runtime import IMAGE_VARIABLES, RESERVED_PREFIXES, RuntimeSetting, is_reserved
from agentdeploy.errors import UsageError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def one_off_variables(
    given: Sequence[str], environ: Mapping[str, str], settings: Sequence[RuntimeSetting] = ()
) -> dict[str, str]:
    """{NAME: value} for each `--env NAME[=VALUE]`, in the order given; a name that cannot be one is refused
    (UsageError), before anything is built. `settings` are what agent.yaml already gives the agent."""
    configured = {setting.name for setting in settings}
    found: dict[str, str] = {}
    for spec in given:
        name, equals, value = spec.partition("=")
        if not _NAME.fullmatch(name):
            raise UsageError(
                f"--env {spec!r}: {name!r} is not a variable name",
                hint="use letters, digits and _, not starting with a digit: --env NAME or --env NAME=VALUE",
            )
        if is_reserved(name):
            prefixes = ", ".join(prefix + "*" for prefix in RESERVED_PREFIXES)
            raise UsageError(
                f"--env {name}: a variable of the CI runner or of agentdeploy ({prefixes}) is never given to the "
                "agent this way",
                hint=f'to give it to the agent on purpose, as a secret: deployment.secrets: {{{name}: "${{{name}}}"}}',
            )
        if name in IMAGE_VARIABLES:
            raise UsageError(
                f"--env {name}: the image sets {name} itself", hint="choose another name for the agent's variable"
            )
        if name in configured:
            raise UsageError(
                f"--env {name}: agent.yaml already gives the agent {name}",
                hint="change its value where agent.yaml sets it, or leave --env out",
            )
        if name in found:
            raise UsageError(f"--env {name} is given twice", hint="give each variable once")
        if not equals:
            if name not in environ:
                raise UsageError(
                    f"--env {name}: {name} is not set in this shell",
                    hint=f"export {name}, or give its value: --env {name}=VALUE",
                )
            value = environ[name]
        found[name] = value
    return found
