"""Push to real registries on loopback: digests, credentials, retries, and the ACR token exchange."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests

from agentdeploy.errors import ExitCode, RegistryError
from agentdeploy.image.engine import push_image
from agentdeploy.image.registry import RegistryClient, resolve_credentials
from testkit import REGISTRY, start_registry

pytestmark = pytest.mark.docker

MANIFEST_ACCEPT = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"


def registry_digest(host: str, repository: str, tag: str, auth: tuple[str, str] | None = None) -> str:
    """Docker-Content-Digest straight from the registry, independently of agentdeploy's client."""
    request = urllib.request.Request(
        f"http://{host}/v2/{repository}/manifests/{tag}", method="HEAD", headers={"Accept": MANIFEST_ACCEPT}
    )
    if auth:
        import base64

        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(response.headers["Docker-Content-Digest"])


def tag_base(docker_client: Any, base_image: str, reference: str) -> None:
    repository, _, tag = reference.rpartition(":")
    docker_client.images.get(base_image).tag(repository, tag)


def test_push_reports_the_registry_digest(docker_client: Any, base_image: str, repository_name: str) -> None:
    reference = f"{REGISTRY}/{repository_name}:v1"
    tag_base(docker_client, base_image, reference)
    lines: list[str] = []
    digest = push_image(
        docker_client, f"{REGISTRY}/{repository_name}", "v1", auth_config=None, registry=REGISTRY, on_line=lines.append
    )
    assert digest == registry_digest(REGISTRY, repository_name, "v1")
    assert any(line.startswith("v1: digest: " + digest) for line in lines)
    client = RegistryClient(REGISTRY, None)
    assert client.manifest_digest(repository_name, "v1") == digest
    assert client.manifest_digest(repository_name, "missing") is None
    # Re-tagging through the registry API points a new tag at the same manifest.
    assert client.retag(repository_name, "v1", "v1-again") == digest
    assert registry_digest(REGISTRY, repository_name, "v1-again") == digest


def test_push_with_htpasswd_credentials(
    docker_client: Any, base_image: str, auth_registry: Any, repository_name: str
) -> None:
    environ = {"TEAM_USERNAME": auth_registry.username, "TEAM_PASSWORD": auth_registry.password}
    credentials = resolve_credentials(auth_registry.host, prefix="TEAM", environ=environ)
    assert credentials is not None and credentials.source == "TEAM_USERNAME/TEAM_PASSWORD"
    assert auth_registry.password not in repr(credentials)
    reference = f"{auth_registry.host}/{repository_name}:v1"
    tag_base(docker_client, base_image, reference)
    digest = push_image(
        docker_client,
        f"{auth_registry.host}/{repository_name}",
        "v1",
        auth_config=credentials.auth_config(),
        registry=auth_registry.host,
    )
    auth = (auth_registry.username, auth_registry.password)
    assert digest == registry_digest(auth_registry.host, repository_name, "v1", auth)
    assert RegistryClient(auth_registry.host, credentials).manifest_digest(repository_name, "v1") == digest


def test_wrong_credentials_give_a_clear_error(
    docker_client: Any, base_image: str, auth_registry: Any, repository_name: str
) -> None:
    reference = f"{auth_registry.host}/{repository_name}:v1"
    tag_base(docker_client, base_image, reference)
    credentials = resolve_credentials(
        auth_registry.host, prefix=None, environ={"REGISTRY_USERNAME": "deployer", "REGISTRY_PASSWORD": "wrong-pw"}
    )
    assert credentials is not None
    slept: list[float] = []
    with pytest.raises(RegistryError) as exc:
        push_image(
            docker_client,
            f"{auth_registry.host}/{repository_name}",
            "v1",
            auth_config=credentials.auth_config(),
            registry=auth_registry.host,
            sleep=slept.append,
        )
    assert exc.value.exit_code == ExitCode.REGISTRY
    assert exc.value.message.startswith(f"registry {auth_registry.host} refused the push")
    assert exc.value.hint is not None and "REGISTRY_USERNAME and REGISTRY_PASSWORD" in exc.value.hint
    assert "wrong-pw" not in exc.value.render()
    assert slept == []  # an auth failure is not retried
    with pytest.raises(RegistryError) as client_exc:
        RegistryClient(auth_registry.host, credentials).manifest_digest(repository_name, "v1")
    assert "refused the credentials from REGISTRY_USERNAME/REGISTRY_PASSWORD" in client_exc.value.message


def test_prefix_with_half_the_credentials_is_an_error() -> None:
    with pytest.raises(RegistryError) as exc:
        resolve_credentials("reg.example", prefix="ACME", environ={"ACME_USERNAME": "u"})
    assert exc.value.message == "ACME_PASSWORD is not set (credentials_env_prefix is ACME)"


def test_ghcr_uses_the_workflow_token() -> None:
    credentials = resolve_credentials(
        "ghcr.io", prefix=None, environ={"GITHUB_TOKEN": "ghs_token", "GITHUB_ACTOR": "octocat"}
    )
    assert credentials is not None
    assert (credentials.username, credentials.password, credentials.source) == ("octocat", "ghs_token", "GITHUB_TOKEN")


def test_transient_push_failures_are_retried(
    docker_client: Any, base_image: str, tmp_path: Path, free_port: Any, repository_name: str
) -> None:
    port = free_port()
    host = f"127.0.0.1:{port}"
    tag_base(docker_client, base_image, f"{host}/{repository_name}:v1")
    started: list[Any] = []

    def sleep(seconds: float) -> None:
        # The registry comes up while we back off, as a flaky one would.
        if not started:
            started.append(start_registry(tmp_path / "late-registry", port))

    lines: list[str] = []
    try:
        digest = push_image(
            docker_client,
            f"{host}/{repository_name}",
            "v1",
            auth_config=None,
            registry=host,
            on_line=lines.append,
            sleep=sleep,
        )
        assert digest == registry_digest(host, repository_name, "v1")
    finally:
        for process in started:
            process.terminate()
    retries = [line for line in lines if line.startswith("push failed")]
    assert len(retries) == 1 and "connection refused" in retries[0] and "attempt 2 of 4" in retries[0]


def test_push_gives_up_after_the_last_attempt(docker_client: Any, base_image: str, free_port: Any) -> None:
    host = f"127.0.0.1:{free_port()}"
    tag_base(docker_client, base_image, f"{host}/nobody/home:v1")
    delays: list[float] = []
    with pytest.raises(RegistryError) as exc:
        push_image(docker_client, f"{host}/nobody/home", "v1", auth_config=None, registry=host, sleep=delays.append)
    assert delays == [2.0, 4.0, 8.0]
    assert "failed after 4 attempts" in exc.value.message


class ExchangeHandler(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, list[str]]]] = []

    def do_POST(self) -> None:
        if self.path != "/oauth2/exchange":
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        form = urllib.parse.parse_qs(body)
        type(self).received.append({"path": [self.path], **form})
        payload = json.dumps({"refresh_token": "acr-refresh-token-from-exchange"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def exchange_server(tls_files: Any) -> Iterator[str]:
    """HTTPS on 127.0.0.1 playing ACR's /oauth2/exchange, with a certificate from a test CA."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ExchangeHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files.cert, tls_files.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ExchangeHandler.received = []
    yield f"https://127.0.0.1:{server.server_address[1]}/oauth2/exchange"
    server.shutdown()


def test_acr_token_exchange_then_login(
    docker_client: Any, base_image: str, auth_registry: Any, exchange_server: str, tls_files: Any, repository_name: str
) -> None:
    session = requests.Session()
    session.verify = str(tls_files.ca)
    session.trust_env = False  # REQUESTS_CA_BUNDLE from the environment would override verify
    credentials = resolve_credentials(
        auth_registry.host,
        prefix=None,
        environ={"AZURE_TENANT_ID": "tenant-1234"},
        azure_token=lambda: "entra-access-token",
        session=session,
        exchange_url=exchange_server,
        acr=True,
    )
    assert ExchangeHandler.received == [
        {
            "path": ["/oauth2/exchange"],
            "grant_type": ["access_token"],
            "service": [auth_registry.host],
            "tenant": ["tenant-1234"],
            "access_token": ["entra-access-token"],
        }
    ]
    assert credentials is not None
    assert credentials.username == "00000000-0000-0000-0000-000000000000"
    assert credentials.password == "acr-refresh-token-from-exchange"
    # The exchanged token is what logs in: the registry only knows this user with this token.
    tag_base(docker_client, base_image, f"{auth_registry.host}/{repository_name}:v1")
    digest = push_image(
        docker_client,
        f"{auth_registry.host}/{repository_name}",
        "v1",
        auth_config=credentials.auth_config(),
        registry=auth_registry.host,
    )
    assert digest.startswith("sha256:")


def test_acr_exchange_refusal_is_explained(exchange_server: str, tls_files: Any) -> None:
    from agentdeploy.image.registry import acr_exchange

    session = requests.Session()
    session.verify = str(tls_files.ca)
    session.trust_env = False  # REQUESTS_CA_BUNDLE from the environment would override verify
    with pytest.raises(RegistryError) as exc:
        acr_exchange(
            "myreg.azurecr.io",
            access_token="t",
            tenant=None,
            session=session,
            exchange_url=exchange_server.replace("/oauth2/exchange", "/nowhere"),
        )
    assert exc.value.exit_code == ExitCode.REGISTRY
    assert exc.value.message == "myreg.azurecr.io refused the Azure token exchange (HTTP 401)"
    assert "AcrPush" in (exc.value.hint or "")
