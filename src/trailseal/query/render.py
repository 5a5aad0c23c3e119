"""Timelines for people: a terminal view and Markdown to paste into a postmortem.

Both show the same sections: the events in time order (service, outcome, action, actor,
resource), the correlation tree, the before/after changes as a diff, the events by service,
and sequence gaps. Times are shown in UTC; the date is dropped from rows when the whole
timeline falls on one day.
"""

from __future__ import annotations

from typing import Any

import orjson

from trailseal.query.timeline import Change, Timeline, TimelineEvent

_MARK = {"denied": "!", "failure": "!", "unknown": "?"}


def _value(value: Any) -> str:
    return orjson.dumps(value).decode()


def _clock(timeline: Timeline) -> Any:
    days = {e.time[:10] for e in timeline.events}
    if len(days) <= 1:
        return lambda t: t[11:23]  # HH:MM:SS.mmm
    return lambda t: t[:10] + " " + t[11:23]


def diff_lines(changes: list[Change]) -> list[str]:
    """Unified-diff style lines: ``- path: old`` / ``+ path: new``."""
    lines: list[str] = []
    for change in changes:
        if change.op in ("removed", "changed"):
            lines.append(f"- {change.path}: {_value(change.before)}")
        if change.op in ("added", "changed"):
            lines.append(f"+ {change.path}: {_value(change.after)}")
    return lines


def _summary(timeline: Timeline) -> str:
    services = len(timeline.services())
    parts = [f"{len(timeline.events)} events", f"{services} services"]
    if timeline.gaps:
        parts.append(f"{len(timeline.gaps)} sequence gaps")
    if timeline.truncated:
        parts.append("TRUNCATED (raise --limit)")
    if not timeline.gaps_complete:
        parts.append("gap check partial (span too busy)")
    span = f"{timeline.start} → {timeline.end}" if timeline.start else "no events"
    return f"{span} · " + " · ".join(parts)


def _walk(timeline: Timeline) -> list[tuple[str, TimelineEvent]]:
    """Events in tree order with box-drawing prefixes."""
    children = timeline.children()
    out: list[tuple[str, TimelineEvent]] = []

    def visit(event: TimelineEvent, lead: str, last: bool, top: bool) -> None:
        out.append(("" if top else lead + ("└─ " if last else "├─ "), event))
        kids = children.get(event.leaf_index, [])
        below = "" if top else lead + ("   " if last else "│  ")
        for i, kid in enumerate(kids):
            visit(kid, below, i == len(kids) - 1, False)

    for root in children.get(None, []):
        visit(root, "", True, True)
    return out


def render_text(timeline: Timeline) -> str:
    """The terminal view."""
    clock = _clock(timeline)
    lines = [f"Timeline of {timeline.title} in log {timeline.log}", _summary(timeline), ""]
    width = max([len(e.service or "-") for e in timeline.events] + [7])
    lines.append(f"{'TIME (UTC)':<12}  {'SERVICE':<{width}}  {'OUTCOME':<8} EVENT")
    for e in timeline.events:
        mark = _MARK.get(e.outcome or "", " ")
        lines.append(f"{clock(e.time):<12}  {e.service or '-':<{width}}  {mark}{(e.outcome or '-'):<7} "
                     f"{e.action}  {e.actor} → {e.resource}")
        if e.reason:
            lines.append(f"{'':<12}  {'':<{width}}  {'':<8} reason: {e.reason}")
        for line in diff_lines(e.changes):
            lines.append(f"{'':<12}  {'':<{width}}  {'':<8}   {line}")
    lines += ["", "Correlation (request → trace → parent span)"]
    for prefix, e in _walk(timeline):
        lines.append(f"  {prefix}{clock(e.time)} {e.service or '-'} {e.action} ({e.outcome or '-'})")
    lines += ["", "By service"]
    for name, group in timeline.services().items():
        lines.append(f"  {name:<{width}}  {len(group):>4} events  {clock(group[0].time)} to {clock(group[-1].time)}")
    if timeline.gaps:
        lines += ["", "Sequence gaps"]
        for gap in timeline.gaps:
            lines.append(f"  ! producer {gap.producer}: seq {gap.after_seq} → {gap.before_seq}, "
                         f"{gap.missing} missing ({clock(gap.after_time)} to {clock(gap.before_time)})")
    return "\n".join(lines) + "\n"


def _cell(text: Any) -> str:
    """A Markdown table cell: pipes escaped, line breaks flattened."""
    return str(text if text is not None else "").replace("\\", "\\\\").replace("|", "\\|") \
        .replace("\r", " ").replace("\n", " ")


def _code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}" if text else ""


def render_markdown(timeline: Timeline) -> str:
    """Markdown for a postmortem document."""
    clock = _clock(timeline)
    out = [f"## Timeline: {_cell(timeline.title)}", "",
           f"Log `{timeline.log}` · {_summary(timeline)}", "", "### Events", "",
           "| Time (UTC) | Service | Action | Actor | Resource | Outcome | Request |",
           "|---|---|---|---|---|---|---|"]
    for e in timeline.events:
        outcome = f"**{e.outcome}**" if e.outcome in _MARK else (e.outcome or "")
        out.append(f"| {clock(e.time)} | {_cell(e.service)} | {_code(_cell(e.action))} | "
                   f"{_cell(e.actor)} | {_cell(e.resource)} | {outcome} | {_cell(e.request_id)} |")
    out += ["", "### Correlation", ""]
    for prefix, e in _walk(timeline):
        indent = "  " * (len(prefix) // 3)
        out.append(f"{indent}- {clock(e.time)} {_cell(e.service or '-')} "
                   f"{_code(e.action)} by {_cell(e.actor)} on {_cell(e.resource)} ({e.outcome or '-'})")
    changed = [e for e in timeline.events if e.changes]
    if changed:
        out += ["", "### Changes", ""]
        for e in changed:
            out += [f"**{clock(e.time)}** {_code(e.action)} on {_cell(e.resource)} by {_cell(e.actor)}",
                    "", "```diff", *diff_lines(e.changes), "```", ""]
    out += ["", "### By service", ""]
    for name, group in timeline.services().items():
        out += [f"#### {_cell(name)} ({len(group)})", "", "| Time (UTC) | Action | Actor | Outcome |",
                "|---|---|---|---|"]
        out += [f"| {clock(e.time)} | {_code(_cell(e.action))} | {_cell(e.actor)} | {e.outcome or ''} |"
                for e in group]
        out.append("")
    if timeline.gaps:
        out += ["### Sequence gaps", ""]
        out += [f"- ⚠️ producer `{_cell(g.producer)}`: sequence jumps from {g.after_seq} to "
                f"{g.before_seq} ({g.missing} missing) between {g.after_time} and {g.before_time}"
                for g in timeline.gaps]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"
