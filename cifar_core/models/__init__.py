"""Models: declarative specs (``specs``) and the one builder (``builder``)."""

from cifar_core.models.specs import REPORT_RESULTS, SPECS, ModelSpec, get_spec

__all__ = ["REPORT_RESULTS", "SPECS", "ModelSpec", "get_spec"]
