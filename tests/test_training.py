"""train(), evaluate() and the run pipeline on tiny data."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

from cifar_core import pipeline
from cifar_core.data import load_dataset
from cifar_core.errors import ConfigError
from cifar_core.pipeline import execute_run
from cifar_core.runs.store import load_run, read_history
from cifar_core.training.config import make_config
from cifar_core.training.evaluate import evaluate, top_k_accuracy
from cifar_core.training.train import train


@pytest.fixture(scope="module")
def tiny(tiny_cifar100):
    return load_dataset(tiny_cifar100)


@pytest.mark.slow  # trains
def test_same_seed_gives_identical_metrics(tmp_path, tiny):
    # Model 5 exercises every random part: init, shuffling, dropout and flips.
    config = make_config(5, profile="quick", epochs=2, batch_size=50, seed=3)
    first = execute_run(config, dataset=tiny, artifacts=str(tmp_path), log=lambda _: None)
    second = execute_run(config, dataset=tiny, artifacts=str(tmp_path), log=lambda _: None)
    assert first.path != second.path
    a = json.loads((first.path / "metrics.json").read_text())
    b = json.loads((second.path / "metrics.json").read_text())
    assert a["test_top1"] == b["test_top1"] and a["confusion"] == b["confusion"]
    losses_a = [r["loss"] for r in read_history(first.path)]
    losses_b = [r["loss"] for r in read_history(second.path)]
    assert losses_a == losses_b
    other = execute_run(make_config(5, profile="quick", epochs=2, batch_size=50, seed=4),
                        dataset=tiny, artifacts=str(tmp_path), log=lambda _: None)
    assert [r["loss"] for r in read_history(other.path)] != losses_a


@pytest.mark.slow  # trains
def test_run_folder_is_complete_and_reads_back(tmp_path, tiny):
    writer = execute_run(make_config(2, profile="quick", epochs=2, batch_size=64), dataset=tiny,
                         artifacts=str(tmp_path), log=lambda _: None)
    record = load_run(writer.path)
    assert record.status == "completed" and record.problems == []
    assert record.config["model"]["hidden_units"] == [128]
    assert record.config["dataset"]["sha256"] == tiny.content_hash
    assert record.config["environment"]["packages"]["tensorflow"]
    assert record.config["seed"] == 42
    metrics = record.metrics
    assert 0 <= metrics["test_top1"] <= metrics["test_top5"] <= 1
    assert metrics["test_superclass_top1"] >= metrics["test_top1"]
    assert len(metrics["per_class"]) == 100 and np.array(metrics["confusion"]).shape == (100, 100)
    assert np.array(metrics["confusion"]).sum() == 200
    assert np.array(metrics["confusion_superclass"]).shape == (20, 20)
    assert metrics["training"]["epochs_run"] == 2
    with np.load(writer.path / "predictions.npz") as npz:
        assert npz["top_classes"].shape == (200, 5) and npz["probs"].shape == (200, 100)
        assert (np.diff(npz["top_probs"], axis=1) <= 1e-6).all()
    assert [row["epoch"] for row in read_history(writer.path)] == [1.0, 2.0]
    # TensorBoard's copy of the run (cifar_core.runs.tensorboard; read back in
    # tests/test_tensorboard_mlflow.py).
    assert list((writer.path / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow  # trains
def test_coarse_labels_train_a_20_way_model(tmp_path, tiny):
    writer = execute_run(make_config(1, labels="coarse", profile="quick", epochs=1),
                         dataset=tiny, artifacts=str(tmp_path), log=lambda _: None)
    metrics = load_run(writer.path).metrics
    assert len(metrics["class_names"]) == 20 and metrics["label_set"] == "coarse"
    assert metrics["test_superclass_top1"] == metrics["test_top1"]


@pytest.mark.slow  # trains
def test_early_stopping_restores_the_best_epoch(tiny):
    config = make_config(1, profile="quick", epochs=40, batch_size=100, patience=1,
                         learning_rate=0.5)  # a huge rate makes val_loss rise quickly
    result = train(config, tiny)
    assert result.epochs_run < 40
    assert result.best_epoch == result.epochs_run - 1
    assert result.images_per_second > 0


def test_top_k_accuracy():
    probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2], [0.2, 0.5, 0.3]])
    y = np.array([2, 1, 0])
    assert top_k_accuracy(probs, y, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(probs, y, 2) == pytest.approx(2 / 3)
    assert top_k_accuracy(probs, y, 5) == 1.0


def test_evaluate_maps_fine_predictions_to_superclasses(tiny):
    class Oracle:
        """Predicts the true class's neighbour in the same superclass (fine wrong, super right)."""

        def predict(self, images, batch_size=None, verbose=0):
            fine = tiny.y_test
            wrong = (fine + 20) % 100  # same superclass: fine_to_coarse = index % 20
            probs = np.full((len(images), 100), 1e-4, dtype=np.float32)
            probs[np.arange(len(images)), wrong] = 1.0
            return probs

    metrics = evaluate(Oracle(), tiny).metrics
    assert metrics["test_top1"] == 0.0 and metrics["test_superclass_top1"] == 1.0


@pytest.mark.parametrize(("overrides", "message"), [
    ({"epochs": 0}, "epochs"), ({"batch_size": -1}, "batch-size"),
    ({"learning_rate": 0}, "learning rate"), ({"labels": "medium"}, "label set"),
])
def test_out_of_range_values_are_refused_up_front(overrides, message):
    labels = overrides.pop("labels", "fine")
    with pytest.raises(ConfigError, match=message):
        make_config(1, labels=labels, **overrides)


def test_batch_larger_than_the_data_is_refused_before_training(tiny):
    with pytest.raises(ConfigError, match="larger than the 400 training images"):
        train(make_config(1, batch_size=401, epochs=1), tiny)


def test_freeze_base_only_for_backbone_models():
    with pytest.raises(ConfigError, match="freeze-base"):
        make_config(3, freeze_base=True)


def test_learning_rate_follows_what_trains():
    assert make_config(5).learning_rate == 1e-3
    assert make_config(6).learning_rate == 1e-4  # fine-tuning the pretrained base
    assert make_config(6, freeze_base=True).learning_rate == 1e-3  # only the head trains
    assert make_config(6, freeze_base=True, learning_rate=5e-4).learning_rate == 5e-4


class _SignalsItselfWhenDeleted:
    """SIGTERM raised inside a finalizer, as it can be inside TensorFlow's: Python only prints
    the handler's exception there ("Exception ignored in ..."), and the code goes on."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # expected
def test_a_stop_whose_exception_got_lost_ends_the_run_at_the_next_step(tmp_path, tiny,
                                                                       monkeypatch):
    steps = []

    def training_that_loses_the_signal(config, dataset, *, on_batch, **_):
        _SignalsItselfWhenDeleted()  # deleted at once: the stop's exception is swallowed
        steps.append(1)
        on_batch(1, 10)
        steps.append(2)  # not reached
        raise AssertionError("training went on after the stop")

    monkeypatch.setattr(pipeline, "train", training_that_loses_the_signal)
    with pytest.raises(pipeline.RunStopped) as stopped:
        execute_run(make_config(1, profile="quick", epochs=3), dataset=tiny,
                    artifacts=str(tmp_path), log=lambda _: None)
    assert steps == [1]
    # One plain line says where; the record, the same for the run's card.
    assert str(stopped.value) == "Stopped by the user at epoch 1 of 3"
    assert stopped.value.__traceback__ is not None and stopped.value.__cause__ is None
    [run] = (tmp_path / "runs").iterdir()
    record = load_run(run)
    assert record.status == "stopped" and record.run["error"] == "stopped at epoch 1 of 3"


def test_a_stop_wrapped_in_another_error_is_still_recorded_as_stopped(tmp_path, tiny,
                                                                      monkeypatch):
    def training_that_wraps_the_stop(config, dataset, **_):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except pipeline.RunStopped as exc:  # as a library converting errors would
            raise RuntimeError("iterator failed") from exc

    monkeypatch.setattr(pipeline, "train", training_that_wraps_the_stop)
    lines = []
    with pytest.raises(pipeline.RunStopped) as stopped:  # a stop, whatever carried it out
        execute_run(make_config(1, profile="quick", epochs=1), dataset=tiny,
                    artifacts=str(tmp_path), log=lines.append)
    assert isinstance(stopped.value.__cause__, RuntimeError)
    assert lines[-1] == "(the stop ended the run with RuntimeError: iterator failed)"
    [run] = (tmp_path / "runs").iterdir()
    record = load_run(run)
    assert record.status == "stopped" and record.run["error"] == "stopped at epoch 1 of 1"
    # The next run starts with no stop pending, and its failures are failures again.
    monkeypatch.setattr(pipeline, "train", lambda *a, **k: (_ for _ in ()).throw(
        RuntimeError("a real failure")))
    with pytest.raises(RuntimeError):
        execute_run(make_config(1, profile="quick", epochs=1), dataset=tiny,
                    artifacts=str(tmp_path / "second"), log=lambda _: None)
    [second] = (tmp_path / "second" / "runs").iterdir()
    assert load_run(second).status == "failed"


@pytest.mark.slow  # trains
def test_every_phase_of_a_run_reports_its_count(tmp_path, tiny, monkeypatch):
    """Training batches and the test set's batches go through report_phase, done of total."""
    reports = []
    real = pipeline.RunWriter.report_phase

    def recording(self, phase, done, total, **kwargs):
        reports.append((phase, done, total, kwargs.get("unit")))
        return real(self, phase, done, total, **kwargs)

    monkeypatch.setattr(pipeline.RunWriter, "report_phase", recording)
    writer = execute_run(make_config(1, profile="quick", epochs=2, batch_size=80),
                         dataset=tiny, artifacts=str(tmp_path), log=lambda _: None)
    training = [r for r in reports if r[0] == "training"]
    steps = training[0][2]
    assert steps == 5  # 400 training images (500 less the 20% held out) in batches of 80
    assert [done for _, done, _, _ in training] == [1, 2, 3, 4, 5, 0] * 2  # 0: epoch ended
    assert {unit for *_, unit in training} == {"batches"}
    evaluating = [r for r in reports if r[0] == "evaluating"]
    assert evaluating and evaluating[-1][1] == evaluating[-1][2]  # the test set, to its end
    progress = load_run(writer.path).run["progress"]
    assert progress["phase"] == "done" and "done" not in progress  # no stale count


def test_evaluate_measures_the_float32_model_that_predict_and_the_exports_answer_with(tiny):
    import keras

    from cifar_core.models.float32 import inference_copy

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    x = keras.layers.Dense(64, activation="relu", dtype="mixed_bfloat16")(x)
    outputs = keras.layers.Dense(100, activation="softmax", name="classifier")(x)
    model = keras.Model(inputs, outputs)  # a bfloat16 block, as model 8's fine-tuned base
    recorded = evaluate(model, tiny).predictions["top_probs"]
    float32 = np.sort(inference_copy(model).predict(tiny.x_test, verbose=0), axis=1)[:, ::-1]
    bfloat16 = np.sort(model.predict(tiny.x_test, verbose=0), axis=1)[:, ::-1]
    np.testing.assert_allclose(recorded, float32[:, :recorded.shape[1]], atol=1e-6)
    assert np.abs(recorded - bfloat16[:, :recorded.shape[1]]).max() > 1e-5


def test_evaluation_reports_its_batches(tiny):
    from cifar_core.models.builder import build_model
    from cifar_core.training.evaluate import predict_probabilities

    model = build_model(make_config(1).spec, 100)
    calls = []
    probs = predict_probabilities(model, tiny.x_test[:130], batch_size=50,
                                  on_batch=lambda done, total: calls.append((done, total)))
    assert probs.shape == (130, 100) and calls == [(1, 3), (2, 3), (3, 3)]
