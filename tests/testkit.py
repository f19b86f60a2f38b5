"""Helpers the tests import (tests/ is on pytest's pythonpath; conftest.py cannot be imported)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # the project root
FIXTURES = ROOT / "tests" / "fixtures"
RECORDINGS = ROOT / "tests" / "azure" / "recordings"  # recorded real Azure sessions (see the README there)
# Optional corpora beside the clone (a checkout from GitHub has none): used when present, named when absent.
COMPAT = (ROOT.parent / "shared" / "compat").resolve()  # real agent configs of other people
EXTRA_RECORDINGS = (ROOT.parent / "shared" / "contracts" / "azure-cli").resolve()  # more recorded Azure sessions
REGISTRY = "127.0.0.1:5000"  # started by .ci/services

# Stand-in for `holodeck serve CONFIG --host H --port P --protocol X` inside the test base image:
# serves /health (unless AGENT_TEST_UNHEALTHY=1), the config at /config and its env at /env; with
# AGENT_TEST_CRASH=1 it exits 3 at once (printing $API_KEY, to show that logs are masked); with
# AGENT_TEST_START_DELAY=N it answers /health only N seconds after it starts (a slow start-up).
FAKE_HOLODECK = """#!/bin/sh
if [ "$1" = "--version" ]; then echo "holodeck, version ${FAKE_HOLODECK_VERSION:-0.7.1}"; exit 0; fi
if [ "${AGENT_TEST_CRASH:-}" = "1" ]; then echo "fake holodeck: cannot load the agent, token $API_KEY" >&2; exit 3; fi
config="$2"; port=8080
while [ $# -gt 0 ]; do case "$1" in --port) port="$2"; shift;; esac; shift; done
www=/tmp/www; mkdir -p $www; rm -f $www/health  # a restarted container starts unhealthy again
if [ "${AGENT_TEST_UNHEALTHY:-}" != "1" ]; then
  if [ -n "${AGENT_TEST_START_DELAY:-}" ]; then (sleep "$AGENT_TEST_START_DELAY"; echo ok > $www/health) &
  else echo ok > $www/health; fi
fi
cat "$config" > $www/config
env | sort > $www/env
echo "fake holodeck serving $config on $port"
exec httpd -f -p "$port" -h $www
"""
BUSYBOX_APPLETS = (
    *("sh", "wget", "httpd", "cat", "echo", "mkdir", "sleep", "ls", "env", "id", "sort", "touch"),
    *("tr", "tail", "chown", "chmod", "rm"),  # used by the agent image's build steps
)


def _wait_http(url: str, seconds: float = 15) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # 401 is an answer
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def start_registry(directory: Path, port: int, htpasswd: Path | None = None) -> subprocess.Popen[bytes]:
    """A docker-registry on 127.0.0.1:<port> (optionally with htpasswd auth)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.yml"
    auth = f"auth:\n  htpasswd:\n    realm: agentdeploy-test\n    path: {htpasswd}\n" if htpasswd else ""
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {directory / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{auth}"
    )
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _wait_http(f"http://127.0.0.1:{port}/v2/")
    return process


def busybox_rootfs(extra_applets: tuple[str, ...] = ()) -> bytes:
    """A busybox root filesystem with a fake `holodeck serve`, as a tar (for `docker import`)."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    assert os.path.exists(busybox), "busybox-static is needed (apt-get install busybox-static)"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        for directory in ("bin", "etc", "usr", "usr/local", "usr/local/bin", "home"):
            add_dir(directory)
        add_dir("tmp", 0o1777)
        with open(busybox, "rb") as handle:
            data = handle.read()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        # Each path once: a second entry of the same path makes `docker import` answer 500.
        for applet in dict.fromkeys((*BUSYBOX_APPLETS, *extra_applets)):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        script = FAKE_HOLODECK.encode()
        info = tarfile.TarInfo("usr/local/bin/holodeck")
        info.size, info.mode = len(script), 0o755
        tar.addfile(info, io.BytesIO(script))
        passwd = b"root:x:0:0:root:/root:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    return buffer.getvalue()


def http_get(url: str) -> tuple[int, str]:
    """(status, body) of a GET; HTTP errors are answers too."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


@dataclass
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_tls(directory: Path) -> TlsFiles:
    """A CA made now and a certificate for 127.0.0.1 signed by it, as PEM files in `directory`."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentdeploy test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


class StaticCredential:
    """A TokenCredential that always returns the same token (one the fake ARM was told to accept)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: object) -> object:
        from azure.core.credentials import AccessToken

        return AccessToken(self.token, 4_102_444_800)


def arm_client(base_url: str, ca: object, subscription: str, credential: object) -> Any:
    """The real SDK's client pointed at a fake ARM: quick polls and retries, the test CA trusted."""
    from azure.mgmt.appcontainers import ContainerAppsAPIClient

    return ContainerAppsAPIClient(
        credential,  # type: ignore[arg-type]
        subscription,
        base_url=base_url,
        polling_interval=0.1,
        connection_verify=str(ca),
        retry_backoff_factor=0.05,
    )


def azure_release(
    client: Any,
    *,
    app_name: str,
    resource_group: str = "agents-rg",
    poll_interval: float | None = None,  # None: the SDK poll agentdeploy uses
    environment_group: str = "",
    ip_restricted: bool = False,
    run_id: str = "agentdeploy",
    **adapters: Any,
) -> Any:
    """An AzureRelease over the real SDK client `client` (probe=, say=, sleep=, ...: its Adapters)."""
    from agentdeploy.targets.azure.arm import POLL_INTERVAL
    from agentdeploy.targets.azure.release import AzureRelease
    from agentdeploy.targets.azure.settings import Adapters, AzureSettings

    settings = AzureSettings(
        resource_group=resource_group,
        app_name=app_name,
        poll_interval=POLL_INTERVAL if poll_interval is None else poll_interval,
        environment_group=environment_group,
        ip_restricted=ip_restricted,
        run_id=run_id,
    )
    return AzureRelease.over_sdk(client, settings, Adapters(**adapters))


def app_spec(**overrides: object) -> object:
    """A Container Apps spec for tests and benchmarks; override any field."""
    from dataclasses import replace

    from agentdeploy.targets.azure.body import AppSpec

    base = AppSpec(
        name="support-agent",
        location="eastus",
        environment_id="",
        image="127.0.0.1:5000/team/agent@sha256:" + "0" * 63 + "1",
        port=8080,
        external=True,
        cpu=0.5,
        memory="1Gi",
        min_replicas=0,
        max_replicas=3,
        health_path="/health",
        multiple=False,
        env={"LOG_LEVEL": "info"},
        secret_env={"OPENAI_API_KEY": "sk-sentinel-0001"},
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_DATE": "2026-03-04T05:06:07Z",
    "GIT_AUTHOR_DATE": "2026-03-04T05:06:07Z",
}


def git(directory: Path, *args: str, stdin: str | None = None) -> str:
    """Run git the way a developer would, with a fixed identity and date; its output, stripped."""
    env = {**GIT_IDENTITY, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        ["git", *args], cwd=directory, env=env, input=stdin, check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


def git_shim(directory: Path) -> tuple[Path, Path]:
    """(a directory to put first on PATH, the log): its `git` writes each call's arguments on a line of the log,
    then runs the real git. Counts the git processes a command starts."""
    real = shutil.which("git")
    assert real, "git is not installed"
    shim, log = directory / "git-shim", directory / "git-calls.log"
    shim.mkdir()
    (shim / "git").write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    (shim / "git").chmod(0o755)
    log.write_text("")
    return shim, log


DEAD_PROXY = "http://127.0.0.1:9"  # nothing listens there: any request that tries to leave fails at once


def offline_agent_env(llm_base_url: str) -> dict[str, str]:
    """What a real-runtime agent needs to run against the fake model with nothing leaving the machine
    (FACTS.md: tracing upload, LiteLLM's price list, and proxies for anything else)."""
    return {
        "OPENAI_BASE_URL": llm_base_url,
        "OPENAI_AGENTS_DISABLE_TRACING": "1",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "HTTP_PROXY": DEAD_PROXY,
        "HTTPS_PROXY": DEAD_PROXY,
        "http_proxy": DEAD_PROXY,
        "https_proxy": DEAD_PROXY,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def post_json(url: str, payload: dict[str, object], timeout: float = 60) -> tuple[int, dict[str, object]]:
    """(status, JSON body) of a POST; HTTP errors are answers too."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body or b"{}")
        except ValueError:
            return exc.code, {"raw": body.decode(errors="replace")}


@dataclass
class Run:
    """A finished CLI process: its exit code, stdout and stderr; `data` reads stdout as JSON (--json)."""

    code: int
    out: str
    err: str

    @property
    def data(self) -> Any:
        import json

        return json.loads(self.out)


# The fake ARM's subscription, resource group and managed environment (tests/azure/conftest.py makes them).
AZURE_SUBSCRIPTION = "0b1f6471-1bf0-4dda-aec3-111122223333"
AZURE_RESOURCE_GROUP = "agents-rg"
AZURE_ENVIRONMENT = "agents-env"


def write_azure_agent(
    directory: Path, repository: str, base_image: str, *, name: str = "cli-agent", health_timeout: int = 20
) -> Path:
    """An agent for the azure target in the fake's environment: its image pushed to the registry on
    127.0.0.1:5000 as `repository:v1`, an API_KEY secret, the subscription from ${AZURE_SUBSCRIPTION_ID}."""
    directory.mkdir(parents=True)
    (directory / "prompt.md").write_text(f"You are {name}. Be kind.")
    config = directory / "agent.yaml"
    config.write_text(
        f"name: {name}\n"
        "model: {provider: openai, name: gpt-4o}\n"
        "instructions: {file: prompt.md}\n"
        "deployment:\n"
        f"  registry: {{url: '{REGISTRY}', repository: {repository}, tag_strategy: custom, custom_tag: v1}}\n"
        f"  health: {{path: /health, timeout_seconds: {health_timeout}}}\n"
        "  environment: {LOG_LEVEL: info}\n"
        "  secrets: {API_KEY: '${API_KEY}'}\n"
        f"  build: {{base_image: '{base_image}'}}\n"
        "  target:\n"
        "    provider: azure\n"
        "    azure:\n"
        "      subscription_id: ${AZURE_SUBSCRIPTION_ID}\n"
        f"      resource_group: {AZURE_RESOURCE_GROUP}\n"
        f"      environment_name: {AZURE_ENVIRONMENT}\n"
        "      cpu: 0.5\n"
        "      memory: 1Gi\n"
    )
    return config


def optional_corpora_line() -> str:
    """One line for the test run's header: which optional corpora beside the clone it uses, or how to add them."""
    found = [f"{path} ({what})" for path, what in _CORPORA if path.is_dir()]
    missing = [f"{path} ({what})" for path, what in _CORPORA if not path.is_dir()]
    if not missing:
        return "optional corpora: using " + ", ".join(found)
    used = ("using " + ", ".join(found) + "; ") if found else ""
    return (
        f"optional corpora: {used}left out {', '.join(missing)}: the tests on them skip; to add them, put those "
        "folders beside this clone (see tests/fixtures/README.md)"
    )


_CORPORA = ((COMPAT, "real agent configs"), (EXTRA_RECORDINGS, "more recorded Azure sessions"))


def azure_cli_environ(arm: Any, **extra: str) -> dict[str, str]:
    """What the CLI reads to reach the fake ARM as a workflow would: its endpoint, Entra on the fake, GitHub's
    OIDC token request (the federated credential path), the subscription; `extra`: the agent's own variables."""
    return {
        "AGENTDEPLOY_ARM_ENDPOINT": arm.base_url,
        "AZURE_AUTHORITY_HOST": arm.base_url,
        "AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
        "AZURE_TENANT_ID": "66666666-7777-8888-9999-000000000000",
        "AZURE_SUBSCRIPTION_ID": AZURE_SUBSCRIPTION,
        "ACTIONS_ID_TOKEN_REQUEST_URL": arm.oidc_request_url,
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": arm.oidc_request_token,
        **extra,
        "PATH": "/usr/bin:/bin",
    }


def run_cli(environ: dict[str, str], *argv: str) -> tuple[int, str, str]:
    """The CLI run in this process with `environ`: (exit code, stdout, stderr)."""
    from agentdeploy.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), environ=environ, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def no_engine_builder() -> type:
    """An ImageBuilder with the real plan and context hash that builds nothing: the "image" is named by that hash,
    where the config's registry would hold it (for targets that run no image, or releases that need no engine)."""
    from agentdeploy.image.builder import ImageBuilder, ImageResult

    class NoEngine(ImageBuilder):
        def run(self, *, push: bool, pull: bool = False, move_tag: bool = False) -> ImageResult:
            inputs = self.inputs()
            return ImageResult(
                reference=f"{self.plan.repository}@{inputs}",
                tag=self.plan.tag,
                repository=self.plan.repository,
                manifest_digest=None,
                image_id=inputs,
                inputs_digest=inputs,
                skipped_build=False,
            )

    return NoEngine
