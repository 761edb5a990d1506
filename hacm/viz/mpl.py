"""matplotlib figures made outside pyplot, for the static figures of hacm.viz, that show as images in
any Jupyter kernel and carry their caption.

IPython registers its PNG formatter for matplotlib figures only when the inline backend starts, which
happens on `import matplotlib.pyplot`; a `Figure` built without pyplot would otherwise show as the
text `<Figure size 700x400 with 2 Axes>`. `HacmFigure` draws itself through IPython's rich display
protocol (`_repr_mimebundle_`), so it shows as a PNG whatever the backend, frontend or import order,
and changes nothing global. A figure with a `caption` also offers an HTML `<figure>` with the caption
under the image, which JupyterLab and the report's notebook pages show (HTML ranks above PNG there).
"""
from __future__ import annotations

import base64
import html
import io

from matplotlib.figure import Figure

DISPLAY_DPI = 100   # notebook display resolution; saved PNGs use hacm.viz.export.PNG_DPI


class HacmFigure(Figure):
    """A matplotlib Figure that displays as a PNG in a kernel, with an optional caption."""

    caption: str | None = None

    def png_bytes(self, dpi: int = DISPLAY_DPI) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        return buf.getvalue()

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        png = base64.b64encode(self.png_bytes()).decode("ascii")
        bundle = {"image/png": png, "text/plain": self.caption or self._titles()}
        if self.caption:
            bundle["text/html"] = (f'<figure style="margin:0"><img src="data:image/png;base64,{png}" '
                                   f'alt="{html.escape(self.caption)}">'
                                   f"<figcaption>{html.escape(self.caption)}</figcaption></figure>")
        return bundle


    def _titles(self) -> str:
        """Plain-text stand-in (a terminal): the figure's titles."""
        titles = [self._suptitle.get_text()] if self._suptitle else []
        titles += [ax.get_title() for ax in self.axes if ax.get_title()]
        return "figure: " + ("; ".join(titles) or "untitled")


def subplots(*args, figsize, layout: str | None = None, **kwargs):
    """A figure outside pyplot's registry: no global state, no leak in long batches, and notebooks
    show the returned figure once (pyplot's would be shown a second time at the end of the cell).
    layout="constrained" keeps colour bars and outside legends clear of the axes."""
    fig = HacmFigure(figsize=figsize, layout=layout)
    return fig, fig.subplots(*args, **kwargs)
