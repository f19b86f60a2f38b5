"""Start-up time of `agentdeploy --help` as a real process: the median of N runs (the budget is 0.3 s).

Usage: python scripts/bench_cli_startup.py [--runs N] [--budget SECONDS]
       python scripts/bench_cli_startup.py --smoke   (3 runs; never fails on the budget, only on heavy imports)

Runs the installed console script (`agentdeploy`, next to this interpreter or on PATH) and
`python -m agentdeploy`, each after two warm-up runs, with `python -c pass` as the interpreter's own
start-up for comparison; then lists the third-party modules `--help` imports (there should be none:
pydantic, docker, azure, jinja2, yaml and requests are imported by the commands that need them) and
the cost of importing agentdeploy.console, which every command loads. Exits 1 when a median is over
the budget.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("docker", "azure", "pydantic", "jinja2", "yaml", "requests", "rich", "actions_toolkit")


def measure(command: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return times


def heavy_imports() -> list[str]:
    probe = (
        "import sys\n"
        "from agentdeploy.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY=' + ','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    line = result.stdout.strip().splitlines()[-1]
    return [name for name in line.removeprefix("HEAVY=").split(",") if name]


def console_import_ms() -> tuple[float, float]:
    """Self and cumulative milliseconds of `import agentdeploy.console`, from -X importtime (the cumulative
    time is mostly the standard library argparse needs anyway, and agentdeploy.errors)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import agentdeploy.console"],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in result.stderr.splitlines():
        if line.rstrip().endswith("| agentdeploy.console"):
            own, total = line.split("|")[0].split(":")[1], line.split("|")[1]
            return int(own) / 1000, int(total) / 1000
    return float("nan"), float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--budget", type=float, default=0.3, help="seconds (default 0.3)")
    parser.add_argument(
        "--smoke", action="store_true", help="3 runs; checks that the benchmark works, never fails on the budget"
    )
    args = parser.parse_args()
    if args.smoke:
        args.runs = 3
    commands = {"python -m agentdeploy --help": [sys.executable, "-m", "agentdeploy", "--help"]}
    script = Path(sys.executable).with_name("agentdeploy")
    found = str(script) if script.exists() else shutil.which("agentdeploy")
    if found:
        commands["agentdeploy --help"] = [found, "--help"]
    baseline = measure([sys.executable, "-c", "pass"], args.runs)
    print(f"python -c pass (interpreter start-up): median {statistics.median(baseline) * 1000:.0f} ms")
    over = False
    for label, command in commands.items():
        measure(command, 2)  # warm the page cache and .pyc files
        times = measure(command, args.runs)
        median = statistics.median(times)
        over = over or median > args.budget
        print(
            f"{label}: median {median * 1000:.0f} ms, min {min(times) * 1000:.0f} ms, "
            f"max {max(times) * 1000:.0f} ms over {args.runs} runs (budget {args.budget * 1000:.0f} ms)"
        )
    heavy = heavy_imports()
    print("third-party modules --help imports: " + (", ".join(heavy) if heavy else "none"))
    own, total = console_import_ms()
    print(f"import agentdeploy.console: {own:.1f} ms itself, {total:.1f} ms with what it imports")
    if args.smoke:  # a timing on a shared machine says nothing about the benchmark working; the imports do
        return 1 if heavy else 0
    return 1 if over or heavy else 0


if __name__ == "__main__":
    sys.exit(main())
