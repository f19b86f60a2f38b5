"""Where output goes: data on stdout, messages on stderr (so `--json | jq` works).

Every secret value registered with `mask` is replaced by *** in everything printed, as a last
line of defence behind not printing secrets in the first place.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any, TextIO

from agentdeploy.errors import Problem

MASK = "***"
# Shorter values cannot be told apart from ordinary text: masking "x" would mangle every line.
MIN_MASKED_LENGTH = 4


class Console:
    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self._secrets: list[str] = []

    def mask(self, values: list[str]) -> None:
        # Longest first, so a secret containing another is masked whole.
        masked = (v for v in values if len(v) >= MIN_MASKED_LENGTH)
        self._secrets = sorted({*self._secrets, *masked}, key=len, reverse=True)

    def _clean(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def data(self, text: str) -> None:
        self.out.write(self._clean(text if text.endswith("\n") else text + "\n"))
        self.out.flush()

    def json(self, value: Any) -> None:
        self.data(json.dumps(value, indent=2, sort_keys=True))

    def info(self, text: str) -> None:
        self.err.write(self._clean(text) + "\n")
        self.err.flush()

    def warn(self, problem: Problem) -> None:
        self.info("warning: " + problem.render().replace("\n", "\n  "))

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """A named part of the run (a collapsible log group in GitHub Actions)."""
        yield

    @contextlib.contextmanager
    def untrusted(self) -> Iterator[None]:
        """Output we do not control (docker build log): GitHub must not read commands from it."""
        yield
