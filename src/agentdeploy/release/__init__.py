"""Releases: the planner (desired vs recorded vs live -> CREATE / UPDATE / NO_CHANGE / DRIFT, pure), the
pipeline (the stages in order, the only place that knows the order), and the commands the CLI and the
Action both call, with one mapping from their results to outputs."""
