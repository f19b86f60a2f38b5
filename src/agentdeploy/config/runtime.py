"""Runtime settings: which values the container gets as plain environment and which as secrets.

`environment:` values are runtime settings (never baked into the image). A value that names a
secret (by its variable name or its placeholder's) is handled as a secret even under
`environment:`, because real configs put API keys there. A placeholder anywhere else in the file
(one the runtime resolves itself) is forwarded as a secret: only `environment:` says a value is plain.

The runner's own variables (RESERVED_PREFIXES: the job token, the OIDC request token, ...) are in the
environment of every deploy; a config forwards one only by naming it under `deployment.secrets`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agentdeploy.config.models import DeploymentConfig
from agentdeploy.config.placeholders import find_placeholders, missing_variables, substitute
from agentdeploy.config.runtime_copy import RuntimeVariable
from agentdeploy.config.yamlsource import KeyPath
from agentdeploy.errors import Location
from agentdeploy.jsonvalue import JsonObject

# Set in every image agentdeploy builds: a placeholder naming one of these is filled there.
IMAGE_VARIABLES = frozenset(
    {
        "HOME",
        "USER",
        "LOGNAME",
        "PATH",
        "PORT",
        "PROTOCOL",
        "HOLODECK_PORT",
        "HOLODECK_PROTOCOL",
        "HOLODECK_AGENT_CONFIG",
    }
)

_SECRET_WORDS = frozenset(
    {
        "KEY",
        "APIKEY",
        "TOKEN",
        "SECRET",
        "SECRETS",
        "PASSWORD",
        "PASSWD",
        "PWD",
        "PASSPHRASE",
        "CREDENTIAL",
        "CREDENTIALS",
        "SAS",
        "PAT",
    }
)
_SECRET_PHRASES = ("CONNECTION_STRING", "CONNECTIONSTRING", "PRIVATE_KEY", "CLIENT_SECRET")


def looks_secret(name: str) -> bool:
    """True for names such as OPENAI_API_KEY, CLAUDE_CODE_OAUTH_TOKEN, DB_CONNECTION_STRING.

    Whole words only, so MAX_TOKENS or KEYBOARD_LAYOUT stay plain settings.
    """
    upper = name.upper()
    if any(phrase in upper for phrase in _SECRET_PHRASES):
        return True
    return any(word in _SECRET_WORDS for word in re.split(r"[^A-Z0-9]+", upper))


# Variables of the CI runner and of agentdeploy itself: never given to an agent unless deployment.secrets names them.
RESERVED_PREFIXES = ("GITHUB_", "ACTIONS_", "RUNNER_", "AGENTDEPLOY_", "AZURE_FEDERATED_TOKEN")


def is_reserved(name: str) -> bool:
    return name.upper().startswith(RESERVED_PREFIXES)


@dataclass(frozen=True)
class RuntimeSetting:
    """One variable the running agent receives. `template` may hold ${VAR} placeholders."""

    name: str
    template: str
    secret: bool
    keys: KeyPath  # where it is written in agent.yaml
    promoted: bool = False  # written under environment: but handled as a secret
    location: Location | None = None  # for a variable the runtime reads from a placeholder (no key path)

    @property
    def variables(self) -> list[str]:
        return [p.name for p in find_placeholders(self.template)]


def runtime_settings(
    deploy: DeploymentConfig, runtime_variables: Iterable[RuntimeVariable] = ()
) -> list[RuntimeSetting]:
    """What the container receives: `environment:`, `secrets:`, and every variable a placeholder in the
    runtime's copy of the config names that neither of them sets (the runtime stops on an unset one)."""
    settings: list[RuntimeSetting] = []
    for name, template in deploy.environment.items():
        placeholders = find_placeholders(template)
        secret = bool(placeholders) and (looks_secret(name) or any(looks_secret(p.name) for p in placeholders))
        settings.append(RuntimeSetting(name, template, secret, ("deployment", "environment", name), promoted=secret))
    for name, template in deploy.secrets.items():
        settings.append(RuntimeSetting(name, template, True, ("deployment", "secrets", name)))
    given = {setting.name for setting in settings} | IMAGE_VARIABLES
    for variable in runtime_variables:
        if variable.name in given:
            continue
        given.add(variable.name)
        template = "${" + variable.name + ("" if variable.default is None else ":-" + variable.default) + "}"
        # The runtime reads it from the container: a secret, since nothing says it is a plain setting.
        settings.append(RuntimeSetting(variable.name, template, True, (), location=variable.location))
    return settings


def named_in_secrets(deploy: DeploymentConfig) -> frozenset[str]:
    """The variables `deployment.secrets` forwards on purpose (the ones its placeholders name)."""
    return frozenset(p.name for template in deploy.secrets.values() for p in find_placeholders(template))


def reserved_uses(settings: Iterable[RuntimeSetting], deploy: DeploymentConfig) -> list[tuple[str, RuntimeSetting]]:
    """(variable, setting) for each runner variable a setting would forward that deployment.secrets does not name."""
    allowed = named_in_secrets(deploy)
    return [
        (variable, setting)
        for setting in settings
        for variable in setting.variables
        if is_reserved(variable) and variable not in allowed
    ]


@dataclass(frozen=True)
class Forwarded:
    """A variable of the deploy's environment that reaches the agent: its name, the container variable it fills,
    and whether it travels as a secret. Never its value."""

    variable: str
    setting: str
    secret: bool

    def as_json(self) -> JsonObject:
        return {"variable": self.variable, "as": self.setting, "secret": self.secret}

    def describe(self) -> str:
        renamed = "" if self.variable == self.setting else f" as {self.setting}"
        return f"{self.variable}{renamed} ({'secret' if self.secret else 'plain'})"


def forwarded_variables(settings: Iterable[RuntimeSetting]) -> list[Forwarded]:
    """Every variable of the deploy's environment a setting carries into the container, in the config's order."""
    found: list[Forwarded] = []
    for setting in settings:
        for variable in dict.fromkeys(setting.variables):
            found.append(Forwarded(variable, setting.name, setting.secret))
    return found


@dataclass(frozen=True)
class ResolvedRuntime:
    """Values for the container. Secret values must only go where secrets belong."""

    env: dict[str, str]
    secrets: dict[str, str]

    def secret_values(self) -> list[str]:
        return [value for value in self.secrets.values() if value]


def unresolved(settings: list[RuntimeSetting], environ: Mapping[str, str]) -> list[tuple[str, RuntimeSetting]]:
    """(variable, the setting that needs it) for every placeholder the environment cannot fill."""
    return [(variable, setting) for setting in settings for variable in missing_variables(setting.template, environ)]


def resolve_runtime(settings: list[RuntimeSetting], environ: Mapping[str, str]) -> ResolvedRuntime:
    """Fill placeholders; callers check `unresolved` first and report all missing at once."""
    env: dict[str, str] = {}
    secrets: dict[str, str] = {}
    for setting in settings:
        (secrets if setting.secret else env)[setting.name] = substitute(setting.template, environ)
    return ResolvedRuntime(env=env, secrets=secrets)
