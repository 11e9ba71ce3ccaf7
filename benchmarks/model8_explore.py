"""Model 8 exploration: which recipe of "cached lower base + fine-tuned top blocks" to choose.

Model 8 splits an ImageNet MobileNet at a cut layer: the part below the cut stays frozen and
its outputs are computed once (original and horizontally flipped image), the part above the
cut is fine-tuned on those cached outputs together with a new head. The open questions are
which backbone, input resolution and cut give the best accuracy in the 60-minute CPU budget.
They split into two measurements, made where each is cheap:

- ``cost`` (this 2-core CPU): images per second of the frozen lower part (the one-off
  feature pass) and of a training step of the upper part, float32 and mixed bfloat16;
- ``layers`` (this CPU): forward and forward+backward time of single layers of the kind and
  shape that blocks 7-13 hold, float32 and bfloat16 (where a training step's time goes);
- ``accuracy`` (any machine, a GPU makes it quick; Keras 3 runs the same code on JAX):
  validation and test top-1 per epoch of the same recipe, with test-time flip averaging.

The numbers it prints are recorded in BENCHMARKS.md ("Model 8: what was tried"); the chosen
recipe lives in ``cifar_core.models.specs.MODEL_8``. Example::

    python benchmarks/model8_explore.py cost --weights-dir ../shared/weights
    python benchmarks/model8_explore.py cost --fold --weights-dir ../shared/weights \
        --recipes v1-128-pw6 v1-144-pw6 --batch 128 --repeats 10
    python benchmarks/model8_explore.py layers --batch 128 --repeats 20
    KERAS_BACKEND=jax python benchmarks/model8_explore.py accuracy \\
        --data ../shared/data/cifar10-images.tar.gz --weights-dir ../shared/weights
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras
import numpy as np

# name: (backbone, input size, cut layer: the last frozen layer's output)
RECIPES = {
    "v1-96-pw11": ("mobilenet_v1", 96, "conv_pw_11_relu"),
    "v1-128-pw11": ("mobilenet_v1", 128, "conv_pw_11_relu"),
    "v1-160-pw11": ("mobilenet_v1", 160, "conv_pw_11_relu"),
    "v1-128-pw9": ("mobilenet_v1", 128, "conv_pw_9_relu"),
    "v1-128-pw6": ("mobilenet_v1", 128, "conv_pw_6_relu"),
    "v1-144-pw6": ("mobilenet_v1", 144, "conv_pw_6_relu"),
    # cut inside block 6, after its stride-2 depthwise: 9x9x256 maps, block 6's 1x1 trains
    "v1-144-dw6": ("mobilenet_v1", 144, "conv_dw_6_relu"),
    # cuts at 18x18, to fine-tune deeper: after block 5's depthwise (18x18x256: block 5's 1x1
    # and all of block 6 train) or after block 4's stride-2 depthwise (18x18x128: from block
    # 4's 1x1 up)
    "v1-144-dw5": ("mobilenet_v1", 144, "conv_dw_5_relu"),
    "v1-144-dw4": ("mobilenet_v1", 144, "conv_dw_4_relu"),
    "v2-128-b12": ("mobilenet_v2", 128, "block_12_add"),
    "v2-160-b12": ("mobilenet_v2", 160, "block_12_add"),
    "v2-128-b9": ("mobilenet_v2", 128, "block_9_add"),
    "v2-144-b6": ("mobilenet_v2", 144, "block_6_project_BN"),
    "v2-176-b6": ("mobilenet_v2", 176, "block_6_project_BN"),
    "v2-192-b6": ("mobilenet_v2", 192, "block_6_project_BN"),
    "v2-144-b5": ("mobilenet_v2", 144, "block_5_add"),
    "v1-160-pw6": ("mobilenet_v1", 160, "conv_pw_6_relu"),
    "v1-176-pw6": ("mobilenet_v1", 176, "conv_pw_6_relu"),
}
WEIGHT_FILES = {"mobilenet_v1": "mobilenet_v1_1.0_imagenet_notop.weights.h5",
                "mobilenet_v2": "mobilenet_v2_1.0_imagenet_notop.weights.h5"}
APPLICATIONS = {"mobilenet_v1": keras.applications.MobileNet,
                "mobilenet_v2": keras.applications.MobileNetV2}


def split_base(recipe: str, weights_dir: Path,
               fold_dtype: str | None = None) -> tuple[keras.Model, keras.Model]:
    """(lower, upper): the pretrained base cut at the recipe's layer, batch norm frozen;
    with ``fold_dtype`` the base folded as model 8 builds it (``fold_batch_norm``: the lower
    part in float32, the upper part in ``fold_dtype``)."""
    from cifar_core.models.backbone import fold_batch_norm

    backbone, size, cut = RECIPES[recipe]
    base = APPLICATIONS[backbone](input_shape=(size, size, 3), include_top=False,
                                  weights=str(weights_dir / WEIGHT_FILES[backbone]))
    if fold_dtype:
        base = fold_batch_norm(base, cut, dtype=fold_dtype)
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # folded batch norm: inference mode, always
    lower = keras.Model(base.input, base.get_layer(cut).output, name="lower")
    upper = keras.Model(base.get_layer(cut).output, base.output, name="upper")
    return lower, upper


def lower_with_preprocessing(lower: keras.Model, size: int) -> keras.Model:
    """Raw 32x32 pixels -> [-1, 1] -> upsampled -> lower part."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.Resizing(size, size, interpolation="bilinear")(x)
    return keras.Model(inputs, lower(x, training=False))


def head_on(upper: keras.Model, num_classes: int, dropout: float) -> keras.Model:
    inputs = keras.Input(upper.input.shape[1:])
    x = upper(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs)


def cost(args) -> None:
    """CPU images/second of the feature pass and of one upper training step, per recipe."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.batch, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 10, size=args.batch)
    for policy in args.policies:
        # --fold: the policy applies to the folded upper part only (as in model 8)
        keras.mixed_precision.set_global_policy("float32" if args.fold else policy)
        for recipe in (entry.partition("@")[0] for entry in args.recipes):
            keras.utils.clear_session()
            lower, upper = split_base(recipe, args.weights_dir,
                                      fold_dtype=policy if args.fold else None)
            extractor = lower_with_preprocessing(lower, RECIPES[recipe][1])
            extractor.predict(images, verbose=0)  # warm-up (graph building)
            start = time.perf_counter()
            for _ in range(args.repeats):
                features = extractor.predict(images, batch_size=args.batch, verbose=0)
            extract = args.batch * args.repeats / (time.perf_counter() - start)
            model = head_on(upper, 10, 0.2)
            model.compile(optimizer=keras.optimizers.Adam(1e-4),
                          loss="sparse_categorical_crossentropy")
            model.train_on_batch(features, labels)
            start = time.perf_counter()
            for _ in range(args.repeats):
                model.train_on_batch(features, labels)
            step = args.batch * args.repeats / (time.perf_counter() - start)
            print(json.dumps({"recipe": recipe, "policy": policy, "fold": args.fold,
                              "feature_shape": list(features.shape[1:]),
                              "extract_img_s": round(extract, 1),
                              "train_img_s": round(step, 1)}), flush=True)


LAYER_CASES = {  # name: (layer factory, input shape); the layers of v1 blocks 7-13 at 144 px
    "depthwise 3x3, 9x9x512": (lambda dtype: keras.layers.DepthwiseConv2D(
        3, padding="same", dtype=dtype), (9, 9, 512)),
    "depthwise 3x3 stride 2, 9x9x512": (lambda dtype: keras.layers.DepthwiseConv2D(
        3, strides=2, padding="same", dtype=dtype), (9, 9, 512)),
    "depthwise 3x3, 5x5x1024": (lambda dtype: keras.layers.DepthwiseConv2D(
        3, padding="same", dtype=dtype), (5, 5, 1024)),
    "1x1 as Dense, 9x9x512": (lambda dtype: keras.layers.Dense(512, dtype=dtype), (9, 9, 512)),
    "1x1 as Dense, 5x5x1024": (lambda dtype: keras.layers.Dense(1024, dtype=dtype),
                               (5, 5, 1024)),
}


def layers(args) -> None:
    """Milliseconds per batch of each ``LAYER_CASES`` layer alone, forward and forward plus
    backward (input and weight gradients), computing in float32 and in bfloat16."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for dtype in ("float32", "bfloat16"):
        for name, (make, shape) in LAYER_CASES.items():
            layer = make(dtype)
            layer.build((args.batch, *shape))
            x = tf.constant(rng.random((args.batch, *shape)).astype("float32"))

            @tf.function
            def forward(x, layer=layer, dtype=dtype):
                return tf.reduce_sum(tf.cast(layer(tf.cast(x, dtype)), tf.float32))

            @tf.function
            def forward_backward(x, layer=layer, dtype=dtype):
                with tf.GradientTape() as tape:
                    inputs = tf.cast(x, dtype)
                    tape.watch(inputs)
                    total = tf.reduce_sum(tf.cast(layer(inputs), tf.float32))
                return tape.gradient(total, [inputs, *layer.trainable_variables])

            times = {}
            for label, step in (("forward_ms", forward), ("forward_backward_ms",
                                                           forward_backward)):
                step(x)  # graph building
                start = time.perf_counter()
                for _ in range(args.repeats):
                    tf.nest.map_structure(lambda t: t.numpy(), step(x))
                times[label] = round((time.perf_counter() - start) / args.repeats * 1000, 2)
            print(json.dumps({"layer": name, "dtype": dtype, "batch": args.batch, **times}),
                  flush=True)


def accuracy(args) -> None:
    """Val/test top-1 per epoch: head warm-up, then the upper part fine-tuned (cosine LR)."""
    from cifar_core.data import load_dataset, stratified_split

    dataset = load_dataset(args.data)
    split = stratified_split(dataset.y_train, seed=42, validation_fraction=0.2)
    cut = slice(0, args.limit)  # a smoke run: the first N images of each part
    train_idx, val_idx = split.train_idx[cut], split.val_idx[cut]
    parts = {"train": (dataset.x_train[train_idx], dataset.y_train[train_idx]),
             "val": (dataset.x_train[val_idx], dataset.y_train[val_idx]),
             "test": (dataset.x_test[cut], dataset.y_test[cut])}
    print("data " + dataset.name + ": " + ", ".join(f"{k} {len(v[1])}" for k, v in
                                                     parts.items()), flush=True)
    results = []
    for entry in args.recipes:  # "recipe" or "recipe@learning_rate"
        recipe, _, rate = entry.partition("@")
        results.append(explore_recipe(recipe, parts, dataset.num_classes, args,
                                      learning_rate=float(rate or args.learning_rate)))
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1))


def explore_recipe(recipe: str, parts: dict, num_classes: int, args, *,
                   learning_rate: float) -> dict:
    keras.utils.clear_session()
    keras.utils.set_random_seed(42)
    started = time.perf_counter()
    lower, upper = split_base(recipe, args.weights_dir)
    extractor = lower_with_preprocessing(lower, RECIPES[recipe][1])
    # Two views per image, original and horizontal flip, as float16 (half the memory).
    views = {name: ([extractor.predict(v, batch_size=256, verbose=0).astype("float16")
                     for v in (x, x[:, :, ::-1])], y) for name, (x, y) in parts.items()}
    extract_s = time.perf_counter() - started
    model = head_on(upper, num_classes, args.dropout)
    rng = np.random.default_rng(42)
    (train_a, train_b), y_train = views["train"]

    def epoch_inputs():  # one of the two flips per image, drawn anew each epoch
        pick = rng.integers(0, 2, size=len(y_train))
        return np.where(pick[:, None, None, None] == 0, train_a, train_b)

    def top1(name: str, flips: int = 2) -> float:  # flips=2: test-time flip averaging
        features, y = views[name]
        probs = sum(model.predict(v, batch_size=512, verbose=0) for v in features[:flips])
        return round(float(np.mean(np.argmax(probs, axis=1) == y)), 4)

    upper.trainable = False
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    for _ in range(args.warmup_epochs):
        model.fit(epoch_inputs(), y_train, batch_size=args.batch, epochs=1, verbose=0)
    row = {"recipe": recipe, "learning_rate": learning_rate, "extract_s": round(extract_s, 1),
           "warmup": {"val": top1("val"), "test": top1("test")}, "epochs": []}
    print(json.dumps(row), flush=True)
    upper.trainable = True
    for layer in upper.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    steps = args.epochs * int(np.ceil(len(y_train) / args.batch))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        history = model.fit(epoch_inputs(), y_train, batch_size=args.batch, epochs=1,
                            verbose=0)
        row["epochs"].append({"epoch": epoch, "seconds": round(time.perf_counter() - t0, 1),
                              "train_acc": round(history.history["accuracy"][-1], 4),
                              "val": top1("val"), "test": top1("test"),
                              "test_no_tta": top1("test", flips=1)})
        print(json.dumps({"recipe": recipe, "learning_rate": learning_rate,
                          **row["epochs"][-1]}), flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("cost", "layers", "accuracy"))
    parser.add_argument("--weights-dir", type=Path,
                        help="folder holding the MobileNet v1/v2 no-top .weights.h5 files "
                             "(cost, accuracy)")
    parser.add_argument("--data", help="data set (accuracy mode)")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES),
                        help=f"of {', '.join(RECIPES)}; accuracy: NAME@RATE sets the "
                             "fine-tuning learning rate")
    parser.add_argument("--policies", nargs="+", default=["float32", "mixed_bfloat16"])
    parser.add_argument("--fold", action="store_true",
                        help="cost: fold batch norm into the convolutions, 1x1 convolutions as "
                             "Dense, the policy applied above the cut "
                             "(cifar_core.models.backbone.fold_batch_norm)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="cost, layers: timed batches")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--limit", type=int,
                        help="accuracy: only the first N images of train, val and test")
    parser.add_argument("--output", help="accuracy: write the results as JSON here")
    args = parser.parse_args(argv)
    if args.mode != "layers" and args.weights_dir is None:
        parser.error(f"{args.mode} needs --weights-dir")
    {"cost": cost, "layers": layers, "accuracy": accuracy}[args.mode](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
