"""ImageNet backbones (MobileNet v1/v2) with configurable weights.

``weights`` is ``"imagenet"`` (the Keras download), a local ``.weights.h5`` file
(``--backbone-weights`` / ``CIFAR_CORE_BACKBONE_WEIGHTS``), or None for random init (tests).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import keras

from cifar_core import settings
from cifar_core.errors import BackboneWeightsError, ConfigError

BACKBONES = {
    "mobilenet_v1": keras.applications.MobileNet,
    "mobilenet_v2": keras.applications.MobileNetV2,
}


def resolve_weights(weights: str | None) -> str | None:
    """None/"none" -> random init; "imagenet" stays; anything else must be an existing file."""
    if weights is None or str(weights).lower() in ("none", "random"):
        return None
    if weights == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise BackboneWeightsError(
            f"backbone weights file not found: {path}. Pass --backbone-weights PATH or set "
            f"{settings.ENV_BACKBONE_WEIGHTS} to a Keras .weights.h5 file of MobileNet "
            "without its classifier (include_top=False)."
        )
    return str(path.resolve())


def weights_identity(weights: str | None) -> dict:
    """What config.json and cache keys record about the weights: name and content hash."""
    resolved = resolve_weights(weights)
    if resolved in (None, "imagenet"):
        return {"weights": resolved, "sha256": None}
    digest = hashlib.sha256(Path(resolved).read_bytes()).hexdigest()
    return {"weights": resolved, "sha256": digest}


def make_backbone(name: str, *, input_size: int, weights: str | None,
                  alpha: float = 1.0) -> keras.Model:
    """The backbone without its classifier, for ``input_size`` x ``input_size`` RGB inputs."""
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    if input_size < 32:
        raise ConfigError(f"backbone input size must be at least 32, got {input_size}")
    resolved = resolve_weights(weights)
    try:
        return BACKBONES[name](input_shape=(input_size, input_size, 3), alpha=alpha,
                               include_top=False, weights=resolved)
    except Exception as exc:
        if resolved == "imagenet":
            raise BackboneWeightsError(
                f"could not download the ImageNet weights for {name} ({type(exc).__name__}: "
                f"{exc}). Without network access, point at a local weights file with "
                f"--backbone-weights PATH or {settings.ENV_BACKBONE_WEIGHTS}=PATH."
            ) from None
        raise BackboneWeightsError(f"could not load backbone weights {resolved} into {name}: "
                                   f"{type(exc).__name__}: {exc}") from None
