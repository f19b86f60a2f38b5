"""Azure Container Apps: the Target (target), the ARM client, gate and releases (client), the lease (lease),
readers of an app's JSON (views), config -> AppSpec (spec), ARM errors and JSON (arm), the pure request
bodies (body), and credentials (auth)."""
