"""Dashboard benchmark: warm render time of every page and upload-to-prediction latency.

    python benchmarks/dashboard.py [--artifacts DIR] [--repeats 5] [--no-write]
    python benchmarks/dashboard.py --run RUN [--artifacts DIR]   # one real run's latency

Makes 10 completed runs with the real pipeline on a tiny CIFAR-100-format archive (models 1-5
with two seeds; reused when ``--artifacts`` already holds 10), then drives the app through
``streamlit.testing.v1.AppTest``: each page is rendered once cold, then ``--repeats`` times
warm. Classify is timed from setting the uploaded file to the rendered prediction, and the
library path (decode + predict) alone. Prints the results and writes the "Dashboard" section
of BENCHMARKS.md (targets: every page under 1.5 s, a prediction under 200 ms).

With ``--run`` it times only the predictions of that completed run (for example model 8's,
trained by ``cifar-core bench``) and writes its own "Prediction latency" section.

AppTest runs the scripts in-process without a browser, so these times are the server side of
a page view; the browser adds transfer and drawing (the browser test shows it end to end).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the tiny archive writer shared with the tests

from tiny_runs import make_tiny_runs, photo  # noqa: E402

PAGES = ("overview", "classes", "confusion", "errors", "compare", "embedding", "augmentation",
         "classify", "tuning", "present")
EVERY_MODEL_TARGET_S = 2.0
PAGE_TARGET_S, PREDICT_TARGET_S = 1.5, 0.2
RUNS = [(model, "fine", seed) for seed in (42, 7) for model in range(1, 6)]  # 10 runs
# With MobileNet weights (--backbone-weights): models 1-8 and a second seed of models 1-2,
# still 10 runs, so that every-model classification covers the whole progression.
RUNS_1_TO_8 = [(model, "fine", 42) for model in range(1, 9)] + [(1, "fine", 7), (2, "fine", 7)]


def _timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def time_pages(artifacts: Path, run_id: str, repeats: int) -> dict[str, dict]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.session_state["artifacts_dir"] = str(artifacts)
    at.session_state["run_id"] = run_id
    at.run()
    results = {}
    for page in PAGES:
        at.switch_page(f"pages/{page}.py")
        cold = _timed(at.run)
        warm = [_timed(at.run) for _ in range(repeats)]
        problems = [e.value for e in (*at.exception, *at.error)]
        if problems:
            raise SystemExit(f"page {page} failed: {problems}")
        results[page] = {"cold": cold, "median": statistics.median(warm), "max": max(warm)}
        print(f"{page:13} cold {cold:6.2f} s   warm median {results[page]['median']:.3f} s  "
              f"max {results[page]['max']:.3f} s", flush=True)
    return results


def time_predictions(artifacts: Path, run_id: str, repeats: int) -> dict[str, float]:
    from streamlit.testing.v1 import AppTest

    from cifar_core.analysis.classify import classify_upload
    from cifar_core.inference import Classifier
    from cifar_core.runs.store import runs_root

    classifier = Classifier(runs_root(artifacts) / run_id)
    photos = [photo(i) for i in range(repeats + 1)]
    classify_upload(classifier, photos[0], explain=False)  # warm up
    library = [classify_upload(classifier, p, explain=False).seconds for p in photos[1:]]
    explained = [_timed(lambda p=p: classify_upload(classifier, p)) for p in photos[1:]]

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.session_state["artifacts_dir"] = str(artifacts)
    at.session_state["run_id"] = run_id
    at.run()
    at.switch_page("pages/classify.py").run()
    page = []
    for i, upload in enumerate(photos):
        at.file_uploader[0].set_value((f"photo{i}.jpg", upload, "image/jpeg"))
        seconds = _timed(at.run)
        _check_prediction(at)
        if i:  # the first upload loads the model
            page.append(seconds)
    # Every counted model on the same upload: the toggle on, then new uploads (the first
    # loads the models).
    at.toggle(key="classify-every-model").set_value(True).run()
    every = []
    for i, upload in enumerate(photos):
        at.file_uploader[0].set_value((f"again{i}.jpg", upload, "image/jpeg"))
        seconds = _timed(at.run)
        _check_prediction(at)
        if not any(m.value.startswith("**model ") for m in at.markdown):
            raise SystemExit("no every-model answers shown")
        if i:
            every.append(seconds)
    models = sum(m.value.startswith("**model ") for m in at.markdown)
    results = {"library decode+predict": statistics.median(library),
               "library with saliency": statistics.median(explained),
               "Classify page, upload to rendered prediction": statistics.median(page),
               "Classify page, slowest": max(page),
               f"Classify page with every counted model ({models}), upload to rendered":
                   statistics.median(every)}
    for name, value in results.items():
        print(f"{name:46} {1000 * value:7.1f} ms", flush=True)
    return results


def _check_prediction(at) -> None:
    if not any(m.value.startswith("**Prediction:**") for m in at.markdown):
        raise SystemExit(f"no prediction shown: {[e.value for e in at.error]}")


def time_one_run(artifacts: Path, run_id: str, repeats: int) -> tuple[str, int]:
    """The latency section for one real run: a raw 32x32 image through the model, and the
    library and Classify page paths of ``time_predictions``; returns it and the model number."""
    import numpy as np

    from cifar_core.inference import Classifier
    from cifar_core.runs.store import load_run, runs_root

    record = load_run(runs_root(artifacts) / run_id)
    classifier = Classifier(record.path)
    image = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3)).astype("float32")
    classifier.probabilities(image)  # warm up
    raw = [_timed(lambda: classifier.probabilities(image)) for _ in range(4 * repeats)]
    predictions = {"model alone (one 32x32 image)": statistics.median(raw),
                   **time_predictions(artifacts, run_id, repeats)}
    lines = [f"Generated by `python benchmarks/dashboard.py --run {run_id}` on "
             f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M')} UTC.", "", *environment_lines(),
             f"- Run `{run_id}`: model {record.model_number}, medians of {4 * repeats} "
             f"(model alone) or {repeats} calls after a warm-up", "",
             "| prediction, one image, warm | median |", "|---|---|"]
    lines += [f"| {name} | {1000 * value:.0f} ms |" for name, value in predictions.items()]
    return "\n".join(lines) + "\n", record.model_number


def publish(body: str, key: str, title: str, write: bool = True) -> None:
    """Print a benchmark's Markdown block and, unless ``write`` is off (``--no-write``), put
    it into BENCHMARKS.md under ``title``, replacing the block of the same ``key``."""
    print(body)
    if write:
        from cifar_core.bench import update_section

        update_section(REPO / "BENCHMARKS.md", key, body, title)
        print(f"wrote the {key} block of {REPO / 'BENCHMARKS.md'}")


def environment_lines() -> list[str]:
    """The machine (with its load now), the versions and the code, as Markdown list items."""
    from cifar_core.runs.provenance import environment_info

    env = environment_info()
    packages = env["packages"]
    commit = (env["git"].get("commit") or "unknown")[:12] + (
        " (uncommitted changes)" if env["git"].get("dirty") else "")
    load = os.getloadavg()[0]
    return [
        f"- Machine: {env['cpu']}, {env['cpu_count']} cores; {env['platform']}; 1-min load "
        f"average at the end {load:.1f}",
        f"- Python {env['python']}, Streamlit {packages.get('streamlit')}, plotly "
        f"{packages.get('plotly')}, TensorFlow {packages.get('tensorflow')}, Keras "
        f"{packages.get('keras')}",
        f"- Code: commit {commit}",
    ]


def markdown(pages: dict, predictions: dict, runs: int, repeats: int,
             plan: str = "models 1-5, seeds 42 and 7",
             command: str = "python benchmarks/dashboard.py", train: int = 500) -> str:
    lines = [
        f"Generated by `{command}` on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M')} UTC.",
        "",
        *environment_lines(),
        f"- {runs} completed runs ({plan}, real pipeline, quick profile, one epoch, tiny "
        f"CIFAR-100-format data: {train} train / 200 test images); AppTest, in-process, no "
        "browser. "
        "Latency depends on the network, not on how well it was trained.",
        f"- Warm = median of {repeats} reruns after one cold render (the cold one includes "
        "imports and loading data and models).",
        "",
        f"| page | cold | warm (median) | warm (max) | target < {PAGE_TARGET_S} s |",
        "|---|---|---|---|---|",
    ]
    for page, result in pages.items():
        ok = "yes" if result["max"] < PAGE_TARGET_S else "**no**"
        lines.append(f"| {page} | {result['cold']:.2f} s | {result['median']:.3f} s | "
                     f"{result['max']:.3f} s | {ok} |")
    lines += ["", "| prediction (640x480 JPEG, warm, model 5) | median | target | met |",
              "|---|---|---|---|"]
    for name, value in predictions.items():
        target = EVERY_MODEL_TARGET_S if "every counted model" in name else PREDICT_TARGET_S
        ok = "yes" if value < target else "**no**"
        lines.append(f"| {name} | {1000 * value:.0f} ms | < {1000 * target:.0f} ms | {ok} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--artifacts", type=Path,
                        help="artifacts folder for the 10 runs (default: a temporary one)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--backbone-weights", metavar="FILE",
                        help="local MobileNet weights: the 10 runs are then models 1-8 (and "
                             "models 1-2 again), so every model of the progression is timed")
    parser.add_argument("--run", help="time only this completed run's predictions (a run id "
                                      "in --artifacts, default: CIFAR_CORE_ARTIFACTS)")
    args = parser.parse_args()
    if args.run:
        from cifar_core import settings

        artifacts = settings.artifacts_dir(args.artifacts)
        body, model = time_one_run(artifacts, args.run, args.repeats * 2)
        publish(body, f"latency-model-{model}", f"Prediction latency: model {model}",
                not args.no_write)
        return 0
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as scratch:
        artifacts = (args.artifacts or Path(scratch)).resolve()
        artifacts.mkdir(parents=True, exist_ok=True)
        os.environ["CIFAR_CORE_ARTIFACTS"] = str(artifacts)
        os.environ.setdefault("CIFAR_CORE_CACHE", str(Path(scratch) / "cache"))
        plan = RUNS_1_TO_8 if args.backbone_weights else RUNS
        # Model 7's search batches reach 250: 1,000 training images give its folds 400.
        per_class = 10 if args.backbone_weights else 5
        runs = make_tiny_runs(artifacts, plan, args.backbone_weights, per_class)
        model5 = next(r for r in runs if r.model_number == 5)
        pages = time_pages(artifacts, model5.run_id, args.repeats)
        predictions = time_predictions(artifacts, model5.run_id, args.repeats * 2)
        body = markdown(pages, predictions, len(runs), args.repeats,
                        "models 1-8 and models 1-2 again with seed 7" if args.backbone_weights
                        else "models 1-5, seeds 42 and 7",
                        "python benchmarks/dashboard.py" + (
                            f" --backbone-weights {Path(args.backbone_weights).name}"
                            if args.backbone_weights else ""), 100 * per_class)
    print()
    publish(body, "dashboard", "Dashboard: page render and prediction latency",
            not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
