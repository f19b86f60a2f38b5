"""GitHub's artifact attestation endpoints on 127.0.0.1, shaped as docs.github.com/rest/repos/attestations
describes them.

`POST /repos/{owner}/{repo}/attestations` stores `{"bundle": <Sigstore bundle>}` (what
actions/attest-build-provenance sends) and answers 201 `{"id": N}`; `GET /repos/{owner}/{repo}/attestations/
{subject_digest}` answers 200 `{"attestations": [{"bundle", "repository_id", "bundle_url"}]}` for the
bundles whose in-toto statement names that digest, or 404 when there are none. Both need the token.
`provenance_bundle` builds a bundle the way the action does (a DSSE envelope over an in-toto statement
with the SLSA provenance predicate); its signature is a placeholder, as nothing here verifies one.
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import threading
from typing import Any

PROVENANCE = "https://slsa.dev/provenance/v1"


def provenance_bundle(subject: str, digest: str, *, builder: str, predicate_type: str = PROVENANCE) -> dict[str, Any]:
    algorithm, _, value = digest.partition(":")
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": subject, "digest": {algorithm: value}}],
        "predicateType": predicate_type,
        "predicate": {
            "buildDefinition": {"buildType": "https://actions.github.io/buildtypes/workflow/v1"},
            "runDetails": {"builder": {"id": builder}},
        },
    }
    return {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"certificate": {"rawBytes": "cGxhY2Vob2xkZXI="}},
        "dsseEnvelope": {
            "payload": base64.b64encode(json.dumps(statement).encode()).decode(),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"sig": "cGxhY2Vob2xkZXI="}],
        },
    }


class FakeAttestationsApi:
    def __init__(self, token: str, repository: str = "org/agents", repository_id: int = 4242) -> None:
        self.token = token
        self.repository = repository
        self.repository_id = repository_id
        self.stored: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.requests.append(("GET", self.path))
                if not self._authorized():
                    return
                match = re.fullmatch(r"/repos/([^/]+/[^/]+)/attestations/([a-z0-9]+:[0-9a-f]+)(\?.*)?", self.path)
                if match is None or match.group(1) != api.repository:
                    self._send(404, {"message": "Not Found"})
                    return
                found = [entry for entry in api.stored if _names(entry["bundle"], match.group(2))]
                if not found:
                    self._send(404, {"message": "Not Found"})
                    return
                self._send(200, {"attestations": found})

            def do_POST(self) -> None:
                api.requests.append(("POST", self.path))
                if not self._authorized():
                    return
                if self.path != f"/repos/{api.repository}/attestations":
                    self._send(404, {"message": "Not Found"})
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if not isinstance(body.get("bundle"), dict):
                    self._send(422, {"message": "Validation Failed"})
                    return
                number = len(api.stored) + 1
                api.stored.append(
                    {
                        "bundle": body["bundle"],
                        "repository_id": api.repository_id,
                        "bundle_url": f"{api.url}/bundles/{number}",
                    }
                )
                self._send(201, {"id": number})

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {api.token}":
                    return True
                self._send(401, {"message": "Bad credentials"})
                return False

            def _send(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def attest(self, subject: str, digest: str, **options: Any) -> None:
        """What actions/attest-build-provenance does for a pushed image: store its bundle through the API."""
        import urllib.request

        request = urllib.request.Request(
            f"{self.url}/repos/{self.repository}/attestations",
            data=json.dumps({"bundle": provenance_bundle(subject, digest, **options)}).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _names(bundle: dict[str, Any], digest: str) -> bool:
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    algorithm, _, value = digest.partition(":")
    return any(subject.get("digest", {}).get(algorithm) == value for subject in statement.get("subject", []))
