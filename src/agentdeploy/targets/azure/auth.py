"""Azure credentials: DefaultAzureCredential locally; in GitHub Actions, a ClientAssertionCredential
that fetches a fresh GitHub OIDC token for every Azure token request (the GitHub token lives about
five minutes, so a long build must not leave the deploy with an expired one)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from agentdeploy.errors import TargetUnavailableError

if TYPE_CHECKING:
    import requests
    from azure.core.credentials import AccessToken, TokenCredential
    from azure.mgmt.appcontainers import ContainerAppsAPIClient

GITHUB_AUDIENCE = "api://AzureADTokenExchange"


def github_oidc_token(environ: Mapping[str, str], session: requests.Session | None = None) -> str:
    import requests

    url = environ["ACTIONS_ID_TOKEN_REQUEST_URL"]
    separator = "&" if "?" in url else "?"
    response = (session.get if session is not None else requests.get)(
        f"{url}{separator}audience={GITHUB_AUDIENCE}",
        headers={"Authorization": f"bearer {environ['ACTIONS_ID_TOKEN_REQUEST_TOKEN']}"},
        timeout=30,
    )
    if response.status_code != 200:
        raise TargetUnavailableError(
            f"GitHub refused an OIDC token (HTTP {response.status_code})",
            hint="give the job `permissions: id-token: write`",
        )
    return str(response.json()["value"])


def azure_credential(environ: Mapping[str, str]) -> TokenCredential:
    try:
        from azure.identity import ClientAssertionCredential, DefaultAzureCredential
    except ImportError:  # pragma: no cover - azure-identity is a dependency
        raise TargetUnavailableError("azure-identity is not installed", hint="pip install agentdeploy") from None
    authority = environ.get("AZURE_AUTHORITY_HOST")
    options: dict[str, str | bool] = {}
    if authority:
        # A sovereign cloud or a test double: never ask login.microsoftonline.com to validate it.
        options = {"authority": authority, "disable_instance_discovery": True}
    oidc = environ.get("ACTIONS_ID_TOKEN_REQUEST_URL") and environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    if oidc and environ.get("AZURE_CLIENT_ID") and environ.get("AZURE_TENANT_ID"):
        # A fresh GitHub token for every Azure token request: the GitHub one lives ~5 minutes.
        return ClientAssertionCredential(
            tenant_id=environ["AZURE_TENANT_ID"],
            client_id=environ["AZURE_CLIENT_ID"],
            func=lambda: github_oidc_token(environ),
            **options,
        )
    return DefaultAzureCredential(**options)


TOKEN_REFRESH_MARGIN = 300.0  # seconds: azure-core's bearer policy asks again when a token has less than this left


class SharedTokens:
    """One credential's tokens for the whole process: every agent's ARM client and the registry's token exchange
    ask here, and Entra is asked once per scope (and tenant) until the token nears its end. ARM throttles per
    principal (FACTS.md), and DefaultAzureCredential's az CLI source runs `az` for every request it gets."""

    def __init__(self, inner: TokenCredential) -> None:
        self.inner = inner
        self._tokens: dict[tuple[object, ...], AccessToken] = {}
        self._lock = threading.Lock()

    def get_token(
        self, *scopes: str, claims: str | None = None, tenant_id: str | None = None, **kwargs: Any
    ) -> AccessToken:
        options = {
            **kwargs,
            **({"claims": claims} if claims else {}),
            **({"tenant_id": tenant_id} if tenant_id else {}),
        }
        key = (scopes, tenant_id, tuple(sorted((k, str(v)) for k, v in kwargs.items())))
        with self._lock:  # agents release in parallel threads: one request, the others wait for its token
            token = self._tokens.get(key)
            if claims or token is None or token.expires_on - time.time() < TOKEN_REFRESH_MARGIN:
                token = self.inner.get_token(*scopes, **options)
                if not claims:  # a claims challenge's token is for that one request
                    self._tokens[key] = token
            return token


_SHARED: dict[str, SharedTokens] = {}
_SHARED_LOCK = threading.Lock()
_IDENTITY_VARIABLES = (
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_AUTHORITY_HOST",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
)


def shared_credential(environ: Mapping[str, str]) -> SharedTokens:
    """The process's one credential (and token cache) for the identity `environ` names; a digest keys it, so no
    secret is kept in the key."""
    identity = "\0".join(environ.get(name, "") for name in _IDENTITY_VARIABLES)
    key = hashlib.sha256(identity.encode()).hexdigest()
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = SharedTokens(azure_credential(environ))
        return _SHARED[key]


def arm_token_source(environ: Mapping[str, str]) -> Callable[[], str]:
    """A callable returning an Entra access token for ARM (used for the ACR token exchange)."""
    from agentdeploy.image.registry import ARM_SCOPE

    def token() -> str:
        try:
            return str(shared_credential(environ).get_token(ARM_SCOPE).token)
        except TargetUnavailableError:
            raise
        except Exception as exc:
            raise TargetUnavailableError(
                f"could not get an Azure token for the registry: {type(exc).__name__}",
                hint="run `az login` locally; in a workflow set AZURE_CLIENT_ID and AZURE_TENANT_ID "
                "and give the job `permissions: id-token: write`",
            ) from None

    return token


ARM_STATUS_RETRIES = 10


def arm_client_factory(environ: Mapping[str, str]) -> Callable[[str], ContainerAppsAPIClient]:
    """subscription id -> ContainerAppsAPIClient with short LRO polling (the SDK default is 30 s)."""

    def make(subscription_id: str) -> ContainerAppsAPIClient:
        from azure.mgmt.appcontainers import ContainerAppsAPIClient

        from agentdeploy.targets.azure.arm import POLL_INTERVAL

        return ContainerAppsAPIClient(
            shared_credential(environ),
            subscription_id,
            base_url=environ.get("AGENTDEPLOY_ARM_ENDPOINT") or None,  # None: the SDK's public cloud
            polling_interval=POLL_INTERVAL,
            # ARM throttles per subscription and principal with 429 + Retry-After (FACTS.md); azure-core gives
            # up after 3 status retries. Ten, each honouring Retry-After and capped at 30 s, ride out a burst
            # of parallel deploys yet bound the wait (about 5 minutes at worst) before the run fails clearly.
            retry_status=ARM_STATUS_RETRIES,
            retry_total=ARM_STATUS_RETRIES + 2,
            retry_backoff_max=30,
        )

    return make
