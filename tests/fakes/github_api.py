"""GitHub's REST endpoints for pull request comments and deployments on 127.0.0.1, shaped as docs.github.com/rest
describes them (issues/comments, deployments/deployments, deployments/statuses, using-pagination-in-the-rest-api).

- `GET /repos/{o}/{r}/issues/{n}/comments`: the comments in ascending id, `per_page` (default 30, at most 100)
  and `page`; a `link` header with rel="next"/"last" (and "prev"/"first" after page 1) when there are more.
- `POST /repos/{o}/{r}/issues/{n}/comments` `{"body"}` -> 201 the comment (its `user` is the token's owner);
  `PATCH /repos/{o}/{r}/issues/comments/{id}` `{"body"}` -> 200. A missing body is 422, an unknown number 404.
- `POST /repos/{o}/{r}/deployments` -> 201 the deployment. Without `required_contexts` every commit status context
  of the ref must be `success` (a pending one: 409); `auto_merge` (default true) on a ref behind the default
  branch merges it instead: 202 `{"message": "Auto-merged main into <ref> on deployment."}`; no `ref`: 422.
  `GET .../deployments` lists them newest first, filtered by `environment`, `ref`, `sha`, `task`.
- `POST .../deployments/{id}/statuses` `{"state", "environment_url", "log_url", "auto_inactive"}` -> 201; a state
  outside error, failure, inactive, in_progress, queued, pending, success is 422. A `success` with auto_inactive
  (default true) adds an `inactive` status to the earlier deployments of the environment that are neither
  transient nor production and whose newest status is `success`. `GET .../statuses` lists them newest first.
- No Authorization header: 401 "Requires authentication"; an unknown token: 401 "Bad credentials". A write needs
  the token's permission for it, as a job's `permissions:` give it: a comment `pull-requests: write` (or `issues:
  write`), a deployment or its status `deployments: write`; without it (a fork's pull request gets read-only) 403
  "Resource not accessible by integration".
`log` holds every request as "METHOD path?query", `bodies` the JSON of each write.
"""

from __future__ import annotations

import http.server
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
BOT = {"login": "github-actions[bot]", "type": "Bot"}


@dataclass
class Token:
    user: dict[str, str]
    permissions: dict[str, str]  # scope -> read or write, as a job's `permissions:` say

    def may_write(self, route: str) -> bool:
        scopes = ("deployments",) if route.startswith("/deployments") else ("pull-requests", "issues")
        return any(self.permissions.get(scope) == "write" for scope in scopes)


@dataclass
class Deployment:
    data: dict[str, Any]
    statuses: list[dict[str, Any]] = field(default_factory=list)  # oldest first


class FakeGitHubApi:
    def __init__(self, repository: str = "org/agents", pulls: tuple[int, ...] = (7,)) -> None:
        self.repository = repository
        self.pulls = set(pulls)
        self.tokens: dict[str, Token] = {}
        self.comments: dict[int, dict[str, Any]] = {}  # id -> comment (its issue number under "_number")
        self.deployments: dict[int, Deployment] = {}
        self.pending_contexts: dict[str, list[str]] = {}  # ref -> commit status contexts still pending
        self.behind_default: set[str] = set()  # refs behind the default branch (auto_merge merges them)
        self.log: list[str] = []
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        self._ids = itertools.count(1001)
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api._serve(self, "GET")

            def do_POST(self) -> None:
                api._serve(self, "POST")

            def do_PATCH(self) -> None:
                api._serve(self, "PATCH")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._lock = threading.Lock()
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    # -- what a test sets up

    def token(
        self,
        value: str,
        *,
        write: bool = True,
        permissions: dict[str, str] | None = None,
        user: dict[str, str] | None = None,
    ) -> str:
        """A token the API accepts: by default one whose job may write comments and deployments."""
        level = "write" if write else "read"
        granted = permissions if permissions is not None else {"pull-requests": level, "deployments": level}
        self.tokens[value] = Token(dict(user or BOT), dict(granted))
        return value

    def add_comment(self, number: int, body: str, login: str = "octocat", kind: str = "User") -> int:
        return self._store_comment(number, body, {"login": login, "type": kind})

    def comments_of(self, number: int) -> list[dict[str, Any]]:
        return [c for c in self.comments.values() if c["_number"] == number]

    def environment(self, name: str) -> list[Deployment]:
        return [d for d in self.deployments.values() if d.data["environment"] == name]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the API

    def _serve(self, handler: http.server.BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        with self._lock:
            self.log.append(f"{method} {handler.path}")
            body: Any = None
            if method != "GET":
                raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    return _send(handler, 400, {"message": "Problems parsing JSON"})
                self.bodies.append((f"{method} {parts.path}", body))
            authorization = handler.headers.get("Authorization") or ""
            if not authorization:
                return _send(handler, 401, {"message": "Requires authentication"})
            token = self.tokens.get(authorization.removeprefix("Bearer ").removeprefix("token "))
            if token is None:
                return _send(handler, 401, {"message": "Bad credentials"})
            base = f"/repos/{self.repository}"
            if not parts.path.startswith(base + "/"):
                return _send(handler, 404, {"message": "Not Found"})
            route = parts.path.removeprefix(base)
            if method != "GET" and not token.may_write(route):
                return _send(handler, 403, {"message": "Resource not accessible by integration"})
            status, answer, link = self._route(method, route, query, body, token)
            _send(handler, status, answer, link)

    def _route(self, method: str, route: str, query: dict[str, str], body: Any, token: Token) -> tuple[int, Any, str]:
        if match := re.fullmatch(r"/issues/(\d+)/comments", route):
            number = int(match.group(1))
            if number not in self.pulls:
                return 404, {"message": "Not Found"}, ""
            if method == "GET":
                return self._page(self.comments_of(number), route, query)
            if method == "POST":
                if not isinstance(body.get("body"), str):
                    return 422, {"message": 'Invalid request.\n\n"body" wasn\'t supplied.'}, ""
                return 201, self._public(self.comments[self._store_comment(number, body["body"], token.user)]), ""
        if (match := re.fullmatch(r"/issues/comments/(\d+)", route)) and method == "PATCH":
            comment = self.comments.get(int(match.group(1)))
            if comment is None:
                return 404, {"message": "Not Found"}, ""
            if not isinstance(body.get("body"), str):
                return 422, {"message": 'Invalid request.\n\n"body" wasn\'t supplied.'}, ""
            comment["body"], comment["updated_at"] = body["body"], _now(next(self._ids))
            return 200, self._public(comment), ""
        if route == "/deployments":
            return self._deployments(method, query, body, token)
        if match := re.fullmatch(r"/deployments/(\d+)/statuses", route):
            deployment = self.deployments.get(int(match.group(1)))
            if deployment is None:
                return 404, {"message": "Not Found"}, ""
            if method == "GET":
                return self._page(list(reversed(deployment.statuses)), route, query)
            if method == "POST":
                return self._add_status(deployment, body, token)
        return 404, {"message": "Not Found"}, ""

    def _deployments(self, method: str, query: dict[str, str], body: Any, token: Token) -> tuple[int, Any, str]:
        if method == "GET":
            found = [
                d.data
                for d in reversed(self.deployments.values())
                if all(d.data.get(key) == query[key] for key in ("environment", "ref", "sha", "task") if key in query)
            ]
            return self._page(found, "/deployments", query)
        ref = body.get("ref")
        if not isinstance(ref, str) or not ref:
            return 422, {"message": 'Invalid request.\n\n"ref" wasn\'t supplied.'}, ""
        required = body.get("required_contexts")
        pending = self.pending_contexts.get(ref, [])
        blocking = pending if required is None else [c for c in required if c in pending]
        if blocking:
            return 409, {"message": f"Conflict: Commit status checks failed for {ref}."}, ""
        if body.get("auto_merge", True) and ref in self.behind_default:
            self.behind_default.discard(ref)
            return 202, {"message": f"Auto-merged main into {ref} on deployment."}, ""
        environment = body.get("environment", "production")
        deployment_id = next(self._ids)
        data = {
            "id": deployment_id,
            "url": f"{self.url}/repos/{self.repository}/deployments/{deployment_id}",
            "sha": ref if re.fullmatch(r"[0-9a-f]{40}", ref) else "0" * 40,
            "ref": ref,
            "task": body.get("task", "deploy"),
            "payload": body.get("payload", {}),
            "environment": environment,
            "original_environment": environment,
            "description": body.get("description", ""),
            "creator": dict(token.user),
            "created_at": _now(deployment_id),
            "transient_environment": bool(body.get("transient_environment", False)),
            "production_environment": bool(body.get("production_environment", environment == "production")),
            "statuses_url": f"{self.url}/repos/{self.repository}/deployments/{deployment_id}/statuses",
        }
        self.deployments[deployment_id] = Deployment(data)
        return 201, data, ""

    def _add_status(self, deployment: Deployment, body: Any, token: Token) -> tuple[int, Any, str]:
        state = body.get("state")
        if state not in STATES:
            return 422, {"message": "Validation Failed", "errors": [{"field": "state", "code": "invalid"}]}, ""
        status = self._status(deployment, state, token, body)
        if state == "success" and body.get("auto_inactive", True):
            for other in self.environment(deployment.data["environment"]):
                if other is deployment or other.data["transient_environment"] or other.data["production_environment"]:
                    continue
                if other.statuses and other.statuses[-1]["state"] == "success":
                    self._status(other, "inactive", token, {})
        return 201, status, ""

    def _status(self, deployment: Deployment, state: str, token: Token, body: dict[str, Any]) -> dict[str, Any]:
        status_id = next(self._ids)
        status = {
            "id": status_id,
            "state": state,
            "description": body.get("description", ""),
            "environment": deployment.data["environment"],
            "environment_url": body.get("environment_url", ""),
            "log_url": body.get("log_url", ""),
            "target_url": body.get("log_url", body.get("target_url", "")),
            "creator": dict(token.user),
            "deployment_url": deployment.data["url"],
            "created_at": _now(status_id),
        }
        deployment.statuses.append(status)
        return status

    def _store_comment(self, number: int, body: str, user: dict[str, str]) -> int:
        comment_id = next(self._ids)
        self.comments[comment_id] = {
            "_number": number,
            "id": comment_id,
            "node_id": f"IC_{comment_id}",
            "url": f"{self.url}/repos/{self.repository}/issues/comments/{comment_id}",
            "html_url": f"https://github.com/{self.repository}/pull/{number}#issuecomment-{comment_id}",
            "issue_url": f"{self.url}/repos/{self.repository}/issues/{number}",
            "body": body,
            "user": dict(user),
            "created_at": _now(comment_id),
            "updated_at": _now(comment_id),
            "author_association": "NONE" if user.get("type") == "Bot" else "MEMBER",
        }
        return comment_id

    @staticmethod
    def _public(comment: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in comment.items() if not key.startswith("_")}

    def _page(self, items: list[dict[str, Any]], route: str, query: dict[str, str]) -> tuple[int, Any, str]:
        """One page of a list, and the link header GitHub sends with it when there is more than one page."""
        per_page = min(max(int(query.get("per_page", 30)), 1), 100)
        page = max(int(query.get("page", 1)), 1)
        last = max((len(items) + per_page - 1) // per_page, 1)
        chosen = [self._public(item) for item in items[(page - 1) * per_page : page * per_page]]
        if last == 1:
            return 200, chosen, ""

        def at(number: int) -> str:
            kept = {key: value for key, value in query.items() if key != "page"}
            return f"<{self.url}/repos/{self.repository}{route}?{urlencode({**kept, 'page': number})}>"

        links = []
        if page > 1:
            links += [f'{at(page - 1)}; rel="prev"', f'{at(1)}; rel="first"']
        if page < last:
            links += [f'{at(page + 1)}; rel="next"', f'{at(last)}; rel="last"']
        return 200, chosen, ", ".join(links)


def _now(sequence: int) -> str:
    return f"2026-12-05T20:{sequence // 60 % 60:02d}:{sequence % 60:02d}Z"


def _send(handler: http.server.BaseHTTPRequestHandler, status: int, body: Any, link: str = "") -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json; charset=utf-8")
    handler.send_header("Content-Length", str(len(data)))
    if link:
        handler.send_header("Link", link)
    handler.end_headers()
    handler.wfile.write(data)
