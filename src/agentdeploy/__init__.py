"""agentdeploy: ship HoloDeck agents to Azure Container Apps or the local Docker engine."""

__version__ = "0.1.0"
