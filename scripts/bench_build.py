"""Build-side numbers for the example agent, on the real engine and the registry on 127.0.0.1:5000.

1. Rebuild of an unchanged agent as a ratio of its first build, for agentdeploy's Dockerfile and
   for the upstream HoloDeck layout (a timestamp LABEL right after FROM, per-file COPY + RUN chmod,
   environment baked in as ENV), built from the same context on the same engine in the same run.
2. The skip path: wall time of `agentdeploy deploy` from process start to "nothing to build"
   when the registry already holds an image built from identical inputs.
3. The image size of the example agent, and what agentdeploy adds on top of its base image.

Nothing can be pulled here, so the base image is a busybox rootfs imported locally (the tests'
stand-in for holodeck-base); a fresh import before each first build keeps that build cold.

Usage: python scripts/bench_build.py [--runs N]   (needs `sudo .ci/services` first)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from agentdeploy.config.loader import load_config  # noqa: E402
from agentdeploy.image.context import collect, write_context  # noqa: E402
from agentdeploy.image.engine import build_image, connect  # noqa: E402
from agentdeploy.image.spec import plan_image  # noqa: E402
from agentdeploy.image.tags import GitFacts  # noqa: E402
from testkit import REGISTRY, busybox_rootfs  # noqa: E402

EXAMPLE = ROOT / "examples" / "hello-agent"


def upstream_style_dockerfile(base: str, files: list[str], environment: dict[str, str], port: int) -> str:
    """The layout of upstream HoloDeck's template (not its text): what matters for caching."""
    created = datetime.now(UTC).isoformat()
    lines = [f"FROM {base}", f'LABEL org.opencontainers.image.created="{created}"', "USER root", "WORKDIR /app"]
    for name in files:
        lines += [f"COPY app/{name} /app/{name}", f"RUN chmod a-w /app/{name}"]
    lines += [f'ENV {key}="{value}"' for key, value in environment.items()]
    lines += [f'ENV HOLODECK_PORT="{port}"', f"EXPOSE {port}", "USER 10001"]
    lines += ['ENTRYPOINT ["/bin/sh", "-c", "exec holodeck serve /app/agent.yaml --port $HOLODECK_PORT"]']
    return "\n".join(lines) + "\n"


def fresh_base(client: Any) -> str:
    tag = f"bench-{uuid.uuid4().hex[:8]}"
    client.api.import_image_from_data(busybox_rootfs(("chmod",)), repository="agentdeploy-bench-base", tag=tag)
    return f"agentdeploy-bench-base:{tag}"


def timed_build(client: Any, context: Path, dockerfile: str, tag: str, labels: dict[str, str]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = build_image(
        client, context, tags=[tag], labels=labels, platform=None, build_args={}, dockerfile=dockerfile
    )
    return time.perf_counter() - start, result


def prepare(work: Path, base: str) -> Path:
    project = work / "hello-agent"
    if project.exists():
        shutil.rmtree(project)
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".agentdeploy"))
    config = project / "agent.yaml"
    config.write_text(config.read_text() + f"  build:\n    base_image: {base}\n")
    return config


def rebuild_ratios(client: Any, work: Path, runs: int) -> None:
    ours_first, ours_again, up_first, up_again, cached = [], [], [], [], []
    for run in range(runs):
        base = fresh_base(client)
        config = load_config(prepare(work, base))
        entries, _ = collect(config)
        plan = plan_image(config, GitFacts(sha="0" * 40), created="2026-01-01T00:00:00Z")
        assert plan.dockerfile is not None
        context = write_context(entries, work / f"ctx-{run}", plan.dockerfile).directory
        upstream = upstream_style_dockerfile(
            base, [e.target.as_posix() for e in entries], dict(config.deploy.environment), config.deploy.port
        )
        first, _ = timed_build(client, context, "Dockerfile", f"bench/ours:{run}", plan.labels)
        again, result = timed_build(client, context, "Dockerfile", f"bench/ours:{run}", plan.labels)
        ours_first.append(first)
        ours_again.append(again)
        cached.append(f"{result.cached_steps}/{result.steps - result.from_steps}")
        base = fresh_base(client)  # cold again for the upstream layout
        upstream = upstream.replace(upstream.splitlines()[0], f"FROM {base}", 1)
        (context / "Dockerfile.upstream").write_text(upstream)
        first, _ = timed_build(client, context, "Dockerfile.upstream", f"bench/upstream:{run}", {})
        (context / "Dockerfile.upstream").write_text(
            upstream_style_dockerfile(
                base, [e.target.as_posix() for e in entries], dict(config.deploy.environment), config.deploy.port
            )
        )
        again, _ = timed_build(client, context, "Dockerfile.upstream", f"bench/upstream:{run}", {})
        up_first.append(first)
        up_again.append(again)
    median = statistics.median
    print(
        f"agentdeploy Dockerfile: first build {median(ours_first):.2f} s, "
        f"unchanged rebuild {median(ours_again):.2f} s, "
        f"ratio {median(ours_again) / median(ours_first):.2f} (steps from cache on rebuild: {', '.join(cached)})"
    )
    print(
        f"upstream layout:        first build {median(up_first):.2f} s, unchanged rebuild {median(up_again):.2f} s, "
        f"ratio {median(up_again) / median(up_first):.2f}"
    )


def skip_path(work: Path, base: str, runs: int) -> None:
    config = prepare(work, base)
    repository = f"bench/skip-{uuid.uuid4().hex[:8]}"
    config.write_text(
        config.read_text().replace(
            "deployment:\n",
            f"deployment:\n  registry: {{url: '{REGISTRY}', repository: {repository}, "
            "tag_strategy: custom, custom_tag: v1}\n",
            1,
        )
    )
    # --force: past the NO_CHANGE plan, so the registry skip path is what is timed
    command = [sys.executable, "-m", "agentdeploy", "deploy", str(config), "--health-timeout", "30", "--force"]
    subprocess.run(command, check=True, capture_output=True)  # builds and pushes once
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        assert process.stderr is not None
        elapsed = None
        for line in process.stderr:
            if line.startswith("nothing to build") and elapsed is None:
                elapsed = time.perf_counter() - start
        process.wait()
        assert elapsed is not None, "the skip path was not taken"
        times.append(elapsed)
    subprocess.run(
        [sys.executable, "-m", "agentdeploy", "destroy", str(config), "--yes"], check=True, capture_output=True
    )
    print(
        f"skip path: start to 'nothing to build' median {statistics.median(times):.2f} s over {runs} runs "
        f"(min {min(times):.2f}, max {max(times):.2f})"
    )


def image_size(client: Any, work: Path, base: str) -> None:
    config = load_config(prepare(work, base))
    entries, _ = collect(config)
    plan = plan_image(config, GitFacts(sha="0" * 40), created="2026-01-01T00:00:00Z")
    assert plan.dockerfile is not None
    context = write_context(entries, work / "ctx-size", plan.dockerfile).directory
    _, result = timed_build(client, context, "Dockerfile", "bench/size:1", plan.labels)
    image = client.images.get(result.image_id)
    base_size = client.images.get(base).attrs["Size"]
    total = image.attrs["Size"]
    print(
        f"example agent image: {total / 1e6:.2f} MB on the stand-in base; agentdeploy's layers add "
        f"{(total - base_size) / 1e3:.1f} kB over the base ({base_size / 1e6:.2f} MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    client = connect()
    with tempfile.TemporaryDirectory(prefix="agentdeploy-bench-") as temporary:
        work = Path(temporary)
        rebuild_ratios(client, work, args.runs)
        base = fresh_base(client)
        skip_path(work, base, args.runs)
        image_size(client, work, base)


if __name__ == "__main__":
    main()
