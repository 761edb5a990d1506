"""Plotly titles and axes that fit their figure: no cut title, axis label or tick label.

plotly draws a title on one line however long it is, and cuts what runs past the figure's edge; a
title taller than the top margin runs into the plot, and tick labels or axis titles wider than the
side margins are cut at the figure's edge. Here a title is wrapped at word boundaries to the
figure's width (each <br>-separated line on its own; a <sup> line stays a <sup> line) and hung from
the top of the figure with a top margin that holds all its lines (plotly's title automargin anchors
a multi-line title by its first line, so the others ran into the plot, and its yanchor "top" hangs
the title a line too high); plotly's axis automargin
(which measures the rendered text, in the browser and in kaleido) grows the other margins to hold
the tick labels and the axis titles.
"""
from __future__ import annotations

import re
import textwrap

import plotly.graph_objects as go

TITLE_PX = 16            # title font size (px)
SUB_SCALE = 0.7          # plotly draws <sup> text at 70 % of the font size
# Average character width in em of the sans-serif fonts Chromium falls back to (DejaVu Sans, the
# widest of them, averages about 0.55 em on these titles): wrapping at 0.6 em keeps a margin.
CHAR_EM = 0.6
LINE_PX = 22             # height of one title line: plotly spaces <sup> lines like full ones
SIDE_PX = 30             # title inset (px) from the figure's left edge plus room on the right
# Least margins (px); automargin grows the sides and the bottom to what the text needs.
MARGIN_FLOOR = {"t": 40, "l": 10, "r": 10, "b": 10}

_SUP = re.compile(r"^<sup>(.*)</sup>$", re.S)
_TAG = re.compile(r"<[^>]+>")


def wrap_title(title: str, width: int, size: int = TITLE_PX) -> str:
    """`title` with every <br>-separated line wrapped to fit a figure `width` px wide."""
    out, in_sup = [], False
    for line in title.split("<br>"):
        # a <sup> that spans several lines: make each line a <sup> line of its own
        line = line.strip()
        opened = in_sup or line.startswith("<sup>")
        in_sup = opened and not line.endswith("</sup>")
        if opened:
            line = f"<sup>{line.removeprefix('<sup>').removesuffix('</sup>')}</sup>"
        sup = _SUP.match(line)
        text, px = (sup.group(1), size * SUB_SCALE) if sup else (line, size)
        chars = max(20, int((width - SIDE_PX) / (px * CHAR_EM)))
        # wrap on the visible text: tags (<b>, <i>) do not take room
        pieces = textwrap.wrap(text, chars, break_on_hyphens=False) if len(_TAG.sub("", text)) > chars else [text]
        out += [f"<sup>{p}</sup>" for p in pieces] if sup else pieces
    return "<br>".join(out)


def title_margin(title: str, gap: int = 30) -> int:
    """Top margin (px) that holds a (wrapped) title hung from the figure's top, and `gap` below it
    (subplot titles sit there)."""
    return 8 + LINE_PX * (title.count("<br>") + 1) + gap


def fit_layout(fig: go.Figure, width: int, height: int) -> go.Figure:
    """Size `fig`, wrap its title to the width, hang it from the top above a margin that holds it,
    and let plotly grow the other margins around the tick labels and axis titles."""
    title = wrap_title(fig.layout.title.text or "", width)
    subplot_titles = any(a.yref == "paper" and (a.y or 0) >= 1 for a in fig.layout.annotations)
    gap = 10 + (LINE_PX * 2 if subplot_titles else 0)
    # margins the figure set stay as floors (the disk sizes its labels for its plot area)
    margin = {side: getattr(fig.layout.margin, side) or floor for side, floor in MARGIN_FLOOR.items()}
    margin["t"] = max(margin["t"], title_margin(title, gap))
    fig.update_layout(width=width, height=height, margin=margin,
                      # plotly hangs a multi-line title one line too high from y (yanchor top): lower it by a line
                      title={"text": title, "font": {"size": TITLE_PX}, "x": 0.01, "xanchor": "left",
                             "yref": "container", "y": 1 - (8 + LINE_PX) / height, "yanchor": "top"})
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig
