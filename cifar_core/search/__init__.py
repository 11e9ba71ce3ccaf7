"""Model 7: the report's two-stage hyperparameter search with keras-tuner.

- ``space``: what is searched and how stage 1's best trials define stage 2's grid (no training);
- ``tuners``: keras-tuner's oracles (random, then grid) and a tuner whose trial is k-fold
  cross-validation;
- ``trials``: running one trial, in ``cached`` mode (the head on cached frozen-base features)
  or ``full`` mode (the whole network fine-tuned, as the report did);
- ``state``: ``search.json`` and ``trials.csv`` in the run folder;
- ``distributed``: keras-tuner's chief/worker mode over gRPC;
- ``run``: the two stages end to end (``run_model7_search``), and ``run_worker``.
"""

from cifar_core.search.run import (
    resolve_search_mode,
    run_model7_search,
    run_worker,
    search_summary,
)

__all__ = ["resolve_search_mode", "run_model7_search", "run_worker", "search_summary"]
