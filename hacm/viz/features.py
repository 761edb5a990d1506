"""Feature spaces as pictures: a t-SNE map of encoder features (scikit-learn) and side-by-side
scatter panels coloured by class with one legend of class names (matplotlib)."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from hacm.errors import HacmError
from hacm.viz.mpl import subplots

# 60 distinguishable colours (NTU-60 has 60 classes); beyond that colours repeat with another marker.
_PALETTES = ("tab20", "tab20b", "tab20c")
_MARKERS = ("o", "^", "s", "D")


def tsne_embedding(features: np.ndarray, *, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE map [N, 2] of features [N, D]; the same features give the same map.

    Features are L2-normalised first: the kNN evaluation compares them by cosine similarity, and on
    the unit sphere Euclidean neighbours are cosine neighbours. The perplexity is lowered to what N
    points allow ((N - 1) / 3). Meant for a few hundred to a few thousand points (seconds)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 4:
        raise HacmError(f"tsne_embedding: expected features [N >= 4, D], got shape {x.shape}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    # PCA initialisation: global structure kept and no random start (the fixed random_state only
    # feeds the randomised SVD of that PCA)
    tsne = TSNE(n_components=2, perplexity=min(perplexity, (len(x) - 1) / 3), init="pca", random_state=0)
    # One OpenMP thread: the map is then the same whatever the core count (threads would change the
    # order of the gradient's sums), and a few hundred points gain nothing from more, while spinning
    # threads on a busy machine made it ten times slower.
    with threadpool_limits(limits=1, user_api="openmp"):
        return tsne.fit_transform(x)


def _class_style(c: int) -> tuple[tuple, str]:
    palette = matplotlib.colormaps[_PALETTES[(c // 20) % len(_PALETTES)]]
    return palette(c % 20), _MARKERS[(c // 60) % len(_MARKERS)]


def embedding_figure(panels: Mapping[str, tuple[np.ndarray, np.ndarray]], class_names: Sequence[str], *,
                     title: str = "Feature space (t-SNE)") -> Figure:
    """One scatter panel per title: {panel title: (points [N, 2], labels [N])}, coloured by class,
    with a single legend of the class names present."""
    if not panels:
        raise HacmError("embedding_figure: no panels given")
    fig, axes = subplots(1, len(panels), figsize=(4.3 * len(panels) + 2.5, 4.6), squeeze=False)
    present = set()
    for ax, (name, (points, labels)) in zip(axes[0], panels.items()):
        points, labels = np.asarray(points), np.asarray(labels)
        if points.shape != (len(labels), 2):
            raise HacmError(f"embedding_figure: panel {name!r} has points {points.shape} for {len(labels)} labels")
        for c in np.unique(labels):
            colour, marker = _class_style(int(c))
            ax.scatter(*points[labels == c].T, s=9, color=colour, marker=marker, alpha=0.85, linewidths=0)
        present |= set(labels.tolist())
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    legend = [Line2D([], [], ls="", marker=_class_style(c)[1], color=_class_style(c)[0], label=class_names[c])
              for c in sorted(present)]
    fig.legend(handles=legend, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False,
               ncol=1 + len(legend) // 25, title="class")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
