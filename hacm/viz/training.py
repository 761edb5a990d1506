"""Transitional: the notebooks still import `hacm.viz.training`; the figures now live in
hacm.viz.curves, hacm.viz.evaluation and hacm.viz.tables. Delete this module once the notebooks
import those instead."""
from hacm.viz.curves import accuracy_figure, length_histogram_figure, loss_lr_figure, reconstruction_figure
from hacm.viz.evaluation import (confusion_difference_figure, confusion_matrix_figure, method_comparison_figure,
                                 most_confused_pairs, per_class_accuracy, per_class_accuracy_figure, tau_curve_figure)
from hacm.viz.tables import Table, ablation_table

__all__ = ["Table", "ablation_table", "accuracy_figure", "confusion_difference_figure", "confusion_matrix_figure",
           "length_histogram_figure", "loss_lr_figure", "method_comparison_figure", "most_confused_pairs",
           "per_class_accuracy", "per_class_accuracy_figure", "reconstruction_figure", "tau_curve_figure"]
