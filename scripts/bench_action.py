"""What the Action costs before it does anything, and what the peer's runtime costs.

1. Installing agentdeploy into a fresh venv, from a copy of the action's files (the dependency set action.yml
   installs), the two ways its install step can:
   - uv:  `uv venv` + `uv pip install <action>`, cold (empty uv cache) and warm (uv cache filled);
   - pip: `python -m venv` + `pip install <action>`, cold (empty pip cache) and warm (pip cache filled);
   - and what a runner without uv (GitHub's) pays first: `pip install --target <dir> uv`.
   Each a median of --repeat runs.
2. The install step of action.yml itself, run as the runner runs it (bash -eo pipefail, RUNNER_TEMP, the key as
   INSTALL_KEY): on a fresh runner without uv and with empty caches (a cache miss), then again with the
   environment in place (what an actions/cache hit restores: the step only checks its stamp). The size of that
   environment is what actions/cache stores and restores.
3. Start-up to the first stage: `python -m agentdeploy github` until its first ::group:: line.
4. The peer: azure/container-apps-deploy-action needs the az CLI (`azure-cli` from PyPI) plus the
   containerapp extension, which cannot be fetched here, so the peer's real cost is higher still.
   Its cold install with pip (as the peer's runners do) and with uv; wall time and size on disk, as ratios to ours.

Usage: python scripts/bench_action.py [--skip-peer] [--repeat N]
       python scripts/bench_action.py --smoke   (one run of the uv rows, the install step and start-up: checks
                                                 that the benchmark works; the pip rows and the peer skipped)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ACTION_FILES = ("action.yml", "pyproject.toml", "README.md", "src")
QUIET = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore"}


def size_mb(path: Path) -> float:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            candidate = Path(folder) / name
            if not candidate.is_symlink():
                total += candidate.stat().st_size
    return total / 1e6


def copy_action(destination: Path) -> Path:
    """The action as a runner downloads it (a build then writes into this copy, never into the checkout)."""
    destination.mkdir(parents=True)
    for name in ACTION_FILES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, destination / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, destination / name)
    return destination


def run(command: list[str], env: dict[str, str] | None = None) -> None:
    subprocess.run(command, check=True, env=env or QUIET, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def median(action: Callable[[], float], repeat: int) -> float:
    return statistics.median(action() for _ in range(repeat))


def fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    return path


def pip_install(venv: Path, package: str, cache: Path) -> float:
    fresh(venv)

    def install() -> None:
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--cache-dir", str(cache), package])

    return timed(install)


def uv_install(uv: Path, venv: Path, package: str, cache: Path) -> float:
    fresh(venv)
    env = {**QUIET, "UV_CACHE_DIR": str(cache), "UV_LINK_MODE": "copy", "UV_PYTHON_DOWNLOADS": "never"}

    def install() -> None:
        run([str(uv), "venv", "--quiet", "--python", sys.executable, str(venv)], env)
        run([str(uv), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), package], env)

    return timed(install)


def cold_and_warm(install: Callable[[Path], float], work: Path, repeat: int) -> tuple[float, float]:
    """Median of `repeat` installs with an empty cache each, then of `repeat` with the cache filled."""
    counter = iter(range(10**6))
    cold = median(lambda: install(fresh(work / f"cold-cache-{next(counter)}")), repeat)
    warm_cache = fresh(work / "warm-cache")
    install(warm_cache)  # fills it
    warm = median(lambda: install(warm_cache), repeat)
    return cold, warm


def get_uv(target: Path) -> float:
    fresh(target)
    return timed(lambda: run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target), "uv>=0.5"]))


def install_step(work: Path, action: Path) -> tuple[float, float, str, float]:
    """action.yml's key and install steps, as the runner runs them, on a runner without uv and with empty pip
    and uv caches; then the install step again with the environment in place (a cache hit)."""
    steps = {step.get("id"): step for step in yaml.safe_load((action / "action.yml").read_text())["runs"]["steps"]}
    temp = fresh(work / "runner-temp")
    temp.mkdir()
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p and not (Path(p) / "uv").exists())
    python_dir = str(Path(sys.executable).parent)  # python3 3.11+ first on PATH, as after actions/setup-python
    env = {
        **os.environ,
        "PATH": f"{python_dir}{os.pathsep}{path}",
        "RUNNER_TEMP": str(temp),
        "RUNNER_OS": "Linux",
        "ACTION_PATH": str(action),
        "PIP_CACHE_DIR": str(fresh(work / "step-pip-cache")),
        "UV_CACHE_DIR": str(fresh(work / "step-uv-cache")),
    }

    def step(name: str, extra: dict[str, str]) -> tuple[float, dict[str, str]]:
        output = temp / f"output-{name}"
        output.write_text("")
        start = time.perf_counter()
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", steps[name]["run"]],
            env={**env, **extra, "GITHUB_OUTPUT": str(output)},
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"the {name} step failed:\n{result.stdout}{result.stderr}")
        return elapsed, dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)

    _, keyed = step("key", {})
    miss, installed = step("install", {"INSTALL_KEY": keyed["key"]})
    hit, again = step("install", {"INSTALL_KEY": keyed["key"]})
    assert again["installer"] == "cached", again
    return miss, hit, installed["installer"], size_mb(temp / "agentdeploy-venv")


def first_stage(venv: Path, workspace: Path) -> float:
    config = workspace / "agent.yaml"
    config.write_text("name: bench-agent\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: hi}\n")
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
    parser.add_argument("--repeat", type=int, default=3, help="runs per median (default 3)")
    parser.add_argument(
        "--smoke", action="store_true", help="one run of each, the peer and the pip rows skipped (the slow ones)"
    )
    args = parser.parse_args()
    if args.smoke:
        args.repeat, args.skip_peer = 1, True
    with tempfile.TemporaryDirectory(prefix="agentdeploy-bench-action-") as temporary:
        work = Path(temporary)
        action = str(copy_action(work / "action"))
        getting_uv = median(lambda: get_uv(work / "uv-tool"), args.repeat)
        uv = work / "uv-tool" / "bin" / "uv"
        ours = work / "ours"
        uv_cold, uv_warm = cold_and_warm(lambda cache: uv_install(uv, ours, action, cache), work, args.repeat)
        uv_size = size_mb(ours)
        pip_cold = pip_warm = pip_size = float("nan")  # skipped in smoke mode
        if not args.smoke:
            pip_cold, pip_warm = cold_and_warm(lambda cache: pip_install(ours, action, cache), work, args.repeat)
            pip_size = size_mb(ours)
        starts = sorted(first_stage(ours, work) for _ in range(1 if args.smoke else 5))
        miss, hit, installer, step_size = install_step(work, copy_action(work / "action-for-the-step"))

        print(f"agentdeploy into a fresh venv (median of {args.repeat}):  cold cache   warm cache   venv")
        for name, cold, warm, size in (("uv", uv_cold, uv_warm, uv_size), ("pip", pip_cold, pip_warm, pip_size)):
            print(f"  with {name:<3}{'':38}{cold:6.1f} s    {warm:6.1f} s   {size:4.0f} MB")
        print(f"  getting uv where there is none (pip install --target ... uv): {getting_uv:.1f} s")
        print(
            f"action.yml's install step: a fresh runner without uv, empty caches (actions/cache miss) {miss:.1f} s "
            f"(installed with {installer}); the environment restored (actions/cache hit: {step_size:.0f} MB to "
            f"restore) {hit:.2f} s"
        )
        print(f"agentdeploy start-up to the first stage: median {statistics.median(starts):.2f} s ({len(starts)} runs)")
        if args.smoke:
            print("smoke: the pip rows and the peer were skipped (nan)")
        if args.skip_peer:
            return
        peer = work / "peer"
        peer_pip = pip_install(peer, "azure-cli", fresh(work / "peer-pip-cache"))
        peer_uv = uv_install(uv, peer, "azure-cli", fresh(work / "peer-uv-cache"))
        peer_size = size_mb(peer)
        print(
            f"peer runtime (azure-cli, without its containerapp extension), cold: pip {peer_pip:.1f} s, "
            f"uv {peer_uv:.1f} s, {peer_size:.0f} MB"
        )
        print(
            f"ratios peer / agentdeploy, cold: pip {peer_pip / pip_cold:.1f}x, uv {peer_uv / uv_cold:.1f}x; "
            f"size {peer_size / uv_size:.1f}x"
        )


if __name__ == "__main__":
    main()
