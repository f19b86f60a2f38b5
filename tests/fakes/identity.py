"""A fake Microsoft Entra token endpoint and a fake GitHub Actions OIDC token endpoint: pure logic, no sockets.

Entra (authority = the fake's base URL): GET /{tenant}/v2.0/.well-known/openid-configuration (what MSAL reads),
GET /common/discovery/instance (MSAL's instance discovery), POST /{tenant}/oauth2/v2.0/token with grant_type
client_credentials and either a client_assertion (a GitHub OIDC token: workload identity federation) or a
client_secret. Errors use Entra's body: {"error", "error_description": "AADSTSnnn: ...", "error_codes": [nnn], ...}.

GitHub: GET /github/oidc/token?audience=... with "Authorization: bearer <request token>" answers {"value": <JWT>}.
FACTS.md: the token lives about five minutes; Entra then refuses it with AADSTS700024.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fakes.arm_state import Clock, Reply

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims: dict[str, Any], kid: str) -> str:
    header = {"typ": "JWT", "alg": "RS256", "kid": kid}
    parts = [_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(secrets.token_bytes(64))]
    return ".".join(parts)


def read_jwt(token: str) -> dict[str, Any] | None:
    """The claims of a JWT-shaped token, without any signature check (the registry of issued tokens is the check)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


@dataclass
class IssuedAccessToken:
    token: str
    expires: float  # monotonic
    expires_wall: datetime
    client_id: str


@dataclass
class IssuedGithubToken:
    token: str
    issued: float  # monotonic
    issued_wall: datetime


class IdentityState:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.base_url = "https://127.0.0.1"
        self.entra_token_lifetime = 3600
        self.github_token_lifetime = 300.0
        self.github_subject = "repo:octo-org/agents:environment:production"
        self.oidc_request_token = secrets.token_urlsafe(24)
        self.federated_subjects: set[str] | None = None  # None: any subject is trusted
        self.client_secrets: dict[str, str] = {}  # client_id -> secret; a client not listed accepts any secret
        self.access_tokens: dict[str, IssuedAccessToken] = {}
        self.allowed_tokens: set[str] = set()
        self.github_tokens: dict[str, IssuedGithubToken] = {}  # jti -> token

    # -- ARM's side: is this bearer token good? ------------------------------------------------------------------

    def check_bearer(self, authorization: str | None) -> Reply | None:
        """None when the token is good; else ARM's 401 with its code and a WWW-Authenticate challenge."""
        if not authorization:
            return self._arm_401(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                "The authentication failed because of missing 'Authorization' header.",
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return self._arm_401(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
                "The authentication failed because of invalid 'Authorization' header format.",
            )
        if token in self.allowed_tokens:
            return None
        issued = self.access_tokens.get(token)
        if issued is None:
            invalid = "The access token is invalid."
            return self._arm_401("InvalidAuthenticationToken", invalid, invalid)
        if self.clock.now() >= issued.expires:
            now = self.clock.wall().strftime("%m/%d/%Y %H:%M:%S")
            message = (
                f"The access token expiry UTC time '{issued.expires_wall.strftime('%m/%d/%Y %H:%M:%S')}' is earlier "
                f"than current UTC time '{now}'."
            )
            return self._arm_401("ExpiredAuthenticationToken", message, message)
        return None

    @staticmethod
    def _arm_401(code: str, message: str, description: str) -> Reply:
        challenge = (
            f'Bearer authorization_uri="https://login.windows.net/", error="invalid_token", '
            f'error_description="{description}"'
        )
        return Reply(401, {"error": {"code": code, "message": message}}, {"WWW-Authenticate": challenge})

    # -- Entra ---------------------------------------------------------------------------------------------------

    def openid_configuration(self, tenant: str) -> Reply:
        base = f"{self.base_url}/{tenant}"
        return Reply(
            200,
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{self.base_url}/{tenant}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{base}/v2.0",
                "request_uri_parameter_supported": False,
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "tid", "ver", "oid"],
                "tenant_region_scope": "NA",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
            },
        )

    def instance_discovery(self, query: dict[str, str]) -> Reply:
        endpoint = query.get("authorization_endpoint", "")
        tail = endpoint.split("://", 1)[-1].split("/")
        tenant = tail[1] if len(tail) > 1 and tail[1] else "common"
        host = self.base_url.split("://", 1)[-1]
        return Reply(
            200,
            {
                "tenant_discovery_endpoint": f"{self.base_url}/{tenant}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
            },
        )

    def token(self, tenant: str, form: dict[str, str]) -> Reply:
        if form.get("grant_type") != "client_credentials":
            return self._entra_error(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type '{}'.".format(form.get("grant_type")),
            )
        client_id = form.get("client_id")
        if not client_id:
            return self._entra_error(
                400, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'."
            )
        if "client_assertion" in form:
            refused = self._check_assertion(form.get("client_assertion_type"), form["client_assertion"])
            if refused:
                return refused
        elif "client_secret" in form:
            expected = self.client_secrets.get(client_id)
            if not form["client_secret"] or (expected is not None and form["client_secret"] != expected):
                return self._entra_error(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                    f"secret value, not the client secret ID, for a secret added to app '{client_id}'.",
                )
        else:
            return self._entra_error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        now, wall = self.clock.now(), self.clock.wall()
        lifetime = int(self.entra_token_lifetime)
        issued_at = int(wall.timestamp())
        claims = {
            "aud": "https://management.azure.com",
            "iss": f"https://sts.windows.net/{tenant}/",
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + lifetime,
            "appid": client_id,
            "tid": tenant,
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, client_id)),
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, client_id)),
            "ver": "1.0",
            "scp": form.get("scope", ""),
        }
        token = make_jwt(claims, "fake-entra")
        expires_wall = datetime.fromtimestamp(issued_at + lifetime, UTC)
        self.access_tokens[token] = IssuedAccessToken(token, now + lifetime, expires_wall, client_id)
        body = {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}
        return Reply(200, body)

    def _check_assertion(self, assertion_type: str | None, assertion: str) -> Reply | None:
        if assertion_type != JWT_BEARER:
            return self._entra_error(
                400, "invalid_request", 90002, f"The client assertion type must be '{JWT_BEARER}'."
            )
        claims = read_jwt(assertion)
        if claims is None:
            return self._entra_error(400, "invalid_request", 50027, "JWT token is invalid or is malformed.")
        issued = self.github_tokens.get(str(claims.get("jti")))
        if issued is None or issued.token != assertion:
            return self._entra_error(401, "invalid_client", 700027, "Client assertion contains an invalid signature.")
        if claims.get("aud") != EXCHANGE_AUDIENCE:
            return self._entra_error(
                401,
                "invalid_client",
                700212,
                f"No matching federated identity record found for presented assertion audience '{claims.get('aud')}'.",
            )
        if self.clock.now() > issued.issued + self.github_token_lifetime:
            valid_until = datetime.fromtimestamp(issued.issued_wall.timestamp() + self.github_token_lifetime, UTC)
            current = self.clock.wall()
            return self._entra_error(
                401,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range. Current time: "
                f"{current:%Y-%m-%dT%H:%M:%S.%f}Z, assertion valid from {issued.issued_wall:%Y-%m-%dT%H:%M:%S}Z, "
                f"expiry time of assertion {valid_until:%Y-%m-%dT%H:%M:%S}Z. Review the "
                "documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
            )
        if self.federated_subjects is not None and claims.get("sub") not in self.federated_subjects:
            return self._entra_error(
                400,
                "invalid_request",
                70021,
                "No matching federated identity record found for presented assertion. Assertion Issuer: "
                f"'{claims.get('iss')}'. Assertion Subject: '{claims.get('sub')}'. Assertion Audience: "
                f"'{claims.get('aud')}'.",
            )
        return None

    def _entra_error(self, status: int, error: str, code: int, text: str) -> Reply:
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = self.clock.wall().strftime("%Y-%m-%d %H:%M:%SZ")
        body = {
            "error": error,
            "error_description": (
                f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {stamp}"
            ),
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        }
        return Reply(status, body)

    # -- GitHub Actions OIDC -------------------------------------------------------------------------------------

    def github_token(self, authorization: str | None, query: dict[str, str]) -> Reply:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.oidc_request_token:
            return Reply(401, {"message": "Bad credentials"})
        now, wall = self.clock.now(), self.clock.wall()
        jti = str(uuid.uuid4())
        issued_at = int(wall.timestamp())
        claims = {
            "jti": jti,
            "sub": self.github_subject,
            "aud": query.get("audience") or "https://github.com/octo-org",
            "ref": "refs/tags/v1.4.0",
            "sha": "d6cd1e2bd19e03a81132a23b2025920577f84e37",
            "repository": "octo-org/agents",
            "repository_owner": "octo-org",
            "run_id": "6211275514",
            "run_number": "42",
            "run_attempt": "1",
            "environment": "production",
            "event_name": "push",
            "iss": GITHUB_ISSUER,
            "nbf": issued_at,
            "iat": issued_at,
            "exp": issued_at + int(self.github_token_lifetime),
        }
        value = make_jwt(claims, "fake-github")
        self.github_tokens[jti] = IssuedGithubToken(value, now, wall)
        return Reply(200, {"value": value})
