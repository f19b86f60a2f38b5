"""The fake ARM for every Azure test: started on 127.0.0.1, trusted through REQUESTS_CA_BUNDLE, and
checked afterwards for bugs of its own (server_errors)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fakes.arm import FakeArm
from testkit import AZURE_ENVIRONMENT, AZURE_RESOURCE_GROUP, AZURE_SUBSCRIPTION

SUB, RG, ENV = AZURE_SUBSCRIPTION, AZURE_RESOURCE_GROUP, AZURE_ENVIRONMENT


@pytest.fixture
def start_arm(tls_files: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., FakeArm]]:
    """start_arm(subscription=..., provisioning_delay=..., token=...) -> a running FakeArm with one RG and env."""
    # The SDK's and MSAL's requests sessions read the CA from here (it overrides Session.verify).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files.ca))
    started: list[FakeArm] = []
    with contextlib.ExitStack() as stack:

        def start(*, subscription: str = SUB, provisioning_delay: float = 0.3, token: str | None = None) -> FakeArm:
            fake = stack.enter_context(FakeArm(tls_files.cert, tls_files.key, provisioning_delay=provisioning_delay))
            fake.add_resource_group(subscription, RG)
            fake.add_managed_environment(subscription, RG, ENV)
            if token is not None:
                fake.allow_token(token)
            started.append(fake)
            return fake

        yield start
    for fake in started:
        assert fake.server_errors == []
