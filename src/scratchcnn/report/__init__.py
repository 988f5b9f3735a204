"""Self-contained HTML reports: one about a training run, one about a study of many runs.

``build_report`` writes a run's page (config, architecture, curves, test metrics and every
picture of :mod:`scratchcnn.viz`, PNGs embedded as base64); ``build_study_report`` writes a
study folder's page (the results table linking each trial's run folder, the summary figure,
every trial's curves). Each page is a list of sections, each built by one small function:
:mod:`scratchcnn.report.run` and :mod:`scratchcnn.report.study`.

The test set is classified once; every metric and plot reuses those probabilities. Optional run
files are shown when present: ``grad_norms.jsonl`` (gradient flow) and ``lr_finder.json`` (the
learning-rate range test, as written by ``scratchcnn visualize lr-finder --run``).
"""

from scratchcnn.report.loading import LoadedModel, load_checkpoint, load_test_images, run_checkpoint
from scratchcnn.report.run import build_report
from scratchcnn.report.study import build_study_report

__all__ = [
    "LoadedModel",
    "build_report",
    "build_study_report",
    "load_checkpoint",
    "load_test_images",
    "run_checkpoint",
]
