"""Classify images with a run's model: used by ``cifar-core predict`` and the Classify page."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from cifar_core.errors import RunFolderError

# Registers the project's own layers (model 8's MirrorImage) with Keras: a saved model names
# them, and a process that never built a model (predict, the dashboard) must know them to load.
from cifar_core.models import builder as _project_layers  # noqa: F401
from cifar_core.models.float32 import inference_copy
from cifar_core.runs.store import MODEL_FILE, load_run


def load_model_safely(path: Path) -> keras.Model:
    """Load ``model.keras`` with Keras safe mode on: a model carrying code is refused."""
    if Path(path).is_symlink():
        raise RunFolderError(f"{path}: a link; refused (it could point outside the run)")
    if not Path(path).is_file():
        raise RunFolderError(f"{path}: missing; this run has no saved model")
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "lambda" in str(exc).lower():
            raise RunFolderError(f"{path}: refused, the model contains code (a Lambda layer); "
                                 "it is not loaded with safe mode on") from None
        raise RunFolderError(f"{path}: not a loadable Keras model ({exc})") from None
    except Exception as exc:
        raise RunFolderError(f"{path}: not a loadable Keras model "
                             f"({type(exc).__name__}: {exc})") from None


@dataclass
class Prediction:
    classes: list[str]  # top-k class names, best first
    probabilities: list[float]
    superclass: str | None  # superclass of the top class (None without superclasses)
    indices: list[int]


class Classifier:
    """A run's model with its class names; ``predict`` takes 32x32x3 uint8 arrays."""

    def __init__(self, run_dir: Path):
        record = load_run(run_dir)
        if record.status != "completed" or record.metrics is None:
            raise RunFolderError(f"run {record.run_id} is {record.status}, not completed; "
                                 "only completed runs can classify images")
        self.run_id = record.run_id
        self.class_names: list[str] = record.metrics["class_names"]
        self.superclass_names: list[str] | None = record.metrics.get("superclass_names")
        self.output_to_superclass = record.metrics.get("output_to_superclass")
        # float32 throughout, as evaluate() measured it (cifar_core.models.float32)
        self.model = inference_copy(load_model_safely(run_dir / MODEL_FILE))
        outputs = self.model.output_shape[-1]
        if outputs != len(self.class_names):
            raise RunFolderError(f"{run_dir}: model has {outputs} outputs but metrics.json "
                                 f"names {len(self.class_names)} classes")

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=np.uint8)
        if images.ndim == 3:
            images = images[None]
        return np.asarray(self.model(images.astype(np.float32), training=False))

    def predict(self, images: np.ndarray, top: int = 5) -> list[Prediction]:
        probs = self.probabilities(images)
        top = max(1, min(top, probs.shape[1]))
        results = []
        for row in probs:
            order = np.argsort(-row)[:top]
            superclass = None
            if self.output_to_superclass is not None and self.superclass_names:
                superclass = self.superclass_names[self.output_to_superclass[int(order[0])]]
            results.append(Prediction(classes=[self.class_names[i] for i in order],
                                      probabilities=[float(row[i]) for i in order],
                                      superclass=superclass, indices=[int(i) for i in order]))
        return results
