"""The GitHub Action's side: inputs from the environment, workflow commands (masks, groups, annotations),
outputs and the job summary. The composite action.yml only launches `python -m agentdeploy github`."""
