"""Where files live: every path is configurable by a CLI flag or an environment variable.

Resolution order for each setting: explicit argument (a CLI flag) > environment variable >
default. Nothing here points at a developer-machine location such as ``../shared``.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_ARTIFACTS = "CIFAR_CORE_ARTIFACTS"  # root holding runs/ (default ./artifacts)
ENV_DATA = "CIFAR_CORE_DATA"  # CIFAR-100 archive/folder or an image-folder data set
ENV_BACKBONE_WEIGHTS = "CIFAR_CORE_BACKBONE_WEIGHTS"  # local MobileNet weights file
ENV_CACHE = "CIFAR_CORE_CACHE"  # decoded data sets and cached backbone features
ENV_KERAS_HOME = "KERAS_HOME"  # Keras's own cache root (datasets/ lives below it)
# The Chromium that draws the PDF and slide charts (default: chromium, chromium-browser or
# google-chrome on PATH: cifar_core.reports.render.find_browser)
ENV_CHROMIUM = "CIFAR_CORE_CHROMIUM"
# Model 7's cached trials: "float32" or "mixed_bfloat16" (default: bfloat16 where the CPU has
# native bfloat16 matrix units, see cifar_core.search.trials.head_precision)
ENV_HEAD_PRECISION = "CIFAR_CORE_HEAD_PRECISION"
# Model 8's fine-tuned upper base: the same choice (cifar_core.models.builder.finetune_precision)
ENV_FINETUNE_PRECISION = "CIFAR_CORE_FINETUNE_PRECISION"


# Data sources that name the official CIFAR-100 (from the Keras cache, else its download)
# rather than a path.
CIFAR100_NAMES = ("cifar100", "cifar-100")


def names_cifar100(source: str | os.PathLike | None) -> bool:
    """True when a data source means the official CIFAR-100: unset, or one of its names."""
    return source is None or str(source).lower() in CIFAR100_NAMES


def artifacts_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Root folder of the run folders (``<root>/runs/<run_id>``)."""
    value = explicit or os.environ.get(ENV_ARTIFACTS) or "artifacts"
    return Path(value).expanduser().resolve()


def data_source(explicit: str | os.PathLike | None = None) -> str | None:
    """The data set the user asked for, or None for 'CIFAR-100 from cache or download'."""
    value = explicit or os.environ.get(ENV_DATA)
    return str(value) if value else None


def backbone_weights(explicit: str | os.PathLike | None = None) -> str:
    """MobileNet weights: a local file path, or ``"imagenet"`` (the Keras download)."""
    return str(explicit or os.environ.get(ENV_BACKBONE_WEIGHTS) or "imagenet")


def browser_path(explicit: str | os.PathLike | None = None) -> str | None:
    """The Chromium the user named (a flag, else ``CIFAR_CORE_CHROMIUM``), or None: search."""
    value = explicit or os.environ.get(ENV_CHROMIUM)
    return str(value) if value else None


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Folder for derived, re-computable files (decoded images, backbone features)."""
    value = explicit or os.environ.get(ENV_CACHE)
    if value:
        return Path(value).expanduser().resolve()
    return Path("~/.cache/cifar_core").expanduser()


def keras_datasets_dir() -> Path:
    """The Keras dataset cache, honouring ``KERAS_HOME`` like Keras does."""
    home = os.environ.get(ENV_KERAS_HOME) or os.path.join("~", ".keras")
    return Path(home).expanduser() / "datasets"
