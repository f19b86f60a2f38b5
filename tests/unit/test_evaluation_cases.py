"""The evaluation gate's cases, read from agent.yaml as HoloDeck 0.7.1 writes them (inline `test_cases` or a
`test_cases_file`, a list or a mapping with `test_cases:`) or from the verify turns; every broken piece is an error at
its file:line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agentdeploy.config.loader import load_config
from agentdeploy.errors import ConfigError, ContextError, ExitCode
from agentdeploy.targets.evaluation import EvalCase, EvalTurn, EvaluationPlan, ExpectedTool, evaluation_plan
from agentdeploy.targets.evaluation.cases import ArgMatch

AGENT = """\
name: support
model: {provider: openai, name: gpt-4o}
instructions: {inline: Be helpful.}
"""


def gate(**settings: object) -> str:
    lines = "".join(f"      {key}: {value}\n" for key, value in settings.items())
    return "deployment:\n  rollout:\n    evaluation:\n" + (lines or "      pass_rate: 1\n")


def test_inline_test_cases_become_cases_with_their_turns_tools_and_ground_truths(
    write_agent: Callable[..., Path],
) -> None:
    config = write_agent(
        AGENT
        + """\
test_cases:
  - name: refund
    input: Can I return an item?
    ground_truth: within 30 days
    expected_tools: [faq_search]
  - input: Where is order A-1?
    expected_tools:
      - {name: order_status, count: 2, args: {order_id: {regex: "A-\\\\d+"}, verbose: true}}
  - name: memory
    turns:
      - {input: My name is Ada.}
      - {input: "What is my name?", ground_truth: Ada}
"""
        + gate(pass_rate=0.5, check="regex", timeout_seconds=30)
    )
    plan = evaluation_plan(load_config(config))
    assert plan == EvaluationPlan(
        (
            EvalCase("refund", (EvalTurn("Can I return an item?", "within 30 days", (ExpectedTool("faq_search"),)),)),
            EvalCase(
                "case 2",
                (
                    EvalTurn(
                        "Where is order A-1?",
                        None,
                        (
                            ExpectedTool(
                                "order_status",
                                2,
                                (("order_id", ArgMatch("regex", "A-\\d+")), ("verbose", ArgMatch("literal", True))),
                            ),
                        ),
                    ),
                ),
            ),
            EvalCase("memory", (EvalTurn("My name is Ada."), EvalTurn("What is my name?", "Ada"))),
        ),
        check="regex",
        pass_rate=0.5,
        timeout=30.0,
        source="test_cases",
    )


def test_no_evaluation_section_means_no_gate(write_agent: Callable[..., Path]) -> None:
    assert evaluation_plan(load_config(write_agent(AGENT + "test_cases: [{input: hi}]\n"))) is None


@pytest.mark.parametrize("shape", ["list", "mapping"])
def test_a_test_cases_file_is_read_beside_the_config_as_a_list_or_under_test_cases(
    write_agent: Callable[..., Path], shape: str
) -> None:
    cases = "- name: hello\n  input: Hi\n  ground_truth: hello\n"
    text = cases if shape == "list" else "test_cases:\n" + "".join(f"  {line}\n" for line in cases.splitlines())
    config = write_agent(AGENT + "test_cases_file: tests/cases.yaml\n" + gate(), {"tests/cases.yaml": text})
    plan = evaluation_plan(load_config(config))
    assert plan is not None and plan.cases == (EvalCase("hello", (EvalTurn("Hi", "hello"),)),)


def test_broken_cases_in_a_file_are_each_named_at_their_line(write_agent: Callable[..., Path]) -> None:
    config = write_agent(
        AGENT + "test_cases_file: cases.yaml\n" + gate(check="regex"),
        {
            "cases.yaml": "- name: ok\n  input: Hi\n"
            "- name: bad\n  input: Hi\n  ground_truth: '(unclosed'\n  expected_tools: [{name: x, count: 0}]\n"
            "- {inptu: typo}\n"
        },
    )
    with pytest.raises(ConfigError) as raised:
        evaluation_plan(load_config(config))
    error = raised.value
    assert error.exit_code == ExitCode.CONFIG
    shown = str(config.parent / "cases.yaml")
    assert error.render().splitlines() == [
        "error: 4 problem(s) in the agent's test cases for the evaluation gate",
        f"  {shown}:5:17: test_cases[1].ground_truth: `ground_truth` is not a valid regex (check: regex): "
        "missing ), unterminated subpattern at position 0",
        f"  {shown}:6:37: test_cases[1].expected_tools[0].count: `count` must be a whole number of at least 1",
        f"  {shown}:7:4: test_cases[2].inptu: unknown key 'inptu' in a test case (HoloDeck 0.7.1 refuses it)",
        f"  {shown}:7:3: test_cases[2]: `input` must be a non-empty text",
    ]


def test_inline_case_errors_point_into_agent_yaml(write_agent: Callable[..., Path]) -> None:
    config = write_agent(AGENT + "test_cases:\n  - name: empty\n    input: ''\n  - turns: []\n" + gate())
    with pytest.raises(ConfigError) as raised:
        evaluation_plan(load_config(config))
    assert [problem.render() for problem in raised.value.problems] == [
        f"{config}:6:12: test_cases[0].input: `input` must be a non-empty text",
        f"{config}:7:12: test_cases[1].turns: `turns` must be a non-empty list of turns with `input:`",
    ]


def test_holodecks_evaluators_are_refused_for_now_with_the_way_out(write_agent: Callable[..., Path]) -> None:
    config = write_agent(AGENT + "test_cases: [{input: hi}]\n" + gate(check="evaluators"))
    with pytest.raises(ConfigError) as raised:
        evaluation_plan(load_config(config))
    assert raised.value.render() == (
        f"error: {config}:8:14: check: evaluators (HoloDeck's own metrics: LLM judges, RAG metrics and code graders) "
        "is not supported by the evaluation gate yet\n"
        "  fix: use check: contains or check: regex (each ground_truth is then checked against the answer)"
    )


def test_a_gate_without_cases_is_refused_at_its_source(write_agent: Callable[..., Path]) -> None:
    with pytest.raises(ConfigError) as raised:
        evaluation_plan(load_config(write_agent(AGENT + gate(source="test_cases"))))
    assert str(raised.value.location).endswith("agent.yaml:7:15")
    assert raised.value.message == "evaluation source: test_cases, but the agent has no test_cases or test_cases_file"
    with pytest.raises(ConfigError) as raised:
        evaluation_plan(load_config(write_agent(AGENT + gate(source="verify"))))
    assert raised.value.message == "evaluation source: verify, but deployment.verify.chat has no turns"


def test_the_verify_turns_are_one_case_in_one_session(write_agent: Callable[..., Path]) -> None:
    config = write_agent(
        AGENT
        + gate(source="verify")
        + "  verify:\n    chat:\n      - {message: My name is Ada., expect: [Ada], expect_tools: [memory_store]}\n"
        '      - {message: "Who am I?", expect: Ada}\n'
    )
    plan = evaluation_plan(load_config(config))
    assert plan is not None and plan.cases == (
        EvalCase(
            "verify",
            (
                EvalTurn("My name is Ada.", None, (ExpectedTool("memory_store", exact=True),), ("Ada",)),
                EvalTurn("Who am I?", None, (), ("Ada",)),
            ),
        ),
    )


def test_a_test_cases_file_outside_the_project_or_missing_is_a_context_error(
    write_agent: Callable[..., Path],
) -> None:
    for name, message in (
        ("../cases.yaml", "test_cases_file ../cases.yaml lies outside the project"),
        ("nope.yaml", "test_cases_file nope.yaml does not exist"),
    ):
        config = write_agent(AGENT + f"test_cases_file: {name}\n" + gate())
        with pytest.raises(ContextError) as raised:
            evaluation_plan(load_config(config))
        assert (raised.value.message, raised.value.exit_code, str(raised.value.location)) == (
            message,
            ExitCode.CONTEXT,
            f"{config}:4:18",
        )


def test_the_schema_refuses_a_pass_rate_above_one_and_an_unknown_check(write_agent: Callable[..., Path]) -> None:
    config = write_agent(AGENT + gate(pass_rate=1.5, check="exact"))
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    assert raised.value.render().splitlines()[1:] == [
        f"  {config}:7:18: deployment.rollout.evaluation.pass_rate: 1.5 is out of range: it must be at most 1.0",
        f"  {config}:8:14: deployment.rollout.evaluation.check: 'exact' is not allowed",
        "      fix: use one of 'contains', 'regex' or 'evaluators'",
    ]


def test_a_config_without_the_section_keeps_its_dump_and_so_its_config_hash(write_agent: Callable[..., Path]) -> None:
    config = load_config(write_agent(AGENT + "deployment:\n  rollout: {strategy: replace}\n"))
    assert config.deploy.rollout.model_dump() == {"strategy": "replace", "auto_rollback": True}


def test_the_azure_target_refuses_a_configured_gate_it_does_not_run_yet(write_agent: Callable[..., Path]) -> None:
    from agentdeploy.targets.azure.target import ContainerAppTarget
    from agentdeploy.targets.base import TargetContext

    azure = (
        "  target:\n    provider: azure\n"
        "    azure: {subscription_id: 0b1f6471-1bf0-4dda-aec3-111122223333, resource_group: rg,\n"
        "            environment_name: env}\n"
        "  registry: {url: example.azurecr.io, repository: support}\n"
    )
    config = load_config(write_agent(AGENT + "test_cases: [{input: hi}]\n" + gate() + azure))
    target = ContainerAppTarget(
        TargetContext(config=config, resolved=None, environ={}, on_line=print, docker=lambda: None)  # type: ignore[arg-type,return-value]
    )
    with pytest.raises(ConfigError) as raised:
        target.preflight()
    assert raised.value.render() == (
        f"error: {config.path}:7:5: deployment.rollout.evaluation is not run by the Azure target yet\n"
        "  fix: remove deployment.rollout.evaluation for this target, or deploy to the local Docker target"
    )
