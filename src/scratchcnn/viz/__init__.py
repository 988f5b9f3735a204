"""Plots for seeing inside a CNN and its training: the only part of scratchcnn using matplotlib.

Every function builds a matplotlib ``Figure`` (Agg, no pyplot state), saves it as a PNG when
given ``path`` (atomically) and shows it inline in a notebook when ``show=True``; it returns the
figure. matplotlib is imported when a plot is drawn, not when this package is imported.
Install it with ``pip install 'scratchcnn[viz]'``.
"""

from scratchcnn.viz._common import figure_png
from scratchcnn.viz.analysis import (
    plot_ablated_filters,
    plot_feature_clusters,
    plot_filter_ablation,
)
from scratchcnn.viz.evaluation import (
    plot_confusion_matrix,
    plot_misclassified,
    plot_reliability,
    plot_roc,
    plot_samples,
)
from scratchcnn.viz.model import (
    plot_activations,
    plot_filter_stats,
    plot_filters,
    plot_filters2,
    plot_heatmaps,
    plot_top_activations,
)
from scratchcnn.viz.studies import (
    plot_baselines,
    plot_gradient_flow_by_run,
    plot_runs,
    plot_study_summary,
)
from scratchcnn.viz.training import (
    plot_gradient_flow,
    plot_lr_finder,
    plot_training_curves,
    read_grad_norms,
    read_history,
)

__all__ = [
    "figure_png",
    "plot_ablated_filters",
    "plot_activations",
    "plot_baselines",
    "plot_confusion_matrix",
    "plot_feature_clusters",
    "plot_filter_ablation",
    "plot_filter_stats",
    "plot_filters",
    "plot_filters2",
    "plot_gradient_flow",
    "plot_gradient_flow_by_run",
    "plot_heatmaps",
    "plot_lr_finder",
    "plot_misclassified",
    "plot_reliability",
    "plot_roc",
    "plot_runs",
    "plot_samples",
    "plot_study_summary",
    "plot_top_activations",
    "plot_training_curves",
    "read_grad_norms",
    "read_history",
]
