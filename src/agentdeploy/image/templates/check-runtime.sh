#!/bin/sh
# agentdeploy: run at build time, as root, in the agent's image. Verifies that the base image has the
# HoloDeck runtime this agent needs (holodeck-ai at the pinned version, with the extras its model
# provider and tools need) and installs it into holodeck's own Python when it does not. Anything it
# cannot fix stops the build with a line starting "agentdeploy: " that agentdeploy shows the user.
# Usage: check-runtime.sh VERSION [EXTRA,EXTRA...]
set -eu
want="$1"
extras="${2:-}"
spec="holodeck-ai"
if [ -n "$extras" ]; then spec="holodeck-ai[$extras]"; fi
spec="$spec==$want"

fail() {
  echo "agentdeploy: $*" >&2
  exit 3
}

holodeck=$(command -v holodeck 2>/dev/null || true)
if [ -z "$holodeck" ]; then
  fail "the base image has no holodeck command, so it cannot run the agent; use a HoloDeck base image that has $spec"
fi

# holodeck is a Python entry point: its first line names the interpreter that has its packages.
IFS= read -r first_line <"$holodeck" || true
python=""
case "$first_line" in
  "#!"*python*) python=${first_line#\#!} ;;
esac

if [ -z "$python" ]; then
  # Not a Python entry point (a wrapper script): only the version can be read.
  found=$(holodeck --version 2>/dev/null | tr -cd '0-9.\n' | tail -n 1 || true)
  if [ "$found" != "$want" ]; then
    fail "the base image's holodeck is ${found:-of unknown version}, the agent needs $spec; use a base image that has it"
  fi
  echo "agentdeploy: holodeck $found found (a wrapper script: extras [$extras] not verified)"
  exit 0
fi

check() {
  "$python" - "$want" "$extras" <<'PY'
import importlib.metadata as metadata
import re
import sys

want, extras = sys.argv[1], [e for e in sys.argv[2].split(",") if e]
try:
    found = metadata.version("holodeck-ai")
except metadata.PackageNotFoundError:
    print("holodeck-ai is not installed")
    sys.exit(1)
problems = [] if found == want else [f"holodeck-ai is {found}, not {want}"]
requirements = metadata.requires("holodeck-ai") or []
for extra in extras:
    wanted = [r for r in requirements if re.search(r"extra\s*==\s*['\"]" + re.escape(extra) + r"['\"]", r)]
    if not wanted:
        problems.append(f"holodeck-ai {found} has no extra [{extra}]")
    for requirement in wanted:
        name = re.split(r"[\s\[<>=!~;(]", requirement, maxsplit=1)[0]
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name} (of the [{extra}] extra) is not installed")
print("; ".join(problems) if problems else f"holodeck-ai {found} with [{','.join(extras)}]")
sys.exit(1 if problems else 0)
PY
}

if verdict=$(check); then
  echo "agentdeploy: $verdict: ok"
  exit 0
fi
echo "agentdeploy: the base image lacks $spec ($verdict); installing it"
if ! "$python" -m pip --version >/dev/null 2>&1; then
  fail "the base image lacks $spec ($verdict) and has no pip to install it; use a base image that has it"
fi
if ! "$python" -m pip install --no-cache-dir --disable-pip-version-check --retries 1 --timeout 30 "$spec" "openai<2.45" >/tmp/agentdeploy-pip.log 2>&1; then
  tail -n 5 /tmp/agentdeploy-pip.log >&2
  fail "the base image lacks $spec ($verdict) and installing it failed (see pip's last lines above); use a base image that has it, or let the build reach the package index"
fi
rm -f /tmp/agentdeploy-pip.log
verdict=$(check) || fail "installed $spec but it is still not usable: $verdict"
echo "agentdeploy: installed $verdict"
