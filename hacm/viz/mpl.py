"""matplotlib figures made outside pyplot, for the static figures of hacm.viz."""
from __future__ import annotations

from matplotlib.figure import Figure


def subplots(*args, figsize, **kwargs):
    """A figure outside pyplot's registry: no global state, no leak in long batches, and notebooks
    show the returned figure once (pyplot's would be shown a second time at the end of the cell)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)
