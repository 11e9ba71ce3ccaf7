"""How far would averaging several finished runs go? Test top-1 of the mean of their saved test
probabilities, for every combination of the runs given.

Nothing is trained or predicted again: each run's ``predictions.npz`` holds every test image's
class probabilities (float16), so this takes seconds. The runs must have been tested on the
same images (their data hash and test indices are checked). It measures a ceiling, not a
recipe: an ensemble of k runs costs k times the training hour and k times the prediction.
BENCHMARKS.md ("Model 8: what was tried") records the result. Example::

    python benchmarks/ensemble_of_runs.py --runs 20261127-184047-m8-fine 20261127-212630-m8-fine
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from cifar_core.analysis.images import load_predictions
from cifar_core.runs.store import load_run, resolve_run_ref


def test_probabilities(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, true labels) of a run's test images, in test-index order."""
    predictions = load_predictions(run_dir)
    if "probs" not in predictions:
        raise SystemExit(f"{run_dir}: predictions.npz has no full probabilities ('probs')")
    order = np.argsort(predictions["test_index"])
    return predictions["probs"][order].astype(np.float32), predictions["y_true"][order]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, help="run ids or folders (2 or more)")
    parser.add_argument("--artifacts", help="artifacts root holding runs/ (default as the CLI)")
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        parser.error("give at least two runs")

    runs, data_hashes = {}, set()
    for ref in args.runs:
        record = load_run(resolve_run_ref(ref, args.artifacts))
        data_hashes.add(((record.config or {}).get("dataset") or {}).get("sha256"))
        runs[record.run_id] = test_probabilities(record.path)
    labels = {tuple(y) for _, y in runs.values()}
    if len(data_hashes) != 1 or len(labels) != 1:
        raise SystemExit("the runs were not tested on the same data (hash or test labels differ)")
    y_true = next(iter(runs.values()))[1]

    results = []
    for size in range(1, len(runs) + 1):
        for combination in itertools.combinations(runs, size):
            mean = sum(runs[run_id][0] for run_id in combination) / size
            top1 = float((mean.argmax(axis=1) == y_true).mean())
            results.append({"runs": list(combination), "test_top1": round(top1, 4)})
            print(f"{size} run(s): {100 * top1:.2f}%  {' + '.join(combination)}")
    best = {size: max((r for r in results if len(r["runs"]) == size),
                      key=lambda r: r["test_top1"]) for size in range(1, len(runs) + 1)}
    print(json.dumps({"data_sha256": data_hashes.pop(), "test_images": len(y_true),
                      "best_by_size": best}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
