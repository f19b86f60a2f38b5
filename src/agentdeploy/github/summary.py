"""The job summary (GITHUB_STEP_SUMMARY) as markdown: one agent's table, several agents' table, and `changed`'s
table. Text from outside (an agent's words, a name, a target's values) is shown as text, never as markup."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from agentdeploy.github.inputs import ActionInputs
from agentdeploy.jsonvalue import JsonObject, JsonValue, float_at, object_at, objects_at, text_at, to_object, value_at
from agentdeploy.release.changed import Changed
from agentdeploy.release.outcomes import Many, summary_rows

# -- text from outside in the job summary: shown as text, never as markdown or HTML ----------------------------

# Text from outside in the summary is shown as it is when it can make no markup: letters, digits and a few marks
# (no emphasis, code, link, HTML, entity, image, table, strikethrough or math characters, and nothing GitHub turns
# into a link by itself: `://`, `www.`, `@`). Anything else goes in a code span, where markdown reads nothing
# (escapes and autolinks included); only a table still splits a code span at `|`, so there it is written `\|`.
_PLAIN_TEXT = re.compile(r"(?:[^\W_]|[ .,;:()/'\"=+%#?{}-])*")
_AUTOLINK = re.compile(r"://|www\.", re.IGNORECASE)
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9.~/:%?=&+-]*)?")


def md_code(text: str, *, table: bool = True) -> str:
    """`text` as a code span on one line (fenced with more backticks than it holds, so it cannot close it)."""
    text = " ".join(text.split())
    if table:
        text = text.replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_text(text: str, *, table: bool = True) -> str:
    """Text from outside (an error that quotes an agent, a name, a path): as it is when it can make no markup,
    else as a code span, so it makes no link, tag, emphasis, image, heading or table cell."""
    text = " ".join(text.split())
    return text if _PLAIN_TEXT.fullmatch(text) and not _AUTOLINK.search(text) else md_code(text, table=table)


def md_url(text: str) -> str:
    """A URL a target gave: as it is (GitHub links it) when it is a plain http(s) URL; else as code."""
    return text if _PLAIN_URL.fullmatch(text) else md_code(text)


@dataclass(frozen=True)
class TrafficShare:
    """One line of an app's traffic split, as the target reported it."""

    revision: str  # "" for "the latest revision"
    weight: str
    label: str = ""
    latest: bool = False

    @classmethod
    def read(cls, entry: JsonValue) -> TrafficShare:
        return cls(
            revision=text_at(entry, "revisionName"),
            weight=str(value_at(entry, "weight")),
            label=text_at(entry, "label"),
            latest=value_at(entry, "latestRevision") is True,
        )


@dataclass(frozen=True)
class Forwarded:
    """A variable of the run's environment the agent receives: by name only, never its value."""

    variable: str
    container_name: str
    secret: bool

    @classmethod
    def read(cls, entry: JsonValue) -> Forwarded:
        variable = text_at(entry, "variable")
        return cls(variable, text_at(entry, "as", default=variable), value_at(entry, "secret") is True)


@dataclass(frozen=True)
class Details:
    """What the job summary of one agent shows beyond the step outputs: the target's facts (traffic before and
    after, the variables it forwards, a blue/green candidate's URL) and where the record came from."""

    traffic_before: tuple[TrafficShare, ...] = ()
    traffic_after: tuple[TrafficShare, ...] = ()
    variables: tuple[Forwarded, ...] | None = None  # None: a command that forwards nothing (status, ...)
    label_url: str = ""
    state_source: str = ""  # state: artifact: "<what> <run URL>"
    log: tuple[str, ...] = ()  # a failed version's last log lines (folded in the summary)
    canary: tuple[str, ...] = ()  # each canary step's traffic and gate results (targets/azure/canary.py)
    evaluation: tuple[str, ...] = ()  # the evaluation gate: each case's verdict, latency and tokens (stable beside)

    @classmethod
    def read(cls, details: Mapping[str, object], state_source: str = "") -> Details:
        """From a result's details (release.commands.Result.details: JSON the target gave)."""
        data = to_object(dict(details))
        variables = data.get("variables")
        return cls(
            traffic_before=tuple(TrafficShare.read(entry) for entry in objects_at(data, "traffic_before")),
            traffic_after=tuple(TrafficShare.read(entry) for entry in objects_at(data, "traffic_after")),
            variables=None
            if variables is None
            else tuple(Forwarded.read(entry) for entry in objects_at(data, "variables")),
            label_url=text_at(data, "label_url"),
            state_source=state_source,
            canary=_lines_at(data, "canary_summary"),
            evaluation=evaluation_lines(data),
        )


def _last_evaluation(data: JsonObject) -> JsonObject:
    """The evaluation a target reported: the docker gate's, or the last judged step's of a canary."""
    found = object_at(data, "evaluation")
    for step in objects_at(data, "canary", "steps"):
        found = object_at(step, "gate", "evaluation") or found
    return found


def _case_text(case: JsonObject) -> str:
    verdict = "passed" if value_at(case, "passed") is True else "failed"
    tokens = value_at(case, "tokens")
    return f"{verdict}, {value_at(case, 'latency_ms')} ms" + (f", {tokens} tokens" if tokens is not None else "")


def evaluation_lines(data: JsonObject) -> tuple[str, ...]:
    """The evaluation gate for the job summary: its rate, then each case (canary beside the stable revision)."""
    evaluation = _last_evaluation(data)
    if "cases" not in evaluation:
        return ()
    rate, required = float_at(evaluation, "pass_rate"), float_at(evaluation, "required")
    stable = {text_at(case, "name"): case for case in objects_at(evaluation, "stable", "cases")}
    head = f"{rate:.0%} of the cases passed (required {required:.0%}"
    baseline = value_at(evaluation, "baseline")
    head += f"; the stable revision {float(baseline):.0%})" if isinstance(baseline, int | float) else ")"
    lines = [head]
    for case in objects_at(evaluation, "cases"):
        name = text_at(case, "name")
        beside = f" (stable: {_case_text(stable[name])})" if name in stable else ""
        lines.append(f"{name}: {_case_text(case)}{beside}")
    return tuple(lines)


def _lines_at(data: JsonValue, key: str) -> tuple[str, ...]:
    found = value_at(data, key)
    return tuple(str(line) for line in found) if isinstance(found, list) else ()


def _traffic_lines(traffic: tuple[TrafficShare, ...]) -> str:
    if not traffic:
        return "-"
    lines = []
    for share in traffic:
        notes = [md_text(share.label)] if share.label else []
        if share.latest:
            notes.append("latest")
        name = md_text(share.revision or "latest revision")
        lines.append(f"{name}: {md_text(share.weight)}%" + (f" ({', '.join(notes)})" if notes else ""))
    return "<br>".join(lines)


def _variables_cell(variables: tuple[Forwarded, ...]) -> str:
    """`OPENAI_API_KEY` (secret) ...: each variable forwarded to the agent, the container name it fills when it
    differs, and how it travels. Names only: a value never reaches the summary."""
    if not variables:
        return "none forwarded"
    cells = []
    for variable in variables:
        renamed = f" as `{variable.container_name}`" if variable.container_name != variable.variable else ""
        cells.append(f"`{variable.variable}`{renamed} ({'secret' if variable.secret else 'plain'})")
    return "<br>".join(cells)


def _detail_rows(outputs: Mapping[str, str], details: Details) -> list[tuple[str, str]]:
    rows = []
    if details.traffic_before or details.traffic_after:
        rows.append(("Traffic before", _traffic_lines(details.traffic_before)))
        rows.append(("Traffic after", _traffic_lines(details.traffic_after)))
    if details.variables is not None:  # plan and deploy: what of this run's environment reaches the agent
        rows.append(("Variables", _variables_cell(details.variables)))
    if details.label_url:
        rows.append(("Candidate", f"{md_url(details.label_url)} (0% until promote)"))
    if details.canary:
        rows.append(("Canary", "<br>".join(md_text(line) for line in details.canary)))
    if details.evaluation:
        rows.append(("Evaluation", "<br>".join(md_text(line) for line in details.evaluation)))
    if outputs.get("attestation"):  # require-attestation: the build provenance checked before anything changed
        attestation = outputs["attestation"]
        link = f"[build provenance]({attestation})" if _PLAIN_URL.fullmatch(attestation) else md_text(attestation)
        rows.append(("Attestation", f"{link}, checked before the release"))
    if details.state_source:  # state: artifact: which run's record this run started from
        source, _, url = details.state_source.rpartition(" ")  # "<what> <run URL>": the URL stays a link
        cell = (
            f"{md_text(source)} {md_url(url)}"
            if source and _PLAIN_URL.fullmatch(url)
            else md_text(details.state_source)
        )
        rows.append(("State", cell))
    return rows


def summary_markdown(
    agent_config: str, inputs: ActionInputs, outputs: Mapping[str, str], details: Details, timing: str = ""
) -> str:
    """The job summary of one agent: a table of what the run did, and how to roll it back."""

    def code(name: str) -> str:
        return md_code(outputs[name]) if outputs.get(name) else "-"

    rows = [
        ("Agent config", md_code(agent_config)),
        ("Command", inputs.command + (" (dry run)" if inputs.dry_run else "")),
        ("Status", f"**{md_text(outputs.get('status', ''))}**"),
        ("URL", md_url(outputs["url"]) if outputs.get("url") else "-"),
        ("Revision", code("revision")),
        ("Previous", code("previous-revision")),
        ("Image", code("image")),
        ("Digest", code("digest")),
        ("Plan", md_text(outputs["plan"]) if outputs.get("plan") else "-"),
        *_detail_rows(outputs, details),
    ]
    if timing:
        rows.append(("Time", timing))
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    env = f" in environment {md_code(inputs.environment, table=False)}" if inputs.environment else ""
    markdown = f"### agentdeploy {inputs.command}{env}\n\n| | |\n|---|---|\n{table}\n"
    if details.log:
        markdown += md_folded_log(list(details.log))
    if inputs.command in ("deploy", "rollback", "promote") and not inputs.dry_run:
        markdown += (
            "\nTo roll back: run the rollback workflow with `previous` (or a tag, digest or revision), or "
            f"{md_code(f'agentdeploy rollback {agent_config} --to previous', table=False)} locally.\n"
        )
    return markdown


def md_folded_log(lines: list[str]) -> str:
    """The agent's last lines, folded (`<details>`), in a code block fenced with more backticks than any line
    holds, so no line can close it or make markup; the summary is masked as a whole (console.append_summary)."""
    fence = "`" * max(3, max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0) + 1)
    body = "\n".join(line.replace("\r", "") for line in lines)
    title = f"The agent's last {len(lines)} log line(s)"
    return f"\n<details><summary>{title}</summary>\n\n{fence}text\n{body}\n{fence}\n\n</details>\n"


def why_listed(entry: Changed) -> str:
    if entry.reason:
        return f"deploy: {entry.reason}"
    if entry.paths:
        shown = ", ".join(entry.paths[:5]) + (f" and {len(entry.paths) - 5} more" if len(entry.paths) > 5 else "")
        return f"deploy: {shown} changed"
    return "unchanged"


def changed_summary_markdown(inputs: ActionInputs, found: list[Changed]) -> str:
    """Every agent the config input names, with whether this push deploys it and why."""
    deployed = sum(1 for entry in found if entry.listed)
    since = inputs.since[:12]
    lines = [
        f"### agentdeploy changed since {md_code(since, table=False)}: {deployed} of {len(found)} agents to deploy\n",
        "| Agent | Config | Target | Deploys | Why |",
        "|---|---|---|---|---|",
    ]
    for entry in found:
        why = md_text(why_listed(entry).removeprefix("deploy: "))
        verdict = "**yes**" if entry.listed else "no"
        agent, target = md_text(entry.agent or "-"), md_text(entry.target or "-")
        lines.append(f"| {agent} | {md_code(entry.config)} | {target} | {verdict} | {why} |")
    return "\n".join(lines) + "\n"


def several_summary_markdown(inputs: ActionInputs, many: Many) -> str:
    """The job summary of several agents: one row each, and what stopped those that failed."""
    env = f" in environment {md_code(inputs.environment, table=False)}" if inputs.environment else ""
    lines = [
        f"### agentdeploy {inputs.command}{env}: {len(many.outcomes)} agents\n",
        "| Agent | Target | Status | URL | Image | Time |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary_rows(many):
        image_cell = md_code(row.image) if row.image != "-" else row.image
        url_cell = md_url(row.url) if row.url != "-" else row.url
        lines.append(
            f"| {md_text(row.agent)} | {md_text(row.target)} | **{row.status}** | {url_cell} | {image_cell} "
            f"| {row.time} |"
        )
    failures = [outcome for outcome in many.outcomes if outcome.error]
    if failures:
        lines.append("")
        for outcome in failures:
            hint = f" (fix: {md_text(outcome.hint, table=False)})" if outcome.hint else ""
            name, error = md_text(outcome.agent or outcome.config, table=False), md_text(outcome.error, table=False)
            lines.append(f"- **{name}**: {error}{hint}")
    return "\n".join(lines) + "\n"
