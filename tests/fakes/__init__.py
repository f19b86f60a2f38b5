"""Test fakes of external services, built from recorded behaviour of the real ones (see each module)."""
