"""Saving figures and tables for reports and papers: matplotlib -> PNG + PDF + SVG, plotly ->
self-contained-offline HTML + PNG + PDF + SVG; a results table -> Markdown + LaTeX (booktabs) + CSV.

The PNG is for the report page; the PDF and SVG (vector, text kept as text) go into a paper.

Plotly HTML references a shared `plotly.min.js` written once next to the files
(`include_plotlyjs="directory"`), so reports open offline without a CDN and without repeating the
3.5 MB bundle in every file. Plotly PNGs go through kaleido 1.x, which drives a Chromium browser.
Starting a browser costs about 2 s, so the first successful export starts one kaleido sync server
that the rest of the process reuses (`close_exporter()` stops it; kaleido also stops it at exit).
Only the Debian `chromium` on this machine is used: nothing here downloads a browser. Without it,
plotly figures are written as HTML only and a warning says why, once per process.

A figure's caption (what it shows, on what: views, tau, checkpoint) is saved beside it as
`name.caption.txt`; the report's index prints it under the thumbnail, and a matplotlib figure
shows it under the image in the notebook (hacm.viz.mpl).
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from hacm.errors import HacmError

log = logging.getLogger(__name__)

PNG_DPI = 150          # matplotlib raster resolution
PLOTLY_PNG_SCALE = 2   # plotly PNGs at twice the layout size, for print
DEFAULT_SIZE = (900, 600)  # plotly PNG size in layout pixels when the figure sets none
CAPTION_SUFFIX = ".caption.txt"
VECTOR_FORMATS = ("pdf", "svg")   # written beside every PNG, for papers
TABLE_FORMATS = ("md", "tex", "csv")

# Process-wide exporter state: "unknown" until the first plotly PNG export is tried,
# then "server" (a kaleido sync server is running) or "html-only" (no usable browser).
_kaleido_state = "unknown"


def find_chromium() -> str | None:
    """Path of the browser kaleido should use: $BROWSER_PATH, else `chromium` on PATH, else None."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if os.access(env, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def _start_kaleido() -> bool:
    """Start the shared kaleido server once; False (and a logged warning) when no browser works."""
    global _kaleido_state
    if _kaleido_state != "unknown":
        return _kaleido_state == "server"
    browser = find_chromium()
    if browser is None:
        log.warning("hacm.viz.export: no Chromium found (set BROWSER_PATH or `apt-get install chromium`); "
                    "plotly figures are saved as HTML only, without PNG.")
        _kaleido_state = "html-only"
        return False
    # choreographer (kaleido's browser driver) reads BROWSER_PATH to find the browser.
    os.environ.setdefault("BROWSER_PATH", browser)
    import kaleido
    import plotly.graph_objects as go

    # A one-shot render first: kaleido's sync server swallows a browser that fails to launch and
    # would then block forever, while the one-shot path raises the error here.
    try:
        kaleido.calc_fig_sync(go.Figure().to_dict(), opts={"format": "png", "width": 10, "height": 10},
                              kopts={"mathjax": False})
    except Exception as e:  # noqa: BLE001 - any browser failure means "HTML only", reported below
        log.warning("hacm.viz.export: Chromium at %s could not render (%s: %s); plotly figures are saved "
                    "as HTML only, without PNG.", browser, type(e).__name__, e)
        _kaleido_state = "html-only"
        return False
    # mathjax=False: its default is a CDN script, unreachable offline, and our figures use no TeX.
    kaleido.start_sync_server(mathjax=False, silence_warnings=True)
    _kaleido_state = "server"
    return True


def close_exporter() -> None:
    """Stop the shared kaleido server (if running); the next plotly PNG export starts a new one."""
    global _kaleido_state
    if _kaleido_state == "server":
        import kaleido
        kaleido.stop_sync_server(silence_warnings=True)
    _kaleido_state = "unknown"


def png_export_available() -> bool:
    """True when plotly figures can be written as PNG (starts the shared kaleido server if needed)."""
    return _start_kaleido()


def caption_of(figure_file: Path) -> str | None:
    """The caption saved with a figure file (`name.png` or `name.html`), or None."""
    path = figure_file.with_name(figure_file.stem + CAPTION_SUFFIX)
    return path.read_text().strip() if path.is_file() else None


def save_figure(fig, out_dir: str | Path, name: str, caption: str | None = None) -> list[Path]:
    """Save `fig` as `out_dir/name.*` and return the written paths.

    `caption` (default: the figure's own `caption`, if any) goes to `name.caption.txt`, and a
    matplotlib figure keeps it for its notebook display.

    matplotlib Figure -> `name.png` (dpi 150, tight bounding box), `name.pdf` and `name.svg`.
    plotly Figure / FigureWidget -> `name.html` (always; plotly.js shared in `out_dir/plotly.min.js`)
    and `name.png`, `name.pdf`, `name.svg` via kaleido when a Chromium is available.
    """
    if not name or Path(name).name != name or Path(name).suffix:
        raise HacmError(f"save_figure: name must be a plain file stem without directories or suffix, got {name!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    caption = caption if caption is not None else getattr(fig, "caption", None)
    if caption:
        written.append(out / f"{name}{CAPTION_SUFFIX}")
        written[-1].write_text(caption.strip() + "\n")

    if hasattr(fig, "savefig"):  # matplotlib
        if caption:
            fig.caption = caption
        files = [out / f"{name}.{fmt}" for fmt in ("png", *VECTOR_FORMATS)]
        for path in files:
            fig.savefig(path, dpi=PNG_DPI, bbox_inches="tight")
        return [*files, *written]

    if hasattr(fig, "to_plotly_json"):  # plotly (Figure or FigureWidget)
        import plotly.graph_objects as go
        static = go.Figure(fig)  # a FigureWidget exports like its static twin
        html = out / f"{name}.html"
        static.write_html(html, include_plotlyjs="directory", full_html=True)
        written.append(html)
        if _start_kaleido():
            import kaleido
            # kaleido directly rather than write_image: plotly passes per-call browser options that
            # the shared server ignores (with a warning for every figure).
            size = {"width": static.layout.width or DEFAULT_SIZE[0], "height": static.layout.height or DEFAULT_SIZE[1]}
            for fmt in ("png", *VECTOR_FORMATS):
                path = out / f"{name}.{fmt}"
                opts = {"format": fmt, **size, **({"scale": PLOTLY_PNG_SCALE} if fmt == "png" else {})}
                path.write_bytes(kaleido.calc_fig_sync(static.to_dict(), opts=opts))
                written.append(path)
        return written

    raise HacmError(f"save_figure: expected a matplotlib or plotly figure, got {type(fig).__name__}")


def save_table(table, out_dir: str | Path, name: str) -> list[Path]:
    """Save a results table (hacm.viz.tables.Table) as `out_dir/name.md` (with its caption),
    `name.tex` (a booktabs table, caption included, for a paper) and `name.csv` (the numbers at full
    precision, for a spreadsheet or a plot). Returns the written paths."""
    if not name or Path(name).name != name or Path(name).suffix:
        raise HacmError(f"save_table: name must be a plain file stem without directories or suffix, got {name!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = {"md": table.to_markdown() + "\n", "tex": table.to_latex(), "csv": table.to_csv()}
    written = []
    for fmt in TABLE_FORMATS:
        written.append(out / f"{name}.{fmt}")
        written[-1].write_text(texts[fmt])
    return written
