"""The state is an input: a recorded version runs again only when this config deploys it (its registry/repository,
pinned by digest; with --require-attestation, attested), checked before anything changes."""

from __future__ import annotations

import re

from agentdeploy.config.loader import (
    LoadedConfig,
)
from agentdeploy.errors import (
    AttestationError,
    UntrustedRecordError,
)
from agentdeploy.image.tags import image_repository
from agentdeploy.release.prepare import (
    DeployOptions,
    Prepared,
    Services,
)
from agentdeploy.state.store import (
    DIGEST_FORMAT,
    DeploymentRecord,
)
from agentdeploy.targets.base import (
    ChecksRecords,
    Target,
)


def trusted_image_problem(image: str, config: LoadedConfig, target: Target) -> str | None:
    """Why `image` is not a version this config deploys, or None. A record only ever names what runs: an image in
    the config's registry/repository by digest, or, on a target that runs local images, a local image id."""
    if not image:
        return "names no image"
    local_id = DIGEST_FORMAT.fullmatch(image) is not None
    if local_id and not target.requires_registry:
        return None
    if config.deploy.registry is None:
        return (
            f"{image!r} is not a local image id (sha256:<64 hex>), the only image this config runs without a registry"
        )
    repository = image_repository(config)
    if re.fullmatch(re.escape(repository) + r"@sha256:[0-9a-f]{64}", image):
        return None
    if local_id:
        return f"{image!r} is a local image id; the {target.resource} runs images from {repository} only"
    name, at, _ = image.partition("@")
    if not at:
        return f"{image!r} is not pinned by digest: only {repository}@sha256:<64 hex> is run"
    return f"{image!r} is in {name}, not this config's registry/repository {repository}"


def trusted(
    record: DeploymentRecord, which: str, prepared: Prepared, options: DeployOptions, services: Services
) -> str:
    """Refuse, before anything changes, a record that names a version this config never deploys (another registry,
    a bare tag) or, with --require-attestation, one without a build provenance attestation. Its attestation's
    bundle URL when one was checked, else ""."""
    field = "image"
    problem = trusted_image_problem(record.image, prepared.config, prepared.target)
    digest = record.image.rpartition("@")[2] if "@" in record.image else ""
    if problem is None and record.digest and digest and record.digest != digest:
        field, problem = "digest", f"{record.digest!r} is not the digest of its image {record.image!r}"
    if problem is not None:
        raise UntrustedRecordError(
            f"refused the state's {which} record: {field}: {problem}; nothing was changed",
            hint="the state (branch or artifact) names a version this repository did not deploy: restore it from a "
            "record agentdeploy wrote, or deploy the version again",
        )
    if isinstance(prepared.target, ChecksRecords):
        prepared.target.check_record(record)
    return attested(digest, options, services)


def attested(digest: str, options: DeployOptions, services: Services) -> str:
    """With --require-attestation: the bundle URL of the digest's build provenance, else stop before any change.
    Without it: "" (nothing is asked)."""
    if not options.require_attestation:
        return ""
    if not digest:
        raise AttestationError(
            "--require-attestation deploys only an attested digest, and this image was not pushed to a registry",
            hint="add a `registry:` to the deployment section (or pass --push) so the image has a digest to attest",
        )
    if services.attestations is None:
        raise AttestationError(
            "--require-attestation needs a way to look up attestations, and this run was given none",
            hint="pass Services(attestations=...) (the CLI and the Action pass GitHub's)",
        )
    found = services.attestations(digest)
    if not found:
        raise AttestationError(
            f"{digest} has no build provenance attestation in GitHub; nothing was deployed",
            hint="attest the pushed digest first (actions/attest-build-provenance with subject-digest), or deploy "
            "without --require-attestation",
        )
    services.console.info(f"{digest}: attested by {found[0].builder or 'a workflow'} ({found[0].bundle_url})")
    return found[0].bundle_url or found[0].builder
