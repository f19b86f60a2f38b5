from agentdeploy.cli import run

run()
