"""Benchmark models 6 and 7 (issue 3) and record the numbers in BENCHMARKS.md.

Measures, on one machine, with the data and backbone weights given:

- model 6 fine-tuned and model 6 frozen (``--freeze-base``, trained through the feature
  cache): test top-1, epochs, wall time (frozen: including building the feature cache),
  training images per second;
- model 7 in ``cached`` mode, the whole protocol (features, stage 1, stage 2, the final
  fine-tune and the test evaluation): wall time, the time of each part, test top-1;
- model 7 in ``full`` mode: seconds per trial-fold epoch (every trial fine-tunes the whole
  network), measured on one fold, and the resulting estimate for the whole search.

Every number names its run folder (config, data hash, code version). Run it on a quiet
machine; the lead's reference run::

    python benchmarks/models_6_7.py --data ../shared/data/cifar10-images.tar.gz \\
        --backbone-weights ../shared/weights/mobilenet_v1_1.0_imagenet_notop.weights.h5

Smaller settings (``--epochs``, ``--trials`` ...) give a smoke run; the section title and the
header say which settings were used.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cifar_core import settings
from cifar_core.bench import provenance_lines, update_section
from cifar_core.runs.store import load_run

PARTS = ("6-finetuned", "6-frozen", "7-cached", "7-full")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get(settings.ENV_DATA),
                        help=f"data set (default: env {settings.ENV_DATA})")
    parser.add_argument("--backbone-weights", default=None,
                        help=f"MobileNet weights (default: env {settings.ENV_BACKBONE_WEIGHTS}, "
                             "else the ImageNet download)")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"which measurements, comma-separated (default: {','.join(PARTS)})")
    parser.add_argument("--profile", choices=("seed", "quick"), default="seed")
    parser.add_argument("--epochs", type=int, help="override the final trainings' epochs")
    parser.add_argument("--trials", type=int, help="model 7 stage 1 trials (default 30)")
    parser.add_argument("--folds", type=int, help="model 7 folds (default 3)")
    parser.add_argument("--search-epochs", type=int, help="model 7 stage 1 epochs (default 20)")
    parser.add_argument("--search-batch-size", type=int, help="stage 1 batch (default 250)")
    parser.add_argument("--grid-epochs", type=int, help="model 7 stage 2 epochs (default 50)")
    parser.add_argument("--grid-batch-size", type=int, help="stage 2 batch (default 50)")
    parser.add_argument("--batch-size", type=int, help="override the final trainings' batch")
    parser.add_argument("--grid-trials", type=int, help="model 7 stage 2 cap (default none)")
    parser.add_argument("--grid-folds", type=int, help="stage 2 folds (default: all)")
    parser.add_argument("--full-epochs", type=int, default=2,
                        help="full mode: epochs timed on one fold, at stage 1's and at "
                             "stage 2's batch size (the first includes graph tracing; "
                             "default 2)")
    parser.add_argument("--artifacts", help="artifacts root for the runs (default: env or "
                                            "./artifacts)")
    parser.add_argument("--output", default="BENCHMARKS.md")
    parser.add_argument("--section", default=None, help="generated block name")
    parser.add_argument("--reuse-cache", action="store_true",
                        help="reuse existing feature caches (default: a fresh cache per part, "
                             "so the wall times include building it)")
    args = parser.parse_args(argv)
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    return args


def _pct(value) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "-"


def _secs(value) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    if value < 120:
        return f"{value:.0f} s"
    return f"{value / 60:.1f} min" if value < 7200 else f"{value / 3600:.1f} h"


class Bench:
    def __init__(self, args):
        self.args = args
        self.weights = settings.backbone_weights(args.backbone_weights)
        self.rows: list[str] = []
        self.notes: list[str] = []
        self.search_facts: dict = {}
        self.temporary: list[str] = []
        self.saved_cache = os.environ.get(settings.ENV_CACHE)

    def config(self, model: int, **extra):
        from cifar_core.training.config import make_config

        a = self.args
        overrides = {"epochs": a.epochs, "batch_size": a.batch_size,
                     "backbone_weights": self.weights, "search_trials": a.trials,
                     "search_folds": a.folds, "search_epochs": a.search_epochs,
                     "search_batch_size": a.search_batch_size, "grid_epochs": a.grid_epochs,
                     "grid_batch_size": a.grid_batch_size, "grid_trials": a.grid_trials,
                     "grid_folds": a.grid_folds, **extra}
        return make_config(model, profile=a.profile, **overrides)

    def fresh_cache(self):
        """A new, empty feature cache for the next part (removed at the end)."""
        if self.args.reuse_cache:
            return None
        folder = tempfile.mkdtemp(prefix="cifar-core-bench-cache-")
        self.temporary.append(folder)
        os.environ[settings.ENV_CACHE] = folder
        return folder

    def cleanup(self) -> None:
        for folder in self.temporary:
            shutil.rmtree(folder, ignore_errors=True)
        if self.saved_cache is None:
            os.environ.pop(settings.ENV_CACHE, None)
        else:
            os.environ[settings.ENV_CACHE] = self.saved_cache

    def run(self, name: str, config, dataset) -> tuple[Path, float]:
        from cifar_core.pipeline import execute_run

        print(f"== {name} ==", flush=True)
        start = time.perf_counter()
        writer = execute_run(config, dataset=dataset, artifacts=self.args.artifacts,
                             log=lambda line: print(line, flush=True))
        return writer.path, time.perf_counter() - start

    def model6(self, dataset, frozen: bool) -> None:
        self.fresh_cache()
        path, wall = self.run(f"model 6 {'frozen' if frozen else 'fine-tuned'}",
                              self.config(6, freeze_base=frozen or None), dataset)
        record = load_run(path)
        metrics = record.metrics or {}
        training = metrics.get("training") or {}
        cache = training.get("feature_cache") or {}
        what = "model 6 frozen (head on cached features)" if frozen else \
            "model 6 fine-tuned (whole network)"
        extra = (f"; features {'reused' if cache.get('reused') else 'built'} in "
                 f"{_secs(cache.get('seconds'))}") if frozen and cache else ""
        self.rows.append(
            f"| {what} | {_pct(metrics.get('test_top1'))} | {_pct(metrics.get('test_top5'))} "
            f"| {training.get('epochs_run', '-')} | {_secs(training.get('training_seconds'))} "
            f"| {_secs(wall)}{extra} | {training.get('images_per_second', 0):,.0f} "
            f"| `{record.run_id}` |")

    def model7_cached(self, dataset) -> None:
        import json

        self.fresh_cache()
        config = self.config(7, search_mode="cached")
        path, wall = self.run("model 7, cached search, whole protocol", config, dataset)
        record = load_run(path)
        metrics = record.metrics or {}
        training = metrics.get("training") or {}
        search = json.loads((path / "search.json").read_text())
        stages = search.get("stages", {})
        s1, s2 = stages.get("1", {}), stages.get("2", {})
        plan = s2.get("plan") or {}
        stage2_epochs = _mean_stage2_epochs(path)
        self.search_facts = {"grid_trials": s2.get("trials"), "stage2_epochs": stage2_epochs,
                             "final_seconds": training.get("training_seconds")}
        search_seconds = (s1.get("seconds") or 0) + (s2.get("seconds") or 0)
        self.rows.append(
            f"| model 7, cached search + fine-tuned winner | {_pct(metrics.get('test_top1'))} "
            f"| {_pct(metrics.get('test_top5'))} | {training.get('epochs_run', '-')} "
            f"| {_secs(training.get('training_seconds'))} | {_secs(wall)} "
            f"| {training.get('images_per_second', 0):,.0f} | `{record.run_id}` |")
        self.notes.append(
            f"- Model 7 cached protocol: {config.search_trials} trials x {config.search_folds} "
            f"folds x {config.search_epochs} epochs (batch {config.search_batch_size}) took "
            f"{_secs(s1.get('seconds'))} (the feature cache included); the grid over "
            f"{', '.join(plan.get('varying', {})) or 'nothing'} ({plan.get('size')} "
            f"combinations, {s2.get('trials')} run, mean {stage2_epochs:.1f} epochs a fold "
            f"with early stopping, batch {config.grid_batch_size}) took "
            f"{_secs(s2.get('seconds'))}; the final fine-tune "
            f"{_secs(training.get('training_seconds'))} ({training.get('epochs_run')} epochs). "
            f"Search {_secs(search_seconds)}, all in {_secs(wall)} (target: under 45 min; "
            "the report: more than 24 hours).")

    def model7_full(self, dataset) -> None:
        from cifar_core.search.space import apply_values, stage1_hyperparameters
        from cifar_core.search.trials import FullTrialRunner, StageSettings

        config = self.config(7, search_mode="full")
        print("== model 7, full mode: timing trial-fold epochs ==", flush=True)
        runner = FullTrialRunner(config, dataset)
        train_pos, val_pos = runner.folds[0]
        values = {hp.name: hp.default for hp in stage1_hyperparameters("p").space}
        values.update(units_1=128, units_2=64, dropout=0.2, learning_rate=1e-3,
                      optimizer="adam")
        trial_config = apply_values(config, values)
        timings = {}
        for label, batch, epochs in (("stage 1", config.search_batch_size,
                                      self.args.full_epochs),
                                     ("stage 2", config.grid_batch_size,
                                      self.args.full_epochs)):
            rows = runner.run_fold(trial_config, StageSettings(1, epochs, batch, 0),
                                   runner.rows[train_pos], runner.rows[val_pos], seed=1)
            seconds = [r["seconds"] for r in rows]
            steady = seconds[1:] or seconds  # the first epoch also traces the graph
            timings[label] = (sum(steady) / len(steady), seconds)
            print(f"{label}: epochs of {seconds} s at batch {batch}", flush=True)
        per1, per2 = timings["stage 1"][0], timings["stage 2"][0]
        grid = self.search_facts.get("grid_trials") or 8
        grid_epochs = self.search_facts.get("stage2_epochs") or config.grid_epochs
        stage1 = config.search_trials * config.search_folds * config.search_epochs * per1
        grid_folds = config.grid_folds or config.search_folds
        stage2 = grid * grid_folds * grid_epochs * per2
        final = self.search_facts.get("final_seconds") or 0.0
        self.rows.append(
            f"| model 7, full mode (every trial fine-tunes), one trial-fold epoch | - | - "
            f"| - | {_secs(per1)} an epoch at batch {config.search_batch_size} "
            f"({_secs(per2)} at batch {config.grid_batch_size}) | - "
            f"| {len(runner.rows[train_pos]) / per1:,.0f} | - |")
        self.notes.append(
            f"- Model 7 full mode on this machine: {per1:.0f} s per trial-fold epoch at batch "
            f"{config.search_batch_size} ({len(runner.rows[train_pos])} training images a "
            f"fold; epochs timed: {timings['stage 1'][1]} s, the first includes graph "
            f"tracing), {per2:.0f} s at batch {config.grid_batch_size}. Estimate: stage 1 "
            f"{config.search_trials} x {config.search_folds} x {config.search_epochs} epochs "
            f"= {_secs(stage1)}; stage 2 {grid} combinations x {grid_folds} folds x "
            f"{grid_epochs:.1f} epochs = {_secs(stage2)}"
            + (" (grid size and epochs from the cached run above)" if self.search_facts
               else " (assumed: 8 combinations, every epoch run)")
            + f"; with the final fine-tune, about {_secs(stage1 + stage2 + final)} in all.")

    def render(self, dataset, started: float, loads: tuple[float, float]) -> str:
        a = self.args
        command = "python benchmarks/models_6_7.py " + " ".join(sys.argv[1:])
        lines = [
            f"Generated by `{command.strip()}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC "
            f"({_secs(time.perf_counter() - started)} in all).",
            "",
            *provenance_lines(dataset.identity()),
            f"- Backbone weights: {self.weights}",
            f"- Profile {a.profile}" + "".join(
                f", {flag} {value}" for flag, value in (
                    ("--epochs", a.epochs), ("--batch-size", a.batch_size),
                    ("--trials", a.trials), ("--folds", a.folds),
                    ("--search-epochs", a.search_epochs),
                    ("--search-batch-size", a.search_batch_size),
                    ("--grid-epochs", a.grid_epochs), ("--grid-batch-size", a.grid_batch_size),
                    ("--grid-trials", a.grid_trials), ("--grid-folds", a.grid_folds))
                if value is not None),
            f"- Machine load (1-min load average) at start/end: {loads[0]:.1f} / {loads[1]:.1f}",
            "",
            "| what | test top-1 | test top-5 | epochs | training time | wall time "
            "| train img/s | run id |",
            "|---|---|---|---|---|---|---|---|",
            *self.rows,
            "",
            *self.notes,
        ]
        return "\n".join(lines) + "\n"


def _mean_stage2_epochs(run_dir: Path) -> float:
    """Mean epochs per fold of stage 2 (early stopping), from keras-tuner's trial records."""
    from keras_tuner.src.engine.trial import Trial

    values = []
    for trial_file in (run_dir / "tuner").glob("stage2-*/trial_*/trial.json"):
        trial = Trial.load(str(trial_file))
        if trial.metrics.exists("epochs"):
            values.append(trial.metrics.get_last_value("epochs"))
    return float(sum(values) / len(values)) if values else float("nan")


def main(argv=None) -> int:
    args = parse_args(argv)
    from cifar_core.data import load_dataset

    started, load_start = time.perf_counter(), os.getloadavg()[0]
    dataset = load_dataset(args.data)
    bench = Bench(args)
    parts = args.parts.split(",")
    try:
        if "6-finetuned" in parts:
            bench.model6(dataset, frozen=False)
        if "6-frozen" in parts:
            bench.model6(dataset, frozen=True)
        if "7-cached" in parts:
            bench.model7_cached(dataset)
        if "7-full" in parts:
            bench.model7_full(dataset)
    finally:
        bench.cleanup()
    body = bench.render(dataset, started, (load_start, os.getloadavg()[0]))
    section = args.section or f"{dataset.name}-models-6-7-{args.profile}"
    update_section(Path(args.output), section, body,
                   title=f"Models 6 and 7 on {dataset.name} ({args.profile} profile)")
    print(body)
    print(f"updated {args.output} (section {section})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
