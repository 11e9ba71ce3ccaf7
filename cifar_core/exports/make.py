"""One export of one run: convert, check parity on the whole test set, record it.

Order matters for "nothing saved is lost": every check (format, quantization, manifest, the
model, the data) runs before anything is written; the file is converted into a staging name
inside ``exports/``, checked there, and only then moved to its own name and entered in the
manifest. An existing export of the same name is replaced only when asked (``replace``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cifar_core.analysis.images import load_predictions, run_dataset
from cifar_core.data.dataset import stratified_split
from cifar_core.errors import ConfigError, RunFolderError
from cifar_core.exports.convert import (
    REPRESENTATIVE_IMAGES,
    check_choice,
    export_name,
    file_name,
    write_export,
)
from cifar_core.exports.manifest import (
    checked_path,
    content_bytes,
    content_sha256,
    exports_folder,
    read_manifest,
    write_entry,
)
from cifar_core.exports.parity import parity
from cifar_core.exports.runtimes import batched_probabilities, open_runtime
from cifar_core.inference import Classifier, load_model_safely
from cifar_core.runs.provenance import git_commit, package_versions
from cifar_core.runs.store import MODEL_FILE, load_run, now_iso

EXPORT_PACKAGES = ("tensorflow", "keras", "ai-edge-litert", "onnxruntime", "tf2onnx", "onnx")
# Which passing export answers for a runtime, the most faithful first.
PREFERENCE = {"litert": ("litert", "litert-float16", "litert-int8"), "onnx": ("onnx",),
              "saved_model": ("saved_model",)}


def representative_images(dataset, record, count: int = REPRESENTATIVE_IMAGES) -> np.ndarray:
    """``count`` images of the run's own training split (its validation share left out),
    drawn with the run's seed: int8 calibration never sees a test image."""
    config = record.config or {}
    seed = int(config.get("seed") or 0)
    fraction = (config.get("hyperparameters") or {}).get("validation_fraction") or 0.2
    split = stratified_split(dataset.y_train, seed=seed, validation_fraction=fraction)
    chosen = np.random.default_rng(seed).choice(split.train_idx,
                                                size=min(count, len(split.train_idx)),
                                                replace=False)
    return dataset.x_train[np.sort(chosen)]


def export_run(run_dir: str | Path, export_format: str, quantization: str = "none", *,
               data: str | None = None, replace: bool = False,
               log: Callable[[str], None] = print,
               on_batch: Callable[[int, int], None] | None = None) -> dict:
    """Export the run's model, check it on the test set, and return its manifest entry."""
    check_choice(export_format, quantization)
    run_dir = Path(run_dir)
    record = load_run(run_dir)
    if record.status != "completed" or record.metrics is None:
        raise RunFolderError(f"run {record.run_id} is {record.status}, not completed: only a "
                             "completed run's model can be exported")
    name = export_name(export_format, quantization)
    manifest = read_manifest(run_dir)  # a manifest of a newer schema stops everything here
    folder = exports_folder(run_dir)
    target = folder / file_name(export_format, quantization)
    if (name in manifest["exports"] or target.exists()) and not replace:
        raise ConfigError(f"run {record.run_id} already has the {name} export ({target}); "
                          "pass --replace to export it again")
    model = load_model_safely(run_dir / MODEL_FILE)
    dataset = run_dataset(record, fallback_source=data)
    recorded = load_predictions(run_dir)
    if len(dataset.x_test) != len(recorded["y_true"]):
        raise RunFolderError(f"run {record.run_id}: {len(recorded['y_true'])} recorded "
                             f"predictions for {len(dataset.x_test)} test images")
    representative = (representative_images(dataset, record) if quantization == "int8"
                      else None)

    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{name}-", dir=folder))
    try:
        log(f"converting run {record.run_id} to {name}…")
        staged = write_export(model, staging / target.name, export_format, quantization,
                              representative)
        log(f"checking {name} on {len(dataset.x_test):,} test images…")
        runtime = open_runtime(staged, export_format)
        figures = parity(batched_probabilities(runtime, dataset.x_test, on_batch=on_batch),
                         recorded, quantization)
        del runtime  # release the file before it moves
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(staged, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    commit = git_commit()
    entry = {
        "file": target.name, "format": export_format, "quantization": quantization,
        "bytes": content_bytes(target), "sha256": content_sha256(target),
        "input": {"name": "image", "shape": [None, *model.input_shape[1:]], "dtype": "float32",
                  "values": "raw RGB, 0-255"},
        "output": {"shape": [None, int(model.output_shape[-1])], "dtype": "float32",
                   "values": "class probabilities"},
        "representative_images": None if representative is None else len(representative),
        "code": {"commit": commit.get("commit"), "dirty": commit.get("dirty"),
                 "packages": package_versions(EXPORT_PACKAGES)},
        "created_at": now_iso(),
        "parity": figures,
    }
    write_entry(run_dir, name, entry)
    return entry


class ExportClassifier(Classifier):
    """``Classifier`` answering with one of the run's exports instead of Keras: the same
    classes, the same ``predict``. Refuses an export that failed parity or was changed."""

    def __init__(self, run_dir: str | Path, runtime: str, export: str | None = None):
        run_dir = Path(run_dir)
        record = load_run(run_dir)
        if record.status != "completed" or record.metrics is None:
            raise RunFolderError(f"run {record.run_id} is {record.status}, not completed")
        entries = read_manifest(run_dir)["exports"]
        if runtime not in PREFERENCE:
            raise ConfigError(f"unknown runtime {runtime!r}: choose keras, "
                              f"{', '.join(PREFERENCE)}")
        candidates = [export] if export else [n for n in PREFERENCE[runtime] if n in entries]
        if not candidates:
            raise RunFolderError(f"run {record.run_id} has no {runtime} export: make one with "
                                 f"cifar-core export --run {record.run_id} --format {runtime}")
        refused = []
        for name in candidates:
            entry = entries.get(name)
            if entry is None:
                refused.append(f"{name}: no such export")
            elif not entry.get("parity", {}).get("passed"):
                refused.append(f"{name} failed its parity check ("
                               + "; ".join(entry.get("parity", {}).get("failures", []))
                               + ")")
            else:
                self.export_name = name
                self.export_entry = entry
                path = checked_path(run_dir, name, entry)
                break
        else:
            raise RunFolderError(f"run {record.run_id}: no usable {runtime} export: "
                                 + "; ".join(refused))
        self.run_id = record.run_id
        self.class_names = record.metrics["class_names"]
        self.superclass_names = record.metrics.get("superclass_names")
        self.output_to_superclass = record.metrics.get("output_to_superclass")
        self.runtime = open_runtime(path, entry["format"])
        self.runtime_name = runtime

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        # uint8 first, as Classifier does: the same values whatever type the caller passes
        return self.runtime.probabilities(np.asarray(images, dtype=np.uint8))
