"""Model 8 recipe variants, for accuracy only, on a lent GPU (Keras on JAX, no TensorFlow).

The hour of model 8 is spent on the 2-core CPU, where each recipe costs a 45-minute run. This
script trains the same recipe, and variants of it, end to end on a GPU in about a minute each,
so that the variants worth a CPU run can be picked by measurement. Unlike
``model8_explore.py accuracy`` (cached maps of a cut base, the question of where to cut), it
trains from the images, so that it can vary what happens to them: mixing (mixup, cutmix), the
share of the training set held out, the shift. Its model and training are plain Keras 3, any
backend (the GPU machine has JAX but no TensorFlow; ``cifar_core.data``, which reads the
images, needs none), so it is *close to* model 8, not its pipeline:

- images: the project's loader and stratified split (``cifar_core.data``, seed 0), 80/20
  unless the variant's ``train_fraction`` keeps more for training;
- model: MobileNet base (ImageNet weights file) in inference mode, layers up to ``--cut`` frozen,
  average pooling, dropout 0.2, softmax; input upsampled from 32 px to ``--size``;
- training: a 1-epoch head warm-up (Adam 1e-3, base frozen), then cosine Adam 3e-4 over
  ``--epochs``, batch 128, label smoothing 0.1; augmentation: mirror images and random shifts
  of up to 4 px (model 8 shifts cached block-6 maps by a cell, 3.6 px); optional mixup or
  cutmix (``--mix``) on the images;
- test: top-1 with test-time mirror averaging.

Usage (on the device: KERAS_BACKEND=jax):
    python benchmarks/model8_recipes_gpu.py --data ARCHIVE --weights-dir DIR \
        --variant baseline --variant train45k:train_fraction=0.9 --out results.jsonl
Each variant is ``name:key=value,key=value`` over the options below; one JSON line per variant.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # cifar_core, from the checkout
os.environ.setdefault("KERAS_BACKEND", "jax")  # the GPU machine has JAX, not TensorFlow
import keras

DEFAULTS = {  # model 8's recipe, in this script's terms
    "size": 144,  # input resolution the 32 px images are upsampled to
    "cut": "conv_pw_6_relu",  # last frozen layer of the base
    "backbone": "v1",  # MobileNet v1 or v2 (weights file in --weights-dir)
    "epochs": 12,  # fine-tuning epochs after the warm-up
    "learning_rate": 3e-4,  # cosine-decayed Adam
    "label_smoothing": 0.1,
    "train_fraction": 0.8,  # share of the 50,000 training images trained on
    "mix": "none",  # none | mixup | cutmix
    "mix_alpha": 0.2,  # Beta(alpha, alpha) for the mixing weight
    "shift": 4,  # random translation, pixels at 32 px
    "dropout": 0.2,
    "batch_size": 128,
    "seed": 0,
}
WEIGHTS = {"v1": "mobilenet_v1_1.0_imagenet_notop.weights.h5",
           "v2": "mobilenet_v2_1.0_imagenet_notop.weights.h5"}


def load_images(path: Path) -> dict[str, np.ndarray]:
    """x/y for train and test, read by the project's own loader (it needs no TensorFlow)."""
    from cifar_core.data import load_dataset

    dataset = load_dataset(str(path))
    return {"x_train": dataset.x_train, "y_train": dataset.y_train,
            "x_test": dataset.x_test, "y_test": dataset.y_test}


def split(labels: np.ndarray, train_fraction: float, seed: int):
    """(train, validation) indices: the project's stratified split, or all images for 1.0."""
    from cifar_core.data import stratified_split

    if train_fraction >= 1.0:
        return np.arange(len(labels)), np.arange(0)
    chosen = stratified_split(labels, seed=seed, validation_fraction=1 - train_fraction)
    return chosen.train_idx, chosen.val_idx


class Batches(keras.utils.PyDataset):
    """Shuffled batches with one-hot labels; mixup or cutmix applied per batch on the host."""

    def __init__(self, x, y, classes: int, options: dict):
        super().__init__()
        self.x, self.y, self.classes, self.options = x, y, classes, options
        self.rng = np.random.default_rng(options["seed"])
        self.order = self.rng.permutation(len(x))

    def __len__(self):
        return math.ceil(len(self.x) / self.options["batch_size"])

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.x))

    def __getitem__(self, index):
        size = self.options["batch_size"]
        take = self.order[index * size:(index + 1) * size]
        images = augment(self.x[take], self.options["shift"], self.rng).astype("float32")
        labels = np.eye(self.classes, dtype="float32")[self.y[take]]
        if self.options["mix"] != "none":
            images, labels = mix(images, labels, self.options, self.rng)
        return images, labels


def augment(images: np.ndarray, shift: int, rng) -> np.ndarray:
    """Mirror half the images and shift each by up to ``shift`` px (reflected borders), on
    the host: Keras's RandomTranslation layer cannot be compiled, and would make the whole
    training step run op by op."""
    mirrored = rng.random(len(images)) < 0.5
    images = np.where(mirrored[:, None, None, None], images[:, :, ::-1], images)
    if not shift:
        return images
    padded = np.pad(images, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="reflect")
    side = images.shape[1]
    rows, columns = rng.integers(0, 2 * shift + 1, size=(2, len(images)))
    return np.stack([padded[i, r:r + side, c:c + side]
                     for i, (r, c) in enumerate(zip(rows, columns, strict=True))])


def mix(images, labels, options, rng):
    partner = rng.permutation(len(images))
    weight = rng.beta(options["mix_alpha"], options["mix_alpha"])
    if options["mix"] == "mixup":
        return (weight * images + (1 - weight) * images[partner],
                weight * labels + (1 - weight) * labels[partner])
    side = images.shape[1]
    cut = round(side * math.sqrt(1 - weight))
    top, left = rng.integers(0, side - cut + 1, size=2)
    images = images.copy()
    images[:, top:top + cut, left:left + cut] = images[partner, top:top + cut, left:left + cut]
    kept = 1 - cut * cut / (side * side)
    return images, kept * labels + (1 - kept) * labels[partner]


def build(options, classes: int, weights_dir: Path):
    size = options["size"]
    constructor = (keras.applications.MobileNet if options["backbone"] == "v1"
                   else keras.applications.MobileNetV2)
    base = constructor(input_shape=(size, size, 3), alpha=1.0, include_top=False,
                       weights=str(weights_dir / WEIGHTS[options["backbone"]]))
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Resizing(size, size, interpolation="bilinear")(inputs)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(x)
    x = base(x, training=False)  # always inference mode: the weights' batch norm is folded
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(options["dropout"])(x)
    outputs = keras.layers.Dense(classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs), base


def set_trainable(base, cut: str | None) -> None:
    base.trainable = True
    if cut is None:
        base.trainable = False
        return
    names = [layer.name for layer in base.layers]
    if cut not in names:
        raise SystemExit(f"no layer {cut!r} in the base; e.g. {names[-20:]}")
    for layer in base.layers[:names.index(cut) + 1]:
        layer.trainable = False


def accuracy(model, x, y, batch=500) -> float:
    probabilities = model.predict(x, batch_size=batch, verbose=0)
    probabilities = probabilities + model.predict(x[:, :, ::-1], batch_size=batch, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=1) == y))


def run_variant(name: str, options: dict, data: dict, weights_dir: Path) -> dict:
    keras.utils.set_random_seed(options["seed"])
    classes = int(data["y_train"].max()) + 1
    train_idx, val_idx = split(data["y_train"], options["train_fraction"], options["seed"])
    x, y = data["x_train"][train_idx], data["y_train"][train_idx]
    model, base = build(options, classes, weights_dir)
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=options["label_smoothing"])
    batches = Batches(x, y, classes, options)
    started = time.perf_counter()

    set_trainable(base, None)  # warm-up: the head alone
    model.compile(keras.optimizers.Adam(1e-3), loss, jit_compile=True)
    model.fit(batches, epochs=1, verbose=0)
    warm = time.perf_counter() - started

    set_trainable(base, options["cut"])
    steps = len(batches) * options["epochs"]
    schedule = keras.optimizers.schedules.CosineDecay(options["learning_rate"], steps)
    model.compile(keras.optimizers.Adam(schedule), loss, jit_compile=True)
    history = []
    for epoch in range(options["epochs"]):
        model.fit(batches, epochs=1, verbose=0)
        if len(val_idx) and epoch in (2, options["epochs"] - 1):
            history.append({"epoch": epoch + 1, "val": accuracy(
                model, data["x_train"][val_idx], data["y_train"][val_idx])})
    trained = time.perf_counter() - started
    result = {"variant": name, **options, "num_train": len(train_idx),
              "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
              "val_accuracy": history[-1]["val"] if history else None, "val_history": history,
              "test_accuracy": accuracy(model, data["x_test"], data["y_test"]),
              "warmup_seconds": round(warm, 1), "seconds": round(trained, 1),
              "backend": keras.backend.backend()}
    keras.backend.clear_session()
    return result


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, assignments = text.partition(":")
    options = dict(DEFAULTS)
    for assignment in filter(None, assignments.split(",")):
        key, _, value = assignment.partition("=")
        if key not in DEFAULTS:
            raise SystemExit(f"unknown option {key!r}; one of {', '.join(DEFAULTS)}")
        options[key] = type(DEFAULTS[key])(value)
    return name, options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights-dir", type=Path, required=True)
    parser.add_argument("--variant", action="append", default=[], type=parse_variant)
    parser.add_argument("--limit", type=int, default=0, help="use the first N images of each "
                        "part (a smoke test)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    data = load_images(args.data)
    if args.limit:
        data = {key: value[::len(value) // args.limit][:args.limit]
                for key, value in data.items()}
    print(f"loaded {len(data['x_train'])} + {len(data['x_test'])} images in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    for name, options in args.variant or [("baseline", dict(DEFAULTS))]:
        result = run_variant(name, options, data, args.weights_dir)
        print(json.dumps(result), flush=True)
        with args.out.open("a") as stream:
            stream.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
