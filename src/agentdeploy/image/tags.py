"""Image tags and OCI labels (pure), from facts about git gathered by agentdeploy/git.py."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime

from agentdeploy.config.loader import LoadedConfig
from agentdeploy.config.models import RegistryConfig
from agentdeploy.config.rules import DOCKER_TAG_RE
from agentdeploy.errors import GitError
from agentdeploy.git import GitFacts as GitFacts  # where image code has always found it

SHORT_SHA_LENGTH = 7
LOCAL_REPOSITORY_PREFIX = "agentdeploy"  # images of agents without a registry: agentdeploy/<name>


def tag_from_ref(ref: str | None) -> str | None:
    if ref and ref.startswith("refs/tags/"):
        return ref[len("refs/tags/") :]
    return None


def _version_key(tag: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[.\-+_]", tag.lstrip("vV")))


def image_tag(registry: RegistryConfig | None, git: GitFacts) -> str:
    """The tag for this build. Raises GitError when git cannot provide what the strategy needs."""
    strategy = registry.tag_strategy if registry else "git_sha"
    if strategy == "latest":
        return "latest"
    if strategy == "custom":
        assert registry is not None and registry.custom_tag is not None  # rules.py guarantees it
        return registry.custom_tag
    if strategy == "git_tag":
        tag = tag_from_ref(git.ref)
        if tag is None:
            if not git.tags_at_head:
                raise GitError(
                    "tag_strategy is git_tag but no git tag points at the current commit"
                    + (f" ({git.sha[:SHORT_SHA_LENGTH]})" if git.sha else ""),
                    hint="tag this commit (git tag v1.0.0) or run on a tag push; "
                    "agentdeploy never falls back to an older tag",
                )
            tag = max(git.tags_at_head, key=_version_key)
        if not DOCKER_TAG_RE.match(tag):
            raise GitError(
                f"git tag {tag!r} cannot be an image tag",
                hint="use a tag of letters, digits, '_', '.', '-' (e.g. v1.4.0), at most 128 characters",
            )
        return _marked(tag, git)
    if git.sha is None:
        if registry is None:
            return "latest"  # local-only image of an agent outside git: nothing better to name it by
        raise GitError(
            "tag_strategy is git_sha but this directory is not in a git checkout",
            hint="run inside the repository (with actions/checkout in a workflow), or choose tag_strategy: custom",
        )
    return _marked(git.sha[:SHORT_SHA_LENGTH], git)


def _marked(tag: str, git: GitFacts) -> str:
    """A tree with uncommitted build inputs gets a tag that says so, never the clean commit's."""
    if git.uncommitted is None:
        return tag
    return f"{tag[: 128 - 19]}-dirty-{git.uncommitted[:12]}"


def image_repository(config: LoadedConfig) -> str:
    """registry/repository, or a local name when the config has no registry (docker target)."""
    registry = config.deploy.registry
    if registry is None:
        local = re.sub(r"[^a-z0-9._-]+", "-", config.agent.name.lower()).strip("-._") or "agent"
        return f"{LOCAL_REPOSITORY_PREFIX}/{local}"
    return f"{registry.url.rstrip('/')}/{registry.repository}"


def config_hash(config: LoadedConfig) -> str:
    """Hash of the deployable config: defaults spelled out, placeholders unresolved (no secrets)."""
    data = dict(config.document.data)
    data["deployment"] = config.deploy.model_dump(mode="json")
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def created_timestamp(git: GitFacts, environ: Mapping[str, str], now: datetime) -> str:
    """The `created` label: SOURCE_DATE_EPOCH, else the commit time, else now.

    A timestamp that is stable for one commit keeps the label steps the engine appends cached,
    so an unchanged agent rebuilds entirely from cache (reproducible-builds convention).
    """
    epoch = environ.get("SOURCE_DATE_EPOCH", "")
    if epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if git.commit_time:
        return git.commit_time
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _label_text(value: str) -> str:
    """Labels are free text, but one line of it: control characters become spaces."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", value).strip()


def oci_labels(
    config: LoadedConfig, *, tag: str, git: GitFacts, created: str, context_digest: str | None = None
) -> dict[str, str]:
    """Labels passed through the build API (never written into the Dockerfile)."""
    labels = {
        "org.opencontainers.image.title": _label_text(config.agent.name),
        "org.opencontainers.image.description": _label_text(config.agent.description or ""),
        "org.opencontainers.image.version": tag,
        "org.opencontainers.image.created": created,
        "dev.agentdeploy.config-hash": config_hash(config),
    }
    if git.sha:
        labels["org.opencontainers.image.revision"] = git.sha
    if git.source_url:
        labels["org.opencontainers.image.source"] = git.source_url
    if context_digest:
        labels["dev.agentdeploy.context-digest"] = context_digest
    return labels
