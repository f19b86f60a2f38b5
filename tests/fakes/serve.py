"""Run the fake Azure (ARM, Entra, GitHub OIDC) as a process, for the self-test workflow and the Action
harness test, which both drive the Action against it exactly as a user's workflow drives Azure.

    python tests/fakes/serve.py --dir /tmp/fake-azure [--github-env "$GITHUB_ENV"] [--empty] &

It holds the resource group agents-rg and the environment agents-env, or, with --empty, nothing (a new user's
subscription, which `agentdeploy setup azure` starts from).

Once it listens it writes `<dir>/env` (KEY=value lines: the endpoints, the CA to trust, a subscription,
client and tenant id) and appends the same lines to --github-env when given. On SIGTERM it writes
`<dir>/report.json` (apps as ARM renders them, the request log, and the fake's own errors) and stops.

While it runs, JSON routes under $AGENTDEPLOY_ARM_ENDPOINT/_fake/ stage what a test stages in-process (image
behaviours, faults, changes made by someone else, purged revisions, the clock) and show the apps and the request
log: see tests/fakes/control.py and the README ("Trying the Action without Azure").
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: fakes and testkit

from fakes.arm import FakeArm
from testkit import make_tls

SUBSCRIPTION = "0b1f6471-1bf0-4dda-aec3-111122223333"
RESOURCE_GROUP = "agents-rg"
ENVIRONMENT = "agents-env"


def trust_bundle(ca: Path, bundle: Path) -> Path:
    """The fake's CA plus the public ones: REQUESTS_CA_BUNDLE replaces the trust store of every requests
    user in the job (pip in the action's install step too), so PyPI must stay trusted."""
    public = ""
    try:
        import certifi

        public = Path(certifi.where()).read_text()
    except ImportError:
        system = Path("/etc/ssl/certs/ca-certificates.crt")
        public = system.read_text() if system.exists() else ""
    bundle.write_text(public.rstrip() + "\n" + ca.read_text())
    return bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--github-env", type=Path)
    parser.add_argument("--provisioning-delay", type=float, default=1.0)
    parser.add_argument(
        "--empty", action="store_true", help="a subscription with no resource group or environment yet (a new user's)"
    )
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    tls = make_tls(args.dir)
    fake = FakeArm(tls.cert, tls.key, provisioning_delay=args.provisioning_delay)
    fake.start()
    if not args.empty:
        fake.add_resource_group(SUBSCRIPTION, RESOURCE_GROUP)
        fake.add_managed_environment(SUBSCRIPTION, RESOURCE_GROUP, ENVIRONMENT)
    env = {
        "AGENTDEPLOY_ARM_ENDPOINT": fake.base_url,
        "AZURE_AUTHORITY_HOST": fake.base_url,
        "REQUESTS_CA_BUNDLE": str(trust_bundle(tls.ca, args.dir / "ca-bundle.pem")),
        "ACTIONS_ID_TOKEN_REQUEST_URL": fake.oidc_request_url,
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": fake.oidc_request_token,
        "FAKE_AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
        "FAKE_AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
        "FAKE_AZURE_TENANT_ID": "66666666-7777-8888-9999-000000000000",
    }
    lines = "".join(f"{key}={value}\n" for key, value in env.items())
    if args.github_env:
        with args.github_env.open("a", encoding="utf-8") as handle:
            handle.write(lines)
    (args.dir / "env.tmp").write_text(lines)
    (args.dir / "env.tmp").replace(args.dir / "env")  # whole or absent: the launcher waits for it

    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    stop.wait()
    report = {
        "apps": {app.name: fake.app(app.sub, app.rg, app.name) for app in list(fake.state.apps.values())},
        "requests": [
            {"method": r.method, "path": r.path, "status": r.status, "by": r.by or "client"}
            for r in fake.requests
            if "/subscriptions/" in r.path
        ],
        "server_errors": fake.server_errors,
    }
    (args.dir / "report.json").write_text(json.dumps(report, indent=2))
    fake.stop()


if __name__ == "__main__":
    main()
