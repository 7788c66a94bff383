"""The QA report in three forms, all written atomically into the output folder:

* report.json: every number, each check's verdict, thresholds and reason, inputs and versions;
* report.md: the same for reading in a terminal or a repository, figures linked;
* report.html: one self-contained page, figures embedded as base64 PNG, to send to someone.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from training.core import atomic

# The reference guide's quality checklist (docs/user_guide.md#quality-assurance), and the checks that answer each item
# ([] = by eye only).
CHECKLIST = (
    ("Images look realistic (texture, colours, shapes)", ("statistics", "fidelity"),
     "pixel statistics and FID; confirm on the contact sheet"),
    ("Good variety (not all images identical)", ("diversity",), "pairwise-distance ratio and near-duplicates"),
    ("FID < 40, < 30 excellent (Inception features)", ("fidelity",),
     "with domain features FID has no absolute scale and is judged against a real-vs-real baseline instead"),
    ("No obvious artefacts (checkerboard patterns, weird colours)", ("artefacts", "statistics"),
     "Fourier spectrum and colour statistics"),
    ("No memorised copies of training images", ("memorisation",),
     "nearest real image: a possible copy is close in pixels and in features"),
    ("Not easy to tell from real images (no shortcut for the label)", ("detectability",),
     "held-out AUC of a classifier trained to tell them apart (added by us)"),
    ("A classifier learns the class from them", ("usefulness",),
     "train on synthetic, test on real (added by us; needs the processed dataset)"),
    ("Medical features visible (lesion boundaries, colour variation)", (), "by eye: see the contact sheet"),
)
MAX_TABLE_ROWS = 10
SKIPPED_KEYS = ("verdict", "reason", "figures", "thresholds")


def json_safe(value: Any) -> Any:
    """Replace NaN and infinities (not valid JSON) by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def format_value(value: Any) -> str:
    """A number or short list as text for the tables (4 significant digits)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return "n/a" if value is None else str(value)


def number_rows(section: dict, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, formatted value) for the scalars and short lists of a check's result."""
    rows = []
    for key, value in section.items():
        if not prefix and key in SKIPPED_KEYS:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += number_rows(value, f"{name}.")
        elif isinstance(value, list) and (len(value) > 8 or any(isinstance(v, dict) for v in value)):
            continue   # long lists and record lists are in report.json (records get their own table)
        else:
            rows.append((name, format_value(value)))
    return rows


def record_tables(section: dict) -> dict[str, list[dict]]:
    """Lists of records in a result (e.g. the closest pairs), shown as their own tables."""
    return {k: v[:MAX_TABLE_ROWS] for k, v in section.items()
            if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)}


def checklist(report: dict) -> list[dict]:
    """The reference guide's checklist with our verdicts: ticked when every check behind an item passed."""
    items = []
    for text, checks, how in CHECKLIST:
        verdicts = {name: report[name]["verdict"] for name in checks if name in report}
        if checks and not verdicts:
            continue                            # its checks were not run (e.g. usefulness without a dataset)
        if not checks:
            status = "manual"
        elif set(verdicts.values()) == {"pass"}:
            status = "pass"
        else:                                   # a check without enough images cannot tick its item either
            status = "insufficient" if "insufficient" in verdicts.values() else "attention"
        items.append({"item": text, "checks": verdicts, "status": status, "how": how})
    return items


def summary_lines(report: dict) -> list[str]:
    """A short plain-text table of the verdicts, for the terminal."""
    width = max(len(name) for name in report["summary"]["checks"])
    lines = [f"{name:<{width}}  {result['verdict'].upper():<4}  {result['reason']}"
             for name, result in report["summary"]["checks"].items()]
    counts = report["summary"]["counts"]
    lines.append(f"{'overall':<{width}}  {report['summary']['verdict'].upper():<4}  "
                 f"({counts['pass']} pass, {counts['warn']} warn, {counts['insufficient']} insufficient, {counts['fail']} fail; "
                 f"{report['feature_space']['kind']} features)")
    return lines


def _inputs_lines(report: dict) -> list[str]:
    images = report["images"]
    lines = [f"{role}: {images[role]['folder']} ({images[role]['num_used']} of {images[role]['num_found']} images used, "
             f"{images[role]['num_unreadable']} unreadable)" for role in ("real", "synthetic")]
    lines.append(f"compared at {images['image_size']}x{images['image_size']} px, {images['channels']} channel(s); "
                 f"feature space: {report['feature_space']['kind']} ({report['feature_space']['extractor']})")
    if report["inputs"]["data_root"]:
        lines.append(f"domain encoder trained on {report['inputs']['data_root']}/train")
    return lines + [f"warning: {w}" for w in report["warnings"]]


def _sections(report: dict) -> list[tuple[str, dict]]:
    return [(name, report[name]) for name in (*report["summary"]["checks"], "visual")]


def render_markdown(report: dict) -> str:
    """report.md: verdicts, checklist, inputs, then each section's numbers and figures (linked)."""
    summary = report["summary"]
    out = [f"# Synthetic image QA: {report['images']['synthetic']['folder']}", "",
           f"Overall verdict: **{summary['verdict'].upper()}**", "", "| check | verdict | reason |", "|---|---|---|"]
    out += [f"| {name} | {r['verdict']} | {r['reason']} |" for name, r in summary["checks"].items()]
    out += ["", "## Checklist (reference guide; see docs/user_guide.md)", ""]
    for item in checklist(report):
        verdicts = ", ".join(f"{k}: {v}" for k, v in item["checks"].items()) or "manual"
        out.append(f"- [{'x' if item['status'] == 'pass' else ' '}] {item['item']} ({verdicts}; {item['how']})")
    out += ["", "## Inputs", ""] + [f"- {line}" for line in _inputs_lines(report)]
    for name, section in _sections(report):
        out += ["", f"## {name}", ""]
        if "verdict" in section:
            out += [f"**{section['verdict'].upper()}**: {section['reason']}", ""]
        if section.get("thresholds"):
            out += ["Thresholds: " + ", ".join(f"{k} = {format_value(v)}" for k, v in section["thresholds"].items()), ""]
        rows = number_rows(section)
        if rows:
            out += ["| quantity | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows] + [""]
        for title, records in record_tables(section).items():
            keys = list(records[0])
            out += [f"{title}:", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            out += ["| " + " | ".join(format_value(r[k]) for k in keys) + " |" for r in records] + [""]
        out += [f"![{figure}]({figure})" for figure in section.get("figures", [])]
    return "\n".join(out) + "\n"


def _image_tag(out_dir: Path, figure: str) -> str:
    data = base64.b64encode((out_dir / figure).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(figure)}" src="data:image/png;base64,{data}">'


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


_STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
          "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
          ".pass{color:#1a7f37;font-weight:bold}.warn{color:#b35900;font-weight:bold}"
          ".insufficient{color:#6a1b9a;font-weight:bold}.fail{color:#c62828;font-weight:bold}img{max-width:100%;margin:0.5em 0}")


def render_html(report: dict, out_dir: Path) -> str:
    """A self-contained page: all figures are embedded, nothing is loaded from elsewhere."""
    summary = report["summary"]

    def badge(verdict: str) -> str:
        return f'<span class="{verdict}">{verdict.upper()}</span>'

    parts = [f"<h1>Synthetic image QA: {html.escape(report['images']['synthetic']['folder'])}</h1>",
             f"<p>Overall verdict: {badge(summary['verdict'])}</p>",
             "<table><tr><th>check</th><th>verdict</th><th>reason</th></tr>"
             + "".join(f"<tr><td>{name}</td><td>{badge(r['verdict'])}</td><td>{html.escape(r['reason'])}</td></tr>"
                       for name, r in summary["checks"].items()) + "</table>",
             "<h2>Checklist (reference guide; see docs/user_guide.md)</h2><ul>"]
    for item in checklist(report):
        mark = "&#9745;" if item["status"] == "pass" else "&#9744;"
        verdicts = ", ".join(f"{k}: {v}" for k, v in item["checks"].items()) or "manual"
        parts.append(f"<li>{mark} {html.escape(item['item'])} <small>({html.escape(verdicts)}; "
                     f"{html.escape(item['how'])})</small></li>")
    parts.append("</ul><h2>Inputs</h2><ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in _inputs_lines(report))
                 + "</ul>")
    for name, section in _sections(report):
        parts.append(f"<h2>{name}</h2>")
        if "verdict" in section:
            parts.append(f"<p>{badge(section['verdict'])}: {html.escape(section['reason'])}</p>")
        if section.get("thresholds"):
            parts.append("<p>Thresholds: " + html.escape(", ".join(f"{k} = {format_value(v)}"
                                                                   for k, v in section["thresholds"].items())) + "</p>")
        rows = number_rows(section)
        if rows:
            parts.append(_html_table(["quantity", "value"], [list(r) for r in rows]))
        for title, records in record_tables(section).items():
            keys = list(records[0])
            parts.append(f"<p>{html.escape(title)}:</p>"
                         + _html_table(keys, [[format_value(r[k]) for k in keys] for r in records]))
        parts += [_image_tag(out_dir, figure) for figure in section.get("figures", [])]
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>QA report</title><style>{_STYLE}</style>"
            f"</head><body>{''.join(parts)}</body></html>\n")


def write_report(report: dict, out_dir: str | Path) -> dict:
    """Write report.json, report.md and report.html into `out_dir`; returns the report as written."""
    out_dir = Path(out_dir)
    report = json_safe({**report, "files": {name: str(out_dir / name)
                                            for name in ("report.json", "report.md", "report.html")}})
    atomic.write_json(out_dir / "report.json", report)
    atomic.write_text(out_dir / "report.md", render_markdown(report))
    atomic.write_text(out_dir / "report.html", render_html(report, out_dir))
    return report
