"""Models are loaded with Keras safe mode on: code inside a model.keras is refused."""

from __future__ import annotations

import shutil

import keras
import pytest

from cifar_core.errors import RunFolderError
from cifar_core.inference import Classifier, load_model_safely


def test_lambda_layer_model_is_refused(tmp_path, fixture_runs):
    run = sorted((fixture_runs / "runs").iterdir())[0]
    copy = tmp_path / "runs" / run.name
    shutil.copytree(run, copy)
    marker = tmp_path / "executed"
    inputs = keras.Input((32, 32, 3))
    # The function's code (not a closure) touches the marker when it runs.
    payload = eval(f"lambda x: x if __import__('pathlib').Path({str(marker)!r}).touch() "
                   "is None else x")
    outputs = keras.layers.Lambda(payload)(inputs)
    hostile = keras.Model(inputs, keras.layers.Dense(100, activation="softmax")(
        keras.layers.Flatten()(outputs)))
    marker.unlink(missing_ok=True)
    hostile.save(copy / "model.keras")
    with pytest.raises(RunFolderError, match="contains code"):
        Classifier(copy)
    with pytest.raises(RunFolderError, match="contains code"):
        load_model_safely(copy / "model.keras")
    assert not marker.exists()


def test_garbage_model_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(RunFolderError, match="not a loadable Keras model"):
        load_model_safely(bad)
