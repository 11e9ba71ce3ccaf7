"""The frozen part of a MobileNet base, computed once and cached: the data side of training on
features (the training itself is ``cifar_core.training.on_features``).

A frozen base in inference mode is a fixed function of its input. When the only augmentation
is random flips, the inputs it can ever see are the four flip variants of each image (identity,
horizontal, vertical, both), so its outputs can be computed once and stored; likewise the
output maps of the frozen lower part of a base fine-tuned only above a layer (model 8). A spec
without vertical flips needs two variants only (identity, horizontal).

- ``graph``    which specs can use the cache, and a built model cut into the frozen part and
               the part above it
- ``cache``    the keyed, atomic on-disk cache of the frozen part's outputs
- ``augment``  the seeded draws (order, flips, shifts, cut-outs) and their application to
               images and cached maps
- ``sources``  the training inputs of a run: from the cache, or computed on the fly

Nothing here trains, and nothing here imports ``cifar_core.training``.
"""

from cifar_core.features.augment import (
    FLIP_VARIANTS,
    FlipSampler,
    cut_out,
    flip_images,
    flip_variants,
    translate,
)
from cifar_core.features.cache import (
    FeatureCache,
    cache_key,
    cache_name,
    features_root,
    load_or_build_features,
    weights_sha256,
)
from cifar_core.features.graph import (
    base_layer,
    cut_layer,
    feature_extractor,
    head_model,
    trunk_input,
    trunk_model,
    uses_frozen_features,
)
from cifar_core.features.sources import CachedSource, FlipBatches, ImageSource

__all__ = [
    "FLIP_VARIANTS", "CachedSource", "FeatureCache", "FlipBatches", "FlipSampler", "ImageSource",
    "base_layer",
    "cache_key", "cache_name", "cut_layer", "cut_out", "feature_extractor", "features_root",
    "flip_images", "flip_variants", "head_model", "load_or_build_features",
    "translate", "trunk_input", "trunk_model", "uses_frozen_features", "weights_sha256",
]
