"""What the agent's log says about a failed verify turn: the real HoloDeck runtime's own lines (holodeck-ai 0.7.1
[openai-agents] in the real base, `docker logs --tail 20` after one chat turn with no OPENAI_API_KEY, with a key the
endpoint refuses with OpenAI's 401 body, and with OPENAI_BASE_URL on a closed port: tests/fixtures/holodeck-logs/)
read into the fix, naming what reaches the container."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentdeploy.targets.health import REACHES_THE_CONTAINER, model_call_hint

LOGS = Path(__file__).resolve().parent.parent / "fixtures" / "holodeck-logs"


def lines(name: str) -> list[str]:
    return (LOGS / f"{name}.log").read_text().splitlines()


def test_a_key_the_container_was_not_given_is_named_with_the_settings_that_reach_it() -> None:
    assert model_call_hint(lines("missing-key"), {"LOG_LEVEL", "OPENAI_BASE_URL"}) == (
        "the agent needs OPENAI_API_KEY: only deployment.environment and deployment.secrets reach the container; "
        "OPENAI_API_KEY was not given to it (add `OPENAI_API_KEY: ${OPENAI_API_KEY}` under deployment.secrets and "
        "export it where you deploy; for one deploy: --env OPENAI_API_KEY)"
    )
    assert REACHES_THE_CONTAINER == "only deployment.environment and deployment.secrets reach the container"


def test_a_key_given_empty_is_said_so() -> None:
    assert model_call_hint(lines("missing-key"), {"OPENAI_API_KEY"}) == (
        "the agent needs OPENAI_API_KEY: it reached the container empty; give it a value"
    )


def test_a_refused_key_names_the_keys_that_were_given() -> None:
    assert model_call_hint(lines("refused-key"), {"OPENAI_API_KEY", "LOG_LEVEL"}) == (
        "the model endpoint refused the agent's API key (HTTP 401): check the value of OPENAI_API_KEY"
    )


@pytest.mark.parametrize(
    ("given", "hint"),
    [
        (
            {"OPENAI_BASE_URL", "OPENAI_API_KEY"},
            "the agent could not reach its model endpoint (OPENAI_BASE_URL as given): check that the address is "
            "reachable from inside the container",
        ),
        (
            {"OPENAI_API_KEY"},
            "the agent could not reach its model endpoint: only deployment.environment and deployment.secrets reach "
            "the container; no *_BASE_URL was given to it, so it calls the provider's public endpoint: check this "
            "machine's network and proxy",
        ),
    ],
)
def test_an_unreachable_endpoint_says_whether_an_address_was_given(given: set[str], hint: str) -> None:
    assert model_call_hint(lines("unreachable-endpoint"), given) == hint


def test_an_unset_placeholder_the_runtime_stops_on_is_named() -> None:
    log = ["Error: Environment variable 'SUPPORT_API_KEY' not found"]  # FACTS.md: the runtime's own words
    assert model_call_hint(log, {"OPENAI_API_KEY"}).startswith(
        f"the agent needs SUPPORT_API_KEY: {REACHES_THE_CONTAINER}; SUPPORT_API_KEY was not given to it"
    )


def test_a_log_without_a_model_failure_gives_no_hint() -> None:
    healthy = [line for line in lines("refused-key") if "401" not in line and "Authentication" not in line]
    assert model_call_hint(healthy, {"OPENAI_API_KEY"}) == ""
