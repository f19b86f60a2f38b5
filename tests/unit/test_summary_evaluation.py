"""The job summary's Evaluation row: the gate's rate, then each case's verdict, latency and tokens, the stable
revision's beside a canary's (from what the targets report: GateVerdict.as_json, the canary's steps)."""

from __future__ import annotations

from agentdeploy.github.inputs import ActionInputs
from agentdeploy.github.summary import Details, summary_markdown
from agentdeploy.targets.evaluation import GateVerdict
from agentdeploy.targets.evaluation.judge import CaseResult

STABLE = GateVerdict(
    True,
    "2 of 2 case(s) passed",
    1.0,
    1.0,
    (CaseResult("refund", True, "passed", 110, 28), CaseResult("order", True, "passed", 95, 12)),
)
CANARY = GateVerdict(
    False,
    "1 of 2 case(s) passed",
    0.5,
    1.0,
    (CaseResult("refund", True, "passed", 140, 31), CaseResult("order", False, "no order_status call", 90, 0)),
    baseline=1.0,
)


def _row(details: dict[str, object]) -> str:
    markdown = summary_markdown(
        "agent.yaml", ActionInputs.from_env({"AGENTDEPLOY_COMMAND": "deploy"}), {}, Details.read(details)
    )
    [row] = [line for line in markdown.splitlines() if line.startswith("| Evaluation |")]
    return row


def test_a_canarys_cases_are_shown_beside_the_stable_revisions() -> None:
    evaluation = {**CANARY.as_json(), "stable": STABLE.as_json()}
    steps = [
        {"percent": 5, "gate": {"evaluation": STABLE.as_json()}},
        {"percent": 25, "gate": {"evaluation": evaluation}},
    ]
    assert _row({"canary": {"steps": steps}}) == (
        "| Evaluation | 50% of the cases passed (required 100%; the stable revision 100%)"
        "<br>refund: passed, 140 ms, 31 tokens (stable: passed, 110 ms, 28 tokens)"
        "<br>order: failed, 90 ms, 0 tokens (stable: passed, 95 ms, 12 tokens) |"
    )


def test_the_docker_gates_cases_are_shown_alone() -> None:
    assert _row({"evaluation": STABLE.as_json()}) == (
        "| Evaluation | 100% of the cases passed (required 100%)"
        "<br>refund: passed, 110 ms, 28 tokens<br>order: passed, 95 ms, 12 tokens |"
    )
