"""Figures from arrays and run directories: the only part of hacm that imports plotting libraries.

Light by design: submodules are imported on first use, so `import hacm.viz` does not pull in
plotly, matplotlib, torch or ipywidgets.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "save_figure": "export", "close_exporter": "export", "png_export_available": "export",
    "skeleton_figure": "skeleton", "classes_gallery": "skeleton",
    "disk_layout": "poincare", "pca_basis": "poincare", "geodesic_arc": "poincare", "disk_dist0": "poincare",
    "poincare_disk_figure": "poincare",
    "TokenPanel": "tokens", "token_grid_figure": "tokens",
    "length_histogram_figure": "training", "loss_lr_figure": "training", "accuracy_figure": "training",
    "per_class_accuracy": "training", "per_class_accuracy_figure": "training",
    "confusion_matrix_figure": "training", "confusion_difference_figure": "training",
    "most_confused_pairs": "training", "ablation_table": "training", "Table": "training",
    "tau_curve_figure": "training", "reconstruction_figure": "training",
    "MaskExplorer": "explorer", "ExplorerParams": "explorer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"hacm.viz.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'hacm.viz' has no attribute {name!r}")
