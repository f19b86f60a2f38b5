"""Build-side numbers for the example agent, on the real engine and the registry on 127.0.0.1:5000.

1. agentdeploy's generated Dockerfile against the one upstream HoloDeck generates for the same agent, both built
   on the same real-runtime base (tests/realbase.py: holodeck-ai 0.7.1 on Debian) on the same engine in the same
   run: a cold first build, a rebuild of the unchanged agent and a rebuild after a one-line prompt change, with the
   steps the engine took from its cache each time.
   Upstream's Dockerfile is made by upstream's own code: `generate_dockerfile` of holodeck/deploy/dockerfile.py in
   the holodeck-ai 0.7.1 wheel from PyPI (tests/upstream.py downloads it, pinned by sha256), run unchanged here
   (it needs only jinja2), with the arguments its `holodeck deploy build` derives for this agent
   (`_generate_dockerfile_content` in holodeck/cli/commands/deploy.py: the instruction file, single-file tool
   sources, the environment, the tag as version) and its build context as `_prepare_build_context` writes it
   (agent.yaml, those files, its entrypoint.sh). One argument differs: `base_image`. Upstream's default,
   ghcr.io/justinbarias/holodeck-base:latest, cannot be pulled here (no network but the package registries), so
   both Dockerfiles start FROM the local real-runtime base, which is built like upstream's (a `holodeck` user,
   the runtime in a venv, bash and curl). `holodeck deploy build` writes a new Dockerfile every time it runs, with
   the time in a LABEL right after FROM, so its "unchanged" rebuild is generated again as upstream does it.
   A fresh base for each first build (the real base plus one label: a new image id, so no layer of an earlier
   run can be reused) keeps that build cold.
2. The skip path: wall time of `agentdeploy deploy` from process start to "nothing to build" when the registry
   already holds an image built from identical inputs (on the busybox stand-in base of the tests, with the
   example's verify turn removed: the stand-in has no model to answer it, and the skip comes before it anyway).
3. The size each Dockerfile adds on top of the base.

Usage: python scripts/bench_build.py [--runs N] [--smoke]   (needs `sudo .ci/services` first)
       --smoke: one run of each, to check the benchmark itself works; never fails on a timing.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import yaml  # noqa: E402

import upstream  # noqa: E402
from agentdeploy.config.loader import load_config  # noqa: E402
from agentdeploy.image.context import collect, write_context  # noqa: E402
from agentdeploy.image.engine import build_image, connect  # noqa: E402
from agentdeploy.image.spec import plan_image  # noqa: E402
from agentdeploy.image.tags import GitFacts  # noqa: E402
from realbase import ensure_real_base  # noqa: E402
from testkit import REGISTRY, busybox_rootfs  # noqa: E402

EXAMPLE = ROOT / "examples" / "hello-agent"
UPSTREAM_GENERATOR = "holodeck/deploy/dockerfile.py"
# What upstream's `_prepare_build_context` writes as entrypoint.sh (holodeck/cli/commands/deploy.py, 0.7.1).
UPSTREAM_ENTRYPOINT = """#!/bin/bash
set -e

# Start the HoloDeck agent server
exec holodeck serve /app/agent.yaml \\
    --host 0.0.0.0 \\
    --port "${HOLODECK_PORT:-8080}" \\
    --protocol "${HOLODECK_PROTOCOL:-rest}"
"""
PROMPT_CHANGE = "\nAnswer in one short paragraph.\n"


def upstream_generator() -> Callable[..., str]:
    """upstream's `generate_dockerfile`, its module run from the wheel as it is (datetime and jinja2 only)."""
    module = types.ModuleType("holodeck_0_7_1_dockerfile")
    module.__file__ = f"{upstream.WHEEL}/{UPSTREAM_GENERATOR}"
    exec(compile(upstream.read(UPSTREAM_GENERATOR), module.__file__, "exec"), module.__dict__)
    generate: Callable[..., str] = module.generate_dockerfile
    return generate


def upstream_arguments(agent_yaml: Path, version: str) -> dict[str, Any]:
    """What upstream's `_generate_dockerfile_content` passes for this agent: instruction files, function-tool files
    and single-file tool sources (sorted, as COPY + chmod each), directory sources, the deployment environment."""
    agent = yaml.safe_load(agent_yaml.read_text())
    deployment = agent.get("deployment") or {}
    files: set[str] = set()
    directories: set[str] = set()
    if (agent.get("instructions") or {}).get("file"):
        files.add(agent["instructions"]["file"])
    for tool in agent.get("tools") or []:
        if tool.get("type") == "function":
            files.add(tool["file"])
        elif tool.get("type") in ("vectorstore", "hierarchical_document") and "://" not in str(tool.get("source")):
            source = str(tool["source"])
            (files.add(source) if Path(source).suffix else directories.add(source + "/"))
    if agent.get("test_cases_file"):
        files.add(agent["test_cases_file"])
    return {
        "agent_name": agent["name"],
        "port": deployment.get("port", 8080),
        "protocol": deployment.get("protocol", "rest"),
        "version": version,
        "instruction_files": sorted(files) or None,
        "data_directories": sorted(directories) or None,
        "environment": deployment.get("environment") or None,
    }


def upstream_context(project: Path, directory: Path, dockerfile: str, arguments: dict[str, Any]) -> Path:
    """The build context upstream's `_prepare_build_context` writes."""
    directory.mkdir(parents=True)
    (directory / "Dockerfile").write_text(dockerfile)
    shutil.copy2(project / "agent.yaml", directory / "agent.yaml")
    for name in [*(arguments["instruction_files"] or []), *(arguments["data_directories"] or [])]:
        source, target = project / name, directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
    (directory / "entrypoint.sh").write_text(UPSTREAM_ENTRYPOINT)
    return directory


@dataclass
class Build:
    seconds: float
    cached: int  # steps after FROM the engine took from its cache
    steps: int  # steps after FROM
    image_id: str


def timed_build(client: Any, context: Path, tag: str, labels: dict[str, str], ours: bool) -> Build:
    start = time.perf_counter()
    result = build_image(
        client,
        context,
        tags=[tag],
        labels=labels,
        platform=None,
        build_args={},
        dockerfile="Dockerfile",
        one_label_step=ours,  # as the product builds its own Dockerfile (image/builder.py)
    )
    seconds = time.perf_counter() - start
    return Build(seconds, result.cached_steps, result.steps - result.from_steps, result.image_id)


def fresh_base(client: Any, real_base: str, made: list[str]) -> str:
    """The real base under a new image id (one LABEL step), so nothing built before can come from the cache."""
    tag = f"agentdeploy-bench-base:build-{uuid.uuid4().hex[:8]}"
    dockerfile = f'FROM {real_base}\nLABEL agentdeploy.bench.run="{tag}"\n'.encode()
    client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True, forcerm=True)
    made.append(tag)
    return tag


def copy_example(work: Path, base: str, name: str) -> Path:
    project = work / name
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".agentdeploy"))
    config = project / "agent.yaml"
    config.write_text(config.read_text() + f"  build:\n    base_image: {base}\n")
    return project


def build_ours(client: Any, project: Path, context: Path, tag: str) -> Build:
    config = load_config(project / "agent.yaml")
    entries, _ = collect(config)
    plan = plan_image(config, GitFacts(sha="0" * 40), created="2026-01-01T00:00:00Z")
    assert plan.dockerfile is not None
    built = write_context(entries, context, plan.dockerfile).directory
    return timed_build(client, built, tag, dict(plan.labels), ours=True)


def build_upstream(client: Any, project: Path, context: Path, tag: str, base: str) -> tuple[Build, str]:
    arguments = upstream_arguments(project / "agent.yaml", version="v1")
    dockerfile = upstream_generator()(base_image=base, **arguments)
    built = upstream_context(project, context, dockerfile, arguments)
    return timed_build(client, built, tag, {}, ours=False), dockerfile


Series = dict[str, list[Build]]


def one_run(client: Any, work: Path, real_base: str, run: int, made: list[str], series: Series) -> str:
    """Both layouts, each from a fresh base: first build, unchanged rebuild, rebuild after a prompt change."""
    dockerfile = ""
    for layout in ("agentdeploy", "upstream"):
        base = fresh_base(client, real_base, made)
        project = copy_example(work, base, f"{layout}-{run}")
        tag = f"agentdeploy-bench-build/{layout}:{run}"
        made.append(tag)
        for step in ("first", "unchanged", "prompt"):
            if step == "prompt":
                instructions = project / "instructions.md"
                instructions.write_text(instructions.read_text() + PROMPT_CHANGE)
            context = work / f"ctx-{layout}-{run}-{step}"
            if layout == "agentdeploy":
                build = build_ours(client, project, context, tag)
            else:
                build, dockerfile = build_upstream(client, project, context, tag, base)
            series.setdefault(f"{layout} {step}", []).append(build)
    return dockerfile


def base_size(client: Any, image: str) -> int:
    return int(client.images.get(image).attrs["Size"])


def rebuilds(client: Any, work: Path, real_base: str, runs: int, made: list[str]) -> dict[str, Any]:
    series: Series = {}
    dockerfile = ""
    for run in range(runs):
        dockerfile = one_run(client, work, real_base, run, made, series)
    median = statistics.median
    rows = []
    for layout in ("agentdeploy", "upstream"):
        first, unchanged, prompt = (series[f"{layout} {step}"] for step in ("first", "unchanged", "prompt"))
        last = prompt[-1]
        added = base_size(client, last.image_id) - base_size(client, real_base)
        rows.append(
            {
                "layout": layout if layout == "agentdeploy" else f"upstream {upstream.VERSION}",
                "first": median(b.seconds for b in first),
                "unchanged": median(b.seconds for b in unchanged),
                "unchanged_cached": f"{unchanged[-1].cached}/{unchanged[-1].steps}",
                "prompt": median(b.seconds for b in prompt),
                "prompt_cached": f"{last.cached}/{last.steps}",
                "added_kb": added / 1e3,
            }
        )
    return {"rows": rows, "upstream_dockerfile": dockerfile}


def rebuild_table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'Dockerfile':<20} {'first':>7} {'unchanged':>10} {'cached':>7} {'prompt':>7} {'cached':>7} {'ratio':>6} "
        f"{'adds':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['layout']:<20} {row['first']:>7.2f} {row['unchanged']:>10.2f} {row['unchanged_cached']:>7} "
            f"{row['prompt']:>7.2f} {row['prompt_cached']:>7} {row['unchanged'] / row['first']:>6.2f} "
            f"{row['added_kb']:>6.1f} kB"
        )
    return "\n".join(lines)


def skip_path(client: Any, work: Path, runs: int, made: list[str]) -> list[float]:
    tag = f"stand-in-{uuid.uuid4().hex[:8]}"
    client.api.import_image_from_data(busybox_rootfs(), repository="agentdeploy-bench-base", tag=tag)
    made.append(f"agentdeploy-bench-base:{tag}")
    project = copy_example(work, f"agentdeploy-bench-base:{tag}", "skip")
    config = project / "agent.yaml"
    agent = yaml.safe_load(config.read_text())
    del agent["deployment"]["verify"]  # the stand-in base has no model to answer it
    repository = f"bench/skip-{uuid.uuid4().hex[:8]}"
    agent["deployment"]["registry"] = {
        "url": REGISTRY,
        "repository": repository,
        "tag_strategy": "custom",
        "custom_tag": "v1",
    }
    config.write_text(yaml.safe_dump(agent, sort_keys=False))
    env = {**os.environ, "OPENAI_API_KEY": "sk-bench-not-used"}  # the secret must resolve; nothing calls a model
    # --force: past the NO_CHANGE plan, so the registry skip path is what is timed
    command = [sys.executable, "-m", "agentdeploy", "deploy", str(config), "--health-timeout", "30", "--force"]
    first = subprocess.run(command, capture_output=True, text=True, env=env, check=False)  # builds and pushes once
    if first.returncode != 0:
        raise SystemExit(f"the first deploy failed ({first.returncode}):\n{first.stderr[-3000:]}")
    times = []
    try:
        for _ in range(runs):
            start = time.perf_counter()
            process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
            assert process.stderr is not None
            elapsed, log = None, []
            for line in process.stderr:
                log.append(line)
                if line.startswith("nothing to build") and elapsed is None:
                    elapsed = time.perf_counter() - start
            if process.wait() != 0 or elapsed is None:
                raise SystemExit(f"the skip path was not taken (exit {process.returncode}):\n{''.join(log)[-3000:]}")
            times.append(elapsed)
    finally:
        destroy = [sys.executable, "-m", "agentdeploy", "destroy", str(config), "--yes"]
        subprocess.run(destroy, capture_output=True, env=env, check=False)
        made.extend(t for image in client.images.list(name=f"{REGISTRY}/{repository}") for t in image.tags)
    return times


def remove(client: Any, made: list[str]) -> None:
    """What this run made, the images built on a base before it."""
    import docker.errors

    for tag in reversed(made):
        try:
            client.images.remove(tag, force=False)
        except docker.errors.APIError as error:
            print(f"cleanup: {tag}: {error}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="one run of each measurement")
    parser.add_argument("--show-dockerfile", action="store_true", help="print upstream's generated Dockerfile")
    args = parser.parse_args()
    runs = 1 if args.smoke else args.runs
    client = connect()
    real_base = ensure_real_base(client, log=lambda line: print(line, file=sys.stderr))
    made: list[str] = []
    with tempfile.TemporaryDirectory(prefix="agentdeploy-bench-") as temporary:
        work = Path(temporary)
        try:
            figures = rebuilds(client, work, real_base, runs, made)
            skips = skip_path(client, work, runs, made)
        finally:
            remove(client, made)
    if args.show_dockerfile:
        print(figures["upstream_dockerfile"])
    print(f"the example agent on {real_base}; seconds, medians of {runs} run(s); cached = steps from the cache")
    print(rebuild_table(figures["rows"]))
    ours, theirs = figures["rows"]
    print(
        f"ratio = unchanged / first. upstream's Dockerfile is generated by holodeck-ai {upstream.VERSION}'s own "
        "generate_dockerfile (FROM the same local base: its default base is on ghcr.io, which cannot be reached "
        "here); it writes the build time in a LABEL right after FROM, so a rebuild of an unchanged agent takes "
        f"{theirs['unchanged_cached']} steps from the cache, agentdeploy's {ours['unchanged_cached']}."
    )
    print(
        f"skip path: start to 'nothing to build' median {statistics.median(skips):.2f} s over {runs} run(s) "
        f"(min {min(skips):.2f}, max {max(skips):.2f})"
    )


if __name__ == "__main__":
    main()
