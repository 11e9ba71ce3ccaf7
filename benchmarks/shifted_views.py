"""Would test-time shifts help a saved model? Its test top-1 on shifted copies of the test images
and on the mean of its predictions over them.

Each view moves every test image by ``--pixels`` in one direction (reflect padding, so no
black border appears); the saved model is used as it is (model 8 already averages each image
with its mirror image). Prints one line per view; BENCHMARKS.md ("Model 8: what was tried")
records the result. Example::

    python benchmarks/shifted_views.py --run artifacts/runs/RUN_ID \\
        --data ../shared/data/cifar10-images.tar.gz
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np


def shifted(images: np.ndarray, down: int, right: int, pad: int) -> np.ndarray:
    """``images`` moved down by ``down`` and right by ``right`` pixels, reflect-padded."""
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    height, width = images.shape[1:3]
    return padded[:, pad - down:pad - down + height, pad - right:pad - right + width]


def main(argv=None) -> int:
    from cifar_core.data import load_dataset
    from cifar_core.inference import load_model_safely

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a run folder with model.keras")
    parser.add_argument("--data", required=True, help="the data set the run was tested on")
    parser.add_argument("--pixels", type=int, default=3, help="shift of each view")
    args = parser.parse_args(argv)

    dataset = load_dataset(args.data)
    images, labels = dataset.x_test.astype("float32"), dataset.y_test
    model = load_model_safely(args.run / "model.keras")
    p = args.pixels
    views = [(0, 0), (p, 0), (-p, 0), (0, p), (0, -p)]
    probabilities = []
    for down, right in views:
        start = time.perf_counter()
        probabilities.append(model.predict(shifted(images, down, right, p), batch_size=500,
                                           verbose=0))
        view = (probabilities[-1].argmax(axis=1) == labels).mean()
        mean = (np.mean(probabilities, axis=0).argmax(axis=1) == labels).mean()
        print(f"shift ({down:+d}, {right:+d}) px: view {view:.2%}, mean of "
              f"{len(probabilities)} views {mean:.2%} ({time.perf_counter() - start:.0f} s)",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
