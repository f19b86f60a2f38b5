"""Azure credentials: DefaultAzureCredential locally; in GitHub Actions, a ClientAssertionCredential
that fetches a fresh GitHub OIDC token for every Azure token request (the GitHub token lives about
five minutes, so a long build must not leave the deploy with an expired one)."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from agentdeploy.errors import TargetUnavailableError

if TYPE_CHECKING:
    import requests
    from azure.core.credentials import AccessToken, AccessTokenInfo, TokenCredential, TokenRequestOptions
    from azure.identity import DefaultAzureCredential
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
    return ExplainedDefaultCredential(DefaultAzureCredential(**options))


NO_CREDENTIAL = "no Azure credential was found on this machine"
WAYS_TO_SIGN_IN = (
    "locally run `az login`; in GitHub Actions set AZURE_CLIENT_ID and AZURE_TENANT_ID and give the job "
    "`permissions: id-token: write` (OIDC); for a service principal set AZURE_TENANT_ID, AZURE_CLIENT_ID and "
    "AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH)"
)
_CHAIN_LOGGER = "azure.identity._credentials.chained"


class ExplainedDefaultCredential:
    """DefaultAzureCredential, its failures told in one line each: none of its credentials was available (no
    az login, no environment variables, no managed identity...), or one was found and refused. The chain's own
    report (a dozen lines, one per credential it tried, logged as a warning and raised as "failed to retrieve a
    token") is not printed: it says "failed" also when nothing was tried at all."""

    def __init__(self, inner: DefaultAzureCredential) -> None:
        self._inner = inner
        self._attempts = threading.local()  # per token request: (credential, what it raised), in the chain's order
        inner.credentials = tuple(_Watched(credential, self._attempts) for credential in inner.credentials)
        _install_quiet_filter()

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return cast("AccessToken", self._explained(lambda: self._inner.get_token(*scopes, **kwargs)))

    def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        return cast("AccessTokenInfo", self._explained(lambda: self._inner.get_token_info(*scopes, options=options)))

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> ExplainedDefaultCredential:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _explained(self, request: Callable[[], object]) -> object:
        from azure.core.exceptions import ClientAuthenticationError
        from azure.identity import CredentialUnavailableError

        seen: list[tuple[object, BaseException]] = []
        self._attempts.seen = seen
        _QUIET.active = True
        try:
            return request()
        except ClientAuthenticationError:
            refused = [(c, e) for c, e in seen if not isinstance(e, CredentialUnavailableError)]
            if seen and not refused:
                raise TargetUnavailableError(NO_CREDENTIAL, hint=WAYS_TO_SIGN_IN) from None
            if refused:
                credential, error = refused[-1]
                raise TargetUnavailableError(
                    f"Azure refused the credential of {_name_of(credential)}: {_first_line(error)}",
                    hint="sign in again (az login), or check AZURE_TENANT_ID, AZURE_CLIENT_ID and the secret, "
                    "certificate or federated credential of that identity",
                ) from None
            raise
        finally:
            _QUIET.active = False
            self._attempts.seen = None


class _Watched:
    """One credential of the chain, noting what it raised (the chain keeps only a message)."""

    def __init__(self, credential: Any, attempts: threading.local) -> None:
        self._credential = credential
        self._attempts = attempts

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return cast("AccessToken", self._noted(lambda: self._credential.get_token(*scopes, **kwargs)))

    def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        return cast("AccessTokenInfo", self._noted(lambda: self._credential.get_token_info(*scopes, options=options)))

    def close(self) -> None:
        close = getattr(self._credential, "close", None)
        if close is not None:
            close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._credential, name)

    def _noted(self, request: Callable[[], Any]) -> Any:
        try:
            return request()
        except BaseException as exc:
            seen = getattr(self._attempts, "seen", None)
            if seen is not None:
                seen.append((self._credential, exc))
            raise


def _name_of(credential: object) -> str:
    # The chain stands a FailedDACCredential in for a credential it could not make; it carries the real name.
    return str(getattr(credential, "_credential_name", None) or type(credential).__name__)


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "message", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


_QUIET = threading.local()  # set while one of our token requests runs on this thread
_QUIET_INSTALLED: list[bool] = []


def _install_quiet_filter() -> None:
    """Drop the chain's multi-line warning while one of our requests runs: we say it in one line instead."""
    if _QUIET_INSTALLED:
        return
    _QUIET_INSTALLED.append(True)
    logging.getLogger(_CHAIN_LOGGER).addFilter(
        lambda record: not (getattr(_QUIET, "active", False) and record.levelno >= logging.WARNING)
    )


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
