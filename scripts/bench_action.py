"""What the Action costs before it does anything, and what the peer's runtime costs.

1. Install of agentdeploy into a fresh venv the way action.yml does it: cold (empty pip cache) and
   warm (pip cache filled; on a runner the actions/cache hit skips the install entirely).
2. Start-up to the first stage: `python -m agentdeploy github` until its first ::group:: line.
3. The peer: azure/container-apps-deploy-action needs the az CLI (`azure-cli` from PyPI) plus the
   containerapp extension, which cannot be fetched here, so the peer's real cost is higher still.
   Wall time and size on disk, as ratios to ours.

Usage: python scripts/bench_action.py [--skip-peer]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def size_mb(path: Path) -> float:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            candidate = Path(folder) / name
            if not candidate.is_symlink():
                total += candidate.stat().st_size
    return total / 1e6


def install(venv: Path, package: str, cache: Path | None) -> float:
    if venv.exists():
        shutil.rmtree(venv)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    command = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["--cache-dir", str(cache)] if cache else ["--no-cache-dir"]
    subprocess.run([*command, package], check=True)
    return time.perf_counter() - start


def first_stage(venv: Path, workspace: Path) -> float:
    config = workspace / "agent.yaml"
    config.write_text("name: bench-agent\nmodel: {provider: openai}\ninstructions: {inline: hi}\n")
    env = {**os.environ, "AGENTDEPLOY_COMMAND": "plan", "AGENTDEPLOY_CONFIG": "agent.yaml", "GITHUB_ACTIONS": "true"}
    start = time.perf_counter()
    process = subprocess.Popen(
        [str(venv / "bin" / "python"), "-m", "agentdeploy", "github"],
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    elapsed = None
    for line in process.stdout:
        if line.startswith("::group::") and elapsed is None:
            elapsed = time.perf_counter() - start
    process.wait()
    assert elapsed is not None, "no stage started"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-peer", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agentdeploy-bench-action-") as temporary:
        work = Path(temporary)
        cache = work / "pip-cache"
        ours = work / "ours"
        cold = install(ours, str(ROOT), None)
        install(ours, str(ROOT), cache)  # fills the cache
        warm = install(ours, str(ROOT), cache)
        ours_size = size_mb(ours)
        starts = sorted(first_stage(ours, work) for _ in range(5))
        print(f"agentdeploy install: cold {cold:.1f} s, warm pip cache {warm:.1f} s, venv {ours_size:.0f} MB")
        print(
            f"agentdeploy start-up to the first stage: median {starts[2]:.2f} s (5 runs; an actions/cache hit "
            "skips the install, so this is the warm runner's whole overhead)"
        )
        if args.skip_peer:
            return
        peer = work / "peer"
        peer_cold = install(peer, "azure-cli", None)
        peer_size = size_mb(peer)
        print(
            f"peer runtime (azure-cli, without its containerapp extension): cold {peer_cold:.1f} s, {peer_size:.0f} MB"
        )
        print(f"ratios peer / agentdeploy: install time {peer_cold / cold:.1f}x, size {peer_size / ours_size:.1f}x")


if __name__ == "__main__":
    main()
