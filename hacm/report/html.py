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
import time
from pathlib import Path
from typing import TYPE_CHECKING

import hacm
from hacm.fileio import write_text_atomic

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
    notebook.with_name(hidden_name).write_text(hidden.from_notebook_node(nb)[0])
    notebook.with_name(code_name).write_text(HTMLExporter(**offline).from_notebook_node(nb)[0])


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
.ok { color: #186a3b; } .unchanged { color: #1f618d; } .failed { color: #b03a2e; font-weight: bold; } .skipped { color: #7d6608; }
.interrupted, .cancelled { color: #9c640c; font-weight: bold; } .pending, .running, .submitted { color: #5b2c6f; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; } .figs { display: flex; flex-wrap: wrap; gap: 1em; }
.figs figure { margin: 0; } .figs img { max-width: 360px; border: 1px solid #ddd; } figcaption { font-size: .85em; }
"""


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return html.escape(json.dumps(value)[:80])
    return html.escape(str(value))


def write_index(batch: Batch, out: Path, results: list[JobResult], seconds: float) -> Path:
    """index.html: status table, summary numbers of every job, its exports and its figures."""
    e = html.escape
    n_failed = sum(r.status == "failed" for r in results)
    rows = "".join(_job_row(out, r) for r in results)
    sections = "".join(_figure_section(out, r) for r in results)
    verdict = f"{n_failed} job(s) failed" if n_failed else "all jobs succeeded"
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>hacm report: {e(batch.name)}</title><style>{_STYLE}</style></head>
<body>
<h1>hacm report: {e(batch.name)}</h1>
<p>{e(batch.description)}</p>
<p>Batch file <code>{e(str(batch.path))}</code> · hacm {e(hacm.__version__)} · {time.strftime('%Y-%m-%d %H:%M:%S')}
 · {seconds:.0f} s · <span class="{'failed' if n_failed else 'ok'}">{verdict}</span></p>
<table><tr><th>job</th><th>notebook</th><th>status</th><th>time</th><th>key numbers</th><th>exports</th></tr>
{rows}
</table>
{sections}
</body></html>
"""
    index = out / "index.html"
    write_text_atomic(index, page)
    return index


def _job_row(out: Path, r: JobResult) -> str:
    """A job's row of the status table: its failure or skip reason, key numbers and page links."""
    e = html.escape
    executed, hidden, with_code = exports(r.notebook)
    links = ""
    if (out / r.name / hidden).is_file():
        links = (f'<a href="{r.name}/{hidden}">report</a> · <a href="{r.name}/{with_code}">with code</a> · '
                 f'<a href="{r.name}/{executed}">notebook</a>')
    numbers = "<br>".join(f"{e(str(k))}: {_fmt(v)}" for k, v in r.summary.items())
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
            f"<td>{numbers}</td><td>{links}</td></tr>")


def _figure_section(out: Path, r: JobResult) -> str:
    """The gallery of a successful job's saved figures ("" when it has none)."""
    e = html.escape
    figs = []
    for png in sorted((out / r.name).glob("*.png")) if r.succeeded else []:
        interactive = png.with_suffix(".html")
        target = f"{r.name}/{interactive.name}" if interactive.is_file() else f"{r.name}/{png.name}"
        figs.append(f'<figure><a href="{e(target)}"><img src="{e(r.name)}/{e(png.name)}" alt="{e(png.stem)}"></a>'
                    f"<figcaption>{e(png.stem)}</figcaption></figure>")
    # interactive figures that have no PNG (kaleido unavailable) are still linked
    pngs = {p.stem for p in (out / r.name).glob("*.png")}
    for page in sorted((out / r.name).glob("*.html")) if r.succeeded else []:
        if page.stem not in pngs and page.name not in exports(r.notebook):
            figs.append(f'<figure><a href="{e(r.name)}/{e(page.name)}">{e(page.stem)} (interactive)</a></figure>')
    if not figs:
        return ""
    return f'<h2 id="figures-{e(r.name)}">{e(r.name)}</h2><div class="figs">{"".join(figs)}</div>'
