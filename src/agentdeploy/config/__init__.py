"""The agent config: pydantic models of agent.yaml (models), the loader that keeps file:line:column for every
value (yamlsource, loader), the rules that span fields (rules), ${VAR} placeholders (placeholders), what
the container receives (runtime), and the copy of agent.yaml the HoloDeck runtime reads (runtime_copy)."""
