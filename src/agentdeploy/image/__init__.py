"""The image stage: what to build (spec: name, tag, labels), the build context and the generated Dockerfile
(context, dockerfile, templates/), tags from git (tags, git), and the I/O: the Docker engine (engine), the
registry API (registry), and the builder that skips, builds, pushes and verifies the digest (builder)."""
