"""Write a trained Keras model as LiteRT, ONNX or SavedModel with the ecosystem's converters.

All three go through Keras 3's ``Model.export`` (LiteRT: TensorFlow's converter behind it,
with our quantization settings passed through; ONNX: tf2onnx behind it). The exported graph
takes the raw 32x32 RGB images ``model.keras`` takes: scaling, upsampling and test-time flips
are layers of the model and export with it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import keras
import numpy as np

from cifar_core.errors import ConfigError
from cifar_core.models.float32 import inference_copy

FORMATS = {"litert": ".tflite", "onnx": ".onnx", "saved_model": ""}  # format: file suffix
QUANTIZATIONS = {"litert": ("none", "float16", "int8"), "onnx": ("none",),
                 "saved_model": ("none",)}
REPRESENTATIVE_IMAGES = 300  # int8 calibration: images of the run's own training split


def export_name(export_format: str, quantization: str = "none") -> str:
    """The manifest key and file stem of an export, e.g. ``litert-int8``."""
    check_choice(export_format, quantization)
    return export_format if quantization == "none" else f"{export_format}-{quantization}"


def file_name(export_format: str, quantization: str = "none") -> str:
    return f"model-{export_name(export_format, quantization)}{FORMATS[export_format]}"


def check_choice(export_format: str, quantization: str) -> None:
    if export_format not in FORMATS:
        raise ConfigError(f"unknown export format {export_format!r}: choose one of "
                          f"{', '.join(FORMATS)}")
    if quantization not in QUANTIZATIONS[export_format]:
        raise ConfigError(f"{export_format} exports take --quantize "
                          f"{' or '.join(QUANTIZATIONS[export_format])}, not {quantization!r}")


def _signature(model: keras.Model):
    import tensorflow as tf

    return [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="image")]


def write_export(model: keras.Model, target: Path, export_format: str,
                 quantization: str = "none",
                 representative: Iterable[np.ndarray] | None = None) -> Path:
    """Write ``model`` to ``target`` (a file, or a folder for SavedModel) in one step: into a
    temporary name beside it, then renamed, so an interrupted export leaves nothing half
    written. ``representative``: int8 calibration images (raw, 32x32x3)."""
    import tensorflow as tf

    check_choice(export_format, quantization)
    model = inference_copy(model)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        staged = scratch / (target.name if export_format != "saved_model" else "saved_model")
        if export_format == "saved_model":
            model.export(str(staged), format="tf_saved_model", verbose=False,
                         input_signature=_signature(model))
        elif export_format == "onnx":
            model.export(str(staged), format="onnx", verbose=False,
                         input_signature=_signature(model))
        else:
            options = {}
            if quantization == "float16":
                options = {"optimizations": [tf.lite.Optimize.DEFAULT],
                           "target_spec": {"supported_types": [tf.float16]}}
            elif quantization == "int8":
                if representative is None:
                    raise ConfigError("an int8 export needs representative images")
                images = [np.asarray(i, dtype=np.float32)[None] for i in representative]

                def calibration():
                    for image in images:
                        yield [image]

                # Full-integer kernels only: a layer without one fails the conversion
                # instead of silently staying float. Input and output stay float32, so the
                # file takes the same raw images and answers probabilities like the others.
                options = {"optimizations": [tf.lite.Optimize.DEFAULT],
                           "representative_dataset": calibration,
                           "target_spec": {"supported_ops": [
                               tf.lite.OpsSet.TFLITE_BUILTINS_INT8]}}
            model.export(str(staged), format="litert", verbose=False,
                         input_signature=_signature(model), **options)
        if target.is_dir():  # a folder cannot be renamed over: the old one goes first
            shutil.rmtree(target)
        os.replace(staged, target)  # a file: replaced in one step
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
