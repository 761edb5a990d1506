"""The HTML side of a report: each executed notebook exported as pages that work offline, and the
index page that ties the jobs together.

Every executed notebook gets two pages beside it: `<stem>.notebook.html` without code (what a reader
of the report wants) and `<stem>.code.html` with it. Plotly figures a notebook displayed are drawn on
those pages by the job's own copy of plotly.min.js, so no page fetches anything from the network.
`index.html` at the report root holds a row per job (status, failing cell, time, the numbers of its
summary.json, links to its pages) and a gallery of the figures each successful job saved.
"""
from __future__ import annotations

import html
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import hacm
from hacm import published
from hacm.fileio import write_text_atomic
from hacm.report.batch import REPO_ROOT
from hacm.viz.export import VECTOR_FORMATS, caption_of

TABLE_LINKS = (("tex", "LaTeX"), ("csv", "CSV"), ("md", "Markdown"))

if TYPE_CHECKING:
    from hacm.report.batch import Batch
    from hacm.report.runner import JobResult

PLOTLY_MIME = "application/vnd.plotly.v1+json"
PLOTLY_JS = "plotly.min.js"
# JupyterLab's export template without the scripts it fetches from a CDN (require.js, MathJax, the
# widget manager): reports are read offline; the notebooks use no TeX, and the only widgets of a
# batch run are tqdm bars, whose text fallback the page shows.
_OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
"""


def exports(notebook_name: str) -> tuple[str, str, str]:
    """Executed notebook, its page without code, its page with code. The dotted names cannot clash
    with a figure's (save_figure names have no suffix)."""
    stem = Path(notebook_name).stem
    return notebook_name, f"{stem}.notebook.html", f"{stem}.code.html"


# ----------------------------------------------------------------------------- notebook pages


def export_html(notebook: Path) -> None:
    """The page without code (what a reader of the report wants) and the one with it."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(notebook, as_version=4)
    if _embed_plotly(nb):
        _ensure_plotly_js(notebook.parent)
    offline = dict(extra_loaders=[jinja2.DictLoader({"hacm_offline.html.j2": _OFFLINE_TEMPLATE})],
                   template_file="hacm_offline.html.j2")
    hidden = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True, **offline)
    _, hidden_name, code_name = exports(notebook.name)
    # the pages sit in <report>/<job>/: paths into the report are written relative to them
    root = notebook.resolve().parent.parent
    # atomically: a reader of the report while the batch runs never opens half a page
    write_text_atomic(notebook.with_name(hidden_name), _relative_paths(hidden.from_notebook_node(nb)[0], root, "../"),
                      fsync=False)
    write_text_atomic(notebook.with_name(code_name),
                      _relative_paths(HTMLExporter(**offline).from_notebook_node(nb)[0], root, "../"), fsync=False)


def _relative_paths(text: str, root: Path, prefix: str) -> str:
    """`text` with no path of the machine it was made on, so a copied or moved report reads the same:
    the report root becomes `prefix` (its path from the page), then the Python environment and
    hacm's repository (in tracebacks and warnings) become named placeholders (unless they are as
    short as /usr, which would also match paths that are no installation's)."""
    text = text.replace(f"{root}/", prefix).replace(str(root), prefix.rstrip("/") or ".")
    for place, shown in ((sys.prefix, "[python environment]"), (str(REPO_ROOT), "[hacm repository]")):
        if len(Path(place).parts) > 2:
            text = text.replace(place, shown)
    return text


def _embed_plotly(nb) -> bool:
    """Give every plotly output (mimetype JSON only, which HTML cannot show) an HTML twin that draws
    it with the plotly.min.js next to the page: interactive, offline, and one copy of plotly.js per job
    instead of one per notebook export. Returns whether any was found."""
    n = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if PLOTLY_MIME not in data or "text/html" in data:
                continue
            spec = data[PLOTLY_MIME]
            div = f"plotly-figure-{n}"
            load = "" if n else f'<script src="{PLOTLY_JS}"></script>'
            payload = json.dumps({"data": spec.get("data", []), "layout": spec.get("layout", {})}).replace("</", "<\\/")
            data["text/html"] = (f'{load}<div id="{div}"></div><script>(function(){{var f={payload};'
                                 f'Plotly.newPlot("{div}", f.data, f.layout, {{responsive: true}});}})();</script>')
            n += 1
    return n > 0


def _ensure_plotly_js(job_dir: Path) -> None:
    """save_figure writes plotly.min.js beside interactive figures; a job that only displayed figures
    gets the copy shipped in the plotly package (found without importing plotly here)."""
    if (job_dir / PLOTLY_JS).is_file():
        return
    import importlib.util
    import shutil

    spec = importlib.util.find_spec("plotly")
    bundled = Path(next(iter(spec.submodule_search_locations))) / "package_data" / PLOTLY_JS
    shutil.copyfile(bundled, job_dir / PLOTLY_JS)


# ----------------------------------------------------------------------------- index page


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; white-space: nowrap; } .sub { color: #555; font-size: .85em; }
.ok { color: #186a3b; } .unchanged { color: #1f618d; } .failed { color: #b03a2e; font-weight: bold; } .skipped { color: #7d6608; }
.sig-higher { color: #186a3b; font-weight: bold; } .sig-lower { color: #b03a2e; font-weight: bold; } .nonsig { color: #555; }
.flag { color: #b03a2e; font-size: .85em; font-weight: bold; }
.caveat { background: #fff8e1; border-left: 4px solid #f0b400; padding: .6em 1em; }
.interrupted, .cancelled { color: #9c640c; font-weight: bold; } .pending, .running, .submitted { color: #5b2c6f; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; } .figs { display: flex; flex-wrap: wrap; gap: 1em; }
.figs figure { margin: 0; max-width: 360px; } .figs img { max-width: 360px; border: 1px solid #ddd; } figcaption { font-size: .85em; }
"""

# Summary keys the notebooks write -> the words the index shows; the fractions among them are shown
# in percent. "<protocol>_test_acc" and friends are matched by _SUMMARY_PATTERNS below.
_SUMMARY_LABELS = {
    "final_loss": "pre-training loss, last epoch", "epochs": "epochs",
    "masked_mse": "reconstruction error (MSE) on the masked tokens of the shown clip",
    "run_dir": "run directory", "store": "store", "clips": "clips", "classes": "classes",
    "train": "training clips", "test": "test clips", "median_frames": "median frames per clip",
    "accuracy": "accuracy, last checkpoint (%)", "baseline_accuracy": "baseline accuracy, last checkpoint (%)",
    "most_confused": "most confused pair (true -> predicted)", "views": "explorer views",
    "checkpoints": "checkpoints",
}
_FRACTIONS = {"accuracy", "baseline_accuracy"}
_PATHS = {"run_dir", "store"}   # written relative to the job's directory (hacm.notebook.write_summary)
_PROTOCOLS = {"linprobe": "linear probe", "finetune": "fine-tune", "semi": "semi-supervised fine-tune"}
_SUMMARY_PATTERNS = [   # (pattern, label template); every match is a fraction shown in percent
    (re.compile(r"(linprobe|finetune|semi)_test_acc"), "{protocol}, last epoch (%)"),
    (re.compile(r"(linprobe|finetune|semi)_best_test_acc"), "{protocol}, best epoch on test (selected on test) (%)"),
    (re.compile(r"knn_knn(\d+)_acc"), "kNN-{k} (%)"),
]
HEADLINE_KEY = "headline"   # a summary.json entry holding hacm.study.StudyResult.headline()


def summary_label(key: str) -> tuple[str, bool]:
    """A summary.json key as the index names it, and whether its value is a fraction to show in %."""
    if key in _SUMMARY_LABELS:
        return _SUMMARY_LABELS[key], key in _FRACTIONS
    for pattern, template in _SUMMARY_PATTERNS:
        match = pattern.fullmatch(key)
        if match:
            group = match.group(1)
            return template.format(protocol=_PROTOCOLS.get(group, group), k=group), True
    return key.replace("_", " "), False


def _shown_path(value: str, out: Path) -> str:
    """An absolute path as the report shows it: relative to the report root, so a copied or moved
    report reads the same."""
    return os.path.relpath(value, out) if os.path.isabs(value) else value


def _path_link(value: str, job: str, out: Path) -> str:
    """A path of a job's summary (relative to the job's directory, or absolute) as a link from the index."""
    shown = Path(os.path.normpath(_shown_path(value, out) if os.path.isabs(value) else Path(job) / value)).as_posix()
    if not (out / shown).exists():
        return html.escape(shown)
    return f'<a href="{html.escape(shown)}/">{html.escape(shown)}</a>'


def _fmt(value, out: Path, percent: bool = False) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)) and percent:
        return f"{100 * value:.1f}"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"
    if isinstance(value, str):
        return html.escape(_shown_path(value, out))
    if isinstance(value, (dict, list)):
        return html.escape(json.dumps(value)[:80])
    return html.escape(str(value))


def write_index(batch: Batch, out: Path, results: list[JobResult], seconds: float) -> Path:
    """index.html: the headline comparison (when a job wrote one), then the status table, summary
    numbers of every job, its exports and its figures."""
    e = html.escape
    n_failed = sum(r.status == "failed" for r in results)
    rows = "".join(_job_row(out, r) for r in results)
    sections = "".join(_figure_section(out, r) for r in results)
    verdict = f"{n_failed} job(s) failed" if n_failed else "all jobs succeeded"
    headline = next(((r.name, r.summary[HEADLINE_KEY]) for r in results
                     if r.succeeded and isinstance(r.summary.get(HEADLINE_KEY), dict)), None)
    caveat = f'<p class="caveat">{e(batch.caveat)}</p>' if batch.caveat else ""
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>hacm report: {e(batch.name)}</title><style>{_STYLE}</style></head>
<body>
<h1>hacm report: {e(batch.name)}</h1>
<p>{e(batch.description)}</p>
{headline_section(*headline) if headline else ""}
{caveat}
<h2>Jobs</h2>
<p>Batch file <code>{e(_batch_file(batch))}</code> · hacm {e(hacm.__version__)} · {time.strftime('%Y-%m-%d %H:%M:%S')}
 · {seconds:.0f} s · <span class="{'failed' if n_failed else 'ok'}">{verdict}</span></p>
<table><tr><th>job</th><th>notebook</th><th>status</th><th>time</th><th>key numbers</th><th>exports</th></tr>
{rows}
</table>
{sections}
</body></html>
"""
    index = out / "index.html"
    write_text_atomic(index, _relative_paths(page, out.resolve(), ""))
    return index


def _batch_file(batch: Batch) -> str:
    """The batch file relative to the working directory when inside it, else its name."""
    try:
        return batch.path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return batch.path.name


# ----------------------------------------------------------------------------- headline


def headline_section(job: str, head: dict) -> str:
    """The methods compared: per method and metric the mean ± std over seeds (%) with its 95 % CI,
    a flag where a pre-trained method scores below the untrained encoder, and the paired test
    against the reference, significant (higher: green, lower: red) or written out "not
    significant"; the chance level; the published numbers of the benchmark; then the settings in
    which the methods differ."""
    e = html.escape
    ref, metrics = head["reference"], head["metrics"]
    chance = head.get("chance")
    chance_sub = f", chance {chance['majority']:.1f}" if chance else ""
    has_best = any("best on test" in r for r in head["rows"])
    header = "<th>method</th>" + "".join(
        f'<th>{e(m)} (%)<div class="sub">mean ± std over seeds, [95 % CI]{chance_sub}</div></th>'
        f'<th class="significance">{e(m)}: vs {e(ref)}<div class="sub">difference (points), Holm-adjusted p</div></th>'
        for m in metrics)
    if has_best:
        header += (f'<th>{e(head.get("best on test", "best epoch on test"))} (%)'
                   f'<div class="sub">an extra for comparison with published numbers; never used to rank</div></th>')
    header += "<th>seeds</th><th>test clips</th>"
    body = "".join(_headline_row(row, metrics, has_best) for row in head["rows"])
    floor = head.get("untrained")
    notes = [f"From job <a href=\"{e(job)}/\">{e(job)}</a>. Every accuracy is the final model's (linear probe: its "
             f"last epoch), in percent; ± is the standard deviation over seeds; the interval covers test clips and "
             f"seeds; each method is tested against {e(ref)} with a paired bootstrap, Holm-adjusted across the "
             f"comparisons."]
    if chance:
        notes.append(f"Chance level on these test clips ({chance['classes']} classes): {chance['majority']:.1f} % "
                     f"always answering the most frequent class, {chance['uniform']:.1f} % guessing uniformly.")
    if floor:
        notes.append(f"&#9888; marks a pre-trained method whose mean is below the untrained encoder ({e(floor)}): "
                     f"its pre-training made the features worse than random weights.")
    return (f'<h2 id="headline">Methods compared</h2>'
            f'<table id="headline-table"><tr>{header}</tr>{body}</table>'
            f'<p class="sub">{" ".join(notes)}</p>{_published(head.get("benchmark"))}'
            f"{_config_differences(head.get('config differences', {}))}")


def _published(benchmark: str | None) -> str:
    """The published numbers of the benchmark compared (hacm.published), beside the measured ones."""
    rows = published.for_benchmark(benchmark)
    if not rows:
        return ""
    e = html.escape
    body = "".join(f"<tr><td>{e(p.method)}</td><td>{e(published.PROTOCOLS[p.protocol])}</td>"
                   f'<td class="num">{p.accuracy:.1f}</td><td class="sub">{e(p.source)}</td></tr>' for p in rows)
    return (f'<h3 id="published">Published results on {e(benchmark)}</h3><p class="sub">The authors\' numbers, not '
            f"measured here. Their linear evaluation reports the best epoch on the test set: hold them against the "
            f"best-test-epoch column above, not the last-epoch accuracies.</p>"
            f'<table id="published-table"><tr><th>method</th><th>protocol</th><th>top-1 (%)</th><th>source</th></tr>'
            f"{body}</table>")


def _headline_row(row: dict, metrics: list[str], has_best: bool) -> str:
    e = html.escape
    cells = [f"<td>{e(row['method'])}</td>"]
    for metric in metrics:
        m = row["metrics"].get(metric)
        if m is None:
            cells.append("<td></td><td></td>")
            continue
        spread = f" ± {m['std']:.1f}" if m.get("std") is not None else ""
        lo, hi = m["ci"]
        flag = '<div class="flag">&#9888; below the untrained encoder</div>' if m.get("below untrained") else ""
        cells.append(f'<td class="num">{m["mean"]:.1f}{spread}<div class="sub">[{lo:.1f}, {hi:.1f}]</div>{flag}</td>')
        cells.append(_significance_cell(m))
    if has_best:
        best = row.get("best on test")
        cells.append(f'<td class="num">{best:.1f}</td>' if best is not None else "<td></td>")
    cells.append(f'<td class="num">{row["seeds"]}</td><td class="num">{row["test clips"]}</td>')
    return f'<tr class="method">{"".join(cells)}</tr>'


def _significance_cell(m: dict) -> str:
    if m.get("significant") is None:
        return '<td class="significance">reference</td>'
    lo, hi = m["difference ci"]
    if m["significant"]:
        direction = "higher" if m["difference"] > 0 else "lower"
        verdict, style = f"significantly {direction}", f"sig-{direction}"
    else:
        verdict, style = "not significant", "nonsig"
    # hacm.stats flags a comparison resting on too few seeds at the end of its verdict: "[2 vs 2 seeds, ...]"
    few_seeds = m["verdict"][m["verdict"].index("["):] if "[" in m.get("verdict", "") else ""
    return (f'<td class="significance"><span class="{style}">{verdict}</span>'
            f'<div class="sub">{_signed(m["difference"])} pts [{_signed(lo)}, {_signed(hi)}], p {_p(m["p holm"])}'
            f"{' ' + html.escape(few_seeds) if few_seeds else ''}</div></td>")


def _signed(x: float) -> str:
    """+1.2 / -0.4 / +0.0: never "-0.0" for a difference that rounds to zero."""
    return f"{round(x, 1) + 0.0:+.1f}"


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def _config_differences(diff: dict) -> str:
    """Methods x the pre-training settings in which they differ."""
    if not diff:
        return ""
    e = html.escape
    keys = list(dict.fromkeys(k for settings in diff.values() for k in settings))
    head = "<th>method</th>" + "".join(f"<th><code>{e(k)}</code></th>" for k in keys)
    body = "".join("<tr><td>" + e(method) + "</td>" + "".join(
        f"<td>{e(str(settings[k])) if k in settings else ''}</td>" for k in keys) + "</tr>"
        for method, settings in diff.items())
    return (f'<h3 id="config-differences">How the methods differ</h3><p class="sub">The pre-training settings '
            f"that are not the same for every method (everything else is shared).</p>"
            f'<table id="config-differences-table"><tr>{head}</tr>{body}</table>')


# ----------------------------------------------------------------------------- jobs and figures


def _job_row(out: Path, r: JobResult) -> str:
    """A job's row of the status table: its failure or skip reason, key numbers and page links."""
    e = html.escape
    executed, hidden, with_code = exports(r.notebook)
    links = ""
    if (out / r.name / hidden).is_file():
        links = (f'<a href="{r.name}/{hidden}">report</a> · <a href="{r.name}/{with_code}">with code</a> · '
                 f'<a href="{r.name}/{executed}">notebook</a>')
    numbers = []
    head = r.summary.get(HEADLINE_KEY)
    shown_above = {row["method"] for row in head["rows"]} if isinstance(head, dict) else set()
    for key, value in r.summary.items():
        if key == HEADLINE_KEY:
            numbers.append('<a href="#headline">per method: the headline table above</a>')
            continue
        if re.split(r": | vs ", key)[0] in shown_above:   # a method's number, already in the headline
            continue
        label, percent = summary_label(key)
        is_path = key in _PATHS and isinstance(value, str)
        shown = _path_link(value, r.name, out) if is_path else _fmt(value, out, percent)
        numbers.append(f"{e(label)}: {shown}")
    detail = ""
    if r.status == "failed":
        cell = f"In [{r.failing_cell}]" if r.failing_cell is not None else "outside a cell"
        detail = f"<div>{e(r.error or '')}<br>failing cell: {cell}</div>"
    elif r.status in ("skipped", "interrupted", "cancelled", "pending", "running", "submitted"):
        detail = f"<div>{e(r.error or '')}</div>"
    if r.failing_source and not r.succeeded:     # the failing cell, or the end of a Slurm job's log
        detail += f"<pre>{e(r.failing_source)}</pre>"
    return (f'<tr id="job-{e(r.name)}"><td>{e(r.name)}</td><td>{e(r.notebook)}</td>'
            f'<td class="{r.status}">{r.status}{detail}</td><td>{r.seconds:.1f} s</td>'
            f"<td>{'<br>'.join(numbers)}</td><td>{links}</td></tr>")


def _figure_section(out: Path, r: JobResult) -> str:
    """The gallery of a successful job's saved figures, with their captions ("" when it has none)."""
    e = html.escape
    figs = []
    for png in sorted((out / r.name).glob("*.png")) if r.succeeded else []:
        interactive = png.with_suffix(".html")
        target = f"{r.name}/{interactive.name}" if interactive.is_file() else f"{r.name}/{png.name}"
        caption = caption_of(png) or png.stem
        vectors = " · ".join(f'<a href="{e(r.name)}/{e(png.stem)}.{fmt}">{fmt.upper()}</a>'
                             for fmt in VECTOR_FORMATS if png.with_suffix(f".{fmt}").is_file())
        figs.append(f'<figure><a href="{e(target)}"><img src="{e(r.name)}/{e(png.name)}" alt="{e(png.stem)}"></a>'
                    f"<figcaption><b>{e(png.stem)}</b>: {e(caption)}"
                    f"{f' <span class=sub>({vectors})</span>' if vectors else ''}</figcaption></figure>")
    # interactive figures that have no PNG (kaleido unavailable) are still linked
    pngs = {p.stem for p in (out / r.name).glob("*.png")}
    for page in sorted((out / r.name).glob("*.html")) if r.succeeded else []:
        if page.stem not in pngs and page.name not in exports(r.notebook):
            figs.append(f'<figure><a href="{e(r.name)}/{e(page.name)}">{e(page.stem)} (interactive)</a>'
                        f"<figcaption>{e(caption_of(page) or '')}</figcaption></figure>")
    tables = [t for t in sorted((out / r.name).glob("*.tex")) if r.succeeded]
    listed = "".join(f"<li>{e(t.stem)}: " + " · ".join(
        f'<a href="{e(r.name)}/{e(t.stem)}.{fmt}">{label}</a>' for fmt, label in TABLE_LINKS
        if t.with_suffix(f".{fmt}").is_file()) + "</li>" for t in tables)
    if not figs and not listed:
        return ""
    tables_html = f'<p class="sub">Tables (LaTeX with booktabs, CSV, Markdown):</p><ul>{listed}</ul>' if listed else ""
    return f'<h2 id="figures-{e(r.name)}">{e(r.name)}</h2>{tables_html}<div class="figs">{"".join(figs)}</div>'
