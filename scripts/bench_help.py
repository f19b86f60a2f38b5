"""Median wall time of `agentdeploy --help` (target: under 0.3 s).

Usage: python scripts/bench_help.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def measure(command: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    commands = {"python -m agentdeploy --help": [sys.executable, "-m", "agentdeploy", "--help"]}
    script = shutil.which("agentdeploy")
    if script:
        commands["agentdeploy --help"] = [script, "--help"]
    baseline = measure([sys.executable, "-c", "pass"], args.runs)
    print(f"python -c pass (interpreter start-up): median {statistics.median(baseline) * 1000:.0f} ms")
    for label, command in commands.items():
        measure(command, 2)  # warm the page cache and .pyc files
        times = measure(command, args.runs)
        print(
            f"{label}: median {statistics.median(times) * 1000:.0f} ms, "
            f"min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms over {args.runs} runs"
        )


if __name__ == "__main__":
    main()
