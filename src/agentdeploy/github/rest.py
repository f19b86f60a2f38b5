"""A small client of GitHub's REST API (docs.github.com/rest), for the preview's comment and deployments.

The API URL, repository and token come from the runner's environment (GITHUB_API_URL, GITHUB_REPOSITORY,
GITHUB_TOKEN); the HTTP call itself is an adapter (`Transport`), stdlib urllib by default. Lists are read
page by page through the `link` header's rel="next" URL ("Using pagination in the REST API"), followed only
while it stays on the same API URL, so the token never goes to another host; redirects are not followed
either. Every refusal is one GitHubApiError that names the request and the HTTP status, never the token.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlencode, urlsplit

from agentdeploy.errors import GitHubApiError, TargetUnavailableError
from agentdeploy.jsonvalue import JsonObject, JsonValue, text_at

API_VERSION = "2022-11-28"
PAGE_SIZE = 100  # the most a list endpoint gives per page
TIMEOUT = 30
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="next"')


@dataclass(frozen=True)
class Response:
    status: int
    body: JsonValue
    link: str = ""  # the `link` header: where the other pages of a list are


class Transport(Protocol):
    def __call__(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> Response: ...


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a 3xx comes back as an HTTPError: the Authorization header goes nowhere else


def urllib_transport(method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
    """The HTTP call with the standard library: the status, the JSON body (None when empty), the link header."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method=method)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=TIMEOUT) as answer:
            return Response(answer.status, _json(answer.read()), answer.headers.get("link") or "")
    except urllib.error.HTTPError as error:
        return Response(error.code, _json(error.read()), error.headers.get("link") or "")
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        host = urlsplit(url).netloc
        raise TargetUnavailableError(
            f"cannot reach the GitHub API at {host}: {type(reason).__name__}",
            hint="check GITHUB_API_URL (GitHub Enterprise Server: https://HOST/api/v3) and the runner's network",
        ) from None


def _json(data: bytes) -> JsonValue:
    if not data.strip():
        return None
    try:
        parsed: JsonValue = json.loads(data)
    except ValueError:
        return None
    return parsed


@dataclass(frozen=True, kw_only=True)
class GitHubRest:
    """One repository on one GitHub API, with the token the requests carry."""

    api_url: str
    repository: str  # owner/name
    token: str = field(repr=False)
    transport: Transport = urllib_transport

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], transport: Transport = urllib_transport) -> GitHubRest:
        repository, token = environ.get("GITHUB_REPOSITORY", ""), environ.get("GITHUB_TOKEN", "")
        missing = [name for name, value in (("GITHUB_REPOSITORY", repository), ("GITHUB_TOKEN", token)) if not value]
        if missing:
            raise GitHubApiError(
                "the preview's pull request comment and deployment need the GitHub API, but "
                + " and ".join(missing)
                + (" is" if len(missing) == 1 else " are")
                + " not set",
                hint="in a workflow the action passes the job's token (its permissions need pull-requests: write "
                "and deployments: write); locally export GITHUB_REPOSITORY=owner/repo and GITHUB_TOKEN",
            )
        api_url = (environ.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/")
        return cls(api_url=api_url, repository=repository, token=token, transport=transport)

    def url(self, path: str, query: Mapping[str, str | int] | None = None) -> str:
        """The URL of `path` under this repository (`/issues/7/comments`), with its query."""
        suffix = f"?{urlencode(query)}" if query else ""
        return f"{self.api_url}/repos/{self.repository}{path}{suffix}"

    def call(self, method: str, url: str, what: str, body: JsonObject | None = None) -> Response:
        """One request; its answer when it is 2xx, else GitHubApiError saying what was asked and what GitHub said."""
        headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self.token}",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "agentdeploy",
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        answer = self.transport(method, url, data, headers)
        if 200 <= answer.status < 300:
            return answer
        raise self.refusal(answer, what)

    def pages(self, path: str, what: str, query: Mapping[str, str | int] | None = None) -> Iterator[JsonObject]:
        """Every item of a list endpoint, page after page (rel="next"), as long as the API gives more."""
        url: str | None = self.url(path, {**(query or {}), "per_page": PAGE_SIZE})
        while url is not None:
            answer = self.call("GET", url, what)
            if not isinstance(answer.body, list):
                raise GitHubApiError(f"GitHub's answer to {what} is not a list (HTTP {answer.status})")
            yield from (item for item in answer.body if isinstance(item, dict))
            url = self._next_page(answer.link, what)

    def _next_page(self, link: str, what: str) -> str | None:
        found = _NEXT.search(link)
        if found is None:
            return None
        url = found.group(1)
        if not url.startswith(f"{self.api_url}/"):
            raise GitHubApiError(
                f"GitHub's next page of {what} is on another host ({urlsplit(url).netloc}): not followed, so the "
                "token goes to no other server",
                hint=f"GITHUB_API_URL is {self.api_url}; set it to the API URL the pages are served from",
            )
        return url

    def refusal(self, answer: Response, what: str) -> GitHubApiError:
        said = text_at(answer.body, "message")
        quoted = f": {said}" if said else ""
        hints = {
            401: "the token is missing, expired or wrong: pass the job's github.token",
            403: "the job's token may not do this: give the job `permissions: pull-requests: write` (the comment) "
            "and `deployments: write` (the deployment); a pull request from a fork gets a read-only token",
            404: f"check that {self.repository} exists and that the token can see it",
            422: "GitHub refused the request's fields (a bug in agentdeploy if it persists)",
        }
        return GitHubApiError(
            f"GitHub refused {what} in {self.repository} (HTTP {answer.status}{quoted})",
            hint=hints.get(answer.status, "try again; GitHub may be failing (githubstatus.com)"),
        )
