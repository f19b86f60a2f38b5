"""Registries: which credentials to use, and a small Docker Registry HTTP API v2 client.

The client reads manifest digests (to verify a push, `Docker-Content-Digest`) and re-tags an
existing manifest (the skip path) without a Docker engine. Credentials never appear in reprs,
logs or errors.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agentdeploy.errors import RegistryError
from agentdeploy.jsonvalue import text_at, to_json, value_at

if TYPE_CHECKING:
    import requests

DEFAULT_CREDENTIALS_PREFIX = "REGISTRY"  # REGISTRY_USERNAME / REGISTRY_PASSWORD
ACR_USERNAME = "00000000-0000-0000-0000-000000000000"
ACR_SUFFIXES = (".azurecr.io", ".azurecr.cn", ".azurecr.us")
# Scope of the Entra token exchanged for an ACR refresh token (what `az acr login` uses).
ARM_SCOPE = "https://management.azure.com/.default"
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
TIMEOUT = 30


@dataclass(frozen=True)
class RegistryCredentials:
    username: str
    password: str = field(repr=False)
    source: str  # where they came from, safe to print (e.g. "REGISTRY_USERNAME/REGISTRY_PASSWORD")

    def auth_config(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password}


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def is_acr(host: str) -> bool:
    return host.split(":")[0].lower().endswith(ACR_SUFFIXES)


def registry_host(url: str) -> str:
    return url.split("/", 1)[0]


def acr_exchange(
    host: str,
    *,
    access_token: str,
    tenant: str | None,
    session: requests.Session,
    exchange_url: str | None = None,
) -> str:
    """Exchange an Entra access token for an ACR refresh token (no az CLI needed)."""
    url = exchange_url or f"https://{host}/oauth2/exchange"
    form = {"grant_type": "access_token", "service": host, "access_token": access_token}
    if tenant:
        form["tenant"] = tenant
    try:
        response = session.post(url, data=form, timeout=TIMEOUT)
    except Exception as exc:
        raise RegistryError(
            f"cannot reach {host} to exchange the Azure token: {type(exc).__name__}",
            hint="check the registry name and the network",
        ) from None
    if response.status_code != 200:
        raise RegistryError(
            f"{host} refused the Azure token exchange (HTTP {response.status_code})",
            hint="give the deploying identity the AcrPush role on the registry, and check AZURE_TENANT_ID",
        )
    token = text_at(to_json(response.json()), "refresh_token")
    if not token:
        raise RegistryError(f"{host} answered the token exchange without a refresh_token")
    return token


AzureTokenSource = Callable[[], str]  # returns an Entra access token for ARM_SCOPE


def resolve_credentials(
    host: str,
    *,
    prefix: str | None,
    environ: Mapping[str, str],
    azure_token: AzureTokenSource | None = None,
    session: requests.Session | None = None,
    exchange_url: str | None = None,
    acr: bool | None = None,
) -> RegistryCredentials | None:
    """Credentials for pushing to `host`, in order:

    1. `<PREFIX>_USERNAME` / `<PREFIX>_PASSWORD` (prefix from the config, default REGISTRY);
    2. ghcr.io: `GITHUB_TOKEN` with `GITHUB_ACTOR` (a workflow's token with packages: write);
    3. Azure Container Registry: an Entra token exchanged at https://<registry>/oauth2/exchange;
    4. None: whatever `docker login` stored (the docker SDK reads ~/.docker/config.json itself).
    """
    names = prefix or DEFAULT_CREDENTIALS_PREFIX
    user_var, password_var = f"{names}_USERNAME", f"{names}_PASSWORD"
    username, password = environ.get(user_var), environ.get(password_var)
    if username and password:
        return RegistryCredentials(username, password, f"{user_var}/{password_var}")
    if prefix is not None and (username or password):
        missing = password_var if username else user_var
        raise RegistryError(
            f"{missing} is not set (credentials_env_prefix is {prefix})",
            hint=f"set both {user_var} and {password_var}",
        )
    if prefix is not None and not (username or password):
        raise RegistryError(
            f"credentials_env_prefix is {prefix} but {user_var} and {password_var} are not set",
            hint=f"export {user_var} and {password_var} (in a workflow: from secrets, in the step's env:)",
        )
    if host.lower() == "ghcr.io" and environ.get("GITHUB_TOKEN"):
        actor = environ.get("GITHUB_ACTOR") or "x-access-token"
        return RegistryCredentials(actor, environ["GITHUB_TOKEN"], "GITHUB_TOKEN")
    if (is_acr(host) if acr is None else acr) and azure_token is not None:
        import requests

        token = acr_exchange(
            host,
            access_token=azure_token(),
            tenant=environ.get("AZURE_TENANT_ID"),
            session=session or requests.Session(),
            exchange_url=exchange_url,
        )
        return RegistryCredentials(ACR_USERNAME, token, "Azure token exchange")
    return None


def stored_docker_credentials(host: str) -> RegistryCredentials | None:
    """What `docker login` stored for `host` (config.json or a credential helper)."""
    try:
        from docker import auth

        config = auth.load_config()
        entry = auth.resolve_authconfig(config, host) or {}
    except Exception:
        return None
    username, password = entry.get("username") or entry.get("Username"), entry.get("password") or entry.get("Password")
    if username and password:
        return RegistryCredentials(str(username), str(password), "docker login")
    return None


_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryClient:
    """Docker Registry HTTP API v2, with Basic and Bearer-token challenges."""

    def __init__(
        self,
        host: str,
        credentials: RegistryCredentials | None,
        *,
        session: requests.Session | None = None,
        scheme: str | None = None,
    ) -> None:
        import requests

        self.host = host
        self.credentials = credentials
        self.session = session or requests.Session()
        # Docker treats loopback registries as insecure (plain HTTP); everything else is HTTPS.
        self.scheme = scheme or ("http" if is_loopback(host) else "https")
        self._authorization: str | None = None

    def _url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}/v2/{path}"

    def _request(
        self, method: str, path: str, *, headers: Mapping[str, str], data: bytes | None = None
    ) -> requests.Response:
        sent = dict(headers)
        for attempt in range(2):
            if self._authorization:
                sent["Authorization"] = self._authorization
            try:
                response = self.session.request(method, self._url(path), headers=sent, timeout=TIMEOUT, data=data)
            except Exception as exc:
                raise RegistryError(
                    f"cannot reach registry {self.host}: {type(exc).__name__}",
                    hint="check the registry url and that the registry is up",
                ) from None
            if response.status_code != 401 or attempt == 1:
                break
            self._authorize(response.headers.get("WWW-Authenticate", ""), path)
        if response.status_code in (401, 403):
            raise RegistryError(
                f"registry {self.host} refused the credentials"
                + (f" from {self.credentials.source}" if self.credentials else " (none were given)"),
                hint=auth_fix(self.host),
            )
        return response

    def _authorize(self, challenge: str, path: str) -> None:
        scheme, _, params_text = challenge.partition(" ")
        if scheme.lower() == "basic":
            if self.credentials is None:
                raise RegistryError(f"registry {self.host} needs credentials", hint=auth_fix(self.host))
            import base64

            raw = f"{self.credentials.username}:{self.credentials.password}".encode()
            self._authorization = "Basic " + base64.b64encode(raw).decode()
            return
        if scheme.lower() != "bearer":
            raise RegistryError(f"registry {self.host} asks for unsupported authentication {scheme!r}")
        params = dict(_CHALLENGE_PARAM.findall(params_text))
        repository = path.split("/manifests/")[0].split("/blobs/")[0]
        query = {"service": params.get("service", self.host), "scope": f"repository:{repository}:pull,push"}
        auth = (self.credentials.username, self.credentials.password) if self.credentials else None
        try:
            response = self.session.get(params["realm"], params=query, auth=auth, timeout=TIMEOUT)
        except Exception as exc:
            raise RegistryError(f"cannot get a token from {self.host}: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise RegistryError(
                f"registry {self.host} refused a token (HTTP {response.status_code})", hint=auth_fix(self.host)
            )
        body = to_json(response.json())
        self._authorization = "Bearer " + str(value_at(body, "token") or value_at(body, "access_token"))

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """`Docker-Content-Digest` of repository:reference, or None when the registry has no such tag."""
        response = self._request(
            "HEAD", f"{repository}/manifests/{reference}", headers={"Accept": ", ".join(MANIFEST_TYPES)}
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RegistryError(
                f"registry {self.host} answered HTTP {response.status_code} for {repository}:{reference}"
            )
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:
            raise RegistryError(f"registry {self.host} sent no Docker-Content-Digest for {repository}:{reference}")
        return str(digest)

    def config_digest(self, repository: str, reference: str) -> str | None:
        """The image config digest in repository:reference's manifest (a Docker engine's image id for what it
        pushed), or None when there is no such tag or the manifest is a list."""
        response = self._request(
            "GET", f"{repository}/manifests/{reference}", headers={"Accept": ", ".join(MANIFEST_TYPES)}
        )
        if response.status_code != 200:
            return None
        try:
            config = response.json().get("config")
        except ValueError:
            return None
        return str(config["digest"]) if isinstance(config, dict) and config.get("digest") else None

    def retag(self, repository: str, source: str, tag: str) -> str:
        """Point `tag` at the manifest of `source` (a tag or digest); returns the digest."""
        response = self._request(
            "GET", f"{repository}/manifests/{source}", headers={"Accept": ", ".join(MANIFEST_TYPES)}
        )
        if response.status_code != 200:
            raise RegistryError(f"registry {self.host} has no manifest {repository}:{source}")
        media_type = response.headers.get("Content-Type", MANIFEST_TYPES[0])
        put = self._request(
            "PUT", f"{repository}/manifests/{tag}", data=response.content, headers={"Content-Type": media_type}
        )
        if put.status_code not in (200, 201):
            raise RegistryError(f"registry {self.host} refused tag {tag} (HTTP {put.status_code})")
        return str(put.headers.get("Docker-Content-Digest") or response.headers.get("Docker-Content-Digest"))


def auth_fix(host: str) -> str:
    if host.lower() == "ghcr.io":
        return (
            "in a workflow give the job `permissions: packages: write` and pass GITHUB_TOKEN; "
            "locally run `docker login ghcr.io` or set REGISTRY_USERNAME/REGISTRY_PASSWORD"
        )
    if is_acr(host):
        return "give the deploying identity the AcrPush role on the registry (or set REGISTRY_USERNAME/PASSWORD)"
    return (
        f"set REGISTRY_USERNAME and REGISTRY_PASSWORD (or <PREFIX>_USERNAME/_PASSWORD with "
        f"registry.credentials_env_prefix), or run `docker login {host}`"
    )
