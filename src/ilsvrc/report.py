"""Turn experiment directories into one report, as Markdown and as HTML.

``ilsvrc report RUN_DIR... --out DIR`` (or ``report(run_dirs, out)``) reads
the ``experiment.json`` of each directory that ``ilsvrc experiment`` wrote
(experiments/SCHEMA.md) and writes into DIR:

- ``report.md``: a summary line per experiment, then for each one its facts
  (paper, budget, command, data, device, versions, start, duration), a table
  of its runs (recipe, model, changed settings, steps, time, final errors),
  its tables, its "measured vs paper" comparisons with each difference of
  more than 1 point flagged, its notes and its figures;
- ``figures/<experiment>-<file>``: the figures, copied, which report.md links;
- ``report.html``: the same content as one self-contained page (inline CSS,
  figures embedded as base64 PNGs, nothing fetched from elsewhere).

Every input is read and checked before anything is written: a missing
directory, experiment.json or figure is a ``UserError`` naming the path, and
so is a figure outside the experiment's own directory (an experiment.json
that names ``/etc/passwd`` or ``../../x`` does not get it copied or embedded),
and a record whose parts are not of the kinds SCHEMA.md gives them (an entry
of ``runs``, ``tables`` or ``comparisons`` that is not an object, a duration
that is not a finite number of seconds). A figure that is not a number
(``NaN``: a run that diverged before its first epoch) is shown as it is, and
the difference to the paper's as a dash.
Record text is text in both pages: HTML-escaped in report.html, its ``<`` and
``>`` written as ``&lt;`` and ``&gt;`` in report.md.
"""

import base64
import html
import json
import math
import re
import shutil
import sys
from datetime import datetime
from pathlib import Path

from .errors import UserError

DASH = "\u2014"  # shown for null: no number
TOLERANCE = 1.0  # comparisons off by more than this (points, for %) are flagged


class Flag(str):
    """A table cell to highlight: a comparison that misses the paper."""


# -- reading -------------------------------------------------------------------------------------

def _load(run_dir: Path) -> dict:
    """experiment.json of run_dir, checked enough to report on, with figures' source paths."""
    if not run_dir.is_dir():
        raise UserError(f"no such experiment directory: {run_dir}")
    path = run_dir / "experiment.json"
    if not path.is_file():
        raise UserError(f"{run_dir} has no experiment.json (is it an `ilsvrc experiment` output?)")
    try:
        exp = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    if not isinstance(exp, dict) or exp.get("format") != 1:
        raise UserError(f"{path} is not an experiment.json of format 1")
    for key in ("runs", "tables", "figures", "comparisons", "notes"):
        if not isinstance(exp.setdefault(key, []), list):
            raise UserError(f"{path}: {key!r} is not a list")
    for fig in exp["figures"]:
        if not isinstance(fig, dict) or not fig.get("file"):
            raise UserError(f"{path}: a figure without a file: {fig!r}")
        fig["source"] = run_dir / str(fig["file"])
        # resolved, so that neither "..", an absolute path nor a link leads out of the folder
        if not fig["source"].resolve().is_relative_to(run_dir.resolve()):
            raise UserError(f"figure {fig['file']!r} listed in {path} is outside {run_dir}; a report reads only its own files")
        if not fig["source"].is_file():
            raise UserError(f"figure missing: {fig['source']} (listed in {path})")
    exp.setdefault("experiment", run_dir.name)
    exp.setdefault("title", exp["experiment"])
    _check(exp, path)
    return exp


def _check(exp: dict, path: Path) -> None:
    """The parts of a record that the report computes with are of the kinds
    SCHEMA.md gives them: a malformed record is one line naming what is
    wrong, not a traceback (docs/architecture.md, "One line, one exit code")."""
    def fail(what: str):
        raise UserError(f"{path}: {what}")

    for key in ("runs", "tables", "comparisons"):
        for item in exp[key]:
            if not isinstance(item, dict):
                fail(f"an entry of {key!r} is not an object: {item!r}")
    for key in ("experiment", "title"):
        if not isinstance(exp[key], str):
            fail(f"{key!r} is not text: {exp[key]!r}")
    seconds = [("'duration_s'", exp.get("duration_s"))] + [(f"'seconds' of run {r.get('name')!r}", r.get("seconds"))
                                                           for r in exp["runs"]]
    for what, value in seconds:  # (null: not known)
        if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                      and math.isfinite(value)):
            fail(f"{what} is {value!r}, not a number of seconds")
    objects = [("'versions'", exp.get("versions"))] + [(f"{k!r} of run {r.get('name')!r}", r.get(k))
                                                       for r in exp["runs"] for k in ("settings", "final")]
    for what, value in objects:
        if value is not None and not isinstance(value, dict):
            fail(f"{what} is not an object: {value!r}")
    for t in exp["tables"]:
        if not isinstance(t.get("columns", []), list) or not isinstance(t.get("rows", []), list) \
                or not all(isinstance(row, list) for row in t.get("rows", [])):
            fail(f"table {t.get('title')!r} has columns or rows that are not lists")


def _safe(name) -> str:
    """name as a plain file name: anything but letters, digits, '.', '_' and '-' becomes '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(name))


def _slugs(exps: list[dict]) -> list[str]:
    """One file-name prefix per experiment: its name, numbered where two share one."""
    seen: dict[str, int] = {}
    out = []
    for exp in exps:
        slug = _safe(exp["experiment"]) or "experiment"
        seen[slug] = seen.get(slug, 0) + 1
        out.append(slug if seen[slug] == 1 else f"{slug}-{seen[slug]}")
    return out


# -- formatting ----------------------------------------------------------------------------------

def cell(value) -> str:
    """A value as a table shows it: null as a dash, floats with 2 decimals, a
    figure over several runs (spread.py) as mean ± std (n runs)."""
    if value is None:
        return DASH
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, dict) and value.keys() == {"mean", "std", "n"}:
        return f"{cell(value['mean'])} ± {cell(value['std'])} ({value['n']} runs)"
    return str(value)


def duration(seconds) -> str:
    """Seconds in human form: '45 s', '3 min 12 s', '2 h 05 min'."""
    if seconds is None:
        return DASH
    s = float(seconds)
    if s < 10:
        return f"{s:.1f} s"
    s = round(s)
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _time(text) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))  # Python 3.10 reads no "Z"


def _when(text) -> str:
    try:
        return _time(text).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    except ValueError:
        return cell(text)


def _seconds(exp: dict):
    if exp.get("duration_s") is not None:
        return exp["duration_s"]
    try:
        return (_time(exp["finished"]) - _time(exp["started"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return None


def _verdict(c: dict) -> str:
    """The difference column: signed, and flagged when beyond the tolerance."""
    measured, paper = c.get("measured"), c.get("paper")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (measured, paper)):
        return DASH  # no number to compare (null, or NaN: a run that diverged)
    diff = measured - paper
    unit = "points" if c.get("unit") == "%" else (c.get("unit") or "")
    if abs(diff) <= TOLERANCE:
        return f"{diff:+.2f} {unit}".strip()
    lower = c.get("lower_is_better")
    if lower is None:
        return Flag(f"off by {diff:+.2f} {unit}".strip())
    word = "beats it" if (diff < 0) == bool(lower) else "misses"
    return Flag(f"{word} by {abs(diff):.2f} {unit}".strip())


# -- the document: a list of blocks that both writers render -------------------------------------

def _blocks(exps: list[dict], slugs: list[str]) -> list[tuple]:
    summary = [f"{e['title']}: budget {cell(e.get('budget'))}, {cell(e.get('device'))}, {duration(_seconds(e))}"
               for e in exps]
    return [("h", 1, "Experiment report"), ("list", summary)] + [b for e, s in zip(exps, slugs) for b in _experiment(e, s)]


def _experiment(exp: dict, slug: str) -> list[tuple]:
    versions = ", ".join(f"{k} {v}" for k, v in (exp.get("versions") or {}).items()) or DASH
    facts = [("Paper", cell(exp.get("paper")), False), ("Budget", cell(exp.get("budget")), False),
             ("Command", cell(exp.get("command")), True), ("Data", cell(exp.get("data")), True),
             ("Device", cell(exp.get("device")), False), ("Versions", versions, False),
             ("Started", _when(exp.get("started")), False), ("Duration", duration(_seconds(exp)), False)]
    out = [("h", 2, exp["title"]), ("facts", facts)]
    if exp["runs"]:
        columns = ["run", "recipe", "model", "settings", "steps", "epochs", "time",
                   "final train error", "val top-1", "val top-5"]
        rows = [[cell(r.get(k)) for k in ("name", "recipe", "model")]
                + [", ".join(f"{k}={v}" for k, v in (r.get("settings") or {}).items()) or DASH]
                + [cell(r.get("steps")), cell(r.get("epochs")), duration(r.get("seconds"))]
                + [cell((r.get("final") or {}).get(k)) for k in ("train_error", "val_top1_error", "val_top5_error")]
                for r in exp["runs"]]
        out += [("h", 3, "Runs"), ("table", columns, rows)]
    for t in exp["tables"]:
        out += [("h", 3, cell(t.get("title"))), ("table", [cell(c) for c in t.get("columns", [])],
                                                 [[cell(v) for v in row] for row in t.get("rows", [])])]
    if exp["comparisons"]:
        rows = [[cell(c.get("what")), _with_unit(c.get("measured"), c, spread=True), _with_unit(c.get("paper"), c),
                 _verdict(c), cell(c.get("source"))] for c in exp["comparisons"]]
        out += [("h", 3, "Measured vs paper"), ("table", ["what", "measured", "paper", "difference", "source"], rows)]
    if exp["notes"]:
        out += [("h", 3, "Notes"), ("list", [cell(n) for n in exp["notes"]])]
    if exp["figures"]:
        out.append(("h", 3, "Figures"))
        for fig in exp["figures"]:
            out.append(("figure", fig["source"], f"figures/{slug}-{_safe(fig['file'])}", cell(fig.get("caption") or fig["file"])))
    return out


def _with_unit(value, c: dict, spread: bool = False) -> str:
    """A comparison's number with its unit; ``spread``: with the std and
    count of the runs behind it, where there are several."""
    text = cell(value) if value is None or not c.get("unit") else f"{cell(value)} {c['unit']}"
    if spread and value is not None and c.get("runs"):
        text += f" ± {cell(c.get('std'))} ({c['runs']} runs)"
    return text


# -- writers -------------------------------------------------------------------------------------

def _md_cell(text: str) -> str:
    """text for one Markdown line or table cell, shown as text: a record's
    "<script>" must not become a tag where the Markdown is rendered."""
    return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def _md_fact(value: str, code: bool) -> str:
    """A fact's value; as code where asked, unless a backtick would end the code span early."""
    return f"`{value}`" if code and value != DASH and "`" not in value and "\n" not in value else _md_cell(value)


def to_markdown(blocks: list[tuple]) -> str:
    lines = []
    for b in blocks:
        if b[0] == "h":
            lines += ["#" * b[1] + " " + _md_cell(b[2]), ""]
        elif b[0] == "facts":
            lines += [f"- **{label}:** " + _md_fact(v, code) for label, v, code in b[1]] + [""]
        elif b[0] == "list":
            lines += [f"- {_md_cell(item)}" for item in b[1]] + [""]
        elif b[0] == "table":
            lines.append("| " + " | ".join(_md_cell(c) for c in b[1]) + " |")
            lines.append("|" + "---|" * len(b[1]))
            lines += ["| " + " | ".join(f"**{_md_cell(c)}**" if isinstance(c, Flag) else _md_cell(c)
                                        for c in row) + " |" for row in b[2]] + [""]
        elif b[0] == "figure":
            alt = _md_cell(b[3]).replace("[", "\\[").replace("]", "\\]")
            lines += [f"![{alt}]({b[2]})", "", f"*{_md_cell(b[3])}*", ""]
    return "\n".join(lines)


CSS = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#222}
table{border-collapse:collapse;margin:1rem 0;font-size:.95rem}
th,td{border:1px solid #bbb;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#e8e8e8}tr:nth-child(even) td{background:#f5f5f5}
tr td.flag{background:#fde0c5;color:#8a3000;font-weight:bold}
code{background:#f2f2f2;padding:0 .2rem;word-break:break-all}
figure{margin:1.5rem 0}img{max-width:100%;height:auto}figcaption{font-size:.9rem;color:#555}"""

SCRIPT = """window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.dataset.imagesLoaded = ok + "/" + imgs.length;
});"""


def to_html(blocks: list[tuple]) -> str:
    e = html.escape
    body = []
    for b in blocks:
        if b[0] == "h":
            body.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
        elif b[0] == "facts":
            body.append("<ul>" + "".join(f"<li><strong>{e(label)}:</strong> " + (f"<code>{e(v)}</code>" if code and v != DASH
                                          else e(v)) + "</li>" for label, v, code in b[1]) + "</ul>")
        elif b[0] == "list":
            body.append("<ul>" + "".join(f"<li>{e(item)}</li>" for item in b[1]) + "</ul>")
        elif b[0] == "table":
            head = "".join(f"<th>{e(c)}</th>" for c in b[1])
            rows = "".join("<tr>" + "".join(f'<td class="flag">{e(c)}</td>' if isinstance(c, Flag) else f"<td>{e(c)}</td>"
                                            for c in row) + "</tr>" for row in b[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif b[0] == "figure":
            data = base64.b64encode(Path(b[1]).read_bytes()).decode("ascii")  # figures are PNGs (SCHEMA.md)
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{e(b[3])}">'
                        f"<figcaption>{e(b[3])}</figcaption></figure>")
    title = e(blocks[0][2])
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{title}</title>\n'
            f"<style>\n{CSS}\n</style>\n</head>\n<body>\n" + "\n".join(body) + f"\n<script>\n{SCRIPT}\n</script>\n</body>\n</html>\n")


# -- the entry point -----------------------------------------------------------------------------

def report(run_dirs: list[str | Path], out: str | Path, progress: bool = False) -> dict:
    """Write report.md, report.html and figures/ into out for the experiments in run_dirs.

    Returns {"markdown": Path, "html": Path, "figures": [Path, ...]}. Raises
    UserError, before writing anything, for no run dirs, a missing directory,
    experiment.json or figure, or an unreadable experiment.json.
    """
    if not run_dirs:
        raise UserError("no experiment directories given to report on")
    exps = [_load(Path(d)) for d in run_dirs]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    blocks = _blocks(exps, _slugs(exps))
    figures = []
    try:
        (out / "figures").mkdir(parents=True, exist_ok=True)
        for b in blocks:
            if b[0] == "figure":
                figures.append(out / b[2])
                if progress:
                    print(f"report: {b[1]} -> {figures[-1]}", file=sys.stderr)
                if not (figures[-1].exists() and figures[-1].samefile(b[1])):
                    shutil.copyfile(b[1], figures[-1])
        (out / "report.md").write_text(to_markdown(blocks), encoding="utf-8")
        (out / "report.html").write_text(to_html(blocks), encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot write the report into {out}: {e}") from None
    if progress:
        print(f"report: wrote {out / 'report.md'} and {out / 'report.html'}", file=sys.stderr)
    return {"markdown": out / "report.md", "html": out / "report.html", "figures": figures}
