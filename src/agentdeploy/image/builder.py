"""The image builder: skip (an image built from identical inputs exists), or build, push and verify the
digest. Its adapters (the Docker engine, the registry API, the credentials) come in through
`BuildServices`; the engine is connected only when a step needs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from agentdeploy.config.loader import LoadedConfig
from agentdeploy.console import Console
from agentdeploy.errors import Problem, RegistryError, TagInUseError
from agentdeploy.image import engine
from agentdeploy.image.context import collect, write_context
from agentdeploy.image.ignore import own_context
from agentdeploy.image.pull import pull_quietly, resolve_base_image
from agentdeploy.image.registry import RegistryClient, RegistryCredentials, registry_host
from agentdeploy.image.spec import ImagePlan

if TYPE_CHECKING:
    import requests
    from docker import DockerClient

INPUTS_LABEL = "dev.agentdeploy.inputs-digest"  # the build fingerprint: inputs + the base image's id
BASE_LABEL = "dev.agentdeploy.base-image-id"
INPUTS_TAG_PREFIX = "agentdeploy-inputs-"  # registry tag naming the build inputs, for the skip path
CACHE_TAG = "agentdeploy-cache"  # moving tag: the last image built, seeds the layer cache on CI
MOVABLE_TAGS = ("latest",)  # the only tags that are meant to move; every other tag names one content


class BuildServices(Protocol):
    """What the builder needs from the run (release.pipeline.Services has it all)."""

    @property
    def environ(self) -> Mapping[str, str]: ...
    @property
    def console(self) -> Console: ...
    @property
    def docker(self) -> Callable[[], DockerClient]: ...
    @property
    def azure_token(self) -> Callable[[], str] | None: ...
    @property
    def registry_session(self) -> requests.Session | None: ...
    @property
    def acr_exchange_url(self) -> str | None: ...
    @property
    def push_sleep(self) -> Callable[[float], None] | None: ...


class ImageStage(Protocol):
    """The image stage as the pipeline sees it: the plan, what a build would hash, and the run."""

    @property
    def plan(self) -> ImagePlan: ...
    @property
    def credentials(self) -> RegistryCredentials | None: ...  # what the push used, for the target's pull
    def inputs(self) -> str: ...
    def inputs_files(self) -> dict[str, str]: ...  # path in the build context -> sha256 hex (plan names them)
    def run(self, *, push: bool, pull: bool = False, move_tag: bool = False) -> ImageResult: ...


ImageStageFactory = Callable[[LoadedConfig, ImagePlan, BuildServices], ImageStage]


@dataclass(frozen=True, kw_only=True)
class ImageResult:
    """The image a run made or found: a registry's manifest digest when it was pushed, the engine's image id when
    this engine has it. Two different digests, kept apart by their names."""

    reference: str  # what the target runs: repository@<manifest digest> after a push, else the local image id
    tag: str
    repository: str
    manifest_digest: str | None  # the registry's manifest digest; None when the image was not pushed
    image_id: str  # the engine's image id (its config digest); "" when the registry had it and nothing was built
    inputs_digest: str
    skipped_build: bool
    inputs_files: Mapping[str, str] = field(default_factory=dict)  # what inputs_digest covers, per file (sha256)

    @property
    def pushed(self) -> bool:
        return self.manifest_digest is not None


def inputs_digest(context_digest: str, platform: str, build_args: Mapping[str, str]) -> str:
    """Everything that decides the image's content: files + Dockerfile, platform, build args."""
    canonical = json.dumps(
        {"context": context_digest, "platform": platform, "build_args": dict(sorted(build_args.items()))},
        sort_keys=True,
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


class ImageBuilder:
    """Build, push and verify one image; or find that it already exists and skip all of it."""

    def __init__(self, config: LoadedConfig, plan: ImagePlan, services: BuildServices) -> None:
        self.config = config
        self.plan = plan
        self.services = services
        self._client: DockerClient | None = None
        self._written: tuple[Path, str, str, list[str]] | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self.say = services.console.info
        self.credentials: RegistryCredentials | None = None  # what the push used, for Azure's pull
        self.base_id = ""
        self.move_tag = False
        self._manifest: dict[str, str] = {}  # the build inputs per file, from the last context written
        self._sent: list[str] | None = None  # with the user's own Dockerfile: exactly what the engine receives

    @property
    def client(self) -> DockerClient:
        """The Docker engine, connected when a step first needs it (planning never does)."""
        if self._client is None:
            self._client = self.services.docker()
        return self._client

    def _credentials(self) -> tuple[RegistryCredentials | None, dict[str, str] | None]:
        from agentdeploy.image.registry import resolve_credentials, stored_docker_credentials

        registry = self.config.deploy.registry
        assert registry is not None
        host = registry_host(registry.url)
        credentials = resolve_credentials(
            host,
            prefix=registry.credentials_env_prefix,
            environ=self.services.environ,
            azure_token=self.services.azure_token,
            session=self.services.registry_session,
            exchange_url=self.services.acr_exchange_url,
        )
        if credentials is not None:
            self.services.console.mask([credentials.password])
            self.say(f"registry {host}: credentials from {credentials.source}")
            return credentials, credentials.auth_config()
        stored = stored_docker_credentials(host)
        if stored is not None:
            self.services.console.mask([stored.password])
            self.say(f"registry {host}: credentials from docker login")
        return stored, None  # the docker SDK finds what `docker login` stored by itself

    def _context(self) -> tuple[Path, str, str, list[str]]:
        """(context directory, Dockerfile path inside it, inputs digest, secret files left out), written once
        per run: planning hashes it, the build sends the same directory."""
        if self._written is None:
            entries, skipped = collect(self.config)
            if self.plan.own_dockerfile is not None:
                context_dir = self.config.project_dir
                dockerfile = self.plan.own_dockerfile.relative_to(context_dir).as_posix()
                own = own_context(context_dir, dockerfile)
                self._sent, skipped = own.files, own.left_out
                self._manifest = _directory_manifest(context_dir, own.files)
                digest_of_context = _manifest_digest(self._manifest)
            else:
                assert self.plan.dockerfile is not None
                self._scratch = tempfile.TemporaryDirectory(prefix="agentdeploy-context-")
                target = Path(self._scratch.name) / "context"
                context = write_context(entries, target, self.plan.dockerfile, skipped)
                context_dir, dockerfile, digest_of_context = context.directory, "Dockerfile", context.digest
                self._manifest = context.manifest
            inputs = inputs_digest(digest_of_context, self.plan.platform, self.plan.build_args)
            self._written = (context_dir, dockerfile, inputs, skipped)
        return self._written

    def inputs(self) -> str:
        """The inputs digest alone (for planning): no engine, no registry."""
        return self._context()[2]

    def inputs_files(self) -> dict[str, str]:
        """The build inputs per file (path in the context -> sha256), for naming what changed."""
        if not self._manifest:
            self._context()
        return dict(self._manifest)

    def run(self, *, push: bool, pull: bool = False, move_tag: bool = False) -> ImageResult:
        self.move_tag = move_tag  # an existing tag may be pointed at other content (else refused)
        context_dir, dockerfile, inputs, skipped = self._context()
        if self.plan.own_dockerfile is not None and skipped:
            self.services.console.warn(
                Problem(
                    f"left out of the build context (secrets, version control): {', '.join(skipped)}",
                    hint="to send one on purpose, name it with ! in .dockerignore (e.g. !config.pem)",
                )
            )
        elif skipped:
            for path in skipped:
                self.say(f"note: {path} is left out of the image (it holds secrets)")
        try:
            with self.services.console.timed("pull"):  # the base image: looked up, or pulled (absent, --pull)
                self.base_id = self._base_id(pull=pull)
            if push:
                return self._registry_flow(context_dir, dockerfile, inputs)
            return self._local_flow(context_dir, dockerfile, inputs)
        finally:
            if self._scratch is not None:
                self._scratch.cleanup()
            self._written = None

    def _base_id(self, *, pull: bool) -> str:
        """The generated Dockerfile's base, as this engine has it (a user's own Dockerfile: not known)."""
        if self.plan.own_dockerfile is not None:
            return ""
        where = str(self.config.locate(("deployment", "build", "base_image")))
        return resolve_base_image(
            self.client, self.config.deploy.build.base_image, pull=pull, where=where, on_line=self.say
        )

    def fingerprint(self, inputs: str) -> str:
        """What decides the skip: the inputs and the base image's id (a rebuilt base is built on)."""
        if not self.base_id:
            return inputs
        return "sha256:" + hashlib.sha256(f"{inputs}\0{self.base_id}".encode()).hexdigest()

    def _build(self, context_dir: Path, dockerfile: str, inputs: str, cache_from: list[str]) -> engine.BuildResult:
        self.say(f"building {self.plan.reference}")
        with self.services.console.timed("build"), self.services.console.untrusted():
            result = self._build_quietly(context_dir, dockerfile, inputs, cache_from)
        cached = (
            "every step from cache" if result.fully_cached else f"{result.cached_steps}/{result.steps} steps from cache"
        )
        self.say(f"built {self.plan.reference} ({cached})")
        return result

    def _build_quietly(
        self, context_dir: Path, dockerfile: str, inputs: str, cache_from: list[str]
    ) -> engine.BuildResult:
        return engine.build_image(
            self.client,
            context_dir,
            tags=[self.plan.reference],
            labels={
                **self.plan.labels,
                INPUTS_LABEL: self.fingerprint(inputs),
                **({BASE_LABEL: self.base_id} if self.base_id else {}),
            },
            platform=self.plan.platform,
            build_args=self.plan.build_args,
            dockerfile=dockerfile,
            cache_from=cache_from,
            on_line=self.services.console.info,
            files=self._sent,
            one_label_step=self._sent is None,  # our own Dockerfile: the labels in one step
        )

    def _local_flow(self, context_dir: Path, dockerfile: str, inputs: str) -> ImageResult:
        fingerprint = self.fingerprint(inputs)
        inputs_tag = INPUTS_TAG_PREFIX + fingerprint.removeprefix("sha256:")[:32]  # found by name, as in a registry
        existing = engine.local_image_labelled(
            self.client, f"{self.plan.repository}:{inputs_tag}", INPUTS_LABEL, fingerprint
        )
        if existing is not None:
            repository, _, tag = self.plan.reference.rpartition(":")
            existing.tag(repository, tag)
            self.say(f"nothing to build: image {existing.short_id} was built from identical inputs")
            image_id = str(existing.id)
            skipped = True
        else:
            image_id = self._build(context_dir, dockerfile, inputs, []).image_id
            self.client.images.get(image_id).tag(self.plan.repository, inputs_tag)
            skipped = False
        return ImageResult(
            reference=image_id,
            tag=self.plan.tag,
            repository=self.plan.repository,
            manifest_digest=None,
            image_id=image_id,
            inputs_digest=inputs,
            skipped_build=skipped,
            inputs_files=dict(self._manifest),
        )

    def _tag_taken(self, held: str) -> None:
        """A tag names one content for good (a rollback by tag must get what was deployed under it)."""
        if self.plan.tag in MOVABLE_TAGS or self.move_tag:
            self.say(f"moving tag {self.plan.tag} from {held} to other content")
            return
        raise TagInUseError(
            f"{self.plan.reference} already names other content ({held}); agentdeploy does not move a tag",
            hint="commit the change (git_sha and git_tag tags follow the commit), tag a new version, or pass "
            "--move-tag (Action input move-tag) to point the tag at this build on purpose",
        )

    def _registry_flow(self, context_dir: Path, dockerfile: str, inputs: str) -> ImageResult:
        registry = self.config.deploy.registry
        assert registry is not None
        host = registry_host(registry.url)
        path = self.plan.repository[len(host) + 1 :]
        credentials, auth_config = self._credentials()
        self.credentials = credentials
        client = RegistryClient(host, credentials, session=self.services.registry_session)
        inputs_tag = INPUTS_TAG_PREFIX + self.fingerprint(inputs).removeprefix("sha256:")[:32]
        existing = client.manifest_digest(path, inputs_tag)
        if existing is not None:
            held = client.manifest_digest(path, self.plan.tag)
            if held is not None and held != existing:
                self._tag_taken(held)
            digest = client.retag(path, inputs_tag, self.plan.tag)
            self.say(
                f"nothing to build: {host} already has {existing} built from identical inputs; "
                f"tagged it {self.plan.tag}"
            )
            image_id = ""
            skipped = True
        else:
            image_id = self._build(context_dir, dockerfile, inputs, self._seeded_cache(auth_config)).image_id
            digest = self._push(client, host, path, image_id, auth_config)
            for extra_tag in (inputs_tag, CACHE_TAG):
                client.retag(path, digest, extra_tag)
            skipped = False
        return ImageResult(
            reference=f"{self.plan.repository}@{digest}",
            tag=self.plan.tag,
            repository=self.plan.repository,
            manifest_digest=digest,
            image_id=image_id,
            inputs_digest=inputs,
            skipped_build=skipped,
            inputs_files=dict(self._manifest),
        )

    def _seeded_cache(self, auth_config: dict[str, str] | None) -> list[str]:
        """The last image this repository built, as the build's layer cache (CI runners start empty)."""
        cache_ref = f"{self.plan.repository}:{CACHE_TAG}"
        with self.services.console.timed("pull"):
            seeded = pull_quietly(self.client, self.plan.repository, CACHE_TAG, auth_config)
        if not seeded:
            return []
        self.say(f"layer cache seeded from {cache_ref}")
        return [cache_ref]

    def _push(
        self, client: RegistryClient, host: str, path: str, image_id: str, auth_config: dict[str, str] | None
    ) -> str:
        """Push the built image under its tag (never moving a tag that names other content); the manifest digest,
        verified against what the registry serves."""
        held = client.manifest_digest(path, self.plan.tag)
        if held is not None and client.config_digest(path, self.plan.tag) != image_id:
            self._tag_taken(held)
        self.say(f"pushing {self.plan.reference}")
        with self.services.console.timed("push"), self.services.console.untrusted():
            pushed = engine.push_image(
                self.client,
                self.plan.repository,
                self.plan.tag,
                auth_config=auth_config,
                registry=host,
                on_line=self.services.console.info,
                sleep=self.services.push_sleep,
            )
        digest = client.manifest_digest(path, self.plan.tag) or ""
        if digest != pushed:
            raise RegistryError(
                f"digest mismatch for {self.plan.reference}: the push reported {pushed}, "
                f"the registry serves {digest or 'nothing'}",
                hint="someone else may be pushing the same tag; the release was stopped",
            )
        self.say(f"pushed {self.plan.reference}, digest {digest} (verified against the registry)")
        return digest


def _directory_manifest(directory: Path, sent: list[str]) -> dict[str, str]:
    """A user's own build context (BYO Dockerfile): the sha256 of every regular file it sends, by path."""
    manifest = {}
    for relative in sorted(sent):
        path = directory / relative
        if path.is_symlink():  # sent as a link: what it points at is its content
            manifest[relative] = hashlib.sha256(os.readlink(path).encode()).hexdigest()
        elif path.is_file():
            manifest[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return manifest


def _manifest_digest(manifest: Mapping[str, str]) -> str:
    """Digest of a user's own build context: every file, by path and content (in the manifest's order)."""
    digest = hashlib.sha256()
    for relative, content in manifest.items():
        digest.update(relative.encode() + b"\0")
        digest.update(bytes.fromhex(content))
    return "sha256:" + digest.hexdigest()
