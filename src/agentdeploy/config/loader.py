"""Load agent.yaml: YAML with positions -> pydantic model -> rules. Errors point at file:line:col."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

from agentdeploy.config import providers
from agentdeploy.config.holodeck_check import check_holodeck
from agentdeploy.config.models import AgentConfig, DeploymentConfig
from agentdeploy.config.placeholders import missing_variables, substitute
from agentdeploy.config.pydantic_errors import violation_from_pydantic
from agentdeploy.config.rules import (
    ENVIRONMENT_ID_FORM,
    PLACEHOLDER_FIELDS,
    Violation,
    check_agent,
    parse_environment_id,
)
from agentdeploy.config.runtime import (
    RESERVED_PREFIXES,
    ResolvedRuntime,
    reserved_uses,
    resolve_runtime,
    runtime_settings,
    unresolved,
)
from agentdeploy.config.runtime_copy import RuntimeFile, RuntimeVariable, project_config_path, runtime_files
from agentdeploy.config.violation import dotted
from agentdeploy.config.yamlsource import KeyPath, YamlDocument, load_yaml_document
from agentdeploy.errors import (
    ConfigError,
    Location,
    MissingVariablesError,
    Problem,
    UnsupportedProviderError,
)

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails


@dataclass
class LoadedConfig:
    """A valid agent config and where it came from."""

    path: Path  # absolute path of agent.yaml
    document: YamlDocument
    agent: AgentConfig
    warnings: list[Problem] = field(default_factory=list)

    @property
    def project_dir(self) -> Path:
        """Files the config names are relative to this directory and may not leave it."""
        return self.path.parent

    @property
    def deploy(self) -> DeploymentConfig:
        return self.agent.deploy

    @functools.cached_property
    def runtime_files(self) -> list[RuntimeFile]:
        """agent.yaml (and the project config beside it) as the image carries them for the runtime."""
        return runtime_files(self.document, self.path)

    @property
    def runtime_variables(self) -> list[RuntimeVariable]:
        """Every ${VAR} the runtime resolves itself at start-up: the container must receive each one."""
        return [variable for copy in self.runtime_files for variable in copy.variables]

    def target_settings(self, name: str) -> BaseModel | None:
        """The section `deployment.target.<name>` of a plugin target, validated by the target's own model."""
        return providers.settings(self.deploy.target, name)

    def locate(self, keys: KeyPath, *, key: bool = False) -> Location:
        return self.document.locate(keys, key=key)


def load_config(path: Path | str, *, display_name: str | None = None) -> LoadedConfig:
    """Parse and validate; raises ConfigError listing every broken rule with its position."""
    path = Path(path)
    document = load_yaml_document(path, display_name or str(path))
    # The HoloDeck sections as holodeck-ai reads them; deployment: by our model, which holds our additions too.
    holodeck = [_problem(v, document) for v in check_holodeck(document.data)]
    early = holodeck + [_problem(v, document) for v in providers.check_target(document.data)]
    try:
        agent = AgentConfig.model_validate(document.data)
    except ValidationError as exc:
        problems = [
            _problem(violation_from_pydantic(error, AgentConfig), document)
            for error in exc.errors()
            if _reported(error, holodeck)
        ]
        problems = _dedupe(early + problems)
        raise ConfigError(_summary(document, problems), problems=problems) from None
    if early:
        raise ConfigError(_summary(document, early), problems=early)
    violations = check_agent(agent)
    errors = [_problem(v, document) for v in violations if not v.warning]
    errors.extend(_reserved_problems(agent, document, path))
    if errors:
        raise ConfigError(_summary(document, errors), problems=errors)
    warnings = [_problem(v, document) for v in violations if v.warning]
    project_config = project_config_path(path)
    if project_config is not None:
        warnings.append(
            Problem(
                f"{project_config.name} beside the agent config is not copied into the image: the agent in the "
                "container runs without its providers, vectorstores and execution settings",
                Location(str(Path(document.display_name).parent / project_config.name)),
                hint="put what the deployed agent needs into the agent config itself (upstream's deploy "
                "leaves the project config out too)",
            )
        )
    return LoadedConfig(path=path.resolve(), document=document, agent=agent, warnings=warnings)


def _reported(error: ErrorDetails, holodeck_problems: list[Problem]) -> bool:
    """Our model's word on a HoloDeck section only repeats what check_holodeck said about it."""
    return not holodeck_problems or error["loc"][:1] == ("deployment",)


def _reserved_problems(agent: AgentConfig, document: YamlDocument, path: Path) -> list[Problem]:
    """A runner variable (GITHUB_TOKEN, ACTIONS_ID_TOKEN_REQUEST_TOKEN, ...) the config would forward to the agent
    without naming it under deployment.secrets: each at the place that uses it."""
    deploy = agent.deploy
    variables = [variable for copy in runtime_files(document, path) for variable in copy.variables]
    problems = []
    for variable, setting in reserved_uses(runtime_settings(deploy, variables), deploy):
        where = setting.location or document.locate(setting.keys)
        problems.append(
            Problem(
                f"${{{variable}}} is a variable of the CI runner or of agentdeploy "
                f"({', '.join(prefix + '*' for prefix in RESERVED_PREFIXES)}): "
                "it is not forwarded to the agent unless deployment.secrets names it",
                where,
                hint="to give it to the agent on purpose, as a secret: "
                f'deployment.secrets: {{{variable}: "${{{variable}}}"}}',
                key=dotted(setting.keys) or None,
            )
        )
    return problems


def require_supported_target(config: LoadedConfig) -> str:
    """The provider, or UnsupportedProviderError naming what is supported."""
    provider = config.deploy.target.provider
    deployable = [repr(name) for name in providers.deployable()]
    if provider not in providers.deployable():
        raise UnsupportedProviderError(
            f"provider {provider!r} is not supported; agentdeploy deploys to "
            + ", ".join(deployable[:-1])
            + f" and {deployable[-1]}",
            location=config.locate(("deployment", "target", "provider")),
            hint="set target.provider to azure (Azure Container Apps) or docker (the local engine)",
        )
    return provider


@dataclass(frozen=True)
class ResolvedDeployment:
    """Deploy-time values: placeholders filled from the environment."""

    runtime: ResolvedRuntime
    # subscription_id, resource_group, and when set environment_name, environment_id, environment_resource_group,
    # auth.client_id, auth.tenant_id
    azure_ids: dict[str, str]


def resolve_for_deploy(
    config: LoadedConfig, environ: Mapping[str, str], *, provider: str | None = None
) -> ResolvedDeployment:
    """Fill every placeholder the deployment needs. All missing variables are reported at once.

    `provider` is where this deploy goes (it may differ from the config's, e.g. `--target docker`).
    """
    deploy = config.deploy
    settings = runtime_settings(deploy, config.runtime_variables)
    missing: list[tuple[str, Location, str | None]] = [
        (
            variable,
            setting.location or config.locate(setting.keys),
            ".".join(map(str, setting.keys)) if setting.keys else None,
        )
        for variable, setting in unresolved(settings, environ)
    ]
    azure = deploy.target.azure
    azure_ids: dict[str, str] = {}
    if azure is not None and (provider or deploy.target.provider) == "azure":
        for keys in sorted(PLACEHOLDER_FIELDS):
            value = _string_at(azure, keys[3:])
            if value is None:
                continue
            missing.extend(
                (variable, config.locate(keys), ".".join(map(str, keys)))
                for variable in missing_variables(value, environ)
            )
            if not missing_variables(value, environ):
                # Top-level ids by their name (subscription_id, ...), nested ones dotted (auth.client_id).
                azure_ids[".".join(map(str, keys[3:]))] = substitute(value, environ)
    if missing:
        problems = [
            Problem(
                f"${{{variable}}} is not set"
                + ("" if key else " (the HoloDeck runtime reads it from the container's environment)"),
                where,
                key=key,
            )
            for variable, where, key in missing
        ]
        names = sorted({variable for variable, _, _ in missing})
        raise MissingVariablesError(
            f"{len(names)} environment variable(s) needed for this deployment are not set: " + ", ".join(names),
            problems=problems,
            hint="export them (in GitHub Actions: map them from secrets in the step's env:)",
        )
    environment_id = azure_ids.get("environment_id")
    if environment_id is not None:
        problem = parse_environment_id(environment_id)
        if isinstance(problem, str):  # only a resolved ${VAR} can still be wrong here
            keys = ("deployment", "target", "azure", "environment_id")
            raise ConfigError(
                f"the environment_id resolved from the environment is not a Container Apps environment id: {problem}",
                problems=[Problem(f"{environment_id!r}: {problem}", config.locate(keys), key=".".join(keys))],
                hint=f"set the variable to {ENVIRONMENT_ID_FORM}",
            )
    return ResolvedDeployment(runtime=resolve_runtime(settings, environ), azure_ids=azure_ids)


def _string_at(model: BaseModel, keys: KeyPath) -> str | None:
    """The string at `keys` under a model (None when a step is unset)."""
    current: object = model
    for key in keys:
        current = getattr(current, str(key), None)
    return current if isinstance(current, str) else None


def _summary(document: YamlDocument, problems: list[Problem]) -> str:
    count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
    return f"{document.display_name} is not a valid agent config ({count})"


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str | None, str]] = set()
    unique = []
    for problem in problems:
        marker = (str(problem.location), problem.message)
        if marker not in seen:
            seen.add(marker)
            unique.append(problem)
    return unique


def _problem(violation: Violation, document: YamlDocument) -> Problem:
    where = violation.keys if violation.where is None else violation.where
    return Problem(
        violation.message,
        document.locate(where, key=violation.at_key),
        hint=violation.hint,
        key=dotted(violation.keys),
    )
