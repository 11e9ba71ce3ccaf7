"""The ``cifar-core`` command line: train, runs, predict, export, bench, tune, report, card.

Every command prints errors as one line ``error: ...`` on stderr and exits non-zero; values
are checked before any data is loaded or model built.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ banner quiet

from cifar_core import settings
from cifar_core.errors import CifarCoreError, RunStopped

EXIT_ERROR = 2  # bad input or a failed run
EXIT_PARTIAL = 1  # predict: some files could not be classified; export: parity failed
EXIT_STOPPED = 143  # 128 + SIGTERM, as a process ended by the signal reports it


def _int_at_least(minimum: int):
    """An argparse type: an integer no smaller than ``minimum``, else a clear message."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--artifacts", metavar="DIR",
                        help=f"artifacts root holding runs/ (env {settings.ENV_ARTIFACTS}, "
                             "default ./artifacts)")


# The flags that describe a training, declared once: `train`, `bench` and `tune` each take
# the ones that apply to them (``_add_training_flags``), with the same names, types and help.
_TRAINING_FLAGS: dict[str, tuple[str, dict]] = {
    "labels": ("--labels", dict(choices=("fine", "coarse"), default="fine",
                                help="fine: 100 classes (default); coarse: 20 superclasses")),
    "data": ("--data", dict(metavar="PATH",
                            help="cifar-100-python.tar.gz or its folder, or an image-folder "
                                 f"data set (env {settings.ENV_DATA}; default: CIFAR-100 from "
                                 "the Keras cache, else its download)")),
    "profile": ("--profile", dict(choices=("seed", "quick"), default="seed",
                                  help="seed: the report's protocol (default); quick: a few "
                                       "epochs")),
    "epochs": ("--epochs", dict(type=_positive_int)),
    "batch_size": ("--batch-size", dict(type=_positive_int)),
    "patience": ("--patience", dict(type=_non_negative_int,
                                    help="early-stopping patience on val_loss (0 disables)")),
    "learning_rate": ("--learning-rate", dict(type=float)),
    "validation_fraction": ("--validation-fraction", dict(
        type=float, metavar="F", help="share of each class held out for validation (the "
                                      "spec's; 0.2 for models 1-7, as in the report)")),
    "seed": ("--seed", dict(type=_non_negative_int)),
    "freeze_base": ("--freeze-base", dict(
        action="store_true", help="MobileNet models (6-8): keep the whole base frozen and "
                                  "train only the head (a feature extractor)")),
    "backbone_weights": ("--backbone-weights", dict(
        metavar="PATH", help=f"MobileNet weights file (env {settings.ENV_BACKBONE_WEIGHTS}; "
                             "default: ImageNet download)")),
}


def _add_training_flags(parser: argparse.ArgumentParser, *names: str, **helps: str) -> None:
    """Add the shared flags ``names`` (keys of ``_TRAINING_FLAGS``); ``helps`` replaces the
    help of some where a command reads them differently (tune: the final training's)."""
    for name in names:
        flag, options = _TRAINING_FLAGS[name]
        parser.add_argument(flag, **{**options, **({"help": helps[name]} if name in helps
                                                   else {})})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cifar-core",
        description="Train, evaluate and use the CIFAR-100 model progression.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train and evaluate one model (or the progression)")
    which = train.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", type=int, metavar="N", help="model number (see README)")
    which.add_argument("--all", action="store_true",
                       help="the report's progression 1-7 in order (model 8: --model 8)")
    train.add_argument("--with-coarse", action="store_true",
                       help="with --all: also models 1 and 7 on the 20 superclasses")
    _add_training_flags(train, "labels", "data", "profile", "epochs", "batch_size",
                        "patience", "learning_rate", "validation_fraction", "seed",
                        "freeze_base", "backbone_weights")
    train.add_argument("--warm-start", action="store_true",
                       help="models 6-7 fine-tuned: train the head on cached frozen-base "
                            "features first, then fine-tune everything from it")
    _add_search_flags(train)
    train.add_argument("--resume", metavar="RUN",
                       help="model 7: continue a stopped or failed run's search in its folder "
                            "(same settings; --trials may grow)")
    _add_common(train)

    runs = sub.add_parser("runs", help="list runs with status and headline metrics")
    runs.add_argument("--json", action="store_true", help="machine-readable output")
    _add_common(runs)

    predict = sub.add_parser("predict", help="classify image files with a run's model")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--run", required=True,
                         help="a run id (as `runs` lists it) or the path `train` printed")
    predict.add_argument("--top", type=_positive_int, default=5)
    predict.add_argument("--json", action="store_true")
    predict.add_argument("--runtime", choices=("keras", "litert", "onnx", "saved_model"),
                         default="keras",
                         help="keras: model.keras (default); otherwise the run's export of "
                              "that format that passed its parity check (cifar-core export)")
    _add_common(predict)

    export = sub.add_parser(
        "export", help="export a run's model (LiteRT, ONNX, SavedModel), checked on its "
                       "test set",
        description="Writes <run>/exports/<file> and exports/manifest.json. The export is "
                    "run on the whole test set of the run's data and compared with the Keras "
                    "model's recorded predictions: float exports must agree on 99.9%% of the "
                    "images and lose at most 0.1 point of top-1, int8 at most 1.0 point. An "
                    "export outside that is kept, marked failed, and never used by default.")
    export.add_argument("--run", required=True,
                        help="a run id (as `runs` lists it) or the path `train` printed")
    export.add_argument("--format", required=True, choices=("litert", "onnx", "saved_model"))
    export.add_argument("--quantize", choices=("none", "float16", "int8"), default="none",
                        help="litert only: float16 weights, or full-integer int8 calibrated "
                             "on 300 images of the run's training split (default none)")
    export.add_argument("--data", metavar="PATH",
                        help="the run's data set, where it is no longer at the recorded path "
                             "(the test set for parity, training images for int8)")
    export.add_argument("--replace", action="store_true",
                        help="export again over an existing export of the same name")
    _add_common(export)

    bench = sub.add_parser("bench", help="train a list of models and record BENCHMARKS.md")
    bench.add_argument("--models", default="1-8", help="e.g. 1-5, 1,3,6 (default 1-8)")
    _add_training_flags(bench, "data", "labels", "profile", "epochs", "seed",
                        "backbone_weights")
    bench.add_argument("--output", default="BENCHMARKS.md", help="file to update")
    bench.add_argument("--section", help="name of the generated block (default from options)")
    bench.add_argument("--reuse", nargs="+", default=[], metavar="RUN",
                       help="completed runs (same model, labels, profile, seed and data) to "
                            "take as rows instead of training those models again")
    _add_common(bench)

    tune = sub.add_parser(
        "tune", help="model 7's search in keras-tuner's distributed mode (chief or worker)",
        description="The chief serves the search's oracle and, once it is over, trains and "
                    "evaluates the chosen model into a run folder; workers run the trials. "
                    "Give every process the same data, weights, labels, seed and search "
                    "settings.")
    tune.add_argument("--role", choices=("chief", "worker"), required=True)
    tune.add_argument("--tuner-id", metavar="NAME",
                      help="this process's name, unique per worker (env KERASTUNER_TUNER_ID; "
                           "the chief's default: chief)")
    tune.add_argument("--oracle-ip", metavar="IP",
                      help="the chief's address (env KERASTUNER_ORACLE_IP; default 127.0.0.1)")
    tune.add_argument("--oracle-port", type=_port, metavar="PORT",
                      help="the chief's port (env KERASTUNER_ORACLE_PORT)")
    tune.add_argument("--min-workers", type=_positive_int, default=1,
                      help="chief: hand out trials once this many workers have connected")
    _add_training_flags(tune, "labels", "data", "profile", "epochs", "batch_size",
                        "patience", "seed", "freeze_base", "backbone_weights",
                        data="as for train (the same data in every process)",
                        epochs="chief: the final training's epochs",
                        batch_size="chief: the final training's batch size")
    tune.add_argument("--resume", metavar="RUN", help="chief: continue a stopped search")
    _add_search_flags(tune)
    _add_common(tune)
    _add_report_commands(sub)
    _add_mirror_commands(sub)
    return parser


def _add_mirror_commands(sub) -> None:
    """`tensorboard-export` and `mlflow-sync`: copies of run folders for TensorBoard and
    MLflow (cifar_core.runs.tensorboard, cifar_core.reports.mlflow_sync)."""
    tensorboard = sub.add_parser(
        "tensorboard-export", help="write TensorBoard event files into run folders",
        description="Writes <run>/tensorboard/ (history.csv per epoch, the parameters for "
                    "the HParams dashboard, the test metrics) for runs made before new runs "
                    "wrote them; again over existing ones. Then: tensorboard --logdir "
                    "artifacts/runs")
    tensorboard.add_argument("--runs", nargs="+", metavar="RUN",
                             help="run ids or paths (default: every completed run)")
    _add_common(tensorboard)
    mlflow = sub.add_parser(
        "mlflow-sync", help="copy completed runs into an MLflow tracking server",
        description="Parameters, per-epoch and final metrics, tags and artifacts of each run, "
                    "keyed by the run id: syncing again sends only what changed. Needs pip "
                    "install -e \".[mlflow]\".")
    mlflow.add_argument("--tracking-uri", metavar="URI",
                        help="the server, e.g. http://127.0.0.1:5000 (default: MLflow's, env "
                             "MLFLOW_TRACKING_URI)")
    mlflow.add_argument("--experiment", metavar="NAME", default="cifar-core",
                        help="MLflow experiment, created if new (default cifar-core)")
    mlflow.add_argument("--runs", nargs="+", metavar="RUN",
                        help="run ids or paths (default: every completed run)")
    _add_common(mlflow)


def _add_report_commands(sub) -> None:
    """`report` (the Present page's report as HTML, PDF or slides) and `card` (a run's
    model card)."""
    report = sub.add_parser(
        "report", help="the stakeholder report of the counted runs: HTML, PDF or slides",
        description="The Present page's report from a terminal: the newest data set's runs, "
                    "the counting run of each model. PDF and slides are drawn by a headless "
                    "Chromium.")
    report.add_argument("--format", required=True, choices=("html", "pdf", "pptx"))
    report.add_argument("--out", metavar="PATH",
                        help="file to write (default ./cifar-report-<time>.<format>)")
    report.add_argument("--runs-dir", "--artifacts", dest="artifacts", metavar="DIR",
                        help="the artifacts folder holding runs/, or that runs/ folder (env "
                             f"{settings.ENV_ARTIFACTS}, default ./artifacts)")
    report.add_argument("--browser", metavar="PATH",
                        help=f"Chromium for PDF and slides (env {settings.ENV_CHROMIUM}; "
                             "default: chromium, chromium-browser or google-chrome on PATH)")
    card = sub.add_parser("card", help="write a run's model card (Markdown)")
    card.add_argument("--run", required=True,
                      help="a run id (as `runs` lists it) or the path `train` printed")
    card.add_argument("--out", metavar="PATH",
                      help="file to write, - for standard output (default "
                           "./<run id>-model-card.md)")
    _add_common(card)


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value


def _add_search_flags(parser: argparse.ArgumentParser) -> None:
    """Model 7's search settings (defaults: the report's protocol, see cifar_core.search)."""
    group = parser.add_argument_group("model 7 search")
    group.add_argument("--search-mode", choices=("auto", "cached", "full"),
                       help="cached: trials train the head on cached frozen-base features, "
                            "then the winner is fine-tuned; full: every trial fine-tunes the "
                            "whole network (the report; for GPUs); auto (default): cached on "
                            "CPU, full on GPU")
    group.add_argument("--trials", type=_positive_int, help="stage 1 random trials (30)")
    group.add_argument("--folds", type=_positive_int, help="cross-validation folds (3)")
    group.add_argument("--search-epochs", type=_positive_int, help="stage 1 epochs (20)")
    group.add_argument("--search-batch-size", type=_positive_int, help="stage 1 batch (250)")
    group.add_argument("--grid-epochs", type=_positive_int,
                       help="stage 2 epochs, with early stopping (50)")
    group.add_argument("--grid-batch-size", type=_positive_int, help="stage 2 batch (50)")
    group.add_argument("--grid-trials", type=_positive_int,
                       help="at most this many stage 2 combinations (default: all)")
    group.add_argument("--grid-folds", type=_positive_int,
                       help="stage 2 scores on the first N folds (default 1: one hold-out "
                            "split, as the report's GridSearch)")
    group.add_argument("--no-feature-cache", action="store_true",
                       help="frozen base: compute its features on the fly instead of caching")


def _search_overrides(args) -> dict:
    return {"search_mode": args.search_mode, "search_trials": args.trials,
            "search_folds": args.folds, "search_epochs": args.search_epochs,
            "search_batch_size": args.search_batch_size, "grid_epochs": args.grid_epochs,
            "grid_batch_size": args.grid_batch_size, "grid_trials": args.grid_trials,
            "grid_folds": args.grid_folds,
            "feature_cache": False if args.no_feature_cache else None}


def _config_overrides(args) -> dict:
    """The config settings a command's flags set, for ``make_config`` (None: the profile's
    value). The same for `train` and `tune`; a flag a command lacks counts as not given."""
    overrides = {name: getattr(args, name, None) for name in (
        "epochs", "batch_size", "patience", "learning_rate", "validation_fraction", "seed")}
    overrides["freeze_base"] = getattr(args, "freeze_base", False) or None
    overrides["warm_start"] = getattr(args, "warm_start", False) or None
    overrides["backbone_weights"] = settings.backbone_weights(args.backbone_weights)
    return {**overrides, **_search_overrides(args)}


def _train_configs(args) -> list:
    from cifar_core.training.config import make_config

    overrides = _config_overrides(args)
    if args.all:
        plan = [(n, "fine") for n in range(1, 8)]
        if args.with_coarse:
            plan += [(1, "coarse"), (7, "coarse")]
        overrides["freeze_base"] = None
    else:
        plan = [(args.model, args.labels)]
    return [make_config(n, labels=labels, profile=args.profile, **overrides)
            for n, labels in plan]


def cmd_train(args) -> int:
    configs = _train_configs(args)  # validates everything before any work
    queued_writer = None
    if args.resume:  # model 7: a stopped search, continued in its own folder
        from cifar_core.search.run import adopt_for_resume

        queued_writer = adopt_for_resume(args.resume, args.artifacts, configs)
    # One training at a time on this machine: queued jobs hold the slot in their worker;
    # a training typed in a terminal takes it here (and waits for a running job first).
    from cifar_core.jobs.locks import training_slot

    with training_slot(args.artifacts, on_wait=_say_waiting):
        _train_configs_in_turn(args, configs, queued_writer)
    return 0


def _say_waiting() -> None:
    print("waiting for the training that is running to finish (one at a time)...", flush=True)


def _train_configs_in_turn(args, configs, queued_writer) -> None:
    from cifar_core.data import load_dataset, training_split_size
    from cifar_core.pipeline import execute_run

    dataset = load_dataset(args.data, show_progress=True)
    for config in configs:  # a batch larger than the data: refused before any run folder
        config.check_fits(training_split_size(len(dataset.y_train), config.validation_fraction))
    verbose = 1 if sys.stdout.isatty() else 0
    for config in configs:
        print(f"== model {config.model} ({config.labels}, profile {config.profile}) ==",
              flush=True)
        writer = execute_run(config, dataset=dataset, artifacts=args.artifacts,
                             writer=queued_writer,
                             verbose=verbose, log=lambda line: print(line, flush=True))
        metrics = (writer.path / "metrics.json").read_text()
        headline = json.loads(metrics)
        print(f"test top-1 {headline['test_top1']:.4f}  top-5 {headline['test_top5']:.4f}"
              + (f"  superclass {headline['test_superclass_top1']:.4f}"
                 if headline.get("test_superclass_top1") is not None else ""), flush=True)
        print(writer.path, flush=True)


def cmd_runs(args) -> int:
    from cifar_core.runs.store import list_runs
    from cifar_core.runs.summary import run_summary

    summaries = [run_summary(r) for r in list_runs(args.artifacts)]
    if args.json:
        print(json.dumps(summaries, indent=2))
        return 0
    if not summaries:
        print(f"no runs under {settings.artifacts_dir(args.artifacts)}")
        return 0

    def pct(value):
        return f"{100 * value:5.1f}%" if isinstance(value, (int, float)) else "    -"

    print(f"{'run id':34} {'status':10} {'model':>5} {'labels':6} {'epochs':>6} "
          f"{'top-1':>6} {'top-5':>6} {'super':>6}")
    for s in summaries:
        print(f"{s['run_id']:34} {s['status']:10} {s['model'] or '-':>5} "
              f"{s['labels'] or '-':6} {s['epochs_run'] or '-':>6} {pct(s['test_top1']):>6} "
              f"{pct(s['test_top5']):>6} {pct(s['test_superclass_top1']):>6}"
              + (f"  ({'; '.join(s['problems'])})" if s["problems"] else ""))
    return 0


def cmd_predict(args) -> int:
    from cifar_core.data.images import load_image_array
    from cifar_core.errors import ImageError
    from cifar_core.inference import Classifier
    from cifar_core.runs.store import resolve_run_ref

    run_dir = resolve_run_ref(args.run, args.artifacts)
    if args.runtime == "keras":
        classifier = Classifier(run_dir)
    else:
        from cifar_core.exports.make import ExportClassifier

        classifier = ExportClassifier(run_dir, args.runtime)
    results, failures = [], 0
    for file in args.images:
        try:
            image = load_image_array(file)
        except ImageError as exc:
            failures += 1
            print(f"error: {exc}", file=sys.stderr)
            results.append({"file": file, "error": str(exc)})
            continue
        prediction = classifier.predict(image, top=args.top)[0]
        results.append({"file": file, "superclass": prediction.superclass,
                        "top": [{"class": c, "probability": round(p, 6)} for c, p in
                                zip(prediction.classes, prediction.probabilities, strict=True)]})
        if not args.json:
            ranked = ", ".join(f"{c} {100 * p:.1f}%" for c, p in
                               zip(prediction.classes, prediction.probabilities, strict=True))
            superclass = f"  [superclass: {prediction.superclass}]" if prediction.superclass \
                else ""
            print(f"{file}: {ranked}{superclass}")
    if args.json:
        print(json.dumps({"run": classifier.run_id, "runtime": args.runtime,
                          "results": results}, indent=2))
    return EXIT_PARTIAL if failures else 0


def cmd_bench(args) -> int:
    from pathlib import Path

    from cifar_core.bench import parse_model_list, render_markdown, run_benchmark, update_section
    from cifar_core.training.config import DEFAULT_SEED

    models = parse_model_list(args.models)
    from cifar_core.jobs.locks import training_slot

    with training_slot(args.artifacts, on_wait=_say_waiting):
        rows, dataset = run_benchmark(
            models, data=args.data, profile=args.profile, labels=args.labels,
            artifacts=args.artifacts, seed=args.seed,
            backbone_weights=settings.backbone_weights(args.backbone_weights),
            overrides={"epochs": args.epochs}, reuse=args.reuse,
            log=lambda line: print(line, flush=True))
    # The recorded command is one a reader can rerun to get (or refresh in place) this block:
    # every option that changes the rows or the block's name, not the paths of this machine.
    command = "cifar-core bench " + " ".join(
        part for part in (f"--models {args.models}", f"--profile {args.profile}",
                          f"--labels {args.labels}" if args.labels != "fine" else "",
                          f"--epochs {args.epochs}" if args.epochs else "",
                          f"--seed {args.seed}" if args.seed is not None else "",
                          f"--section {args.section}" if args.section else "",
                          f"--reuse {' '.join(args.reuse)}" if args.reuse else "") if part)
    body = render_markdown(rows, dataset=dataset, profile=args.profile,
                           seed=args.seed if args.seed is not None else DEFAULT_SEED,
                           command=command, load_average=dataset.get("load_average"))
    section = args.section or f"{dataset['name']}-{args.labels}-{args.profile}-m{args.models}"
    update_section(Path(args.output), section,
                   body, title=f"{'Model' if len(models) == 1 else 'Models'} {args.models} on "
                               f"{dataset['name']} ({args.labels} "
                               f"labels, {args.profile} profile)")
    print(body)
    print(f"updated {args.output} (section {section})")
    return 0 if len(rows) == len(models) else EXIT_ERROR


def cmd_tune(args) -> int:
    from cifar_core.search import distributed
    from cifar_core.training.config import make_config

    distributed.configure_environment(args.role, tuner_id=args.tuner_id, ip=args.oracle_ip,
                                      port=args.oracle_port)
    config = make_config(7, labels=args.labels, profile=args.profile,
                         **_config_overrides(args))
    resume_writer = None
    if args.resume:
        if args.role != "chief":
            raise CifarCoreError("--resume is for the chief: workers keep no state")
        from cifar_core.search.run import adopt_for_resume

        resume_writer = adopt_for_resume(args.resume, args.artifacts, [config])
    from cifar_core.data import load_dataset

    dataset = load_dataset(args.data, show_progress=True)
    if args.role == "worker":
        from cifar_core.search import run_worker

        count = run_worker(config, dataset, log=lambda line: print(line, flush=True))
        print(f"worker {os.environ[distributed.ENV_TUNER_ID]}: ran {count} trial(s); the "
              "search is over", flush=True)
        return 0
    from cifar_core.pipeline import execute_run
    from cifar_core.search.run import ENV_MIN_WORKERS

    os.environ[ENV_MIN_WORKERS] = str(args.min_workers)
    writer = execute_run(config, dataset=dataset, artifacts=args.artifacts, writer=resume_writer,
                         log=lambda line: print(line, flush=True))
    headline = json.loads((writer.path / "metrics.json").read_text())
    print(f"test top-1 {headline['test_top1']:.4f}  top-5 {headline['test_top5']:.4f}",
          flush=True)
    print(writer.path, flush=True)
    return 0


def cmd_export(args) -> int:
    from tqdm import tqdm

    from cifar_core.exports.make import export_run
    from cifar_core.exports.parity import in_words
    from cifar_core.runs.store import resolve_run_ref

    run_dir = resolve_run_ref(args.run, args.artifacts)
    bar = None

    def on_batch(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="batch", desc="parity on the test set")
        bar.update(done - bar.n)

    try:
        entry = export_run(run_dir, args.format, args.quantize, data=args.data,
                           replace=args.replace, log=lambda line: print(line, flush=True),
                           on_batch=on_batch)
    finally:
        if bar is not None:
            bar.close()
    print(f"{run_dir / 'exports' / entry['file']}: {entry['bytes'] / 1e6:.2f} MB; "
          + in_words(entry["parity"]))
    return 0 if entry["parity"]["passed"] else EXIT_PARTIAL


def cmd_report(args) -> int:
    from pathlib import Path

    from cifar_core.reports.outputs import report_file_name, report_from_folder
    from cifar_core.runs.files import atomic_write_bytes

    data, counting = report_from_folder(args.format, args.artifacts, browser=args.browser)
    out = Path(args.out) if args.out else Path(report_file_name(args.format))
    if out.is_dir():
        out = out / report_file_name(args.format)
    atomic_write_bytes(out, data)
    print(f"{out}: {len(data) / 1e6:.2f} MB, {len(counting)} counted runs: "
          + ", ".join(r.run_id for r in counting.values()))
    return 0


def cmd_card(args) -> int:
    from pathlib import Path

    from cifar_core.reports.card import run_card_markdown
    from cifar_core.runs.files import atomic_write_text
    from cifar_core.runs.store import load_run, resolve_run_ref

    record = load_run(resolve_run_ref(args.run, args.artifacts))
    text = run_card_markdown(record)
    if args.out == "-":
        print(text)
        return 0
    out = Path(args.out) if args.out else Path(f"{record.run_id}-model-card.md")
    if out.is_dir():
        out = out / f"{record.run_id}-model-card.md"
    atomic_write_text(out, text)
    print(out)
    return 0


def cmd_tensorboard_export(args) -> int:
    from cifar_core.runs.store import list_runs, resolve_run_ref
    from cifar_core.runs.tensorboard import write_tensorboard

    failures = 0
    if args.runs:
        targets = []
        for ref in args.runs:
            try:
                targets.append(resolve_run_ref(ref, args.artifacts))
            except CifarCoreError as exc:
                failures += 1
                print(f"error: {exc}", file=sys.stderr)
    else:
        targets = [r.path for r in list_runs(args.artifacts) if r.status == "completed"]
        if not targets and not failures:
            print(f"no completed runs under {settings.artifacts_dir(args.artifacts)}")
    for path in targets:
        try:
            print(write_tensorboard(path), flush=True)
        except (CifarCoreError, OSError) as exc:
            failures += 1
            print(f"error: {path.name}: {exc}", file=sys.stderr)
    return EXIT_PARTIAL if failures else 0


def cmd_mlflow_sync(args) -> int:
    # A sync should say a server is down in seconds, not after MLflow's minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    from cifar_core.reports.mlflow_sync import sync_runs

    def show(result) -> None:
        if result.failed:
            print(f"error: {result.run_id}: {result.error}", file=sys.stderr, flush=True)
        else:
            print(f"{result.action:9} {result.run_id} (mlflow run {result.mlflow_run_id})",
                  flush=True)

    results = sync_runs(args.runs, artifacts=args.artifacts, tracking_uri=args.tracking_uri,
                        experiment=args.experiment, on_result=show)
    counts = {}
    for result in results:
        counts[result.action] = counts.get(result.action, 0) + 1
    print(f"{len(results)} run{'' if len(results) == 1 else 's'}: "
          + (", ".join(f"{n} {a}" for a, n in sorted(counts.items())) or "none to sync"))
    return EXIT_PARTIAL if counts.get("failed") else 0


COMMANDS = {"train": cmd_train, "runs": cmd_runs, "predict": cmd_predict, "bench": cmd_bench,
            "tune": cmd_tune, "export": cmd_export, "report": cmd_report, "card": cmd_card,
            "tensorboard-export": cmd_tensorboard_export, "mlflow-sync": cmd_mlflow_sync}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CifarCoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except RunStopped as exc:  # a stop asked for: where it stopped, no traceback
        print(exc, flush=True)
        return EXIT_STOPPED
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
