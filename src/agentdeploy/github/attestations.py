"""Build provenance: does GitHub hold an attestation for the image digest about to be deployed?

GitHub REST: `GET /repos/{owner}/{repo}/attestations/{subject_digest}` lists the attestations stored
for a digest (made by actions/attest-build-provenance), each with its Sigstore bundle. An attestation
counts here when its in-toto statement (the DSSE payload) names this digest as a subject and has the
SLSA provenance predicate. The bundle's signature and certificate are not verified here (that needs
Sigstore's trust root: `gh attestation verify`); the check stops a digest nobody attested.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentdeploy.errors import AttestationError, TargetUnavailableError

if TYPE_CHECKING:
    import requests

PROVENANCE = "https://slsa.dev/provenance/v1"
TIMEOUT = 30


@dataclass(frozen=True, kw_only=True)
class Attestation:
    """One stored attestation of a digest."""

    bundle_url: str
    repository_id: int
    predicate_type: str
    builder: str  # who built it (the workflow), from the provenance predicate


@dataclass(frozen=True, kw_only=True)
class AttestationSource:
    """Where to ask: the API, the repository that builds the images, and a token that may read it."""

    api_url: str
    repository: str
    token: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> AttestationSource:
        repository, token = environ.get("GITHUB_REPOSITORY", ""), environ.get("GITHUB_TOKEN", "")
        if not repository or not token:
            missing = [
                name for name, value in (("GITHUB_REPOSITORY", repository), ("GITHUB_TOKEN", token)) if not value
            ]
            raise AttestationError(
                "--require-attestation asks GitHub for the digest's attestations, but "
                + " and ".join(missing)
                + (" is" if len(missing) == 1 else " are")
                + " not set",
                hint="in a workflow pass GITHUB_TOKEN (the job needs `permissions: attestations: read`); locally "
                "export GITHUB_REPOSITORY=owner/repo and GITHUB_TOKEN",
            )
        return cls(api_url=environ.get("GITHUB_API_URL", "https://api.github.com"), repository=repository, token=token)


def lookup_from_environ(environ: Mapping[str, str]) -> Callable[[str], list[Attestation]]:
    """The lookup the front ends pass the pipeline (Services.attestations): GitHub, as the environment names it,
    asked only when a deploy requires an attestation (a missing token is an error then, not before)."""
    return lambda digest: attestations_of(digest, AttestationSource.from_environ(environ))


def attestations_of(
    digest: str, source: AttestationSource, *, session: requests.Session | None = None
) -> list[Attestation]:
    """The provenance attestations GitHub holds for `digest` (sha256:...) in `source.repository`."""
    import requests

    http = session or requests.Session()
    url = f"{source.api_url.rstrip('/')}/repos/{source.repository}/attestations/{digest}"
    try:
        response = http.get(
            url,
            params={"predicate_type": "provenance", "per_page": "30"},
            headers={"Authorization": f"Bearer {source.token}", "Accept": "application/vnd.github+json"},
            timeout=TIMEOUT,
        )
    except requests.RequestException as exc:
        raise TargetUnavailableError(f"cannot reach the GitHub API at {source.api_url}: {type(exc).__name__}") from None
    if response.status_code == 404:
        return []  # no attestation for this digest (or a repository the token cannot see)
    if response.status_code in (401, 403):
        raise AttestationError(
            f"GitHub refused to list the attestations of {source.repository} (HTTP {response.status_code})",
            hint="give the job `permissions: attestations: read`",
        )
    if response.status_code != 200:
        raise AttestationError(f"listing the attestations of {digest} failed (HTTP {response.status_code})")
    try:
        listed = response.json().get("attestations") or []
    except (ValueError, AttributeError):
        raise AttestationError(f"GitHub's answer for the attestations of {digest} is not the expected JSON") from None
    found = []
    for entry in listed if isinstance(listed, list) else []:
        statement = _statement(entry)
        if statement is None or statement.get("predicateType") != PROVENANCE or not _names(statement, digest):
            continue
        predicate = statement.get("predicate")
        builder = ""
        if isinstance(predicate, dict):
            run = predicate.get("runDetails")
            if isinstance(run, dict) and isinstance(run.get("builder"), dict):
                builder = str(run["builder"].get("id") or "")
        found.append(
            Attestation(
                bundle_url=str(entry.get("bundle_url") or ""),
                repository_id=int(entry.get("repository_id") or 0),
                predicate_type=PROVENANCE,
                builder=builder,
            )
        )
    return found


def _statement(entry: object) -> dict[str, object] | None:
    """The in-toto statement inside an attestation's bundle (base64 DSSE payload), or None."""
    if not isinstance(entry, dict) or not isinstance(entry.get("bundle"), dict):
        return None
    envelope = entry["bundle"].get("dsseEnvelope")
    if not isinstance(envelope, dict) or not isinstance(envelope.get("payload"), str):
        return None
    try:
        statement = json.loads(base64.b64decode(envelope["payload"], validate=True))
    except (ValueError, binascii.Error):
        return None
    return statement if isinstance(statement, dict) else None


def _names(statement: dict[str, object], digest: str) -> bool:
    algorithm, _, value = digest.partition(":")
    subjects = statement.get("subject")
    return isinstance(subjects, list) and any(
        isinstance(subject, dict)
        and isinstance(subject.get("digest"), dict)
        and subject["digest"].get(algorithm) == value
        for subject in subjects
    )
