"""The mask explorer's JupyterLab widget: controls in one column, figures that follow the notebook's width.

Laid out for a laptop (1366 px wide, JupyterLab's file browser open: about 1000 px of notebook):
a 300-px column of controls beside the disk view, then the text lines (fixed heights, so a line that
wraps does not push the figures down), the token grid across the full width, the skeleton and the
depth histogram side by side, the keep-spread curves. A busy line says "recomputing" while a change
is drawn, then how long the redraw took (`latency_s`).

Figure sizes follow the "width" control (the notebook's width in pixels, default 920: the output
area of JupyterLab at 1366 px with the file browser open is 934 px): plotly's
FigureWidget, an anywidget since plotly 6, draws before it is attached to the page and never
autosizes to its box (it would stay 700 px wide and be clipped), so the sizes are set from Python
(hacm.viz.explorer.figure_sizes) and a width change redraws the figures (titles wrap to the width,
the disk's labels are placed for it).

Controls that depend on others follow them: the clip list follows the class, the actor list the
clip (two-person clips have two), the time-patch range the checkpoint (its frames / t_patch), and
the radial scale is off for a Euclidean view (the plane's axes follow the data). The radial scale
starts from the data (the clip's median point at radius 0.5); moving the slider takes it over, the
checkbox gives it back to the data.

Below, the views over many clips (hacm.viz.clipviews: keep frequency per token and criterion, depth
against the skeleton tree) are drawn when the widget opens and again on their button, for the
controls' checkpoint, mask ratio, tau, seed and strategy and the chosen class: they embed a few
hundred clips, too slow to follow every slider.
"""
from __future__ import annotations

import time

import plotly.graph_objects as go

from hacm.errors import HacmError
from hacm.geometry import GEOMETRIES
from hacm.masking import NORMALISATIONS, STRATEGIES
from hacm.viz.explorer import (AUTO_MEDIAN_RADIUS, CENTRES, CONTROLS_WIDTH, DEFAULT_WIDTH, OVER_CLIPS, MaskExplorer,
                               figure_sizes)

TEXT_LINES = {"checkpoint": 2, "overlap": 2, "spread": 2}   # lines of 16 px each text box holds (then it scrolls)
OWN = "checkpoint's own"


class ExplorerWidget:
    """`box` is what the notebook displays; `controls` the ipywidgets by parameter name (plus "class")."""

    def __init__(self, explorer: MaskExplorer, width: int = DEFAULT_WIDTH):
        import ipywidgets as w

        self.explorer = explorer
        self.clips = explorer.clips_by_class()
        p = explorer.resolve()
        self.controls = self._controls(w, p)
        self.width = w.IntSlider(value=width, min=600, max=2400, step=50, description="width (px)",
                                 continuous_update=False, layout=w.Layout(width="100%"),
                                 style={"description_width": "90px"})
        self.busy = w.HTML(layout=w.Layout(height="1.8em"))
        self.status = w.HTML(layout=w.Layout(height="4.5em", overflow="auto"))
        self.texts = {k: w.HTML(layout=w.Layout(height=f"{16 * n + 6}px", overflow="auto", width="100%"))
                      for k, n in TEXT_LINES.items()}
        figs, texts = explorer.figures(p, width)
        self.figure_widgets = {k: go.FigureWidget(f) for k, f in figs.items()}
        self._show_texts(texts)
        self.over_clips = {
            "class": w.Dropdown(options=[("all classes", None), *[(c, c) for c in self.clips]], value=None,
                                description="class", style={"description_width": "50px"}),
            "draw": w.Button(description=f"draw over {OVER_CLIPS} clips", layout=w.Layout(width="220px")),
            "status": w.HTML(layout=w.Layout(height="1.8em"))}
        self.over_texts = {k: w.HTML(layout=w.Layout(width="100%")) for k in ("frequency", "depth")}
        self.draw_over_clips()
        self.over_clips["draw"].on_click(self.draw_over_clips)
        self.latency_s: float | None = None
        self._syncing = False
        self._sync_dependent(None)
        for c in self.controls.values():
            c.observe(self._on_change, names="value")
        self.width.observe(self._on_width, names="value")
        self.box = self._layout(w)

    def _controls(self, w, p) -> dict:
        wide = dict(layout=w.Layout(width="100%"), style={"description_width": "90px"})
        slider = dict(continuous_update=False, **wide)
        cls = next(c for c, clips in self.clips.items() if any(s == p.sample for _, s in clips))
        return {
            "checkpoint": w.Dropdown(options=list(self.explorer.checkpoints), value=p.checkpoint,
                                     description="checkpoint", **wide),
            "class": w.Dropdown(options=[(f"{c} ({len(v)})", c) for c, v in self.clips.items()], value=cls,
                                description="class", **wide),
            "sample": w.Dropdown(options=self.clips[cls], value=p.sample, description="clip", **wide),
            "actor": w.Dropdown(options=[("actor 1", 0)], value=0, description="actor", **wide),
            "time_patch": w.IntSlider(value=p.time_patch, min=0, max=1, description="time patch", **slider),
            "strategy": w.Dropdown(options=[(OWN, ""), *[(s, s) for s in STRATEGIES]], value="",
                                   description="strategy", **wide),
            "normalise": w.Dropdown(options=[("strategy default", ""), *[(n, n) for n in NORMALISATIONS]],
                                    value="", description="normalise", **wide),
            "geometry": w.Dropdown(options=[(OWN, ""), *[(g, g) for g in GEOMETRIES]], value="",
                                   description="geometry", **wide),
            "mask_ratio": w.FloatSlider(value=p.mask_ratio, min=0.5, max=0.98, step=0.01, description="mask ratio",
                                        **slider),
            "tau": w.FloatLogSlider(value=p.tau, base=10, min=-1.5, max=1.0, step=0.05, description="tau", **slider),
            "seed": w.IntSlider(value=p.seed, min=0, max=99, description="seed", **slider),
            "centre": w.Dropdown(options=list(CENTRES), value=p.centre, description="view centre", **wide),
            "radial_scale": w.FloatLogSlider(value=p.radial_scale, base=10, min=-2, max=1, step=0.02,
                                             description="radial scale", readout_format=".2f", **slider),
            "auto_scale": w.Checkbox(value=True, description=f"scale from the data (median radius "
                                     f"{AUTO_MEDIAN_RADIUS})", indent=False, **wide),
        }

    def _layout(self, w):
        fw = self.figure_widgets
        column = w.VBox([*self.controls.values(), self.width, self.busy, self.status],
                        layout=w.Layout(width=f"{CONTROLS_WIDTH}px", flex=f"0 0 {CONTROLS_WIDTH}px"))
        over = w.HBox([self.over_clips["class"], self.over_clips["draw"]])
        return w.VBox([w.HBox([column, fw["disk"]]), *self.texts.values(), fw["tokens"],
                       w.HBox([fw["skeleton"], fw["radii"]]), fw["spread"],
                       w.HTML(f"<b>Over many clips</b> (up to {OVER_CLIPS}, evenly spaced over the test clips): "
                              "how often each criterion keeps each token, and depth in the embedding against depth "
                              "in the skeleton tree, for the checkpoint, mask ratio, tau, seed and strategy above."),
                       over, self.over_clips["status"], fw["frequency"], self.over_texts["frequency"], fw["depth"],
                       self.over_texts["depth"]])

    def params(self) -> dict:
        """The explorer's parameters from the controls (the radial scale None: from the data)."""
        out = {k: c.value for k, c in self.controls.items() if k not in ("class", "auto_scale")}
        if self.controls["auto_scale"].value:
            out["radial_scale"] = None
        return out

    def draw_over_clips(self, *_) -> None:
        """(Re)draw the many-clip views for the current controls and the chosen class."""
        self.over_clips["status"].value = "<span style='color:#a60'>&#9203; embedding the clips &hellip;</span>"
        start = time.perf_counter()
        try:
            params = self.explorer.resolve(**self.params())
            figs, texts = self.explorer.over_clips_figures(params, class_name=self.over_clips["class"].value,
                                                           width=self.width.value)
        except HacmError as e:
            self.over_clips["status"].value = f"<span style='color:#b00'>{e}</span>"
            return
        for key, fig in figs.items():
            if key in self.figure_widgets:
                _update_in_place(self.figure_widgets[key], fig)
            else:
                self.figure_widgets[key] = go.FigureWidget(fig)
            self.over_texts[key].value = f"<div style='font-size:12px; line-height:16px'>{texts[key]}</div>"
        self.over_clips["status"].value = (f"<span style='color:#2a2'>drawn in {time.perf_counter() - start:.1f} s "
                                           f"for {params.checkpoint}; press again after changing the controls</span>")

    def _sync_dependent(self, owner) -> None:
        """Make the dependent controls agree with the others (no redraw while they move)."""
        c = self.controls
        self._syncing = True
        try:
            if owner is c["class"]:
                c["sample"].options = self.clips[c["class"].value]
                c["sample"].value = self.clips[c["class"].value][0][1]
            actors = [(f"actor {i + 1}", i) for i in range(self.explorer.num_actors(c["sample"].value))]
            if list(c["actor"].options) != actors:
                previous = c["actor"].value or 0
                c["actor"].options = actors
                c["actor"].value = min(previous, len(actors) - 1)
            c["actor"].disabled = len(actors) < 2
            model = self.explorer.model(c["checkpoint"].value, c["geometry"].value)
            c["time_patch"].max = model.cfg.num_patches - 1       # the value is clamped with it
            c["radial_scale"].disabled = c["auto_scale"].disabled = model.cfg.geometry != "poincare"
        finally:
            self._syncing = False

    def _on_change(self, change) -> None:
        if self._syncing:
            return
        self.busy.value = "<span style='color:#a60'>&#9203; recomputing &hellip;</span>"
        start = time.perf_counter()
        owner = change["owner"] if isinstance(change, dict) else change.owner
        try:
            if owner is self.controls["radial_scale"]:      # a scale chosen by hand is no longer the data's
                self._quietly(self.controls["auto_scale"], False)
            self._sync_dependent(owner)
            params = self.explorer.resolve(**self.params())
            figs, texts = self.explorer.figures(params, self.width.value)
        except HacmError as e:   # shown in the widget: an exception in a callback would vanish
            self.status.value = f"<span style='color:#b00'>{e}</span>"
            self.busy.value = ""
            return
        for key, fig in figs.items():
            _update_in_place(self.figure_widgets[key], fig)
        self._quietly(self.controls["radial_scale"], params.radial_scale)   # show the scale drawn
        self._show_texts(texts)
        self.status.value = ""
        self.latency_s = time.perf_counter() - start
        self.busy.value = f"<span style='color:#2a2'>drawn in {1000 * self.latency_s:.0f} ms</span>"

    def _quietly(self, control, value) -> None:
        """Set a control without redrawing."""
        self._syncing = True
        try:
            control.value = value
        finally:
            self._syncing = False

    def _on_width(self, change) -> None:
        """A new notebook width: every figure again (titles wrap and disk labels are placed for it)."""
        self._on_change(change)
        for key, (width, height) in figure_sizes(self.width.value).items():
            if key in ("frequency", "depth"):
                self.figure_widgets[key].layout.width = width

    def _show_texts(self, texts: dict[str, str]) -> None:
        for key, text in texts.items():
            lines = "<br>".join(text.splitlines())
            self.texts[key].value = f"<div style='font-size:12px; line-height:16px'>{lines}</div>"


def _update_in_place(fw: go.FigureWidget, fig: go.Figure) -> None:
    """Make FigureWidget `fw` show `fig`: restyle/relayout in one message when the traces line up.
    The template is set once, when the widget is made (re-validating it costs more than the rest)."""
    layout = fig.layout.to_plotly_json()
    layout.pop("template", None)
    # a figure without shapes or annotations (the plane's histogram has no projection lines) must
    # clear the old ones: an update only replaces what it names
    layout.setdefault("shapes", [])
    layout.setdefault("annotations", [])
    same = len(fw.data) == len(fig.data) and all(a.type == b.type for a, b in zip(fw.data, fig.data))
    if same:
        with fw.batch_update():
            for old, new in zip(fw.data, fig.data):
                props = new.to_plotly_json()
                props.pop("type", None)
                props.pop("uid", None)
                old.update(props, overwrite=True)
            fw.layout.update(layout, overwrite=True)
    else:
        fw.data = []
        fw.add_traces(list(fig.data))
        fw.layout.update(layout, overwrite=True)
