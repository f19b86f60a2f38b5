"""The real Azure SDK answered from a recorded session (a vcrpy cassette in tests/azure/recordings).

RecordedTransport is azure-core's own RequestsTransport with a requests adapter that, instead of the network,
answers each request with the next recorded interaction of the same method and path (case-insensitive, query and
api-version ignored: the SDK asks for its own api-version), searching forward from the last one answered, so a
session replays in its recorded order and interactions the SDK never asks for (the CLI's provider lookups) are
passed over. A request the recording cannot answer fails the test with the request named: nothing is invented.
"""

from __future__ import annotations

import functools
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
import yaml
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

LIVE = "https://management.azure.com"


@functools.lru_cache(maxsize=8)
def load_interactions(path: Path) -> list[dict[str, Any]]:
    """Parsed once per file (read only: nothing here changes them)."""
    return list(yaml.safe_load(path.read_text(encoding="utf-8"))["interactions"])


def recorded_path(interaction: dict[str, Any]) -> str:
    return urlsplit(interaction["request"]["uri"]).path


def recorded_json(interaction: dict[str, Any], part: str = "response") -> Any:
    """The JSON body of an interaction's request or response (None when empty)."""
    body = interaction[part]["body"]
    text = body["string"] if part == "response" else body
    if isinstance(text, bytes):
        text = text.decode()
    return json.loads(text) if text else None


@dataclass
class Answered:
    number: int  # 1-based, as the recording's interactions are numbered in the tests
    method: str
    path: str
    body: Any  # the JSON the SDK sent (None without a body)


@dataclass
class _Cursor:
    interactions: list[dict[str, Any]]
    position: int  # index of the first interaction not passed yet
    answered: list[Answered] = field(default_factory=list)


class _RecordedAdapter(HTTPAdapter):
    def __init__(self, cursor: _Cursor) -> None:
        super().__init__()
        self.cursor = cursor

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        cursor = self.cursor
        method, path = str(request.method), urlsplit(str(request.url)).path
        for index in range(cursor.position, len(cursor.interactions)):
            interaction = cursor.interactions[index]
            if interaction["request"]["method"] == method and recorded_path(interaction).lower() == path.lower():
                cursor.position = index + 1
                sent = request.body.decode() if isinstance(request.body, bytes) else request.body
                cursor.answered.append(Answered(index + 1, method, path, json.loads(sent) if sent else None))
                return _response(request, interaction["response"])
        raise AssertionError(f"the recording has no answer for {method} {path} after interaction #{cursor.position}")


def _response(request: requests.PreparedRequest, recorded: dict[str, Any]) -> requests.Response:
    response = requests.Response()
    response.status_code = int(recorded["status"]["code"])
    response.reason = str(recorded["status"]["message"])
    response.headers = CaseInsensitiveDict(
        {name: values[0] if isinstance(values, list) else str(values) for name, values in recorded["headers"].items()}
    )
    text = recorded["body"]["string"] or ""
    content = text.encode() if isinstance(text, str) else text
    response._content = content
    response.raw = urllib3.HTTPResponse(
        body=io.BytesIO(content), headers=dict(response.headers), status=response.status_code, preload_content=False
    )
    response.url = str(request.url)
    response.request = request
    return response


class RecordedTransport(RequestsTransport):
    """azure-core's RequestsTransport on a session whose every https request is answered from the recording."""

    def __init__(self, path: Path, *, start: int = 1) -> None:
        self.cursor = _Cursor(load_interactions(path), start - 1)
        session = requests.Session()
        session.mount("https://", _RecordedAdapter(self.cursor))
        super().__init__(session=session, session_owner=False)

    @property
    def answered(self) -> list[Answered]:
        return self.cursor.answered

    def numbers(self) -> list[int]:
        return [answer.number for answer in self.cursor.answered]


class RecordedCredential:
    """A token for the SDK's bearer policy: the recording answers whatever the token."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("recorded-session", int(time.time()) + 3600)


def recorded_client(transport: RecordedTransport, subscription: str = "00000000-0000-0000-0000-000000000000") -> Any:
    """The real ContainerAppsAPIClient (as agentdeploy builds it) over the recorded transport; no polling wait."""
    from azure.mgmt.appcontainers import ContainerAppsAPIClient

    return ContainerAppsAPIClient(
        RecordedCredential(),  # type: ignore[arg-type]
        subscription,
        base_url=LIVE,
        transport=transport,
        polling_interval=0,
        retry_total=0,
    )
