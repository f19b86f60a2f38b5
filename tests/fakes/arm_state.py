"""The state and rules of the fake Azure Resource Manager Microsoft.App API: pure logic, no sockets.

Where the rules come from:
- ../shared/FACTS.md ("Azure Container Apps through the Python SDK");
- the az CLI recordings in ../shared/contracts/azure-cli/ for every shape: field names and casing, which fields
  are null, the PUT 201 + Azure-AsyncOperation flow, the PATCH/DELETE 202 + Location flow, revision bodies,
  JSON-string answers of revision actions, and no Retry-After header anywhere;
- error codes and messages seen in public reports of the real service. Each constant below says which.

Time-based behaviour (operations in progress, revisions provisioning, Single-mode switch-over) is computed from
the clock on every access: there are no background threads. Every method expects the caller to hold one lock.
"""

from __future__ import annotations

import copy
import ipaddress
import random
import re
import string
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

JsonDict = dict[str, Any]

# ---------------------------------------------------------------------------------------------------------------
# Words of the real service
# ---------------------------------------------------------------------------------------------------------------

# Seen verbatim in public reports of the live service (GitHub issues quoting the response body).
NAME_MESSAGE = (  # ContainerAppInvalidName
    "Invalid ContainerApp name '{name}'. A name must consist of lower case alphanumeric characters or '-', start "
    "with an alphabetic character, and end with an alphanumeric character and cannot have '--'. The length must be "
    "between 2 and 32 characters inclusive."
)
REVISION_NAME_MESSAGE = (  # ContainerAppInvalidRevisionName
    "Revision name has an invalid value '{value}'. A revision name must consist of lower case alphanumeric "
    "characters or '-', start with an alphabetic character, and end with an alphanumeric character. The length of "
    "the revision name must not be more than a combined 54 characters with the container app name."
)
ENV_VAR_MESSAGE = (  # ContainerAppInvalidEnvVarName
    "Env variable name '{name}' contains invalid character, regex used for validation is '^[-._a-zA-Z][-._a-zA-Z0-9]*$'"
)
SECRET_NULL_MESSAGE = (  # ContainerAppSecretNull, sent WITHOUT the {"error": ...} wrapper (FACTS.md)
    "Invalid Request: Container app secret(s) with name(s) '{names}' cannot have a value of null."
)
SECRET_REF_MESSAGE = "SecretRef '{ref}' defined for container '{container}' not found."  # ContainerAppSecretRefNotFound
LOCK_MESSAGE = (  # ContainerAppLockConflict: the quoted body had no {"error": ...} wrapper either
    "Cannot modify container App '{name}' because another modification is in progress. Please retry the operation."
)
# ContainerAppOperationInProgress: writes within one managed environment are serialised (FACTS.md; the message as
# microsoft/aspire#18682 and az CLI logs quote it). The status is not in those reports: 409 is what the service's
# sibling (ContainerAppsJobOperationInProgress) answers, in the usual {"error": ...} wrapper.
OPERATION_IN_PROGRESS = "ContainerAppOperationInProgress"
OPERATION_IN_PROGRESS_MESSAGE = (
    "Cannot modify a container app '{name}' because there is an active provisioning operation in progress. "
    "OperationId: '{operation}'."
)
RESOURCE_TOTAL_MESSAGE = (  # ContainerAppInvalidResourceTotal
    "The total requested CPU and memory resources for this application (CPU: {cpu}, memory: {memory}) is invalid. "
    "Total CPU and memory for all containers defined in a Container App must add up to one of the following CPU - "
    "Memory combinations: [cpu: 0.25, memory: 0.5Gi]; [cpu: 0.5, memory: 1.0Gi]; [cpu: 0.75, memory: 1.5Gi]; "
    "[cpu: 1.0, memory: 2.0Gi]; [cpu: 1.25, memory: 2.5Gi]; [cpu: 1.5, memory: 3.0Gi]; [cpu: 1.75, memory: 3.5Gi]; "
    "[cpu: 2.0, memory: 4.0Gi]"
)
INVALID_PROPERTY = "ContainerAppInvalidPropertyValue"
PROPERTY_MESSAGE = (  # ContainerAppInvalidPropertyValue (seen for scale rule names)
    "Property '{prop}' has an invalid value '{value}'. A value must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character."
)
SUFFIX_EXISTS_MESSAGE = (  # the operation's error when a revision suffix is reused (seen in a public report)
    "Failed to provision revision for container app '{app}'. Error details: The following field(s) are either "
    "invalid or missing. Field 'template.revisionsuffix' is invalid with details: 'Invalid value: \"{suffix}\": "
    "revision with suffix {suffix} already exists';."
)
BAD_CONTENT = "The request content was invalid and could not be deserialized."
NOT_FOUND_MESSAGE = (
    "The Resource 'Microsoft.App/{kind}/{name}' under resource group '{rg}' was not found. For more details please "
    "go to https://aka.ms/ARMResourceNotFoundFix"
)

# Not seen in any recording or report: plausible codes in the service's style. Tests of the deployer should key
# on the status code and message rather than on these.
CODE_TRAFFIC = "ContainerAppInvalidTrafficWeight"
CODE_SCHEMA = "ContainerAppInvalidSchema"
CODE_REVISION_NOT_FOUND = "ContainerAppRevisionNotFound"
CODE_REVISION_INACTIVE = "ContainerAppRevisionNotActive"
CODE_ENV_NOT_FOUND = "ManagedEnvironmentNotFound"  # the code is real (public reports); its status 404 is a guess
CODE_IP_RULES = "ContainerAppInvalidIpSecurityRestrictions"  # the rule (all Allow or all Deny) is the SDK's words
CODE_PROFILE = "ContainerAppInvalidWorkloadProfile"
CODE_AUTH = "AuthConfigInvalid"
# Documented (Learn: workload profiles): the Consumption profile of a workload-profiles environment runs 0.25 to
# 4 vCPU with 2Gi per vCPU (FACTS.md); the message is ours.
PROFILE_RESOURCE_MESSAGE = (
    "The total requested CPU and memory resources for this application (CPU: {cpu}, memory: {memory}) is invalid "
    "for the Consumption workload profile: CPU must be 0.25 to 4.0 in steps of 0.25, with 2.0Gi of memory per CPU."
)
AUTH_NOT_FOUND_MESSAGE = "AuthConfig '{name}' was not found for container app '{app}'."  # the code is recorded
# Labels revision mode: preview api-versions only (FACTS.md); the message is ours.
LABELS_MODE_MESSAGE = "Invalid value 'Labels' for activeRevisionsMode: the Labels mode needs a preview api-version."
# Single revision mode: "Revision weights can not be used in this mode" (the REST spec's words for Single).
SINGLE_WEIGHTS_MESSAGE = (
    "Revision weights can not be used in this mode: traffic in Single revision mode goes to the latest ready "
    'revision ({{"latestRevision": true, "weight": 100}}); revisionName \'{name}\' is not allowed.'
)
# microsoft/azure-container-apps#1705: the emitted revision's env-var secretRef to a Key Vault-backed secret is
# rewritten to one grouped name, `capp-<app>`, that configuration.secrets does not have.
KEY_VAULT_GROUPED_REF = "capp-{app}"
# SDK (GlobalValidation.unauthenticated_client_action, UnauthenticatedClientActionV2).
UNAUTHENTICATED_ACTIONS = {"redirecttologinpage", "allowanonymous", "return401", "return403"}
# An ingress with ipSecurityRestrictions refuses other callers at Envoy: 403 "RBAC: access denied"
# (microsoft/azure-container-apps#527 and #835).
IP_REFUSED_BODY = b"RBAC: access denied"
DEFAULT_CLIENT_ADDRESS = "198.51.100.20"  # the address the fake sees probes and chat turns come from (TEST-NET-2)

APP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
SUFFIX = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")
ENV_VAR = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
RFC1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DOTTED_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
MEMORY = re.compile(r"^(\d+(?:\.\d+)?)Gi$")
CONSUMPTION_PAIRS = [(q / 4, q / 2) for q in range(1, 9)]  # (cpu, memory Gi): 0.25/0.5 ... 2.0/4.0
TRANSPORTS = {"auto": "Auto", "http": "Http", "http2": "Http2", "tcp": "Tcp"}
MODES = {"single": "Single", "multiple": "Multiple"}
# healthy | unhealthy (fails its probes) | crashloop | slow (starts late), and two that only the agent's own
# answers show, because HoloDeck's /health answers HTTP 200 whatever its verdict (FACTS.md), so Container Apps'
# HTTP probes pass: verdict-unhealthy (the JSON body says "unhealthy") and mute (healthy, but every chat turn
# fails with HTTP 500, as with a missing API key).
# Running states the REST spec lacks but the service reports (FACTS.md, Azure/azure-rest-api-specs#29102):
# scale-to-zero (ScaledToZero until a request reaches the revision's own fqdn, then Running), max-scale
# (RunningAtMaxScale: healthy under load), activation-failed (ActivationFailed: terminal, an image pull
# that failed).
# never-starts: Provisioned but stuck in Activating with no replica ready, as a revision with a wrong target port
# or a container that exits shows, sometimes for long (microsoft/azure-container-apps#1219, #1502, #1217); the
# service may later turn it ActivationFailed, staged here with FakeArm.fail_revision (or its /_fake/ route).
BEHAVIOURS = (
    *("healthy", "unhealthy", "crashloop", "slow", "verdict-unhealthy", "mute"),
    *("scale-to-zero", "max-scale", "activation-failed", "never-starts"),
)
# A revision can also go bad after it ran well for a while (`fails_after` seconds after it first runs): a canary
# that passes its gate at 0% and fails later, at a chosen step. How: `unhealthy` (its probes fail: Running,
# Unhealthy, its URL answers 503) or `restarts` (its container crashes and is restarted: each replica's container
# shows restartCount 3 in the replicas API, and the revision stays Running and Healthy, as after a recovered crash)
# or `wrong-answers` (it stays Running and Healthy and its chat route still answers 200 with content, but the answer
# no longer says what it was asked, as an agent whose model or prompt went wrong: only an evaluation gate sees it).
FAILURES = ("unhealthy", "restarts", "wrong-answers")
PROBE_PASSING = ("healthy", "slow", "verdict-unhealthy", "mute", "scale-to-zero", "max-scale")
ACTIVATION_FAILED = "ImagePullFailure: failed to pull image: unexpected status from HEAD request: 404 Not Found"
# The reason a revision failed is in runningStateDetails, a field the REST spec lacks (FACTS.md: "What recorded
# real Azure sessions show"); the deadline text is the one the issues above quote.
PROGRESS_DEADLINE = "Deployment Progress Deadline Exceeded. 0/1 replicas ready."
MAX_INACTIVE_REVISIONS = 100  # FACTS.md: up to 100 inactive revisions are kept
LOCATIONS = {
    "eastus": "East US",
    "eastus2": "East US 2",
    "westus": "West US",
    "westus2": "West US 2",
    "westus3": "West US 3",
    "centralus": "Central US",
    "northeurope": "North Europe",
    "westeurope": "West Europe",
    "uksouth": "UK South",
    "francecentral": "France Central",
    "germanywestcentral": "Germany West Central",
    "swedencentral": "Sweden Central",
    "australiaeast": "Australia East",
    "japaneast": "Japan East",
    "koreacentral": "Korea Central",
    "southeastasia": "Southeast Asia",
    "canadacentral": "Canada Central",
    "brazilsouth": "Brazil South",
}


def short_location(location: str) -> str:
    return location.replace(" ", "").lower()


def display_location(location: str) -> str:
    """The recordings send and get back "East US"; the operation URLs use "eastus"."""
    return LOCATIONS.get(short_location(location), location)


# ---------------------------------------------------------------------------------------------------------------
# Replies and errors
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: Any = None  # a JSON value; None means an empty body
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, wrapped: bool = True) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.reply = error_reply(status, code, message, wrapped=wrapped)


def error_reply(status: int, code: str, message: str, *, wrapped: bool = True) -> Reply:
    inner = {"code": code, "message": message}
    return Reply(status, {"error": inner} if wrapped else inner)


def not_found(kind: str, name: str, rg: str) -> ApiError:
    return ApiError(404, "ResourceNotFound", NOT_FOUND_MESSAGE.format(kind=kind, name=name, rg=rg))


# ---------------------------------------------------------------------------------------------------------------
# Clock and formatting
# ---------------------------------------------------------------------------------------------------------------


class Clock:
    """Monotonic time for the rules, wall time for the bodies; advance() moves both forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.monotonic() + self.offset

    def wall(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)


def ticks(moment: datetime) -> str:
    """ARM's 7-digit fraction, as in the recordings: 2023-07-14T05:54:08.6800357"""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0"


def created_time(moment: datetime) -> str:
    """Revision createdTime as recorded: 2023-07-14T05:48:32+00:00"""
    return moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def random_suffix(rng: random.Random) -> str:
    """Recorded generated suffixes: 40bjk2c, vwmx6u0, 1od4kje (7 of a-z0-9, may start with a digit)."""
    return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(7))


# ---------------------------------------------------------------------------------------------------------------
# JSON helpers
# ---------------------------------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, arrays and scalars replace, null deletes."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_none(v) for v in value]
    return value


def as_dict(value: Any, where: str) -> JsonDict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, CODE_SCHEMA, f"The following field(s) are either invalid or missing. Field '{where}'.")
    return value


def as_list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ApiError(400, CODE_SCHEMA, f"The following field(s) are either invalid or missing. Field '{where}'.")
    return value


def as_number(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def as_weight(value: Any) -> int:
    """The recorded CLI sent "weight": "100" (a string) and the service answered 100."""
    if value is None:
        return 0
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or number != number or number != int(number) or not 0 <= number <= 100:
        raise ApiError(400, CODE_TRAFFIC, f"Traffic weight '{value}' is invalid. A weight must be between 0 and 100.")
    return int(number)


# ---------------------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Environment:
    sub: str
    rg: str
    name: str
    location: str  # short form: eastus
    domain: str
    static_ip: str
    created: datetime
    customer_id: str
    workload_profiles: list[JsonDict] | None = None  # None: a Consumption-only environment

    @property
    def id(self) -> str:
        group = f"/subscriptions/{self.sub}/resourceGroups/{self.rg}"
        return f"{group}/providers/Microsoft.App/managedEnvironments/{self.name}"


@dataclass
class Operation:
    id: str
    kind: str  # "put", "patch" or "delete"
    sub: str
    app_key: tuple[str, str, str]
    location: str
    started: float
    started_wall: datetime
    duration: float
    failure: JsonDict | None = None  # {"code", "message"} when it ends Failed

    def status(self, now: float) -> str:
        if now < self.started + self.duration:
            return "InProgress"
        return "Failed" if self.failure else "Succeeded"


@dataclass
class Revision:
    name: str
    suffix: str  # "" when generated
    template: JsonDict  # the app template it was made from
    created: float
    created_wall: datetime
    delay: float  # provisioning delay when it was created
    behaviour: str
    start_seconds: float
    active: bool = True
    started: float = 0.0  # last (re)start: creation, activation or restart
    deactivate_at: float | None = None
    switched: bool = False  # Single mode: the switch-over to this revision has been done
    woken: bool = False  # scale-to-zero: a request reached it, so a replica runs
    failed_details: str | None = None  # set by fail_revision: the service gave up on it (ActivationFailed)
    fails_after: float | None = None  # seconds after it first runs when it goes bad (FAILURES), if ever
    failure: str = "unhealthy"

    def gone_bad(self, now: float, how: str) -> bool:
        return self.fails_after is not None and self.failure == how and now >= self.runs_at + self.fails_after

    @property
    def provisioned_at(self) -> float:
        return self.created + self.delay + self.start_seconds

    @property
    def runs_at(self) -> float:
        return max(self.provisioned_at, self.started + self.delay + self.start_seconds)

    def ready(self, now: float) -> bool:
        """Counts for latestReadyRevisionName: provisioned and passing its probes."""
        return self.behaviour in PROBE_PASSING and now >= self.provisioned_at


@dataclass
class RevisionState:
    provisioning: str
    running: str
    health: str
    replicas: int
    error: str | None = None  # provisioningError
    details: str | None = None  # runningStateDetails

    @property
    def serving(self) -> bool:
        return self.running in ("Running", "RunningAtMaxScale") and self.health == "Healthy"


def revision_state(rev: Revision, now: float, min_replicas: int) -> RevisionState:
    """Provisioning -> Provisioned | Failed; Processing -> Running | Degraded | Failed; Stopped when inactive."""
    if now < rev.provisioned_at:
        return RevisionState("Provisioning", "Stopped" if not rev.active else "Processing", "None", 0)
    replicas = max(1, min_replicas)
    if rev.behaviour == "crashloop":
        if not rev.active:
            return RevisionState("Failed", "Stopped", "None", 0)
        if now < rev.provisioned_at + rev.delay:
            return RevisionState("Provisioning", "Degraded", "Unhealthy", replicas)
        error = "Container crashing: CrashLoopBackOff"
        return RevisionState("Failed", "Failed", "Unhealthy", 0, error, PROGRESS_DEADLINE)
    if not rev.active:
        return RevisionState("Provisioned", "Stopped", "None", 0)
    if rev.failed_details is not None:
        return RevisionState("Provisioned", "ActivationFailed", "Unhealthy", 0, None, rev.failed_details)
    if rev.behaviour == "activation-failed":
        return RevisionState("Provisioned", "ActivationFailed", "Unhealthy", 0, None, ACTIVATION_FAILED)
    if rev.behaviour == "never-starts":
        return RevisionState("Provisioned", "Activating", "None", 0)
    if now < rev.runs_at:
        return RevisionState("Provisioned", "Processing", "None", 0)
    if rev.behaviour == "scale-to-zero" and not rev.woken:
        return RevisionState("Provisioned", "ScaledToZero", "None", 0)
    if rev.behaviour == "max-scale":
        return RevisionState("Provisioned", "RunningAtMaxScale", "Healthy", replicas)
    health = "Unhealthy" if rev.behaviour == "unhealthy" or rev.gone_bad(now, "unhealthy") else "Healthy"
    return RevisionState("Provisioned", "Running", health, replicas)


@dataclass
class App:
    sub: str
    rg: str
    name: str
    env: Environment
    spec: JsonDict  # the desired state, normalised, secret values included
    created_wall: datetime
    modified_wall: datetime
    outbound_ip: str
    revisions: list[Revision] = field(default_factory=list)
    latest_revision: str = ""
    op: Operation | None = None
    principal_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    auth_configs: dict[str, JsonDict] = field(default_factory=dict)  # name (lower case) -> the stored resource

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.sub.lower(), self.rg.lower(), self.name)

    @property
    def config(self) -> JsonDict:
        return self.spec["properties"]["configuration"]  # type: ignore[no-any-return]

    @property
    def template(self) -> JsonDict:
        return self.spec["properties"]["template"]  # type: ignore[no-any-return]

    @property
    def mode(self) -> str:
        return self.config["activeRevisionsMode"]  # type: ignore[no-any-return]

    def revision(self, name: str) -> Revision | None:
        return next((r for r in self.revisions if r.name == name), None)

    def busy(self, now: float) -> bool:
        return self.op is not None and self.op.status(now) == "InProgress"


@dataclass
class ImageRule:
    behaviour: str
    start_seconds: float
    fails_after: float | None = None  # the revision goes bad this long after it first runs (FAILURES)
    failure: str = "unhealthy"


@dataclass
class WritePlan:
    revision: str | None = None  # the revision this write makes, if any
    failure: JsonDict | None = None  # the error its operation will end with, if any
    answer: JsonDict | None = None  # the immediate answer of a PUT


# ---------------------------------------------------------------------------------------------------------------
# Normalisation of a container app body into the stored desired state
# ---------------------------------------------------------------------------------------------------------------

CONFIG_KEYS = ("secrets", "activeRevisionsMode", "ingress", "registries", "dapr", "maxInactiveRevisions", "service")
TEMPLATE_KEYS = (
    "revisionSuffix",
    "terminationGracePeriodSeconds",
    "containers",
    "initContainers",
    "scale",
    "volumes",
    "serviceBinds",
)
INGRESS_KEYS = (
    "fqdn",
    "external",
    "targetPort",
    "exposedPort",
    "transport",
    "traffic",
    "customDomains",
    "allowInsecure",
    "ipSecurityRestrictions",
    "corsPolicy",
    "clientCertificateMode",
    "stickySessions",
)


def normalize_app(body: JsonDict, api_version: str = "", stored_mode: str | None = None) -> JsonDict:
    """The desired state as the service echoes it (recorded): defaults filled, enums cased, nulls where recorded."""
    props = as_dict(body.get("properties"), "properties")
    config = as_dict(props.get("configuration"), "configuration")
    template = as_dict(props.get("template"), "template")
    identity = body.get("identity")
    identity = drop_none(identity) if isinstance(identity, dict) and identity.get("type") else {"type": "None"}
    conf: JsonDict = {
        "secrets": normalize_secrets(config.get("secrets")),
        "activeRevisionsMode": normalize_mode(config.get("activeRevisionsMode"), api_version, stored_mode),
        "ingress": normalize_ingress(config.get("ingress")),
        "registries": config.get("registries"),
        "dapr": config.get("dapr"),
        "maxInactiveRevisions": config.get("maxInactiveRevisions"),
        "service": config.get("service"),
    }
    conf.update({k: v for k, v in config.items() if k not in CONFIG_KEYS and v is not None})
    tmpl: JsonDict = {
        "revisionSuffix": template.get("revisionSuffix") or "",
        "terminationGracePeriodSeconds": template.get("terminationGracePeriodSeconds"),
        "containers": [normalize_container(c, "containers") for c in as_list(template.get("containers"), "containers")],
        "initContainers": (
            [normalize_container(c, "initContainers", resources=False) for c in template["initContainers"]]
            if isinstance(template.get("initContainers"), list)
            else None
        ),
        "scale": normalize_scale(template.get("scale")),
        "volumes": template.get("volumes"),
        "serviceBinds": template.get("serviceBinds"),
    }
    tmpl.update({k: v for k, v in template.items() if k not in TEMPLATE_KEYS and v is not None})
    env_id = props.get("environmentId") or props.get("managedEnvironmentId")
    return {
        "location": body.get("location"),
        "tags": body.get("tags") or None,
        "identity": identity,
        "properties": {
            "environmentId": env_id,
            "workloadProfileName": props.get("workloadProfileName"),
            "configuration": conf,
            "template": tmpl,
        },
    }


def normalize_mode(value: Any, api_version: str = "", stored: str | None = None) -> str:
    if value is None:
        return "Single"
    if str(value).lower() == "labels":
        if "preview" not in api_version.lower() and stored != "Labels":
            raise ApiError(400, CODE_SCHEMA, LABELS_MODE_MESSAGE)
        return "Labels"
    mode = MODES.get(str(value).lower())
    if mode is None:
        raise ApiError(400, CODE_SCHEMA, f"Invalid value '{value}' for activeRevisionsMode: Single or Multiple.")
    return mode


def normalize_secrets(value: Any) -> list[JsonDict] | None:
    secrets = [drop_none(as_dict(s, "secrets")) for s in as_list(value, "configuration.secrets")]
    return secrets or None


def normalize_ingress(value: Any) -> JsonDict | None:
    if value is None:
        return None
    ingress = as_dict(value, "configuration.ingress")
    transport = ingress.get("transport")
    out = {
        "external": bool(ingress.get("external") or False),
        "targetPort": ingress.get("targetPort"),
        "exposedPort": ingress.get("exposedPort") or 0,
        "transport": TRANSPORTS.get(str(transport).lower(), transport) if transport else "Auto",
        "traffic": normalize_traffic(ingress.get("traffic")),
        "customDomains": ingress.get("customDomains"),
        "allowInsecure": bool(ingress.get("allowInsecure") or False),
        "ipSecurityRestrictions": ingress.get("ipSecurityRestrictions") or None,  # recorded: [] comes back null
        "corsPolicy": ingress.get("corsPolicy"),
        "clientCertificateMode": ingress.get("clientCertificateMode"),
        "stickySessions": ingress.get("stickySessions"),
    }
    out.update({k: v for k, v in ingress.items() if k not in INGRESS_KEYS and v is not None})
    return out


def normalize_traffic(value: Any) -> list[JsonDict]:
    """Omitted traffic becomes [{"weight": 100, "latestRevision": true}] (recorded); latestRevision false is dropped."""
    entries = as_list(value, "ingress.traffic")
    if not entries:
        return [{"weight": 100, "latestRevision": True}]
    out = []
    for raw in entries:
        entry = as_dict(raw, "ingress.traffic")
        latest = entry.get("latestRevision") in (True, "true", "True")
        name = entry.get("revisionName")
        if latest and name:
            raise ApiError(400, CODE_TRAFFIC, "A traffic entry cannot have both revisionName and latestRevision.")
        if not latest and not name and not entry.get("label"):
            raise ApiError(400, CODE_TRAFFIC, "A traffic entry needs a revisionName or latestRevision set to true.")
        item: JsonDict = {}
        if name:
            item["revisionName"] = name
        item["weight"] = as_weight(entry.get("weight"))
        if latest:
            item["latestRevision"] = True
        if entry.get("label"):
            item["label"] = entry["label"]
        out.append(item)
    return out


QUANTITY = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti)$")


def normalize_quantity(value: Any) -> Any:
    """The service echoes a quantity in its shortest form (FACTS.md: "1.0Gi" comes back as "1Gi")."""
    match = QUANTITY.match(value) if isinstance(value, str) else None
    return f"{float(match.group(1)):g}{match.group(2)}" if match else value


def normalize_container(value: Any, where: str, *, resources: bool = True) -> JsonDict:
    container = as_dict(value, f"template.{where}")
    # Recorded echo: `env: []` comes back with no `env` key at all (FACTS.md).
    out = {
        k: drop_none(v)
        for k, v in container.items()
        if v is not None and k != "resources" and not (k == "env" and v == [])
    }
    given = as_dict(container.get("resources"), f"template.{where}.resources")
    cpu, memory = given.get("cpu"), given.get("memory")
    if cpu is None and memory is None:
        if not resources:
            return out
        cpu, memory = 0.5, "1Gi"  # recorded default
    cpu = as_number(cpu)
    res: JsonDict = {"cpu": cpu, "memory": normalize_quantity(memory)}
    if isinstance(cpu, float) and cpu > 0:
        res["ephemeralStorage"] = f"{cpu * 4:g}Gi"  # recorded: 0.5 -> 2Gi, 1.0 -> 4Gi whatever was sent
    out["resources"] = res
    return out


def normalize_scale(value: Any) -> JsonDict:
    scale = as_dict(value, "template.scale")
    out = {
        "minReplicas": scale.get("minReplicas"),
        "maxReplicas": scale.get("maxReplicas") if scale.get("maxReplicas") is not None else 10,
        "rules": [drop_none(r) for r in as_list(scale.get("rules"), "scale.rules")] or None,
    }
    out.update({k: v for k, v in scale.items() if k not in out and v is not None})
    return out


def emitted_template(app_name: str, template: JsonDict, config: JsonDict) -> JsonDict:
    """The template a new revision keeps: the app's, with every env-var secretRef to a Key Vault-backed secret
    rewritten to `capp-<app>` (microsoft/azure-container-apps#1705; the app's own template keeps the names)."""
    emitted = copy.deepcopy(template)
    vault = {s.get("name") for s in config.get("secrets") or [] if s.get("keyVaultUrl")}
    for container in emitted.get("containers") or []:
        for variable in container.get("env") or []:
            if variable.get("secretRef") in vault:
                variable["secretRef"] = KEY_VAULT_GROUPED_REF.format(app=app_name)
    return emitted


def revision_scope(template: JsonDict) -> JsonDict:
    """What makes a new revision (FACTS.md): the whole template but the suffix, compared separately."""
    return {k: v for k, v in template.items() if k != "revisionSuffix"}


# ---------------------------------------------------------------------------------------------------------------
# Validation of the desired state
# ---------------------------------------------------------------------------------------------------------------


def validate_spec(spec: JsonDict, app_name: str, env: Environment | None = None) -> None:
    config, template = spec["properties"]["configuration"], spec["properties"]["template"]
    kind = profile_kind(env, spec["properties"].get("workloadProfileName"))
    if config.get("ingress"):
        validate_ip_restrictions(config["ingress"].get("ipSecurityRestrictions"))
    secret_names = validate_secrets(config.get("secrets") or [])
    containers = template["containers"]
    if not containers:
        raise ApiError(
            400,
            CODE_SCHEMA,
            "The following field(s) are either invalid or missing. Field 'template.containers' is invalid with "
            "details: 'Invalid value: null: at least one container is required';.",
        )
    for container in containers + (template.get("initContainers") or []):
        name, image = container.get("name"), container.get("image")
        if not isinstance(name, str) or not RFC1123.match(name) or len(name) > 63:
            raise ApiError(
                400,
                CODE_SCHEMA,
                f'The following field(s) are either invalid or missing. Invalid value: "{name}": Invalid Name: Per '
                "RFC 1123 name must consist of lower case alphanumeric characters or '-', and must start and end "
                "with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
                "'[a-z0-9]([-a-z0-9]*[a-z0-9])?'): template.containers.",
            )
        if not isinstance(image, str) or not image:
            raise ApiError(
                400,
                CODE_SCHEMA,
                f"The following field(s) are either invalid or missing. Field 'template.containers.{name}.image' is "
                "invalid with details: 'Invalid value: \"\": image is required';.",
            )
        for variable in as_list(container.get("env"), "env"):
            variable_name = variable.get("name") if isinstance(variable, dict) else None
            if not isinstance(variable_name, str) or not ENV_VAR.match(variable_name):
                raise ApiError(400, "ContainerAppInvalidEnvVarName", ENV_VAR_MESSAGE.format(name=variable_name))
            ref = variable.get("secretRef")
            if ref is not None and ref not in secret_names:
                message = SECRET_REF_MESSAGE.format(ref=ref, container=name)
                raise ApiError(400, "ContainerAppSecretRefNotFound", message)
    validate_resources(containers, kind)
    validate_scale(template["scale"])
    suffix = template["revisionSuffix"]
    if suffix and (not SUFFIX.match(suffix) or "--" in suffix or len(app_name) + 2 + len(suffix) > 54):
        raise ApiError(400, "ContainerAppInvalidRevisionName", REVISION_NAME_MESSAGE.format(value=suffix))
    for registry in as_list(config.get("registries"), "registries"):
        ref = registry.get("passwordSecretRef") if isinstance(registry, dict) else None
        if ref is not None and ref not in secret_names:
            message = SECRET_REF_MESSAGE.format(ref=ref, container=registry.get("server"))
            raise ApiError(400, "ContainerAppSecretRefNotFound", message)
    # Scale rule auth secretRefs are NOT checked: the recorded create sent secretRef "secretref" with no secrets
    # at all and the live service answered 201.


def validate_secrets(secrets: list[JsonDict]) -> set[str]:
    names = [s.get("name") for s in secrets]
    bad = [n for n in names if not isinstance(n, str) or not DOTTED_NAME.match(n) or len(n) > 253]
    if bad or len(set(names)) != len(names):
        listed = ", ".join(str(n) for n in (bad or names))
        raise ApiError(
            400,
            "ContainerAppSecretInvalid",
            f"Invalid Request: Container app secret(s) with name(s) '{listed}' are invalid: a secret name must be "
            "unique, consist of lower case alphanumeric characters, '-' or '.', and start and end with an "
            "alphanumeric character.",
        )
    empty = [s["name"] for s in secrets if not s.get("value") and not s.get("keyVaultUrl")]
    if empty:
        raise ApiError(400, "ContainerAppSecretNull", SECRET_NULL_MESSAGE.format(names=",".join(empty)), wrapped=False)
    return set(names)  # type: ignore[arg-type]


def profile_kind(env: Environment | None, profile: Any) -> str:
    """How the app's resources are judged: "plan" (a Consumption-only environment), "consumption" (the Consumption
    profile of a workload-profiles environment) or "dedicated" (a dedicated profile: its machine sets the limits)."""
    if env is None or not env.workload_profiles:
        if profile:
            raise ApiError(
                400,
                CODE_PROFILE,
                f"Workload profile '{profile}' cannot be used: managed environment '{env.name if env else ''}' has no "
                "workload profiles.",
            )
        return "plan"
    if not profile:
        return "consumption"  # not recorded: taken to run on the environment's Consumption profile
    found = next((p for p in env.workload_profiles if str(p.get("name", "")).lower() == str(profile).lower()), None)
    if found is None:
        raise ApiError(
            400, CODE_PROFILE, f"Workload profile '{profile}' was not found in managed environment '{env.name}'."
        )
    return "consumption" if str(found.get("workloadProfileType", "")).lower() == "consumption" else "dedicated"


def validate_ip_restrictions(value: Any) -> None:
    """{name, ipAddressRange, action} each (SDK: all three required), and all Allow or all Deny (FACTS.md)."""
    actions = set()
    for raw in as_list(value, "ingress.ipSecurityRestrictions"):
        rule = as_dict(raw, "ingress.ipSecurityRestrictions")
        name, address, action = rule.get("name"), rule.get("ipAddressRange"), rule.get("action")
        if not isinstance(name, str) or not name or not isinstance(address, str):
            raise ApiError(
                400,
                CODE_SCHEMA,
                "The following field(s) are either invalid or missing. Field 'ingress.ipSecurityRestrictions' needs "
                "name, ipAddressRange and action.",
            )
        try:
            ipaddress.ip_network(address, strict=False)
        except ValueError:
            raise ApiError(
                400, CODE_IP_RULES, f"IP security restriction '{name}' has an invalid ipAddressRange '{address}'."
            ) from None
        if str(action).lower() not in ("allow", "deny"):
            raise ApiError(400, CODE_IP_RULES, f"IP security restriction '{name}' has an invalid action '{action}'.")
        actions.add(str(action).lower())
    if len(actions) > 1:
        raise ApiError(
            400, CODE_IP_RULES, "IP security restrictions must all be Allow or all be Deny: mixing them is not allowed."
        )


def validate_resources(containers: list[JsonDict], kind: str = "plan") -> None:
    if kind != "plan":
        validate_profile_resources(containers, kind)
        return
    total_cpu, total_memory, shown_cpu, shown_memory = 0.0, 0.0, [], []
    valid = True
    for container in containers:
        cpu, memory = container["resources"]["cpu"], container["resources"]["memory"]
        shown_cpu.append(str(cpu))
        shown_memory.append(str(memory))
        match = MEMORY.match(memory) if isinstance(memory, str) else None
        if not isinstance(cpu, float) or match is None:
            valid = False
            continue
        total_cpu += cpu
        total_memory += float(match.group(1))
    pair_ok = any(abs(total_cpu - c) < 1e-9 and abs(total_memory - m) < 1e-9 for c, m in CONSUMPTION_PAIRS)
    if not valid or not pair_ok:
        cpu_text = f"{total_cpu:g}" if valid else "+".join(shown_cpu)
        memory_text = f"{total_memory:.1f}" if valid else "+".join(shown_memory)
        raise ApiError(
            400, "ContainerAppInvalidResourceTotal", RESOURCE_TOTAL_MESSAGE.format(cpu=cpu_text, memory=memory_text)
        )


def validate_profile_resources(containers: list[JsonDict], kind: str) -> None:
    total_cpu, total_memory, shown = 0.0, 0.0, []
    for container in containers:
        cpu, memory = container["resources"]["cpu"], container["resources"]["memory"]
        match = MEMORY.match(memory) if isinstance(memory, str) else None
        shown.append((cpu, memory))
        if not isinstance(cpu, float) or match is None or cpu <= 0 or float(match.group(1)) <= 0:
            cpus, memories = "+".join(str(c) for c, _ in shown), "+".join(str(m) for _, m in shown)
            raise ApiError(
                400,
                "ContainerAppInvalidResourceTotal",
                f"The requested CPU and memory resources (CPU: {cpus}, memory: {memories}) are invalid.",
            )
        total_cpu += cpu
        total_memory += float(match.group(1))
    if kind == "consumption":
        quarters = total_cpu * 4
        if total_cpu > 4 or abs(quarters - round(quarters)) > 1e-9 or abs(total_memory - 2 * total_cpu) > 1e-9:
            message = PROFILE_RESOURCE_MESSAGE.format(cpu=f"{total_cpu:g}", memory=f"{total_memory:.1f}")
            raise ApiError(400, "ContainerAppInvalidResourceTotal", message)


def validate_scale(scale: JsonDict) -> None:
    low, high = scale.get("minReplicas"), scale["maxReplicas"]
    if low is not None and (not isinstance(low, int) or not 0 <= low <= 1000):
        raise ApiError(400, INVALID_PROPERTY, f"Property 'scale.minReplicas' has an invalid value '{low}'.")
    if not isinstance(high, int) or not 1 <= high <= 1000 or (isinstance(low, int) and low > high):
        raise ApiError(400, INVALID_PROPERTY, f"Property 'scale.maxReplicas' has an invalid value '{high}'.")
    for rule in scale.get("rules") or []:
        name = rule.get("name") if isinstance(rule, dict) else None
        if not isinstance(name, str) or not DOTTED_NAME.match(name):
            raise ApiError(400, INVALID_PROPERTY, PROPERTY_MESSAGE.format(prop="rules.name", value=name))


# ---------------------------------------------------------------------------------------------------------------
# The state
# ---------------------------------------------------------------------------------------------------------------


class ArmState:
    """Subscriptions, resource groups, managed environments, container apps, revisions and operations."""

    def __init__(self, *, provisioning_delay: float = 0.0, env_domain: str, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.provisioning_delay = provisioning_delay
        self.deactivation_delay = 0.0
        self.env_domain = env_domain
        self.base_url = "https://127.0.0.1"
        self.rng = random.Random()
        self.resource_groups: dict[tuple[str, str], tuple[str, str]] = {}  # (sub, rg) lower -> (display, location)
        self.environments: dict[tuple[str, str, str], Environment] = {}
        self.apps: dict[tuple[str, str, str], App] = {}
        self.operations: dict[str, Operation] = {}
        self.image_rules: dict[str, ImageRule] = {}
        self.pending_failures: list[JsonDict] = []
        self.verification_ids: dict[str, str] = {}
        self.client_address = DEFAULT_CLIENT_ADDRESS  # where probes and chat turns from outside come from

    # -- set-up ------------------------------------------------------------------------------------------------

    def add_resource_group(self, sub: str, name: str, location: str) -> None:
        self.resource_groups[(sub.lower(), name.lower())] = (name, short_location(location))

    def add_environment(
        self,
        sub: str,
        rg: str,
        name: str,
        location: str,
        domain: str | None,
        workload_profiles: list[JsonDict] | None = None,
    ) -> Environment:
        if (sub.lower(), rg.lower()) not in self.resource_groups:
            self.add_resource_group(sub, rg, location)
        env = Environment(
            sub=sub,
            rg=self.resource_groups[(sub.lower(), rg.lower())][0],
            name=name,
            location=short_location(location),
            domain=(domain or self.env_domain).lower(),
            static_ip=self._ip(),
            created=self.clock.wall(),
            customer_id=str(uuid.uuid4()),
            workload_profiles=copy.deepcopy(workload_profiles) if workload_profiles else None,
        )
        self.environments[(sub.lower(), rg.lower(), name.lower())] = env
        return env

    def set_image_behaviour(
        self, image: str, behaviour: str, start_seconds: float, fails_after: float | None = None, failure: str = ""
    ) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"behaviour must be one of {BEHAVIOURS}")
        if failure and failure not in FAILURES:
            raise ValueError(f"failure must be one of {FAILURES}")
        self.image_rules[image] = ImageRule(behaviour, start_seconds, fails_after, failure or "unhealthy")

    def fail_next_operation(self, code: str, message: str | None) -> None:
        self.pending_failures.append({"code": code, "message": message})

    def _ip(self) -> str:
        return "20.{}.{}.{}".format(*(self.rng.randint(1, 254) for _ in range(3)))

    # -- time ----------------------------------------------------------------------------------------------------

    def settle(self) -> None:
        """Bring every app up to now: finished deletions, Single-mode switch-over, deactivation timers, pruning."""
        now = self.clock.now()
        for key, app in list(self.apps.items()):
            op = app.op
            if op and op.kind == "delete" and op.status(now) == "Succeeded":
                del self.apps[key]
                continue
            self._run_timers(app, now)
            if app.mode == "Single":
                latest_ready = self.latest_ready(app, now)
                if latest_ready and not latest_ready.switched:
                    latest_ready.switched = True
                    pinned = {t.get("revisionName") for t in self.traffic_entries(app) if t["weight"] > 0}
                    for rev in app.revisions:
                        keep = rev is latest_ready or not rev.active or rev.name in pinned
                        if not keep and rev.deactivate_at is None:
                            rev.deactivate_at = latest_ready.provisioned_at + self.deactivation_delay
                    self._run_timers(app, now)
            self._prune(app)

    @staticmethod
    def _run_timers(app: App, now: float) -> None:
        for rev in app.revisions:
            if rev.deactivate_at is not None and now >= rev.deactivate_at:
                rev.active, rev.deactivate_at = False, None

    @staticmethod
    def _prune(app: App) -> None:
        limit = app.config.get("maxInactiveRevisions")
        limit = limit if isinstance(limit, int) and limit >= 0 else MAX_INACTIVE_REVISIONS
        inactive = [r for r in app.revisions if not r.active and r.name != app.latest_revision]
        for rev in inactive[: max(0, len(inactive) - limit)]:
            app.revisions.remove(rev)

    @staticmethod
    def latest_ready(app: App, now: float) -> Revision | None:
        return next((r for r in reversed(app.revisions) if r.ready(now)), None)

    # -- look-ups ------------------------------------------------------------------------------------------------

    def require_group(self, sub: str, rg: str) -> str:
        if not any(s == sub.lower() for s, _ in self.resource_groups):
            raise ApiError(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.")
        group = self.resource_groups.get((sub.lower(), rg.lower()))
        if group is None:
            raise ApiError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
        return group[0]

    def find_app(self, sub: str, rg: str, name: str) -> App | None:
        return self.apps.get((sub.lower(), rg.lower(), name.lower()))

    def require_app(self, sub: str, rg: str, name: str) -> App:
        self.require_group(sub, rg)
        app = self.find_app(sub, rg, name)
        if app is None:
            raise not_found("containerApps", name, rg)
        return app

    def environment_by_id(self, env_id: Any) -> Environment | None:
        if not isinstance(env_id, str):
            return None
        parts = [p for p in env_id.split("/") if p]
        lowered = [p.lower() for p in parts]
        if len(parts) != 8 or lowered[0] != "subscriptions" or lowered[6] != "managedenvironments":
            return None
        return self.environments.get((lowered[1], lowered[3], lowered[7]))

    def behaviour_of(self, template: JsonDict) -> ImageRule:
        """The worst behaviour among the revision's containers (exact image first, then the longest prefix)."""
        order = [
            *("healthy", "max-scale", "scale-to-zero", "slow", "mute"),
            *("verdict-unhealthy", "unhealthy", "never-starts", "activation-failed", "crashloop"),
        ]
        rules = []
        for container in template["containers"]:
            image = container.get("image", "")
            prefixes = [p for p in self.image_rules if image.startswith(p)]
            if image in self.image_rules:
                rules.append(self.image_rules[image])
            elif prefixes:
                rules.append(self.image_rules[max(prefixes, key=len)])
        if not rules:
            return ImageRule("healthy", 0.0)
        worst = max((r.behaviour for r in rules), key=order.index)
        failing = min((r for r in rules if r.fails_after is not None), key=lambda r: r.fails_after or 0.0, default=None)
        start = max(r.start_seconds for r in rules)
        if failing is None:
            return ImageRule(worst, start)
        return ImageRule(worst, start, failing.fails_after, failing.failure)

    # -- traffic -------------------------------------------------------------------------------------------------

    def traffic_entries(self, app: App) -> list[JsonDict]:
        ingress = app.config.get("ingress")
        return ingress["traffic"] if ingress else [{"weight": 100, "latestRevision": True}]

    def latest_target(self, app: App, now: float) -> Revision | None:
        """latestRevision: the latest ready revision in Single mode (traffic moves only once it is ready); the
        latest revision in Multiple mode (recorded: a still-Provisioning new revision listed trafficWeight 100)."""
        latest = app.revision(app.latest_revision)
        if app.mode == "Single":
            return self.latest_ready(app, now) or latest
        return latest

    def traffic_weights(self, app: App, now: float) -> dict[str, int]:
        weights: dict[str, int] = {}
        latest = self.latest_target(app, now)
        for entry in self.traffic_entries(app):
            name = latest.name if entry.get("latestRevision") and latest else entry.get("revisionName")
            rev = app.revision(name) if name else None
            if rev is not None and rev.active:
                weights[rev.name] = weights.get(rev.name, 0) + entry["weight"]
        return weights

    def validate_traffic(self, app_name: str, spec: JsonDict, revisions: list[Revision], new_name: str | None) -> None:
        ingress = spec["properties"]["configuration"]["ingress"]
        if ingress is None:
            return
        entries = ingress["traffic"]
        total = sum(e["weight"] for e in entries)
        if total != 100:
            raise ApiError(400, CODE_TRAFFIC, f"The sum of traffic weights must be 100 (it is {total}).")
        single = spec["properties"]["configuration"]["activeRevisionsMode"] == "Single"
        if single and sum(1 for e in entries if e["weight"] > 0) > 1:
            raise ApiError(400, CODE_TRAFFIC, "Traffic can only be split between revisions in Multiple mode.")
        named = next((e["revisionName"] for e in entries if e.get("revisionName")), None)
        if single and named:
            raise ApiError(400, CODE_TRAFFIC, SINGLE_WEIGHTS_MESSAGE.format(name=named))
        by_name = {r.name: r for r in revisions}
        labels: set[str] = set()
        for entry in entries:
            name = entry.get("revisionName")
            if name and name != new_name:
                rev = by_name.get(name)
                if rev is None:
                    message = f"Revision '{name}' was not found in container app '{app_name}'."
                    raise ApiError(400, CODE_REVISION_NOT_FOUND, message)
                if not rev.active:
                    message = f"Revision '{name}' is not active: activate it before sending traffic to it."
                    raise ApiError(400, CODE_REVISION_INACTIVE, message)
            label = entry.get("label")
            if label is not None:
                if not isinstance(label, str) or not SUFFIX.match(label) or "--" in label or len(label) > 64:
                    raise ApiError(400, INVALID_PROPERTY, PROPERTY_MESSAGE.format(prop="traffic.label", value=label))
                if label in labels:
                    raise ApiError(400, CODE_TRAFFIC, f"The label '{label}' is used by more than one traffic entry.")
                labels.add(label)

    # -- container app writes ------------------------------------------------------------------------------------

    def put_app(self, sub: str, rg: str, name: str, body: Any, api_version: str) -> Reply:
        if not APP_NAME.match(name) or "--" in name:
            raise ApiError(400, "ContainerAppInvalidName", NAME_MESSAGE.format(name=name))
        rg_name = self.require_group(sub, rg)
        existing = self.find_app(sub, rg, name)
        if existing and existing.busy(self.clock.now()):
            raise ApiError(409, "ContainerAppLockConflict", LOCK_MESSAGE.format(name=name), wrapped=False)
        if not isinstance(body, dict):
            raise ApiError(400, "InvalidRequestContent", BAD_CONTENT)
        if not body.get("location"):
            raise ApiError(400, "LocationRequired", "The location property is required for this definition.")
        spec = normalize_app(body, api_version, existing.mode if existing else None)
        env = self.environment_by_id(spec["properties"]["environmentId"])
        if env is None:
            env_id = spec["properties"]["environmentId"]
            raise ApiError(404, CODE_ENV_NOT_FOUND, f"Managed environment '{env_id}' was not found.")
        spec["location"] = display_location(spec["location"])
        spec["properties"]["environmentId"] = env.id
        self.refuse_while_environment_busy(env, name, existing)
        validate_spec(spec, name, env)
        plan = self._plan(name, existing, spec)
        if existing is None:
            wall = self.clock.wall()
            app = App(sub, rg_name, name, env, spec, created_wall=wall, modified_wall=wall, outbound_ip=self._ip())
            self.apps[app.key] = app
        else:
            app = existing
        op = self._commit(app, spec, "put", plan, render_first=True)
        status_url = self._operation_url(op, "containerappOperationStatuses", api_version) + "&azureAsyncOperation=true"
        headers = {
            "Azure-AsyncOperation": status_url,
            "x-ms-async-operation-timeout": "PT15M",
            "x-ms-ratelimit-remaining-subscription-resource-requests": "699",
        }
        return Reply(201, plan.answer, headers)  # 201 also for an existing app (FACTS.md, recorded sessions)

    def patch_app(self, sub: str, rg: str, name: str, body: Any, api_version: str) -> Reply:
        app = self.require_app(sub, rg, name)
        if app.busy(self.clock.now()):
            raise ApiError(409, "ContainerAppLockConflict", LOCK_MESSAGE.format(name=name), wrapped=False)
        if not isinstance(body, dict):
            raise ApiError(400, "InvalidRequestContent", BAD_CONTENT)
        spec = normalize_app(merge_patch(app.spec, body), api_version, app.mode)
        spec["location"] = app.spec["location"]  # an app does not move
        env = self.environment_by_id(spec["properties"]["environmentId"]) or app.env
        spec["properties"]["environmentId"] = env.id
        self.refuse_while_environment_busy(env, name, app)
        validate_spec(spec, name, env)
        op = self._commit(app, spec, "patch", self._plan(name, app, spec), render_first=False)
        return Reply(202, None, self._location_headers(op, api_version))

    def delete_app(self, sub: str, rg: str, name: str, api_version: str) -> Reply:
        self.require_group(sub, rg)
        app = self.find_app(sub, rg, name)
        if app is None:
            return Reply(204)
        if app.busy(self.clock.now()):
            raise ApiError(409, "ContainerAppLockConflict", LOCK_MESSAGE.format(name=name), wrapped=False)
        op = self._start_operation(app, "delete", self.pending_failures.pop(0) if self.pending_failures else None)
        headers = self._location_headers(op, api_version)
        headers["x-ms-ratelimit-remaining-subscription-deletes"] = "14999"
        return Reply(202, None, headers)

    def refuse_while_environment_busy(self, env: Environment, name: str, app: App | None) -> None:
        """A create or update of an app while another app of the same managed environment has an operation in
        progress is refused (the app's own operation is ContainerAppLockConflict, checked before). Deletes and the
        synchronous revision actions are not held up here: no report says whether the service holds them."""
        now = self.clock.now()
        for other in self.apps.values():
            if other is not app and other.env is env and other.busy(now) and other.op is not None:
                message = OPERATION_IN_PROGRESS_MESSAGE.format(name=name, operation=other.op.id)
                raise ApiError(409, OPERATION_IN_PROGRESS, message)

    def _plan(self, name: str, existing: App | None, spec: JsonDict) -> WritePlan:
        """Decide, without changing anything, whether the write makes a revision and whether it will fail late."""
        revisions = existing.revisions if existing else []
        # Compared with what the latest revision runs: after a failed operation the stored template is not running.
        latest = existing.revision(existing.latest_revision) if existing else None
        old = latest.template if latest else None
        new = spec["properties"]["template"]
        suffix = new["revisionSuffix"]
        plan = WritePlan()
        changed = old is None or revision_scope(old) != revision_scope(new)
        if changed or (suffix and old is not None and suffix != old["revisionSuffix"]):
            taken = {r.name for r in revisions}
            if suffix:
                plan.revision = f"{name}--{suffix}"
                if plan.revision in taken:  # FACTS.md: accepted now, the operation ends Failed
                    message = SUFFIX_EXISTS_MESSAGE.format(app=name, suffix=suffix)
                    plan.failure = {"code": "ContainerAppOperationError", "message": message}
            else:
                plan.revision = f"{name}--{random_suffix(self.rng)}"
                while plan.revision in taken:
                    plan.revision = f"{name}--{random_suffix(self.rng)}"
        self.validate_traffic(name, spec, revisions, plan.revision if plan.failure is None else None)
        if plan.failure is None and self.pending_failures:
            plan.failure = self.pending_failures.pop(0)
        if plan.failure and not plan.failure.get("message"):
            message = f"Failed to provision revision for container app '{name}'. Error details: Operation expired."
            plan.failure = {"code": plan.failure["code"], "message": message}
        return plan

    def _commit(self, app: App, spec: JsonDict, kind: str, plan: WritePlan, *, render_first: bool) -> Operation:
        """Store the desired state, start the operation, add the revision (none when the operation will fail).
        A PUT answers with the app as it was before its revision exists: latestRevisionName "" on create."""
        app.spec = spec
        if app.op is not None:  # a create keeps lastModifiedAt == createdAt (recorded)
            app.modified_wall = self.clock.wall()
        op = self._start_operation(app, kind, plan.failure)
        if render_first:
            plan.answer = self.render_app(app, initial=True)
        if plan.revision and plan.failure is None:
            template = spec["properties"]["template"]
            rule = self.behaviour_of(template)
            app.revisions.append(
                Revision(
                    name=plan.revision,
                    suffix=template["revisionSuffix"],
                    template=copy.deepcopy(template),
                    created=op.started,
                    created_wall=op.started_wall,
                    delay=op.duration,
                    behaviour=rule.behaviour,
                    start_seconds=rule.start_seconds,
                    started=op.started,
                    fails_after=rule.fails_after,
                    failure=rule.failure,
                )
            )
            app.latest_revision = plan.revision
        return op

    def _start_operation(self, app: App, kind: str, failure: JsonDict | None) -> Operation:
        op = Operation(
            id=str(uuid.uuid4()),
            kind=kind,
            sub=app.sub,
            app_key=app.key,
            location=short_location(app.spec["location"]),
            started=self.clock.now(),
            started_wall=self.clock.wall(),
            duration=self.provisioning_delay,
            failure=failure,
        )
        self.operations[op.id] = op
        app.op = op
        return op

    def _operation_url(self, op: Operation, kind: str, api_version: str) -> str:
        path = f"/subscriptions/{op.sub}/providers/Microsoft.App/locations/{op.location}/{kind}/{op.id}"
        return f"{self.base_url}{path}?api-version={api_version}"

    def _location_headers(self, op: Operation, api_version: str) -> dict[str, str]:
        return {
            "Location": self._operation_url(op, "containerappOperationResults", api_version),
            "x-ms-ratelimit-remaining-subscription-resource-requests": "699",
        }

    # -- operations ----------------------------------------------------------------------------------------------

    def operation_status(self, sub: str, location: str, op_id: str) -> Reply:
        op = self.operations.get(op_id)
        if op is None or op.sub.lower() != sub.lower():
            raise ApiError(404, "OperationNotFound", f"The operation '{op_id}' was not found.")
        status = op.status(self.clock.now())
        body: JsonDict = {
            "id": f"/subscriptions/{op.sub}/providers/Microsoft.App/locations/{location}"
            f"/containerappOperationStatuses/{op.id}",
            "name": op.id,
            "status": status,
            "startTime": ticks(op.started_wall),
        }
        if status == "Failed" and op.failure:
            body["error"] = dict(op.failure)
        return Reply(200, body)

    def operation_result(self, sub: str, op_id: str, api_version: str) -> Reply:
        op = self.operations.get(op_id)
        if op is None or op.sub.lower() != sub.lower():
            raise ApiError(404, "OperationNotFound", f"The operation '{op_id}' was not found.")
        status = op.status(self.clock.now())
        if status == "InProgress":
            return Reply(202, None, {"Location": self._operation_url(op, "containerappOperationResults", api_version)})
        if status == "Failed" and op.failure:
            return error_reply(400, op.failure["code"], op.failure["message"])
        if op.kind == "delete":
            return Reply(204)
        app = self.apps.get(op.app_key)
        if app is None:
            raise not_found("containerApps", op.app_key[2], op.app_key[1])
        return Reply(200, self.render_app(app))

    # -- revisions -----------------------------------------------------------------------------------------------

    def require_revision(self, app: App, name: str) -> Revision:
        rev = app.revision(name)
        if rev is None:
            message = f"Revision '{name}' was not found in container app '{app.name}'."
            raise ApiError(404, CODE_REVISION_NOT_FOUND, message)
        return rev

    def revision_action(self, app: App, name: str, action: str) -> Reply:
        rev = self.require_revision(app, name)
        now = self.clock.now()
        if app.busy(now):
            raise ApiError(409, "ContainerAppLockConflict", LOCK_MESSAGE.format(name=app.name), wrapped=False)
        if action == "activate":
            if not rev.active:
                rev.active, rev.started = True, now
            rev.deactivate_at = None
        elif action == "deactivate":
            rev.active, rev.deactivate_at = False, None
        else:
            if not rev.active:
                message = f"Revision '{name}' is not active and cannot be restarted."
                raise ApiError(400, CODE_REVISION_INACTIVE, message)
            rev.started = now
        return Reply(200, f"{action.capitalize()} succeeded", {"x-ms-ratelimit-remaining-subscription-writes": "1198"})

    # -- rendering -----------------------------------------------------------------------------------------------

    def fqdn(self, app: App, host: str) -> str:
        ingress = app.config.get("ingress")
        if not ingress or not host:
            return ""
        internal = "" if ingress["external"] else "internal."
        return f"{host}.{internal}{app.env.domain}"

    def provisioning_state(self, app: App, now: float) -> str:
        if app.op is None:
            return "Succeeded"
        status = app.op.status(now)
        if status == "InProgress":
            return "Deleting" if app.op.kind == "delete" else "InProgress"
        return "Failed" if status == "Failed" else "Succeeded"

    def render_app(self, app: App, *, initial: bool = False, secret_values: bool = False) -> JsonDict:
        now = self.clock.now()
        spec = copy.deepcopy(app.spec)
        config, template = spec["properties"]["configuration"], spec["properties"]["template"]
        if config.get("secrets") and not secret_values:
            config["secrets"] = [{k: v for k, v in s.items() if k != "value"} for s in config["secrets"]]
        if config.get("ingress"):
            config["ingress"] = {"fqdn": self.fqdn(app, app.name), **config["ingress"]}
        latest_ready = self.latest_ready(app, now)
        stamp = (lambda d: ticks(d) + "Z") if initial else ticks  # the PUT answer has a Z, GETs do not (recorded)
        principal = self._principal()
        body: JsonDict = {
            "id": f"/subscriptions/{app.sub}/resourceGroups/{app.rg}/providers/Microsoft.App/containerapps/{app.name}",
            "name": app.name,
            "type": "Microsoft.App/containerApps",
            "location": spec["location"],
        }
        if spec.get("tags"):
            body["tags"] = spec["tags"]
        body["systemData"] = {
            "createdBy": principal,
            "createdByType": "Application",
            "createdAt": stamp(app.created_wall),
            "lastModifiedBy": principal,
            "lastModifiedByType": "Application",
            "lastModifiedAt": stamp(app.modified_wall),
        }
        body["properties"] = {
            "provisioningState": "InProgress" if initial else self.provisioning_state(app, now),
            "runningStatus": "Running",
            "managedEnvironmentId": app.env.id,
            "environmentId": app.env.id,
            "workloadProfileName": spec["properties"]["workloadProfileName"],
            "outboundIpAddresses": [app.outbound_ip],
            "latestRevisionName": app.latest_revision,
            "latestReadyRevisionName": latest_ready.name if latest_ready else "",
            "latestRevisionFqdn": self.fqdn(app, app.latest_revision),
            "customDomainVerificationId": self._verification_id(app.sub),
            "configuration": config,
            "template": template,
            # The service names its own stream host (https://<region>.azurecontainerapps.dev); the fake serves the
            # stream itself (fakes.logstream), so it names its own address, as it does for ARM.
            "eventStreamEndpoint": (
                f"{self.base_url}/subscriptions/{app.sub}/resourceGroups/{app.rg}/containerApps/{app.name}/eventstream"
            ),
        }
        identity = spec["identity"]
        if "SystemAssigned" in identity.get("type", ""):
            identity = {**identity, "principalId": app.principal_id, "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47"}
        body["identity"] = identity
        return body

    def render_revision(self, app: App, rev: Revision) -> JsonDict:
        now = self.clock.now()
        state = revision_state(rev, now, rev.template["scale"].get("minReplicas") or 0)
        template = emitted_template(app.name, rev.template, app.config)
        template["revisionSuffix"] = rev.suffix or None  # recorded: null in revisions, "" in the app
        for container in template["containers"]:
            resources = container.get("resources") or {}
            container["resources"] = {"cpu": resources.get("cpu"), "memory": resources.get("memory")}
            container.setdefault("probes", [])
        props: JsonDict = {
            "createdTime": created_time(rev.created_wall),
            "fqdn": self.fqdn(app, rev.name),
            "template": template,
            "active": rev.active,
            "replicas": state.replicas,
            "trafficWeight": self.traffic_weights(app, now).get(rev.name, 0),
            "healthState": state.health,
            "provisioningState": state.provisioning,
            "runningState": state.running,
        }
        if state.error:
            props["provisioningError"] = state.error
        if state.details:
            props["runningStateDetails"] = state.details
        return {
            "id": f"/subscriptions/{app.sub}/resourceGroups/{app.rg}/providers/Microsoft.App/containerApps/{app.name}"
            f"/revisions/{rev.name}",
            "name": rev.name,
            "type": "Microsoft.App/containerapps/revisions",
            "properties": props,
        }

    def render_environment(self, env: Environment) -> JsonDict:
        principal = self._principal()
        return {
            "id": env.id,
            "name": env.name,
            "type": "Microsoft.App/managedEnvironments",
            "location": display_location(env.location),
            "systemData": {
                "createdBy": principal,
                "createdByType": "Application",
                "createdAt": ticks(env.created),
                "lastModifiedBy": principal,
                "lastModifiedByType": "Application",
                "lastModifiedAt": ticks(env.created),
            },
            "properties": {
                "provisioningState": "Succeeded",
                "daprAIInstrumentationKey": None,
                "daprAIConnectionString": None,
                "vnetConfiguration": None,
                "defaultDomain": env.domain,
                "staticIp": env.static_ip,
                "appLogsConfiguration": {
                    "destination": "log-analytics",
                    "logAnalyticsConfiguration": {"customerId": env.customer_id, "sharedKey": None},
                },
                "zoneRedundant": False,
                "kedaConfiguration": {"version": "2.10.0"},
                "daprConfiguration": {"version": "1.10.8"},
                "eventStreamEndpoint": (
                    f"https://{env.location}.azurecontainerapps.dev/subscriptions/{env.sub}/resourceGroups/{env.rg}"
                    f"/managedEnvironments/{env.name}/eventstream"
                ),
                "customDomainConfiguration": {
                    "customDomainVerificationId": self._verification_id(env.sub),
                    "dnsSuffix": None,
                    "certificateValue": None,
                    "certificatePassword": None,
                    "thumbprint": None,
                    "subjectName": None,
                    "expirationDate": None,
                },
                "workloadProfiles": copy.deepcopy(env.workload_profiles),
                "firstPartyConfiguration": None,
                "infrastructureResourceGroup": None,
                "peerAuthentication": {"mtls": {"enabled": False}},
            },
        }

    @staticmethod
    def _principal() -> str:
        return "a1b2c3d4-0000-4000-8000-00000000f00d"

    def _verification_id(self, sub: str) -> str:
        made = "".join(self.rng.choice("0123456789ABCDEF") for _ in range(64))
        return self.verification_ids.setdefault(sub.lower(), made)

    # -- the HTTP side of an ingress -----------------------------------------------------------------------------

    def probe(self, url: str, *, from_environment: bool = False) -> int | None:
        """What GET https://<fqdn><path> answers: app fqdn -> the revision with the largest traffic weight,
        <app>--<suffix> -> that revision, <app>---<label> -> the labelled revision; 200 when it is active, running
        and healthy, 503 when it is not (yet) serving, 404 when nothing serves that host; None for a host that
        does not resolve (unknown, or an internal-only ingress seen from outside its environment)."""
        return self.serving(url, from_environment=from_environment)[0]

    def serving(self, url: str, *, from_environment: bool = False) -> tuple[int | None, Revision | None]:
        """(status as in `probe`, the revision that answers when it is 200)."""
        host = (urlsplit(url).hostname or "").lower()
        now = self.clock.now()
        for env in self.environments.values():
            if not host.endswith("." + env.domain):
                continue
            prefix = host[: -len(env.domain) - 1]
            internal = prefix.endswith(".internal")
            prefix = prefix.removesuffix(".internal")
            if "." in prefix:
                return None, None
            label = suffix = None
            if "---" in prefix:
                name, label = prefix.split("---", 1)
            elif "--" in prefix:
                name, suffix = prefix.split("--", 1)
            else:
                name = prefix
            app = next((a for a in self.apps.values() if a.env is env and a.name == name), None)
            ingress = app.config.get("ingress") if app else None
            if app is None or ingress is None:
                return 404, None
            if not ingress["external"] and not from_environment:
                return None, None
            if ingress["external"] and internal:
                return 404, None
            if not from_environment and not self.admits(ingress):
                return 403, None
            challenge = self.auth_challenge(app, urlsplit(url).path or "/")
            if challenge is not None:
                return challenge, None
            rev = self._probe_target(app, now, label, suffix)
            if rev is None or not rev.active:
                return 404, None
            if rev.behaviour == "scale-to-zero" and now >= rev.runs_at:
                rev.woken = True  # the request itself starts a replica, and is answered once it runs
            state = revision_state(rev, now, rev.template["scale"].get("minReplicas") or 0)
            return (200, rev) if state.serving else (503, None)
        return None, None

    def admits(self, ingress: JsonDict) -> bool:
        """Whether the ingress's ipSecurityRestrictions let client_address in (Allow rules: only those ranges;
        Deny rules: all but those)."""
        rules = ingress.get("ipSecurityRestrictions") or []
        if not rules:
            return True
        address = ipaddress.ip_address(self.client_address)
        inside = any(address in ipaddress.ip_network(r["ipAddressRange"], strict=False) for r in rules)
        return inside if str(rules[0]["action"]).lower() == "allow" else not inside

    def auth_challenge(self, app: App, path: str) -> int | None:
        """What built-in authentication answers a caller without a sign-in (None: the request goes through)."""
        props = (app.auth_configs.get("current") or {}).get("properties") or {}
        if not (props.get("platform") or {}).get("enabled"):
            return None
        validation = props.get("globalValidation") or {}
        if path in (validation.get("excludedPaths") or []):
            return None
        action = str(validation.get("unauthenticatedClientAction") or "RedirectToLoginPage").lower()
        return {"return401": 401, "return403": 403, "redirecttologinpage": 302}.get(action)

    # -- auth configs (the authConfigs child resource: built-in authentication) -----------------------------------

    def auth_config_id(self, app: App, name: str) -> str:
        # As in the REST spec's AuthConfigs_CreateOrUpdate example: lower-case "authconfigs" in id and type.
        return (
            f"/subscriptions/{app.sub}/resourceGroups/{app.rg}/providers/Microsoft.App/containerApps/{app.name}"
            f"/authconfigs/{name}"
        )

    def list_auth_configs(self, app: App) -> Reply:
        return Reply(200, {"value": [copy.deepcopy(c) for c in app.auth_configs.values()]})

    def get_auth_config(self, app: App, name: str) -> Reply:
        found = app.auth_configs.get(name.lower())
        if found is None:  # recorded: 404 AuthConfigNotFound (FACTS.md)
            raise ApiError(404, "AuthConfigNotFound", AUTH_NOT_FOUND_MESSAGE.format(name=name, app=app.name))
        return Reply(200, copy.deepcopy(found))

    def put_auth_config(self, app: App, name: str, body: Any) -> Reply:
        """Synchronous (200), and it succeeds while an operation on the app runs (FACTS.md, recorded sessions);
        the answer echoes the properties."""
        if not isinstance(body, dict):
            raise ApiError(400, "InvalidRequestContent", BAD_CONTENT)
        props = as_dict(body.get("properties"), "properties")
        validation = as_dict(props.get("globalValidation"), "properties.globalValidation")
        action = validation.get("unauthenticatedClientAction")
        if action is not None and str(action).lower() not in UNAUTHENTICATED_ACTIONS:
            raise ApiError(
                400,
                CODE_AUTH,
                f"Invalid value '{action}' for globalValidation.unauthenticatedClientAction: RedirectToLoginPage, "
                "AllowAnonymous, Return401 or Return403.",
            )
        for path in as_list(validation.get("excludedPaths"), "globalValidation.excludedPaths"):
            if not isinstance(path, str):
                raise ApiError(400, CODE_AUTH, f"Invalid excluded path '{path}'.")
        stored = {
            "id": self.auth_config_id(app, name),
            "name": name,
            "type": "Microsoft.App/containerapps/authconfigs",
            "properties": drop_none(props),
        }
        app.auth_configs[name.lower()] = stored
        return Reply(200, copy.deepcopy(stored))

    def _probe_target(self, app: App, now: float, label: str | None, suffix: str | None) -> Revision | None:
        if suffix is not None:
            return app.revision(f"{app.name}--{suffix}")
        if label is not None:
            latest = self.latest_target(app, now)
            for entry in self.traffic_entries(app):
                if entry.get("label") == label:
                    return latest if entry.get("latestRevision") else app.revision(entry.get("revisionName", ""))
            return None
        weights = self.traffic_weights(app, now)
        if not any(weights.values()):
            return None
        order = {r.name: i for i, r in enumerate(app.revisions)}
        best = max(weights, key=lambda n: (weights[n], order.get(n, -1)))
        return app.revision(best)
