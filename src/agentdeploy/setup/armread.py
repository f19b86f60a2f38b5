"""ARM reads for `setup azure --check`: plain GETs sent through the pipeline of the SDK client every deploy uses
(the same credential, token cache, retry policy and endpoint: targets/azure/auth.py). No SDK of
Microsoft.ManagedIdentity or Microsoft.Authorization is needed for three GETs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from agentdeploy.errors import TargetUnavailableError
from agentdeploy.jsonvalue import JsonObject, objects_at, text_at, to_json, to_object
from agentdeploy.targets.azure.arm import azure_errors

if TYPE_CHECKING:
    from azure.core.rest import HttpResponse
    from azure.mgmt.appcontainers import ContainerAppsAPIClient

PUBLIC_ARM = "https://management.azure.com"
READ_HINT = (
    "check with an identity that may read the resource group, its identities and the subscription's role "
    "assignments (Reader is enough), e.g. your own `az login`"
)


class SdkArmReader:
    """GETs only: nothing here can send another method."""

    def __init__(self, client: ContainerAppsAPIClient, base_url: str | None = None) -> None:
        self.client = client  # a ContainerAppsAPIClient (send_request runs our request through its pipeline)
        self.host = urlsplit(base_url or PUBLIC_ARM).netloc.lower()

    def get(self, path: str, api_version: str) -> JsonObject | None:
        response = self._get(path, {"api-version": api_version})
        return None if response.status_code == 404 else _body(response)

    def list(self, path: str, api_version: str, params: Mapping[str, str] | None = None) -> list[JsonObject]:
        items: list[JsonObject] = []
        url: str | None = path
        query: dict[str, str] | None = {"api-version": api_version, **(params or {})}
        while url:
            response = self._get(url, query)
            if response.status_code == 404:
                return items
            body = _body(response)
            items += objects_at(body, "value")
            url, query = text_at(body, "nextLink") or None, None  # the next link carries its own query
            if url and urlsplit(url).netloc.lower() != self.host:
                # Our bearer token goes with every request: never to a host other than ARM's.
                raise TargetUnavailableError(f"ARM's next page points at another host: {urlsplit(url).netloc}")
        return items

    def _get(self, url: str, params: Mapping[str, str] | None) -> HttpResponse:
        from azure.core.rest import HttpRequest

        with azure_errors(f"reading {urlsplit(url).path}"):
            response: HttpResponse = self.client.send_request(HttpRequest("GET", url, params=params))
        if response.status_code in (200, 404):
            return response
        code, message = _error_of(response)
        raise TargetUnavailableError(
            f"Azure refused reading {urlsplit(url).path}: HTTP {response.status_code} {code}: {message}",
            hint=READ_HINT if response.status_code in (401, 403) else None,
        )


def _body(response: HttpResponse) -> JsonObject:
    try:
        return to_object(to_json(json.loads(response.text())))
    except ValueError:
        raise TargetUnavailableError(f"ARM answered HTTP {response.status_code} with a body that is not JSON") from None


def _error_of(response: HttpResponse) -> tuple[str, str]:
    try:
        body = to_json(json.loads(response.text()))
    except ValueError:
        return "", response.text()[:200]
    error = body.get("error", body) if isinstance(body, dict) else {}
    return text_at(error, "code"), text_at(error, "message")
