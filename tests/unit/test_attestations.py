"""The attestation check against a fake of GitHub's attestation endpoints on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentdeploy.errors import AttestationError, ExitCode
from agentdeploy.github.attestations import AttestationSource, attestations_of
from fakes.attestations import FakeAttestationsApi

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
BUILDER = "https://github.com/org/agents/.github/workflows/release.yml@refs/tags/v1.2.0"


@pytest.fixture
def api() -> Iterator[FakeAttestationsApi]:
    fake = FakeAttestationsApi("ghs_attest_token")
    yield fake
    fake.close()


def source(api: FakeAttestationsApi, token: str = "ghs_attest_token") -> AttestationSource:
    return AttestationSource(api_url=api.url, repository="org/agents", token=token)


def test_a_digest_attested_by_the_release_workflow_is_found_with_its_builder(api: FakeAttestationsApi) -> None:
    api.attest("ghcr.io/org/agents/support", DIGEST, builder=BUILDER)
    [found] = attestations_of(DIGEST, source(api))
    assert (found.builder, found.repository_id, found.bundle_url) == (BUILDER, 4242, f"{api.url}/bundles/1")
    assert api.requests[-1] == ("GET", f"/repos/org/agents/attestations/{DIGEST}?predicate_type=provenance&per_page=30")


def test_nothing_counts_that_is_not_provenance_for_this_very_digest(api: FakeAttestationsApi) -> None:
    assert attestations_of(DIGEST, source(api)) == []  # none at all: GitHub answers 404
    api.attest("ghcr.io/org/agents/support", OTHER, builder=BUILDER)
    assert attestations_of(DIGEST, source(api)) == []
    api.attest("ghcr.io/org/agents/support", DIGEST, builder=BUILDER, predicate_type="https://spdx.dev/Document/v2.3")
    assert attestations_of(DIGEST, source(api)) == []  # an SBOM is not provenance


def test_a_token_that_may_not_read_attestations_is_one_clear_error(api: FakeAttestationsApi) -> None:
    with pytest.raises(AttestationError) as raised:
        attestations_of(DIGEST, source(api, token="wrong"))
    assert raised.value.exit_code == ExitCode.DEPLOY
    assert str(raised.value) == "GitHub refused to list the attestations of org/agents (HTTP 401)"
    assert raised.value.hint == "give the job `permissions: attestations: read`"


def test_where_to_ask_comes_from_the_workflow_environment() -> None:
    found = AttestationSource.from_environ(
        {"GITHUB_REPOSITORY": "org/agents", "GITHUB_TOKEN": "t", "GITHUB_API_URL": "https://ghe.example/api/v3"}
    )
    assert (found.api_url, found.repository, found.token) == ("https://ghe.example/api/v3", "org/agents", "t")
    with pytest.raises(AttestationError, match="but GITHUB_TOKEN is not set"):
        AttestationSource.from_environ({"GITHUB_REPOSITORY": "org/agents"})
