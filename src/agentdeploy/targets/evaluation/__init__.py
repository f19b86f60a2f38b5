"""The evaluation gate: the agent's own HoloDeck test cases (or its verify turns) replayed against a version's URL
through the REST chat route, judged per case (content, expected tools, ground truth), and a verdict from the pass
rate. `cases.py` reads the cases from the config, `judge.py` judges (pure), `runner.py` replays them."""

from agentdeploy.targets.evaluation.cases import (
    EvalCase,
    EvalTurn,
    EvaluationPlan,
    ExpectedTool,
    evaluation_plan,
    refuse_evaluation,
)
from agentdeploy.targets.evaluation.judge import CaseResult, GateVerdict, gate_verdict, judge_answer
from agentdeploy.targets.evaluation.runner import Replay, evaluate, run_case

__all__ = [
    "CaseResult",
    "EvalCase",
    "EvalTurn",
    "EvaluationPlan",
    "ExpectedTool",
    "GateVerdict",
    "Replay",
    "evaluate",
    "evaluation_plan",
    "gate_verdict",
    "judge_answer",
    "refuse_evaluation",
    "run_case",
]
