"""The deployment record: one versioned JSON file per agent and environment, written atomically under a
lock (store), and where it travels in a workflow: committed to a branch (branch) or uploaded as an
artifact (artifact)."""
