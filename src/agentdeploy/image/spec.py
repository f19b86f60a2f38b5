"""What to build: image name, tag, Dockerfile, labels (pure, from config + git facts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agentdeploy.config.loader import LoadedConfig
from agentdeploy.errors import ContextError
from agentdeploy.image.dockerfile import render_dockerfile, runtime_requirement, spec_from_config
from agentdeploy.image.tags import GitFacts, image_repository, image_tag, oci_labels

RUNTIME_LABEL = "dev.agentdeploy.holodeck-runtime"  # e.g. holodeck-ai[openai-agents]==0.7.1


@dataclass(frozen=True)
class ImagePlan:
    repository: str
    tag: str
    platform: str
    labels: dict[str, str]
    build_args: dict[str, str] = field(default_factory=dict)
    dockerfile: str | None = None  # rendered template; None when the user brings their own
    own_dockerfile: Path | None = None  # absolute path of the user's Dockerfile

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


def own_dockerfile_path(config: LoadedConfig) -> Path | None:
    relative = config.deploy.build.dockerfile
    if relative is None:
        return None
    root = config.project_dir
    path = (root / relative).resolve()
    where = config.locate(("deployment", "build", "dockerfile"))
    if root != path and root not in path.parents:
        raise ContextError(f"{relative} leaves the project directory", location=where)
    if not path.is_file():
        raise ContextError(f"Dockerfile {relative} does not exist", location=where, hint="fix the path")
    return path


def plan_image(config: LoadedConfig, git: GitFacts, *, created: str) -> ImagePlan:
    """`created` comes from tags.created_timestamp (stable per commit)."""
    deploy = config.deploy
    tag = image_tag(deploy.registry, git)
    own = own_dockerfile_path(config)
    labels = oci_labels(config, tag=tag, git=git, created=created)
    spec = None if own else spec_from_config(config)
    if spec is not None:
        labels[RUNTIME_LABEL] = runtime_requirement(spec)
    return ImagePlan(
        repository=image_repository(config),
        tag=tag,
        platform=deploy.effective_platform,
        labels=labels,
        build_args=dict(deploy.build.build_args),
        dockerfile=None if spec is None else render_dockerfile(spec),
        own_dockerfile=own,
    )
