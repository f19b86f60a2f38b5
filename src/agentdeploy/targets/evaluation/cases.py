"""The cases the evaluation gate replays, read from the agent's own HoloDeck test cases or its verify turns.

HoloDeck 0.7.1's test case (holodeck/models/test_case.py): `name`, `input` or multi-turn `turns` (each with its own
`input`, `ground_truth`, `expected_tools`), `ground_truth`, `expected_tools` (a tool name, or `{name, args, count}`;
a name matches every tool whose name contains it, case-sensitive; `count` is the least number of matching calls;
an arg is a literal, `{fuzzy: ...}` or `{regex: ...}`), `files`, `retrieval_context` and `evaluations`.
`test_cases_file` is read relative to agent.yaml: a list, or a mapping with a `test_cases:` list.

Reading is pure apart from the file: each broken case is a Problem at its file:line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from agentdeploy.config.yamlsource import KeyPath, YamlDocument, YamlValue, load_yaml_document, parse_yaml_text
from agentdeploy.errors import ConfigError, ContextError, Problem

if TYPE_CHECKING:
    from agentdeploy.config.loader import LoadedConfig
    from agentdeploy.config.models import EvaluationConfig

Check = Literal["contains", "regex"]
CASE_KEYS = {"name", "input", "ground_truth", "expected_tools", "files", "retrieval_context", "evaluations", "turns"}
TURN_KEYS = {"input", "ground_truth", "expected_tools", "files", "retrieval_context", "evaluations", "turn_config"}
EVALUATORS_REFUSED = (
    "check: evaluators (HoloDeck's own metrics: LLM judges, RAG metrics and code graders) is not supported by "
    "the evaluation gate yet"
)


@dataclass(frozen=True)
class ArgMatch:
    """One asserted argument of a tool call: a literal value, `{fuzzy: ...}` or `{regex: ...}` (full match)."""

    kind: Literal["literal", "fuzzy", "regex"]
    value: YamlValue


@dataclass(frozen=True)
class ExpectedTool:
    name: str
    count: int = 1  # the least number of calls that match
    args: tuple[tuple[str, ArgMatch], ...] = ()
    exact: bool = False  # verify's expect_tools name a tool exactly; HoloDeck's names match as substrings


@dataclass(frozen=True)
class EvalTurn:
    message: str
    ground_truth: str | None = None
    expected_tools: tuple[ExpectedTool, ...] = ()
    expect: tuple[str, ...] = ()  # verify's `expect`: texts the answer contains (case-insensitive)


@dataclass(frozen=True)
class EvalCase:
    name: str
    turns: tuple[EvalTurn, ...]  # sent in one session, in order


@dataclass(frozen=True)
class EvaluationPlan:
    """What the gate replays and how it judges: from deployment.rollout.evaluation."""

    cases: tuple[EvalCase, ...]
    check: Check = "contains"
    pass_rate: float = 1.0
    timeout: float = 60.0
    source: str = "test_cases"


class _Reader:
    """Reads raw test cases from one YAML document, collecting a Problem per broken piece."""

    def __init__(self, document: YamlDocument, root: KeyPath, check: Check) -> None:
        self.document, self.root, self.check = document, root, check
        self.problems: list[Problem] = []

    def fail(self, keys: KeyPath, message: str, *, key: bool = False) -> None:
        """A problem at the value at `keys` (or, with `key`, at its key: an unknown key)."""
        where = self.root + keys
        dotted = ".".join(str(k) if isinstance(k, str) else f"[{k}]" for k in where).replace(".[", "[")
        self.problems.append(Problem(message, self.document.locate(where, key=key), key=dotted or None))

    def cases(self, raw: YamlValue) -> list[EvalCase]:
        if not isinstance(raw, list) or not raw:
            self.fail((), "test cases must be a non-empty list of cases with `input:` (or `turns:`)")
            return []
        found = [self.case(index, item) for index, item in enumerate(raw)]
        return [case for case in found if case is not None]

    def case(self, index: int, raw: YamlValue) -> EvalCase | None:
        if not isinstance(raw, dict):
            self.fail((index,), "a test case must be a mapping with `input:` or `turns:`")
            return None
        for key in sorted(set(raw) - CASE_KEYS):
            self.fail((index, key), f"unknown key {key!r} in a test case (HoloDeck 0.7.1 refuses it)", key=True)
        name = raw.get("name")
        label = name if isinstance(name, str) and name.strip() else f"case {index + 1}"
        if "turns" in raw:
            if "input" in raw:
                self.fail((index, "input"), "a test case has `input` or `turns`, not both")
            turns = raw["turns"]
            if not isinstance(turns, list) or not turns:
                self.fail((index, "turns"), "`turns` must be a non-empty list of turns with `input:`")
                return None
            read = [self.turn((index, "turns", number), turn) for number, turn in enumerate(turns)]
        else:
            read = [self.turn((index,), raw)]
        if any(turn is None for turn in read):
            return None
        return EvalCase(label, tuple(turn for turn in read if turn is not None))

    def turn(self, keys: KeyPath, raw: YamlValue) -> EvalTurn | None:
        if not isinstance(raw, dict):
            self.fail(keys, "a turn must be a mapping with `input:`")
            return None
        if len(keys) > 1:
            for key in sorted(set(raw) - TURN_KEYS):
                self.fail((*keys, key), f"unknown key {key!r} in a turn (HoloDeck 0.7.1 refuses it)", key=True)
        message = raw.get("input")
        if not isinstance(message, str) or not message.strip():
            self.fail((*keys, "input") if "input" in raw else keys, "`input` must be a non-empty text")
            return None
        if raw.get("files") is not None:
            self.fail((*keys, "files"), "a case with `files` is not replayed by the evaluation gate (text only)")
        truth = raw.get("ground_truth")
        if truth is not None and (not isinstance(truth, str) or not truth.strip()):
            self.fail((*keys, "ground_truth"), "`ground_truth` must be a non-empty text")
            truth = None
        if isinstance(truth, str) and self.check == "regex":
            try:
                re.compile(truth)
            except re.error as exc:
                self.fail((*keys, "ground_truth"), f"`ground_truth` is not a valid regex (check: regex): {exc}")
        tools = self.tools((*keys, "expected_tools"), raw.get("expected_tools"))
        return EvalTurn(message, truth if isinstance(truth, str) else None, tools)

    def tools(self, keys: KeyPath, raw: YamlValue) -> tuple[ExpectedTool, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.fail(keys, "`expected_tools` must be a list of tool names or {name, args, count}")
            return ()
        found: list[ExpectedTool] = []
        for index, item in enumerate(raw):
            if isinstance(item, str) and item.strip():
                found.append(ExpectedTool(item))
            elif isinstance(item, dict):
                tool = self.tool((*keys, index), item)
                found.extend([tool] if tool else [])
            else:
                self.fail((*keys, index), "an expected tool is a name or a mapping {name, args, count}")
        return tuple(found)

    def tool(self, keys: KeyPath, raw: dict[str, YamlValue]) -> ExpectedTool | None:
        for key in sorted(set(raw) - {"name", "args", "count"}):
            self.fail((*keys, key), f"unknown key {key!r} in an expected tool (name, args, count)", key=True)
        name, count, args = raw.get("name"), raw.get("count", 1), raw.get("args")
        if not isinstance(name, str) or not name.strip():
            self.fail((*keys, "name"), "an expected tool needs a non-empty `name`")
            return None
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            self.fail((*keys, "count"), "`count` must be a whole number of at least 1")
            return None
        if args is not None and not isinstance(args, dict):
            self.fail((*keys, "args"), "`args` must be a mapping of argument name to value")
            return None
        matches = [(key, self.arg((*keys, "args", key), value)) for key, value in (args or {}).items()]
        return ExpectedTool(name, count, tuple((key, match) for key, match in matches if match is not None))

    def arg(self, keys: KeyPath, raw: YamlValue) -> ArgMatch | None:
        if not (isinstance(raw, dict) and raw.keys() & {"fuzzy", "regex"}):
            return ArgMatch("literal", raw)
        if len(raw) != 1 or not isinstance(next(iter(raw.values())), str):
            self.fail(keys, "an argument matcher is one of {fuzzy: TEXT} or {regex: PATTERN}")
            return None
        kind, pattern = next(iter(raw.items()))
        if kind == "regex":
            try:
                re.compile(str(pattern))
            except re.error as exc:
                self.fail((*keys, "regex"), f"not a valid regex: {exc}")
                return None
        return ArgMatch("regex" if kind == "regex" else "fuzzy", pattern)


def evaluation_plan(config: LoadedConfig) -> EvaluationPlan | None:
    """The gate's plan from deployment.rollout.evaluation; None when the config has none.

    Raises ConfigError listing every broken case at its file:line, ContextError for a test_cases_file that is
    missing or outside the project."""
    settings = config.deploy.rollout.evaluation
    if settings is None:
        return None
    here: KeyPath = ("deployment", "rollout", "evaluation")
    if settings.check == "evaluators":
        raise ConfigError(
            EVALUATORS_REFUSED,
            location=config.locate((*here, "check")),
            hint="use check: contains or check: regex (each ground_truth is then checked against the answer)",
        )
    check: Check = "regex" if settings.check == "regex" else "contains"
    if settings.source == "verify":
        return _plan(settings, check, (_verify_case(config, here),))
    return _plan(settings, check, _test_cases(config, here, check))


def refuse_evaluation(config: LoadedConfig, target: str) -> None:
    """For a target that does not run the evaluation gate: a configured gate is refused, never skipped silently."""
    if config.deploy.rollout.evaluation is not None:
        raise ConfigError(
            f"deployment.rollout.evaluation is not run by {target} yet",
            location=config.locate(("deployment", "rollout", "evaluation"), key=True),
            hint="remove deployment.rollout.evaluation for this target, or deploy to the local Docker target",
        )


def _plan(settings: EvaluationConfig, check: Check, cases: tuple[EvalCase, ...]) -> EvaluationPlan:
    return EvaluationPlan(cases, check, float(settings.pass_rate), float(settings.timeout_seconds), settings.source)


def _verify_case(config: LoadedConfig, here: KeyPath) -> EvalCase:
    turns = config.deploy.verify.chat
    if not turns:
        raise ConfigError(
            "evaluation source: verify, but deployment.verify.chat has no turns",
            location=config.locate((*here, "source")),
            hint="add turns under deployment.verify.chat, or use source: test_cases",
        )
    return EvalCase(
        "verify",
        tuple(
            EvalTurn(
                turn.message,
                None,
                tuple(ExpectedTool(tool, exact=True) for tool in turn.expect_tools),
                tuple(turn.expect),
            )
            for turn in turns
        ),
    )


def _test_cases(config: LoadedConfig, here: KeyPath, check: Check) -> tuple[EvalCase, ...]:
    agent = config.agent
    if agent.test_cases is not None and agent.test_cases_file is not None:
        raise ConfigError(
            "the agent has both test_cases and test_cases_file",
            location=config.locate(("test_cases_file",), key=True),
            hint="keep one of them (HoloDeck refuses both)",
        )
    if agent.test_cases_file is not None:
        document, root = _cases_file(config, agent.test_cases_file)
        raw = document.data.get("test_cases")
    elif agent.test_cases is not None:
        document, root, raw = config.document, ("test_cases",), config.document.data.get("test_cases")
    else:
        raise ConfigError(
            "evaluation source: test_cases, but the agent has no test_cases or test_cases_file",
            location=config.locate((*here, "source")),
            hint="add test_cases (name, input, ground_truth, expected_tools) to the agent, or use source: verify",
        )
    reader = _Reader(document, root, check)
    cases = reader.cases(raw)
    if reader.problems:
        count = len(reader.problems)
        raise ConfigError(
            f"{count} problem(s) in the agent's test cases for the evaluation gate", problems=reader.problems
        )
    return tuple(cases)


def _cases_file(config: LoadedConfig, name: str) -> tuple[YamlDocument, KeyPath]:
    """The test cases file as a document whose data holds its cases at `test_cases` (a bare list is read as if
    it were under `test_cases:`, its positions kept)."""
    where = config.locate(("test_cases_file",))
    path = (config.project_dir / name).resolve()
    if not path.is_relative_to(config.project_dir.resolve()):
        raise ContextError(
            f"test_cases_file {name} lies outside the project", location=where, hint="keep it beside agent.yaml"
        )
    if not path.is_file():
        raise ContextError(
            f"test_cases_file {name} does not exist", location=where, hint="create it (a list of test cases)"
        )
    shown = str(Path(config.document.display_name).parent / name)
    try:
        document = load_yaml_document(path, shown)
    except ConfigError as refused:
        text = path.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            raise ConfigError(f"test_cases_file {shown} has no test cases", location=where) from None
        try:
            document = parse_yaml_text("test_cases:\n" + text, path=path, display_name=shown)
        except ConfigError:
            raise refused from None
        for marks in (document.value_marks, document.key_marks):  # one line was added above the file's own
            marks.update({keys: (line - 1, column) for keys, (line, column) in marks.items()})
        document.text = text
    return document, ("test_cases",)
