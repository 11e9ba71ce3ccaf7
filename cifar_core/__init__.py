"""cifar_core: train, compare and explain CIFAR-100 image classifiers.

Where things live:

- ``cifar_core.data``      loading CIFAR-100 archives and image folders, the split, image decoding
- ``cifar_core.models``    the declarative model specs (1-8) and the one builder
- ``cifar_core.features``  the cache of frozen-backbone features and the inputs drawn from it
- ``cifar_core.training``  one ``train()`` and one ``evaluate()`` for every model
- ``cifar_core.pipeline``  one run end to end into a run folder
- ``cifar_core.runs``      run folders: the versioned on-disk contract read by CLI and app
- ``cifar_core.search``    the model-7 hyperparameter search (keras-tuner)
- ``cifar_core.jobs``      training jobs as separate OS processes, queued one at a time
- ``cifar_core.analysis``  what the dashboard computes from run folders
- ``cifar_core.charts``    plotly figure builders used by the dashboard
- ``cifar_core.reports``   the self-contained HTML report
- ``cifar_core.cli``       the ``cifar-core`` command line

Lower packages never import higher ones (``lint-imports`` checks the layers).
"""

__version__ = "0.1.0"
