"""Training on cached maps: the hand-written loop (``cifar_core.search.head_loop.fit_head``,
until 2026-12-02 also model 8's) against Keras ``fit`` on a ``PyDataset``
(``cifar_core.training.on_features.fit_on_features``), side by side in one process, for model 8
and for a model 7 search trial's head.

Both train the same network (model 8 as built by ``build_model``: blocks 7-13 of the folded
base, bfloat16 where the CPU has it, and the head) from the same starting weights on the same
maps with the same draws (flips, one-cell shifts, label smoothing 0.1, batch 128, 32 steps a
graph call). The maps are random float16 arrays of the cut's shape in memory: throughput does
not depend on their values, and no data set or weights file is needed. The order alternates
(A B A B ...) so that a drift of the machine does not favour one; each call runs ``--epochs``
epochs, and the first of each call (tracing the graph) is reported apart.

    python benchmarks/features_loop.py [--images 8192] [--rounds 2]

Prints one JSON line per epoch and a summary; BENCHMARKS.md records the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from cifar_core.features import (
    base_layer,
    flip_variants,
    head_model,
)
from cifar_core.models.builder import build_head, build_model, make_optimizer
from cifar_core.models.specs import get_spec
from cifar_core.runs.provenance import environment_info
from cifar_core.search.head_loop import fit_head
from cifar_core.search.trials import head_precision
from cifar_core.training.on_features import (
    STEPS_PER_CALL,
    fit_on_features,
)
from cifar_core.training.result import EpochRecorder


class InMemorySource:
    """``CachedSource``'s answers from an in-memory array (variants, images, h, w, c)."""

    def __init__(self, maps: np.ndarray):
        self.maps = maps

    def batch(self, rows, variants, shifts=None, cutout=None):
        from cifar_core.features import translate

        out = self.maps[variants, rows]
        return translate(out, shifts) if shifts is not None else out

    def plain(self, rows):
        return self.maps[0, rows]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("model8", "head"), default="model8",
                        help="model8: blocks 7-13 + head on 9x9x256 maps; head: a model 7 "
                             "search trial's head (1024-64, dropout 0.4) on the whole frozen "
                             "base's 1x1x1024 features, batch 250, four flip variants")
    parser.add_argument("--images", type=int, default=8192, help="training maps an epoch")
    parser.add_argument("--jit", action="store_true",
                        help="compile fit's steps with XLA (jit_compile=True) instead")
    parser.add_argument("--rounds", type=int, default=2, help="calls of each loop")
    parser.add_argument("--epochs", type=int, default=2,
                        help="epochs a call (the first traces the graph)")
    args = parser.parse_args(argv)

    if args.mode == "model8":
        spec = get_spec(8)
        cut = spec.net.frozen_through
        model = build_model(spec, 10, backbone_weights=None, seed=0)
        shape = base_layer(model).get_layer(cut).output.shape[1:]
        step_model = head_model(model, cut)
        batch, precision = spec.budget.batch_size, base_layer(model).layers[-1].dtype_policy.name
    else:  # what CachedTrialRunner.run_fold trains for one fold of model 7's search
        spec = get_spec(7).changed(net={"hidden_units": (1024, 64), "dropout": 0.4,
                                        "freeze_backbone": True})
        shape = (1, 1, 1024)
        precision = head_precision()
        step_model = build_head(spec, 10, shape, seed=0, dtype=precision)
        batch = 250
    rng = np.random.default_rng(0)
    variants = len(flip_variants(spec))
    maps = rng.standard_normal((variants, args.images, *shape), dtype=np.float32)
    maps = np.maximum(maps, 0).astype(np.float16)  # ReLU6-like maps: non-negative
    labels = rng.integers(0, 10, size=args.images)
    rows = np.arange(args.images)
    start_weights = step_model.get_weights()
    if args.jit:  # an experiment: fit_on_features compiles without XLA
        compile_without = step_model.compile
        step_model.compile = lambda **kw: compile_without(**{**kw, "jit_compile": True})
    common = {"source": InMemorySource(maps), "train_rows": rows, "y_train": labels,
              "val_rows": None, "y_val": None, "epochs": args.epochs, "batch_size": batch,
              "seed": 0, "num_variants": variants, "max_shift": spec.aug.feature_shift,
              "steps_per_call": STEPS_PER_CALL, "verbose": 0, "validate_each_epoch": False,
              "label_smoothing": spec.recipe.label_smoothing}

    def hand_written(epoch: int) -> None:
        fit_head(step_model, optimizer=optimizers["hand_written"], callbacks=[recorder],
                 **common)

    def keras_fit(epoch: int) -> None:
        fit_on_features(step_model, optimizer=optimizers["keras_fit"], callbacks=[recorder],
                        **common)

    loops = {"hand_written": hand_written, "keras_fit": keras_fit}
    optimizers = {name: make_optimizer("adam", spec.recipe.learning_rate) for name in loops}
    results: dict[str, list[float]] = {name: [] for name in loops}
    first: dict[str, list[float]] = {name: [] for name in loops}
    for round_ in range(args.rounds):
        for name, run in loops.items():
            step_model.set_weights(start_weights)
            recorder = EpochRecorder(args.epochs, 0)
            run(round_)
            seconds = [row["seconds"] for row in recorder.rows]
            first[name].append(args.images / seconds[0])
            results[name] += [args.images / s for s in seconds[1:]]
            print(json.dumps({"loop": name, "round": round_ + 1, "epoch_seconds": seconds,
                              "images_per_s": [round(args.images / s, 1) for s in seconds]}),
                  flush=True)
    env = environment_info()
    summary = {"mode": args.mode, "images": args.images, "batch": batch, "shape": list(shape),
               "precision": precision,
               "cpu": env["cpu"], "cores": env["cpu_count"], "git": env["git"],
               "keras": keras.__version__,
               **{f"{name}_first_epoch": round(float(np.mean(r)), 1)
                  for name, r in first.items()},
               **{f"{name}_later_epochs": round(float(np.mean(r)), 1) if r else None
                  for name, r in results.items()}}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
