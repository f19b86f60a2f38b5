"""One-time set-up of the cloud an agent deploys to: `agentdeploy setup azure CONFIG` prints the ordered `az`
commands for that config (plan.py, pure), and with `--check` reads Azure to say which steps are done (check.py,
read-only, through armread.py)."""
