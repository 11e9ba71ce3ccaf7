"""Run an exported model with its own runtime: ``ai-edge-litert`` for LiteRT files,
``onnxruntime`` for ONNX, ``tf.saved_model.load`` for SavedModel folders.

Every runtime takes what ``model.keras`` takes: raw 32x32 RGB images (values 0-255), and
answers class probabilities; the scaling, upsampling and test-time flips are inside the
exported graph.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from cifar_core.errors import ConfigError

RUNTIMES = ("keras", "litert", "onnx", "saved_model")


def _missing(package: str, extra: str = "export") -> ConfigError:
    return ConfigError(f"this runtime needs the {package} package: pip install "
                       f"'cifar-core[{extra}]' (or pip install {package})")


def as_batch(images: np.ndarray) -> np.ndarray:
    """One image (32x32x3) or a batch of them, as a float32 batch."""
    images = np.asarray(images, dtype=np.float32)
    return images[None] if images.ndim == 3 else images


class LiteRTRuntime:
    """A ``.tflite`` file in LiteRT's interpreter, resized to each batch.

    One interpreter holds one set of input and output buffers, so calls are
    serialised: the dashboard caches a runtime per process and several browser
    sessions (Streamlit threads) call it at once. Without the lock, one thread's
    ``allocate_tensors`` while another holds an output view raises "There is at
    least 1 reference to internal data in the interpreter" (seen with 8 sessions
    in ``benchmarks/concurrent_sessions.py``), and a resize between another
    thread's ``set_tensor`` and ``invoke`` would answer for the wrong batch.
    """

    name = "litert"

    def __init__(self, path: Path):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise _missing("ai-edge-litert") from None
        self.interpreter = Interpreter(model_path=str(path), num_threads=None)
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self._batch = None
        self._lock = threading.Lock()

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        images = as_batch(images)
        with self._lock:
            if self._batch != len(images):
                self.interpreter.resize_tensor_input(self._input["index"], images.shape)
                self.interpreter.allocate_tensors()
                self._batch = len(images)
            self.interpreter.set_tensor(self._input["index"], images)
            self.interpreter.invoke()
            # A copy, made inside the lock: the tensor is the interpreter's own buffer.
            return np.array(self.interpreter.get_tensor(self._output["index"]), dtype=np.float32)


class OnnxRuntime:
    """An ``.onnx`` file in an ONNX Runtime CPU session."""

    name = "onnx"

    def __init__(self, path: Path):
        try:
            import onnxruntime
        except ImportError:
            raise _missing("onnxruntime") from None
        self.session = onnxruntime.InferenceSession(str(path),
                                                    providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        images = as_batch(images)
        return np.asarray(self.session.run(None, {self._input: images})[0], dtype=np.float32)


class SavedModelRuntime:
    """A SavedModel folder, called through its ``serve`` endpoint."""

    name = "saved_model"

    def __init__(self, path: Path):
        import tensorflow as tf

        self.loaded = tf.saved_model.load(str(path))

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        images = as_batch(images)
        return np.asarray(self.loaded.serve(images), dtype=np.float32)


def open_runtime(path: Path, export_format: str):
    """The runtime for an export file of ``export_format``."""
    kinds = {"litert": LiteRTRuntime, "onnx": OnnxRuntime, "saved_model": SavedModelRuntime}
    if export_format not in kinds:
        raise ConfigError(f"unknown export format {export_format!r}: choose one of "
                          f"{', '.join(kinds)}")
    return kinds[export_format](Path(path))


def batched_probabilities(runtime, images: np.ndarray, batch_size: int = 256,
                          on_batch=None) -> np.ndarray:
    """``runtime`` over ``images`` in batches; ``on_batch(done, total)`` after each."""
    total = max(1, -(-len(images) // batch_size))
    parts = []
    for step, start in enumerate(range(0, len(images), batch_size), start=1):
        parts.append(runtime.probabilities(images[start:start + batch_size]))
        if on_batch:
            on_batch(step, total)
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
