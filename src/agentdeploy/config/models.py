"""Pydantic models of agent.yaml.

The `deployment:` section is modelled completely: every upstream HoloDeck field keeps its meaning
and default, and agentdeploy's additions sit beside them. The other top-level sections are
accepted as they are; deploying reads only the ones that name files.

Types and enums are checked here; rules that span fields, or that upstream lacks (Container Apps
name rules, cpu/memory pairs, ...), live in rules.py so that every broken rule gets its own message.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_serializer,
)
from pydantic_core import PydanticCustomError

DEFAULT_BASE_IMAGE = "ghcr.io/justinbarias/holodeck-base:latest"
DEFAULT_HEALTH_TIMEOUT_SECONDS = 120
DEFAULT_VERIFY_TIMEOUT_SECONDS = 60  # one chat turn (deployment.verify), and one evaluation case
# The HoloDeck runtime images are built for unless the config pins another (build.holodeck_version).
DEFAULT_HOLODECK_VERSION = "0.7.1"

TagStrategy = Literal["git_sha", "git_tag", "latest", "custom"]


class _Strict(BaseModel):
    """Unknown keys are errors (with a "did you mean"); YAML types are not coerced silently."""

    model_config = ConfigDict(extra="forbid", validate_default=False)


class RegistryConfig(_Strict):
    url: StrictStr = Field(description="Registry host, e.g. ghcr.io or myreg.azurecr.io")
    repository: StrictStr = Field(description="Repository inside the registry, e.g. org/agent-name")
    tag_strategy: TagStrategy = Field("git_sha", description="How the image tag is derived")
    custom_tag: StrictStr | None = Field(None, description="The tag when tag_strategy is custom")
    credentials_env_prefix: StrictStr | None = Field(
        None,
        description="Push credentials come from <PREFIX>_USERNAME and <PREFIX>_PASSWORD",
    )


class AzureAuthConfig(_Strict):
    """Container Apps built-in authentication with an existing Microsoft Entra app registration."""

    client_id: StrictStr = Field(description="Application (client) id of the Entra app registration, or ${VAR}")
    tenant_id: StrictStr = Field(description="Directory (tenant) id of the app registration, or ${VAR}")
    unauthenticated: Literal["401", "redirect"] = Field(
        "401", description="What a caller without a sign-in gets: 401, or redirect (to the Entra sign-in page)"
    )
    client_secret_setting: StrictStr | None = Field(
        None,
        description="Name of the app's secret that holds the registration's client secret (browser sign-in needs it)",
    )

    @field_validator("unauthenticated", mode="before")
    @classmethod
    def _status_code(cls, value: object) -> object:
        # `unauthenticated: 401` is a number in YAML.
        return "401" if isinstance(value, int) and not isinstance(value, bool) and value == 401 else value


# Added after the first release: left out of dumps while unset, so a config that does not use them keeps its
# config hash and recorded deployment (no false UPDATE after an upgrade).
_LATER_AZURE_KEYS = ("environment_id", "environment_resource_group", "workload_profile", "ip_allow", "auth")


class AzureTargetConfig(_Strict):
    subscription_id: StrictStr = Field(description="Azure subscription id (UUID) or ${VAR}")
    resource_group: StrictStr = Field(description="Resource group of the container app, or ${VAR}")
    environment_name: StrictStr | None = Field(
        None,
        description="Container Apps environment name (in the app's resource group, or environment_resource_group), "
        "or ${VAR}; or give environment_id",
    )
    location: StrictStr = "eastus"
    cpu: float = Field(1.0, description="vCPU; must pair with memory (0.25/0.5Gi ... 2/4Gi)")
    memory: StrictStr = Field("2Gi", description="Memory, e.g. 2Gi; must pair with cpu")
    ingress_external: StrictBool = False
    min_replicas: StrictInt = 0
    max_replicas: StrictInt = 10
    # agentdeploy additions
    app_name: StrictStr | None = Field(None, description="Container app name; defaults to the agent name")
    revision_mode: Literal["single", "multiple"] | None = Field(
        None, description="Container Apps revision mode; multiple is implied by blue-green"
    )
    registry_identity: StrictStr | None = Field(
        None,
        description="Managed identity that pulls the image: 'system' or a user-assigned identity id",
    )
    environment_id: StrictStr | None = Field(
        None,
        description="Full resource id of the Container Apps environment (any resource group), instead of "
        "environment_name; ${VAR} allowed",
    )
    environment_resource_group: StrictStr | None = Field(
        None, description="Resource group of environment_name when it is not the app's, or ${VAR}"
    )
    workload_profile: StrictStr | None = Field(
        None,
        description="Workload profile the app runs on (workload-profiles environments): Consumption, or the name "
        "of a dedicated profile",
    )
    ip_allow: list[StrictStr] | None = Field(
        None,
        description="IP addresses or CIDR ranges that may reach the ingress; every other caller gets 403. "
        "[] removes the rules; unset leaves the app's rules as they are",
    )
    auth: AzureAuthConfig | None = Field(
        None, description="Built-in authentication (Microsoft Entra ID) in front of the agent"
    )

    @model_serializer(mode="wrap")
    def _without_unset_additions(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        data: dict[str, object] = handler(self)
        for key in _LATER_AZURE_KEYS:
            if data.get(key) is None:
                data.pop(key, None)
        return data


DEFAULT_BIND = "127.0.0.1"  # the local agent answers this machine only unless the config says otherwise


class DockerTargetConfig(_Strict):
    """The local Docker engine (agentdeploy addition)."""

    container_name: StrictStr | None = Field(None, description="Container name; defaults to agentdeploy-<agent name>")
    host_port: StrictInt | None = Field(
        None, ge=1, le=65535, description="Port on localhost; defaults to deployment.port"
    )
    bind: StrictStr | None = Field(
        None,
        description=f"IP address the agent is reachable on: {DEFAULT_BIND} (the default) for this machine only, "
        "0.0.0.0 for every interface",
    )
    writable: list[StrictStr] | None = Field(
        None,
        description="Absolute paths the image's own programs write to, beyond /tmp, .holodeck/ and the home "
        "(the root filesystem is read-only): each is a volume of the container, seeded with what the image holds there",
    )

    @model_serializer(mode="wrap")
    def _without_unset_additions(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        # Added later: a config without them keeps its config hash.
        data: dict[str, object] = handler(self)
        for key in ("bind", "writable"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    @property
    def effective_bind(self) -> str:
        return self.bind or DEFAULT_BIND


class TargetConfig(_Strict):
    """Where the agent runs. A plugin target's settings are a section of its name beside these (config/providers.py
    checks the provider and those sections)."""

    model_config = ConfigDict(extra="allow", validate_default=False)
    provider: StrictStr = Field(
        "docker",
        description="azure, docker (the local engine), or a target a package installs",
        examples=["docker", "azure"],
    )
    azure: AzureTargetConfig | None = None
    docker: DockerTargetConfig | None = None
    # Upstream shapes, accepted so that the "not supported" error is the one the user sees.
    aws: dict[str, object] | None = None
    gcp: dict[str, object] | None = None


class BuildConfig(_Strict):
    base_image: StrictStr = Field(DEFAULT_BASE_IMAGE, description="Image the agent image starts FROM")
    dockerfile: StrictStr | None = Field(
        None, description="Your own Dockerfile (relative to agent.yaml); the project dir is the context"
    )
    platform: StrictStr | None = Field(None, description="Overrides deployment.platform")
    build_args: dict[str, StrictStr] = Field(default_factory=dict)
    holodeck_version: StrictStr = Field(
        DEFAULT_HOLODECK_VERSION,
        description="holodeck-ai version the image runs: verified in the base image, installed when missing",
    )


class HealthConfig(_Strict):
    path: StrictStr | None = Field(None, description="HTTP path that answers 2xx when the agent serves")
    timeout_seconds: StrictInt = Field(
        DEFAULT_HEALTH_TIMEOUT_SECONDS, description="How long a new version may take to become healthy"
    )


def _one_or_more(value: object) -> object:
    return [value] if isinstance(value, str) else value


class ChatTurnConfig(_Strict):
    """One chat turn sent to the new version before it is trusted, and what its answer must show."""

    message: StrictStr = Field(description="What to ask the agent")
    expect: list[StrictStr] = Field(
        default_factory=list, description="Text the answer must contain (case-insensitive); one or a list"
    )
    expect_tools: list[StrictStr] = Field(
        default_factory=list,
        description="Tools the agent must call for this turn (a vectorstore tool NAME is called NAME_search)",
    )

    _lists = field_validator("expect", "expect_tools", mode="before")(_one_or_more)


class VerifyConfig(_Strict):
    """Chat turns that prove the new version works (a /health verdict does not: FACTS.md). Off when empty."""

    chat: list[ChatTurnConfig] = Field(default_factory=list, description="Turns sent in one session, in order")
    timeout_seconds: StrictInt = Field(
        DEFAULT_VERIFY_TIMEOUT_SECONDS, ge=1, description="How long one chat turn may take"
    )


class ResourcesConfig(_Strict):
    """What the agent's container may use on the local engine (agentdeploy addition; Azure sizes the app with
    target.azure.cpu and memory)."""

    cpu: float = Field(1.0, description="vCPU the container may use, e.g. 0.5 or 2")
    memory: StrictStr = Field("2Gi", description="Memory the container may use (no swap beyond it), e.g. 2Gi or 512Mi")
    pids: StrictInt = Field(512, description="Processes and threads the container may run at once")


class EvaluationConfig(_Strict):
    """The evaluation gate: the agent's own test cases replayed against the new version (targets/evaluation/)."""

    source: Literal["test_cases", "verify"] = Field(
        "test_cases", description="test_cases (the agent's test_cases or test_cases_file), or verify (verify.chat)"
    )
    pass_rate: float = Field(1.0, ge=0.0, le=1.0, description="Share of cases that must pass, 0..1 (1: every case)")
    check: Literal["contains", "regex", "evaluators"] = Field(
        "contains", description="How a ground_truth is checked: contains (case-insensitive) or regex (a search)"
    )
    timeout_seconds: StrictInt = Field(
        DEFAULT_VERIFY_TIMEOUT_SECONDS, ge=1, description="How long one case (all its turns) may take"
    )


class RolloutConfig(_Strict):
    strategy: Literal["replace", "blue-green", "canary"] = "replace"
    auto_rollback: StrictBool = True
    evaluation: EvaluationConfig | None = Field(None, description="Gate the new version on its test cases")
    steps: list[StrictInt] = Field(default_factory=lambda: [5, 25, 50, 100], description="canary: % of traffic")
    bake_seconds: StrictInt = Field(60, ge=0, description="canary: how long each step runs before it is judged")
    preview_max_age_hours: StrictInt | None = Field(
        None, ge=1, le=8760, description="previews older than this are removed by the next preview run (default 72)"
    )

    @field_validator("steps")
    @classmethod
    def _rising_to_100(cls, steps: list[int]) -> list[int]:
        if not steps or any(not 1 <= s <= 100 for s in steps) or steps != sorted(set(steps)) or steps[-1] != 100:
            raise PydanticCustomError(
                "canary_steps", f"steps {steps} must rise, each 1 to 100, and end at 100 (e.g. [5, 25, 50, 100])"
            )
        return steps

    @model_serializer(mode="wrap")
    def _only_what_is_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        # Added later: a config without an evaluation, or that is no canary, keeps its config hash (no false UPDATE
        # after an upgrade).
        data: dict[str, object] = handler(self)
        for key in ("evaluation", "preview_max_age_hours"):
            if data.get(key) is None:
                data.pop(key, None)
        if self.strategy != "canary":
            data.pop("steps", None), data.pop("bake_seconds", None)
        return data

    @property
    def preview_max_age(self) -> float:
        """Seconds."""
        return float(self.preview_max_age_hours or 72) * 3600


class DeploymentConfig(_Strict):
    runtime: Literal["container"] = "container"
    registry: RegistryConfig | None = Field(None, description="Required for azure; optional for docker")
    target: TargetConfig = Field(default_factory=TargetConfig)
    protocol: Literal["rest", "ag-ui", "both"] = "rest"
    port: StrictInt = Field(8080, ge=1, le=65535)
    health_check_path: StrictStr = "/health"
    environment: dict[str, StrictStr] = Field(
        default_factory=dict, description="Runtime settings, given to the container at run time"
    )
    platform: StrictStr = "linux/amd64"
    # agentdeploy additions
    secrets: dict[str, StrictStr] = Field(
        default_factory=dict, description='NAME: "${VAR}"; Container Apps secrets, never plain env'
    )
    build: BuildConfig = Field(default_factory=BuildConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    resources: ResourcesConfig | None = Field(
        None, description="cpu, memory and pids limits of the local container (defaults: 1, 2Gi, 512)"
    )

    @model_serializer(mode="wrap")
    def _without_unset_resources(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        # Added later: a config without it keeps its config hash (no false UPDATE after an upgrade).
        data: dict[str, object] = handler(self)
        if data.get("resources") is None:
            data.pop("resources", None)
        return data

    @property
    def effective_resources(self) -> ResourcesConfig:
        return self.resources or ResourcesConfig()

    @property
    def effective_health_path(self) -> str:
        return self.health.path or self.health_check_path

    @property
    def effective_platform(self) -> str:
        return self.build.platform or self.platform


class Instructions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: StrictStr | None = None
    inline: StrictStr | None = None


class ToolRef(BaseModel):
    """Only the fields of a tool that name files or commands; the rest is the agent's business."""

    model_config = ConfigDict(extra="allow")
    name: object = None
    type: object = None
    file: object = None
    source: object = None
    command: object = None
    args: object = None
    env_file: object = None


class AgentConfig(BaseModel):
    """A whole HoloDeck agent.yaml: every top-level section of the upstream schema is accepted."""

    model_config = ConfigDict(extra="forbid")
    name: StrictStr
    description: StrictStr | None = None
    author: object = None
    model: dict[str, object]
    instructions: Instructions
    response_format: object = None
    tools: list[ToolRef] | None = None
    evaluations: object = None
    test_cases: object = None
    test_cases_file: StrictStr | None = None
    execution: object = None
    observability: object = None
    deployment: DeploymentConfig | None = None
    embedding_provider: object = None
    claude: object = None
    openai: object = None

    @property
    def deploy(self) -> DeploymentConfig:
        """The deployment section, or its defaults when the file has none (local Docker)."""
        return self.deployment if self.deployment is not None else DeploymentConfig()
