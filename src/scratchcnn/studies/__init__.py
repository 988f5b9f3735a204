"""Studies: many training runs over a search space, on Ray Tune, and classical baselines.

- :mod:`~scratchcnn.studies.spec`: the study file (a base config and a search space), checked.
- :mod:`~scratchcnn.studies.sweep`: runs a study on Ray Tune, locally or on a cluster.
- :mod:`~scratchcnn.studies.trial`: one trial, as it runs inside a Ray worker.
- :mod:`~scratchcnn.studies.results` and :mod:`~scratchcnn.studies.summary`: the results table,
  figure and report of a study folder, rebuilt from the trials' own records.
- :mod:`~scratchcnn.studies.baselines`: classical machine learning on the trainer's split.

Ray, Optuna and scikit-learn are imported only by the functions that need them
(``pip install 'scratchcnn[sweep]'`` / ``'scratchcnn[baselines]'``).
"""

from scratchcnn.studies.spec import SearchParameter, Study, load_study, parse_override

__all__ = ["SearchParameter", "Study", "load_study", "parse_override"]
