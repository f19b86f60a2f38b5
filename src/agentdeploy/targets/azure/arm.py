"""Talking to ARM: its errors mapped onto our error tree (the service's code and a fix), the SDK's models
read as plain ARM JSON, and our JSON passed where the SDK asks for its envelope; kept apart so every ARM
call reports a refusal the same way, and importing it does not load the SDK."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Protocol, cast

from agentdeploy.errors import AgentDeployError, DeployError, TargetUnavailableError
from agentdeploy.jsonvalue import JsonObject, text_at, to_json, to_object

if TYPE_CHECKING:
    from azure.core.exceptions import HttpResponseError
    from azure.mgmt.appcontainers.types import ContainerApp as ContainerAppEnvelope

POLL_INTERVAL = 0.5  # LRO polling when the service sends no Retry-After (it never does); SDK default is 30 s


def _error_field(exc: HttpResponseError, name: str) -> str:
    """`code` or `message` of an ARM error: from the SDK's parsed error, else from the raw body
    (ContainerAppSecretNull arrives without the {"error": ...} wrapper)."""
    value = getattr(exc.error, name, None)
    if value:
        return str(value)
    response = exc.response
    with contextlib.suppress(Exception):
        body = to_json(json.loads(response.text())) if response is not None else {}
        if isinstance(body, dict):
            return text_at(body.get("error", body), name)
    return ""


def code_of(exc: HttpResponseError) -> str:
    return _error_field(exc, "code")


def _message_of(exc: HttpResponseError) -> str:
    return _error_field(exc, "message") or str(getattr(exc, "message", "") or exc).splitlines()[0]


_HINTS = {
    "ContainerAppInvalidName": "use 2-32 lower-case letters, digits and single '-' (deployment.target.azure.app_name)",
    "ContainerAppInvalidEnvVarName": "rename the variable: letters, digits, '_', '.', '-', not starting with a digit",
    "ContainerAppSecretNull": "a secret was sent without a value: a Key Vault reference must keep its keyVaultUrl "
    "(agentdeploy resends references as they are; report it if it sent this one)",
    "ResourceGroupNotFound": "create the resource group, or fix target.azure.resource_group",
    "AuthorizationFailed": "give the deploying identity the Contributor role on the resource group",
    "ContainerAppOperationError": "read the message above; a reused revision suffix also ends like this",
    "InvalidAuthenticationToken": "check AZURE_TENANT_ID / AZURE_CLIENT_ID and the federated credential subject",
}
_QUOTA_WORDS = ("quota", "Quota", "LimitExceeded", "MaxNumberOf")
PULL_REFUSED_HINT = (
    "Container Apps was refused by the image's registry: give the app pull access (target.azure.registry_identity "
    "with AcrPull on an Azure Container Registry, or <PREFIX>_USERNAME/_PASSWORD for another registry; GHCR "
    "packages are private until made public)"
)
EXPIRED_HINT = (
    "the revision did not come up before the operation expired: the image may not be pullable or the container "
    "may not start; read its log (az containerapp logs show --revision ...) and deploy again"
)


def _hint_for(code: str, message: str) -> str | None:
    """The fix for an ARM error, by its code and, where one code means several things, its message."""
    if code == "InvalidParameterValueInContainerTemplate" and "UNAUTHORIZED" in message.upper():
        return PULL_REFUSED_HINT
    if "Operation expired" in message:
        return EXPIRED_HINT
    return _HINTS.get(code)


@contextlib.contextmanager
def azure_errors(action: str) -> Iterator[None]:
    """Turn azure-core exceptions into our errors, with the service's code and a fix."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    try:
        yield
    except AgentDeployError:
        raise
    except ClientAuthenticationError as exc:
        raise TargetUnavailableError(
            f"Azure refused the credentials while {action}: {code_of(exc) or 'HTTP 401'}: {_message_of(exc)}",
            hint="locally run `az login`; in a workflow give the job `permissions: id-token: write`, set "
            "AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_SUBSCRIPTION_ID, and add a federated credential for "
            "repo:OWNER/REPO:environment:NAME",
        ) from None
    except ResourceNotFoundError as exc:
        code = code_of(exc)
        raise DeployError(
            f"not found while {action}: {code}: {_message_of(exc)}",
            hint=_HINTS.get(code, "check subscription_id, resource_group and environment_name"),
        ) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise TargetUnavailableError(f"cannot reach Azure while {action}: {exc}") from None
    except HttpResponseError as exc:
        code = code_of(exc) or f"HTTP {exc.status_code}"
        hint = _hint_for(code, _message_of(exc))
        if hint is None and any(word in code + _message_of(exc) for word in _QUOTA_WORDS):
            hint = "a quota is exhausted: free capacity or ask for a higher quota in the Azure portal"
        error: type[AgentDeployError] = TargetUnavailableError if exc.status_code in (401, 403) else DeployError
        raise error(f"Azure refused {action}: {code}: {_message_of(exc)}", hint=hint) from None


class _ArmModel(Protocol):
    """What the SDK's models (ContainerApp, Revision, SecretsCollection, ...) offer us: their ARM JSON."""

    def as_dict(self, *, exclude_readonly: bool = False) -> Mapping[str, object]: ...


def plain(model: _ArmModel | None) -> JsonObject:
    """SDK models are dict-like; work on plain ARM JSON (string enums, camelCase)."""
    if model is None:
        return {}
    return to_object(model.as_dict())


def envelope(body: JsonObject) -> ContainerAppEnvelope:
    """Our ARM JSON where the SDK asks for its ContainerApp TypedDict: the service, not the SDK, checks the
    shape, and the body goes on the wire as it is."""
    return cast("ContainerAppEnvelope", body)
