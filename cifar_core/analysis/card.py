"""A model card per run: what the model is, the data behind it, its numbers, its weakest
classes, its limits, its intended use and where it came from.

Everything is read from the run's own files (``config.json``, ``run.json``, ``metrics.json``,
``predictions.npz``) so that a card travels with the numbers it explains and never mixes in
another run's. The card is plain data here; ``cifar_core.reports.card`` writes it as Markdown
and as a section of the HTML and PDF reports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import PurePath

from cifar_core.analysis.classes import weakest_and_strongest
from cifar_core.analysis.errors import run_calibration
from cifar_core.analysis.images import load_predictions
from cifar_core.analysis.names import readable
from cifar_core.analysis.runs import dataset_display_name, is_current_spec, model_title
from cifar_core.errors import CifarCoreError
from cifar_core.runs.store import RunRecord

CARD_CLASSES = 5  # weakest (and strongest) classes a card lists
FEW_TEST_IMAGES_PER_CLASS = 50  # below this a class's figures move by whole points per image
POOR_CALIBRATION = 0.10  # ECE above this: the card warns against reading scores as chances


@dataclass(frozen=True)
class ClassScore:
    name: str  # as people read it
    f1: float
    support: int


@dataclass(frozen=True)
class ModelCard:
    """One run's card. Fractions are in [0, 1]; None where the run does not record a value."""

    run_id: str
    title: str  # "Model 5: + flip augmentation"
    labels: str  # "fine" or "coarse"
    description: str  # the spec in words
    change: str | None  # what the model adds to the one before it (the spec's own words)
    training: str  # how it was trained, in words
    data: dict  # name, display_name, sha256, source_file, sizes, classes
    top1: float
    top5: float | None
    superclass: float | None
    ece: float | None
    ece_note: str | None  # why there is no ECE, or how it was computed
    num_test: int | None
    weakest: list[ClassScore]
    strongest: list[ClassScore]
    ranking_note: str | None  # ties at the cuts, or why nothing is ranked
    limitations: list[str]
    intended_use: list[str]
    provenance: dict = field(default_factory=dict)


def _fraction(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _number(value) -> str:
    """``0.001`` -> ``"0.001"``, ``1e-4`` -> ``"0.0001"``, 32.0 -> ``"32"``: as a person
    writes a setting."""
    if isinstance(value, float):
        return f"{value:g}" if value >= 1e-3 or value == 0 else f"{value:.6f}".rstrip("0")
    return str(value)


def _count(number, noun: str) -> str:
    """``_count(1, "epoch")`` -> ``"1 epoch"``, ``_count(3, "epoch")`` -> ``"3 epochs"``."""
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def spec_in_words(spec: dict, labels: str | None, num_outputs: int | None) -> str:
    """The network a run's recorded spec (``config.json`` ``model``) builds, in sentences."""
    if spec.get("stem") == "mobilenet":
        size = int(spec.get("input_size") or 32)
        if spec.get("freeze_backbone"):
            how = "frozen (only the layers after it train)"
        elif spec.get("frozen_through"):
            how = (f"frozen up to its layer {spec['frozen_through']} and fine-tuned above it"
                   + (", batch norm folded into the convolutions" if spec.get(
                       "fold_batch_norm") else ""))
        else:
            how = "fine-tuned as a whole (batch norm statistics kept)"
        upsampled = " (the 32 px images upsampled)" if size != 32 else ""
        stem = (f"MobileNet v1 (width {_number(spec.get('backbone_alpha', 1.0))}) pretrained "
                f"on ImageNet, at {size}x{size} px{upsampled}, {how}; its feature maps "
                + ("average-pooled" if spec.get("pooling") == "average" else "flattened"))
    else:
        kernel = spec.get("conv_kernel", 2)
        stem = (f"A small convolutional network: one convolution of "
                f"{spec.get('conv_filters', 10)} filters of {kernel}x{kernel} (ReLU), 2x2 max "
                "pooling, flattened")
    hidden = list(spec.get("hidden_units") or [])
    if hidden:
        layers = _and([str(units) for units in hidden])
        head = (f"then {'a hidden dense layer' if len(hidden) == 1 else 'hidden dense layers'}"
                f" of {layers} units (ReLU)")
        if spec.get("dropout"):
            head += f" with dropout {_number(spec['dropout'])} after each"
    else:
        head = "then no hidden layer"
        if spec.get("dropout"):
            head += f", dropout {_number(spec['dropout'])}"
    what = "superclasses" if labels == "coarse" else "classes"
    output = f"and a softmax over the {num_outputs or '?'} {what}."
    sentences = [f"{stem}, {head}, {output}"]
    if spec.get("augment_flips"):
        flips = ("random horizontal and vertical flips" if spec.get("vertical_flips", True)
                 else "random mirror images")
        extra = []
        if spec.get("feature_shift"):
            extra.append(f"its cached feature maps shifted by up to {spec['feature_shift']} "
                         "cell")
        if spec.get("feature_cutout"):
            extra.append(f"a {spec['feature_cutout']}-cell square cut out")
        sentences.append(f"Training sees {_and([flips, *extra])}.")
    else:
        sentences.append("Training sees the images as they are (no augmentation).")
    if spec.get("test_time_flips"):
        sentences.append("Its answer averages the image and its mirror image.")
    if spec.get("hyperparameter_search"):
        sentences.append("Its head sizes, dropout, learning rate and optimizer were chosen by a "
                         "two-stage search (random search with cross-validation, then a "
                         "grid).")
    return " ".join(sentences)


def training_in_words(config: dict, metrics: dict) -> str:
    """Optimizer, step size, schedule, batch, epochs and the validation share, in a sentence."""
    spec = config.get("model") or {}
    hyper = config.get("hyperparameters") or {}
    training = metrics.get("training") or {}
    rate = spec.get("learning_rate") if spec.get("hyperparameter_search") else \
        hyper.get("learning_rate", spec.get("learning_rate"))
    parts = [f"{hyper.get('optimizer') or spec.get('optimizer') or 'adam'} at learning rate "
             f"{_number(rate)}" + (", cosine schedule" if spec.get("lr_schedule") == "cosine"
                                   else "")]
    if spec.get("head_warmup_epochs"):
        parts.append(f"after {_count(spec['head_warmup_epochs'], 'epoch')} training the head "
                     "alone")
    if spec.get("label_smoothing"):
        parts.append(f"label smoothing {_number(spec['label_smoothing'])}")
    if spec.get("weight_ema"):
        parts.append(f"a moving average of the weights (momentum {_number(spec['weight_ema'])})")
    batch = hyper.get("batch_size")
    epochs = hyper.get("epochs")
    ran = training.get("epochs_run")
    budget = f"batches of {batch}" if batch else None
    if epochs:
        budget = (budget + ", " if budget else "") + f"up to {_count(epochs, 'epoch')}" + (
            f" ({ran} run)" if ran is not None else "")
    if hyper.get("patience"):
        budget = (budget + ", " if budget else "") + (
            "early stopping once validation loss had not improved for "
            f"{_count(hyper['patience'], 'epoch')} (best weights kept)")
    if budget:
        parts.append(budget)
    share = hyper.get("validation_fraction")
    if isinstance(share, (int, float)):
        parts.append(f"{100 * share:.0f}% of the training images held out for validation")
    profile = config.get("profile")
    return (f"Trained with {'; '.join(parts)}" + (f" (profile {profile})" if profile else "")
            + ".")


def _data(record: RunRecord) -> dict:
    config = record.config or {}
    dataset = config.get("dataset") or {}
    training = (record.metrics or {}).get("training") or {}
    source = dataset.get("source")
    # Only the file name: the card travels, this machine's paths do not.
    source_file = PurePath(source).name if isinstance(source, str) and (
        os.path.isabs(source) or source.startswith("~")) else source
    return {"name": dataset.get("name"), "display_name": dataset_display_name(
                dataset.get("name")),
            "sha256": dataset.get("sha256"), "source_file": source_file,
            "num_train": dataset.get("num_train"), "num_test": dataset.get("num_test"),
            "trained_on": training.get("num_train"),
            "validation": training.get("num_validation"),
            "num_classes": dataset.get("num_classes"),
            "num_superclasses": dataset.get("num_superclasses")}


def _calibration(record: RunRecord) -> tuple[float | None, str]:
    try:
        calibrated = run_calibration(load_predictions(record.path))
    except (CifarCoreError, ValueError, KeyError, IndexError) as exc:
        return None, f"no expected calibration error: {exc}"
    return calibrated.ece, (f"expected calibration error over {calibrated.total} test "
                            "images, 10 equal-width confidence bins")


def _scores(frame) -> list[ClassScore]:
    return [ClassScore(readable(row["class"]), float(row["f1"]), int(row["support"]))
            for row in frame.to_dict("records")]


def _limitations(record: RunRecord, data: dict, ece: float | None) -> list[str]:
    config = record.config or {}
    environment = config.get("environment") or {}
    git = environment.get("git") or {}
    limits = []
    if data["display_name"] != "CIFAR-100":
        limits.append(f"Its figures are on {data['display_name']} images, not CIFAR-100: "
                      "they do not compare with the report's CIFAR-100 results.")
    classes = data.get("num_superclasses") if record.label_set == "coarse" else \
        data.get("num_classes")
    num_test = data.get("num_test")
    if isinstance(num_test, int) and isinstance(classes, int) and classes and \
            num_test / classes < FEW_TEST_IMAGES_PER_CLASS:
        limits.append(f"Tested on {num_test} images, about {num_test / classes:.0f} per "
                      "class: one image more or less right moves a class's figures by "
                      f"{100 * classes / num_test:.0f} points.")
    if config.get("profile") == "quick":
        epochs = (config.get("hyperparameters") or {}).get("epochs")
        limits.append(f"Trained with the quick profile ({_count(epochs, 'epoch')}): a "
                      "demonstration, not the report's protocol.")
    if record.label_set == "coarse":
        limits.append("It names one of the superclasses only, never a fine class.")
    limits.append("It sees 32x32 px images: a larger photo is shrunk to that size first and "
                  "loses its detail; images unlike the data set's (drawings, scans, several "
                  "objects) were never tested.")
    if ece is not None and ece > POOR_CALIBRATION:
        limits.append(f"Its confidence is off by {100 * ece:.1f} points on average (expected "
                      "calibration error): do not read its scores as chances.")
    if not is_current_spec(record):
        limits.append("It was trained from an earlier version of this model's spec: the "
                      "code today builds a different model under the same number.")
    if git.get("dirty"):
        limits.append("The code had uncommitted changes: its commit alone does not "
                      "reproduce this run.")
    return limits


def _intended_use(record: RunRecord, data: dict) -> list[str]:
    what = "superclasses" if record.label_set == "coarse" else "classes"
    return [
        f"Comparing the models of the progression and explaining what each change brings, "
        f"on {data['display_name']}'s {what}.",
        "Demonstrations and teaching: classifying small photos of those "
        f"{what} with a stated confidence.",
        "Not for decisions about people, safety, money or health, and not for images "
        "outside those classes: it always answers with one of them.",
    ]


def _provenance(record: RunRecord) -> dict:
    config = record.config or {}
    environment = config.get("environment") or {}
    git = environment.get("git") or {}
    packages = environment.get("packages") or {}
    run = record.run or {}
    return {"run_id": record.run_id, "seed": config.get("seed"),
            "code_commit": git.get("commit"), "uncommitted_changes": git.get("dirty"),
            "cifar_core": packages.get("cifar-core"),
            "tensorflow": packages.get("tensorflow"), "keras": packages.get("keras"),
            "python": environment.get("python"), "host": run.get("host"),
            "platform": environment.get("platform"), "cpu": environment.get("cpu"),
            "cpu_count": environment.get("cpu_count"), "profile": config.get("profile"),
            "created_at": run.get("created_at"), "ended_at": run.get("ended_at")}


def model_card(record: RunRecord) -> ModelCard:
    """The card of a completed run (``CifarCoreError`` for a run without test metrics)."""
    metrics = record.metrics if isinstance(record.metrics, dict) else {}
    if record.status != "completed" or not isinstance(metrics.get("test_top1"), (int, float)):
        raise CifarCoreError(f"run {record.run_id} is {record.status} and has no test "
                             "metrics: a model card needs a completed run")
    config = record.config or {}
    spec = config.get("model") or {}
    data = _data(record)
    outputs = data["num_superclasses"] if record.label_set == "coarse" else data["num_classes"]
    ece, ece_note = _calibration(record)
    try:
        extremes = weakest_and_strongest(metrics, "f1", CARD_CLASSES)
        weakest, strongest, note = (_scores(extremes.weakest), _scores(extremes.strongest),
                                    extremes.message)
    except CifarCoreError as exc:
        weakest, strongest, note = [], [], f"no per-class figures: {exc}"
    return ModelCard(
        run_id=record.run_id,
        title=model_title(record.model_number) if record.model_number else record.run_id,
        labels=record.label_set or "?", description=spec_in_words(spec, record.label_set,
                                                                  outputs),
        change=spec.get("change"), training=training_in_words(config, metrics), data=data,
        top1=float(metrics["test_top1"]), top5=_fraction(metrics.get("test_top5")),
        superclass=_fraction(metrics.get("test_superclass_top1")), ece=ece, ece_note=ece_note,
        num_test=metrics.get("num_test") or data["num_test"], weakest=weakest,
        strongest=strongest, ranking_note=note, limitations=_limitations(record, data, ece),
        intended_use=_intended_use(record, data), provenance=_provenance(record))
