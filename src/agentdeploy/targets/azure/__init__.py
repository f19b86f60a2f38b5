"""Azure Container Apps: the target (target), the pure request bodies (body), and credentials (auth)."""
