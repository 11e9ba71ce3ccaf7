"""Reliability under load: latency and memory over many predictions, and 50 run folders.

    python benchmarks/reliability.py [--artifacts DIR] [--predictions 200] [--uploads 50]
                                     [--runs 50] [--repeats 5] [--no-write]

1. The library: one ``cifar_core.inference.Classifier`` (model 5), then ``--predictions``
   sequential calls, each decoding a different 640x480 JPEG (``load_image_array``) and
   predicting it. 2. The Classify page (``pages/classify.py`` through
   ``streamlit.testing.v1.AppTest``, the model cached by the page): ``--uploads`` different
   uploads, each timed from setting the file to the rendered prediction (with its saliency
   map). For both: latency per call (median of the first 20 and of the last 20, max) and this
   process's resident memory (psutil) at the start, the middle and the end. 3. The app with
   ``--runs`` run folders (copies of three real runs under their own ids,
   tests/reliability/many_runs.py): every page rendered once cold, then ``--repeats`` times
   warm. The three source runs are trained by the real pipeline on a tiny CIFAR-100-format
   archive (500 train / 200 test images), or reused from ``--artifacts``.

Prints the results and writes the "reliability" generated section of BENCHMARKS.md.
AppTest runs the pages in this process without a browser: page times are the server side.
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
sys.path.insert(0, str(REPO / "tests" / "reliability"))  # clone_runs

from tiny_runs import make_tiny_runs, photo  # noqa: E402

PAGES = ("overview", "train", "tuning", "classes", "confusion", "augmentation", "classify",
         "present")
SOURCES = [(1, "fine"), (5, "fine"), (1, "coarse")]  # as tests/conftest.py's fixture_runs
SEED = 42  # the default seed, as the fixture runs
WINDOW = 20  # calls in the "first" and "last" latency windows


def rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def summarize(name: str, seconds: list[float], memory: dict[str, float]) -> dict:
    result = {"name": name, "calls": len(seconds),
              "first": statistics.median(seconds[:WINDOW]),
              "last": statistics.median(seconds[-WINDOW:]), "max": max(seconds),
              "memory": memory}
    print(f"{name}: {len(seconds)} calls, median first {WINDOW} {1000 * result['first']:.1f} "
          f"ms, last {WINDOW} {1000 * result['last']:.1f} ms, max {1000 * result['max']:.1f} "
          "ms; RSS " + ", ".join(f"{k} {v:.0f} MiB" for k, v in memory.items()), flush=True)
    return result


def library_predictions(run_dir: Path, count: int) -> dict:
    from cifar_core.data.images import load_image_array
    from cifar_core.inference import Classifier

    classifier = Classifier(run_dir)
    classifier.predict(load_image_array(photo(999_999)))  # warm up: the first call traces
    images = [photo(i) for i in range(count)]
    seconds, memory = [], {"start": rss_mib()}
    for index, data in enumerate(images):
        start = time.perf_counter()
        prediction = classifier.predict(load_image_array(data))[0]
        seconds.append(time.perf_counter() - start)
        assert prediction.classes[0] in classifier.class_names
        if index + 1 == count // 2:
            memory["middle"] = rss_mib()
    memory["end"] = rss_mib()
    return summarize("library", seconds, memory)


def page_uploads(artifacts: Path, run_id: str, count: int) -> dict:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.session_state["artifacts_dir"] = str(artifacts)
    at.session_state["run_id"] = run_id
    at.run()
    at.switch_page("pages/classify.py").run()
    at.session_state["classify-explain"] = True  # with its saliency map: the heaviest answer
    at.file_uploader[0].set_value(("warm-up.jpg", photo(999_999), "image/jpeg"))
    at.run()  # loads and caches the model
    uploads = [photo(1000 + i) for i in range(count)]
    seconds, memory = [], {"start": rss_mib()}
    for index, data in enumerate(uploads):
        at.file_uploader[0].set_value((f"upload{index}.jpg", data, "image/jpeg"))
        start = time.perf_counter()
        at.run()
        seconds.append(time.perf_counter() - start)
        if at.exception or not any(m.label == "Prediction" for m in at.metric):
            raise SystemExit(f"upload {index}: no prediction shown: "
                             f"{[e.value for e in (*at.exception, *at.error)]}")
        if index + 1 == count // 2:
            memory["middle"] = rss_mib()
    memory["end"] = rss_mib()
    return summarize("Classify page", seconds, memory)


def page_times(artifacts: Path, repeats: int) -> dict[str, dict]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.session_state["artifacts_dir"] = str(artifacts)
    at.run()
    results = {}
    for page in PAGES:
        at.switch_page(f"pages/{page}.py")
        start = time.perf_counter()
        at.run()
        cold = time.perf_counter() - start
        warm = []
        for _ in range(repeats):
            start = time.perf_counter()
            at.run()
            warm.append(time.perf_counter() - start)
        problems = [e.value for e in (*at.exception, *at.error)]
        if problems:
            raise SystemExit(f"page {page} failed with many runs: {problems}")
        results[page] = {"cold": cold, "median": statistics.median(warm), "max": max(warm)}
        print(f"{page:13} cold {cold:6.2f} s   warm median {results[page]['median']:.3f} s  "
              f"max {results[page]['max']:.3f} s", flush=True)
    return results


def markdown(calls: list[dict], pages: dict, model_run, runs: int, repeats: int,
             load: float) -> str:
    import psutil
    import streamlit

    from cifar_core.bench import provenance_lines

    lines = [
        f"Generated by `python benchmarks/reliability.py` on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M')} UTC.",
        "",
        *provenance_lines(model_run.config["dataset"]),
        f"- Streamlit {streamlit.__version__}, psutil {psutil.__version__}; 1-min load "
        f"average at the end {load:.1f} (other work was running on the same 2 cores)",
        f"- Model: run `{model_run.run_id}` (model 5, fine labels, quick profile, 1 epoch, "
        f"seed {model_run.config['seed']}, trained by the real pipeline on the tiny archive "
        "above). Inputs: distinct random 640x480 JPEGs. Library = decode "
        "(`load_image_array`) + `Classifier.predict`; page = setting the upload to the "
        "rendered prediction with its saliency map (AppTest, in-process, no browser). RSS = "
        "this whole process (TensorFlow and Streamlit included).",
        "",
        f"| calls | count | median, first {WINDOW} | median, last {WINDOW} | max | "
        "RSS start / middle / end |",
        "|---|---|---|---|---|---|",
    ]
    for call in calls:
        memory = " / ".join(f"{call['memory'][k]:.0f}" for k in ("start", "middle", "end"))
        lines.append(f"| {call['name']} | {call['calls']} | {1000 * call['first']:.1f} ms | "
                     f"{1000 * call['last']:.1f} ms | {1000 * call['max']:.1f} ms | "
                     f"{memory} MiB |")
    lines += ["", f"The app with {runs} run folders (copies of the three real runs, each "
              f"under its own id); warm = median of {repeats} reruns after one cold render.",
              "Cold = the page's first render in this process (after the parts above).",
              "", "| page | cold | warm (median) | warm (max) |", "|---|---|---|---|"]
    for page, result in pages.items():
        lines.append(f"| {page} | {result['cold']:.2f} s | {result['median']:.3f} s | "
                     f"{result['max']:.3f} s |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--artifacts", type=Path,
                        help="folder for the three source runs (default: a temporary one)")
    parser.add_argument("--predictions", type=int, default=200)
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if min(args.predictions, args.uploads) < 2 * WINDOW:
        parser.error(f"--predictions and --uploads must be at least {2 * WINDOW}")
    from many_runs import clone_runs

    with tempfile.TemporaryDirectory(prefix="reliability-bench-") as scratch:
        sources = (args.artifacts or Path(scratch) / "sources").resolve()
        sources.mkdir(parents=True, exist_ok=True)
        os.environ["CIFAR_CORE_ARTIFACTS"] = str(sources)
        os.environ.setdefault("CIFAR_CORE_CACHE", str(Path(scratch) / "cache"))
        runs = make_tiny_runs(sources, [(model, labels, SEED) for model, labels in SOURCES])
        model5 = next(r for r in runs if r.model_number == 5 and r.label_set == "fine")
        calls = [library_predictions(model5.path, args.predictions),
                 page_uploads(sources, model5.run_id, args.uploads)]
        many = Path(scratch) / "many"
        picked = [next(r for r in runs if (r.model_number, r.label_set) == key).path
                  for key in SOURCES]
        clone_runs(picked, many, args.runs)
        pages = page_times(many, args.repeats)
        load = os.getloadavg()[0]
        body = markdown(calls, pages, model5, args.runs, args.repeats, load)
    print()
    from dashboard import publish

    publish(body, "reliability", "Reliability under load: predictions, uploads, 50 run folders",
            not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
