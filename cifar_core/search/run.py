"""Model 7's two-stage search, as the report ran it, start to finish.

1. Stage 1, RandomSearch: ``search_trials`` random configurations, each scored by
   ``search_folds``-fold stratified cross-validation on the training split (mean validation
   accuracy), ``search_epochs`` epochs at batch ``search_batch_size``.
2. Stage 2, GridSearch: every combination of the values that differ among stage 1's best three
   (the rest fixed at the value they share), ``grid_epochs`` epochs with early stopping at batch
   ``grid_batch_size``, scored the same way.
3. The best stage-2 configuration is returned as a ``TrainConfig``; the pipeline then retrains
   it on the training split (validation for early stopping) and tests it like every model.

Locally, this process runs the trials (``keras_tuner`` search loop). As the chief of a
distributed search (keras-tuner's environment variables, ``cifar-core tune --role chief``) it
serves the oracle and workers (``run_worker``) run the trials. Either way the run folder gets
``trials.csv``, ``search.json`` and keras-tuner's state under ``tuner/``; starting the run again
with the same settings goes on with the trials it has (``overwrite=False``).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from keras_tuner.errors import FatalError

from cifar_core.data.dataset import Dataset
from cifar_core.errors import CifarCoreError, ConfigError
from cifar_core.runs.files import read_json
from cifar_core.search import distributed
from cifar_core.search.space import (
    PROTOCOL_HP,
    GridPlan,
    apply_values,
    plan_grid,
    searched_values,
    stage1_hyperparameters,
    stage2_hyperparameters,
)
from cifar_core.search.state import (
    SEARCH_FILE,
    TRIALS_FILE,
    TUNER_DIR,
    SearchState,
    protocol_digest,
    ranked,
    search_settings,
    trial_label,
    trial_rows,
    write_trials_csv,
)
from cifar_core.search.trials import make_runner
from cifar_core.search.tuners import CrossValidatedTuner, stage_oracle, unwrap_fatal

ENV_MIN_WORKERS = "CIFAR_CORE_SEARCH_MIN_WORKERS"  # chief: wait for this many workers
_ENDED = ("COMPLETED", "FAILED", "INVALID", "STOPPED")  # keras-tuner trial statuses
LOCAL_TUNER = "local"


def resolve_search_mode(mode: str) -> str:
    """``auto`` -> ``full`` where a GPU is visible, else ``cached``."""
    if mode != "auto":
        return mode
    import tensorflow as tf

    return "full" if tf.config.list_logical_devices("GPU") else "cached"


def _format_values(values: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in searched_values(values).items())


class _LazyRunner:
    """Builds the trial runner (and, in cached mode, the feature cache) on first use only:
    a restarted search whose trials are all done, or a chief, never needs it."""

    def __init__(self, factory: Callable):
        self._factory, self._runner = factory, None

    def run(self, *args, **kwargs):
        if self._runner is None:
            self._runner = self._factory()
        return self._runner.run(*args, **kwargs)


class TwoStageSearch:
    def __init__(self, config, dataset: Dataset, *, run_dir: Path, writer=None,
                 log: Callable[[str], None] = print):
        self.config, self.dataset, self.writer, self.log = config, dataset, writer, log
        self.run_dir = Path(run_dir)
        self.settings = search_settings(config, dataset)
        self.state = SearchState.open(self.run_dir, self.settings)
        self.oracles: dict[int, object] = {}
        self.totals: dict[int, int] = {}
        self._stage = 1
        self._lock = threading.RLock()
        self.runner = _LazyRunner(lambda: make_runner(
            config, dataset, log=log, on_features=self._features_progress))

    # --- records ---------------------------------------------------------------------------
    def _report(self, phase: str, done: float, total: float, unit: str | None = None,
                **extra) -> None:
        if self.writer is not None:
            self.writer.report_phase(phase, done, total, unit=unit, **extra)

    def _features_progress(self, done: int, total: int) -> None:
        self._report("features", done, total, "images")

    def _trials_ended(self, stage: int) -> int:
        """Trials of ``stage`` that have ended (completed, failed or stopped)."""
        oracle = self.oracles.get(stage)
        if oracle is None:
            return 0
        return sum(trial.status in _ENDED for trial in dict(oracle.trials).values())

    def _stage_progress(self, stage: int, folds_done: float = 0.0, **extra) -> None:
        """Stage ``stage``'s count in trials: those ended, plus the share of the trial in
        progress that its finished folds make (so the ETA moves within a trial)."""
        total = self.totals.get(stage) or 1
        done = min(self._trials_ended(stage) + folds_done, total)
        self._report(f"search_stage_{stage}", done, total, "trials", **extra)

    def record(self) -> None:
        """Rewrite ``trials.csv`` and ``search.json`` from the oracles (atomically)."""
        with self._lock:
            rows = []
            for stage, oracle in sorted(self.oracles.items()):
                rows += trial_rows(stage, oracle, self.config.search_folds, self.state.owners)
            write_trials_csv(self.run_dir / TRIALS_FILE, rows, self.config.search_folds)
            for stage, oracle in self.oracles.items():
                info = self.state.stage(stage)
                statuses = [t.status for t in dict(oracle.trials).values()]
                info.update(trials=len(statuses), completed=statuses.count("COMPLETED"),
                            failed=statuses.count("FAILED"))
            self.state.save()

    def trial_started(self, stage: int, trial, tuner_id: str) -> None:
        label = trial_label(stage, trial.trial_id)
        with self._lock:
            self.state.owners[label] = tuner_id
        oracle = self.oracles[stage]
        number = len(oracle.trials)
        self._stage_progress(stage, trial_id=label, tuner_id=tuner_id, waiting_for=None)
        self.log(f"search stage {stage}, trial {label} ({number}/{self.totals[stage]}"
                 + ("" if tuner_id == LOCAL_TUNER else f", on {tuner_id}") + "): "
                 + _format_values(trial.hyperparameters.values))

    def trial_ended(self, stage: int, trial) -> None:
        self.record()
        label = trial_label(stage, trial.trial_id)
        if trial.status == "COMPLETED" and trial.score is not None:
            folds = [trial.metrics.get_last_value(f"fold_{i}_val_accuracy")
                     for i in range(1, self.config.search_folds + 1)
                     if trial.metrics.exists(f"fold_{i}_val_accuracy")]
            seconds = (trial.metrics.get_last_value("seconds")
                       if trial.metrics.exists("seconds") else float("nan"))
            self.log(f"  {label}: mean val_accuracy {trial.score:.4f} (folds "
                     + ", ".join(f"{f:.4f}" for f in folds) + f") in {seconds:.1f}s")
        else:
            reason = (trial.message or "").strip().splitlines()
            self.log(f"  {label}: {trial.status.lower()}"
                     + (f": {reason[-1]}" if reason else ""))
        best = ranked(self.oracles[stage])
        self._stage_progress(stage, best_val_accuracy=best[0][2] if best else None)

    # --- stages ----------------------------------------------------------------------------
    def _tuner(self, stage: int, oracle, protocol: str, project: str) -> CrossValidatedTuner:
        tuner_id = os.environ.get(distributed.ENV_TUNER_ID, "tuner0")
        project_dir = self.run_dir / TUNER_DIR / project
        reloads = (project_dir / f"{tuner_id}.json").is_file()
        try:
            tuner = CrossValidatedTuner(
                oracle, stage=stage, protocol=protocol, runner=self.runner,
                on_trial_begin=lambda s, t: self.trial_started(s, t, LOCAL_TUNER),
                on_trial_end=self.trial_ended, on_fold=self._fold_done,
                directory=str(self.run_dir / TUNER_DIR), project_name=project,
                overwrite=False)
            if not reloads and (project_dir / "oracle.json").is_file():
                tuner.oracle.reload()  # saved under another role's tuner id
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ConfigError(f"the search state under {project_dir} cannot be reloaded "
                              f"({type(exc).__name__}: {exc}); start a new run") from None
        tuner.oracle.verbose = 0
        with self._lock:
            self.oracles[stage] = tuner.oracle
        protocol_now = tuner.oracle.hyperparameters.values.get(PROTOCOL_HP)
        if protocol_now != protocol:
            raise ConfigError(f"the search state under {project_dir} belongs to other "
                              "settings; start a new run")
        return tuner

    def _fold_done(self, trial, index: int, fold) -> None:
        folds = self.config.search_folds if self._stage == 1 else (
            self.config.grid_folds or self.config.search_folds)
        self._stage_progress(self._stage, min((index + 1) / folds, 0.99))

    def _run_stage(self, stage: int, tuner, server) -> None:
        self._stage = stage
        info = self.state.stage(stage)
        info["status"] = "running"
        self.record()
        started = time.perf_counter()
        if server is None:
            try:
                tuner.search(verbose=0)
            except FatalError as exc:
                raise unwrap_fatal(exc) from None
        else:
            tuner.save()
            server.servicer.on_trial_created = self.trial_started
            server.servicer.on_trial_ended = self.trial_ended
            self._stage_progress(stage, waiting_for="workers")
            server.run_stage(stage, tuner.oracle)
        info["status"] = "completed"
        info["seconds"] = round(info.get("seconds", 0.0) + time.perf_counter() - started, 3)
        self.record()

    def run(self, *, chief: bool = False, min_workers: int = 1):
        config, settings = self.config, self.settings
        server = distributed.ChiefServer(min_workers=min_workers, log=self.log) if chief \
            else None
        searched = False
        try:
            protocol1 = protocol_digest(settings, 1)
            oracle1 = stage_oracle(1, stage1_hyperparameters(protocol1),
                                   max_trials=config.search_trials, seed=config.seed)
            self.totals[1] = config.search_trials
            tuner1 = self._tuner(1, oracle1, protocol1, "stage1")
            self.state.stage(1)["project"] = "stage1"
            self.log(f"search stage 1: RandomSearch, {config.search_trials} trials x "
                     f"{config.search_folds} folds x {config.search_epochs} epochs, batch "
                     f"{config.search_batch_size} ({config.search_mode} mode)")
            self._run_stage(1, tuner1, server)
            top = ranked(tuner1.oracle)
            if not top:
                raise CifarCoreError("stage 1 of the search finished no trial: "
                                     + _first_failure(tuner1.oracle))
            plan = plan_grid([(trial_label(1, tid), values) for tid, values, _ in top])
            grid_total = plan.size if config.grid_trials is None else min(
                plan.size, config.grid_trials)
            project2 = f"stage2-{plan.digest()[:12]}"
            self.state.stage(2).update(plan=plan.to_dict(), project=project2)
            self.log("search stage 2: GridSearch over "
                     + (", ".join(f"{k} {list(v)}" for k, v in plan.varying.items())
                        or "no differing values")
                     + f" ({plan.size} combinations"
                     + (f", the first {grid_total}" if grid_total < plan.size else "")
                     + f"; fixed: {plan.fixed}), {config.grid_epochs} epochs with early "
                     f"stopping, batch {config.grid_batch_size}")
            protocol2 = protocol_digest(settings, 2)
            oracle2 = stage_oracle(2, stage2_hyperparameters(plan, protocol2),
                                   max_trials=config.grid_trials, seed=config.seed)
            self.totals[2] = grid_total
            tuner2 = self._tuner(2, oracle2, protocol2, project2)
            self._run_stage(2, tuner2, server)
            best = ranked(tuner2.oracle)
            if not best:
                raise CifarCoreError("stage 2 of the search finished no trial: "
                                     + _first_failure(tuner2.oracle))
            searched = True
        finally:
            if server is not None:  # on an error or a stop, no waiting for workers
                server.close(wait_for_workers=searched)
        trial_id, values, score = best[0]
        self.state.chosen = {"trial_id": trial_label(2, trial_id), "stage": 2,
                             "values": values, "mean_val_accuracy": score}
        self.record()
        self.log(f"search chose {trial_label(2, trial_id)}: {_format_values(values)} "
                 f"(mean val_accuracy {score:.4f})")
        return apply_values(config, values)


def _first_failure(oracle) -> str:
    for trial in oracle.trials.values():
        if trial.message:
            return trial.message.strip().splitlines()[-1]
    return "no trial completed"


def run_model7_search(config, dataset: Dataset, *, writer, log: Callable[[str], None] = print):
    """Run (or resume) model 7's search in ``writer``'s run folder; the chosen config back.

    The returned ``TrainConfig`` carries the chosen ``hidden_units``, ``dropout``,
    ``learning_rate`` and ``optimizer`` and the resolved ``search_mode``; in cached mode it also
    asks for ``warm_start`` (the head first, on the frozen features the trials used).
    """
    config = replace(config, search_mode=resolve_search_mode(config.search_mode))
    role = distributed.distributed_role()
    if role == "worker":
        raise ConfigError(f"{distributed.ENV_TUNER_ID}={os.environ[distributed.ENV_TUNER_ID]} "
                          "makes this process a search worker; start workers with "
                          "`cifar-core tune --role worker`")
    search = TwoStageSearch(config, dataset, run_dir=writer.path, writer=writer, log=log)
    min_workers = int(os.environ.get(ENV_MIN_WORKERS) or 1)
    chosen = search.run(chief=role == "chief", min_workers=min_workers)
    if config.search_mode == "cached" and not config.freeze_base:
        # The cached trials scored heads trained on frozen features at the searched step: the
        # final run first trains such a head (warm start), then fine-tunes everything at that
        # step capped at model 6's (the largest measured to leave the pretrained base intact;
        # the trials never fine-tuned, so they cannot tell a larger one is safe).
        cap = config.spec.recipe.learning_rate
        chosen = replace(chosen, warm_start=True, head_learning_rate=chosen.learning_rate,
                         learning_rate=min(chosen.learning_rate, cap))
    return chosen


def search_summary(run_dir: str | os.PathLike) -> dict | None:
    """What ``config.json`` records about the search (``search.chosen_trial_id`` and more)."""
    path = Path(run_dir) / SEARCH_FILE
    if not path.is_file():
        return None
    data = read_json(path)
    chosen = data.get("chosen") or {}
    stages = data.get("stages") or {}
    plan = (stages.get("2") or {}).get("plan")
    return {
        "mode": (data.get("settings") or {}).get("mode"),
        "chosen_trial_id": chosen.get("trial_id"),
        "chosen": chosen.get("values"),
        "chosen_mean_val_accuracy": chosen.get("mean_val_accuracy"),
        "stage1_trials": (stages.get("1") or {}).get("completed"),
        "stage2_trials": (stages.get("2") or {}).get("completed"),
        "grid": GridPlan.from_dict(plan).to_dict() if plan else None,
        "settings": data.get("settings"),
        "files": [TRIALS_FILE, SEARCH_FILE, f"{TUNER_DIR}/"],
    }


def run_worker(config, dataset: Dataset, *, log: Callable[[str], None] = print) -> int:
    """Run trials for a chief until its search is over; the number of trials run here."""
    if distributed.distributed_role() != "worker":
        raise ConfigError("a worker needs keras-tuner's variables with a non-chief tuner id "
                          f"({distributed.ENV_TUNER_ID}, {distributed.ENV_ORACLE_IP}, "
                          f"{distributed.ENV_ORACLE_PORT})")
    config = replace(config, search_mode=resolve_search_mode(config.search_mode))
    settings = search_settings(config, dataset)
    base_id = os.environ[distributed.ENV_TUNER_ID]
    protocols = {stage: protocol_digest(settings, stage) for stage in (1, 2)}
    _check_chief_protocol(set(protocols.values()))
    runner = _LazyRunner(lambda: make_runner(config, dataset, log=log))
    done = {"trials": 0}

    def started(stage, trial):
        log(f"{base_id}: stage {stage}, trial {trial_label(stage, trial.trial_id)}: "
            + _format_values(trial.hyperparameters.values))

    def ended(stage, trial):
        done["trials"] += 1
        score = "failed" if trial.status != "COMPLETED" else "done"
        log(f"{base_id}: trial {trial_label(stage, trial.trial_id)} {score}")

    with tempfile.TemporaryDirectory(prefix="cifar-core-worker-") as scratch:
        for stage in (1, 2):
            placeholder = stage_oracle(1, stage1_hyperparameters(protocols[stage]),
                                       max_trials=config.search_trials, seed=config.seed)
            tuner = CrossValidatedTuner(
                placeholder, stage=stage, protocol=protocols[stage], runner=runner,
                on_trial_begin=started, on_trial_end=ended, directory=scratch,
                project_name=f"stage{stage}", overwrite=True,
                tuner_id=distributed.stage_tuner_id(base_id, stage))
            try:
                tuner.search(verbose=0)
            except FatalError as exc:
                raise unwrap_fatal(exc) from None
    return done["trials"]


def _check_chief_protocol(accepted: set[str]) -> None:
    """Refuse to work for a chief whose search has other settings, before taking a trial."""
    from keras_tuner.src.distribute.oracle_client import OracleClient

    space = OracleClient(None).get_space()
    theirs = space.values.get(PROTOCOL_HP)
    if theirs not in accepted:
        raise ConfigError(
            f"the chief at {os.environ[distributed.ENV_ORACLE_IP]}:"
            f"{os.environ[distributed.ENV_ORACLE_PORT]} runs a search with other settings "
            f"(protocol {theirs}); start this worker with the chief's data, backbone weights, "
            "labels, seed, patience and search settings")


def adopt_for_resume(ref: str, artifacts, configs: list):
    """The writer of a stopped or failed model-7 run, to continue its search in place.

    Refuses anything but one model-7 configuration, a run of another model, a run that is
    completed, queued or still running: nothing already saved is overwritten by mistake.
    """
    from cifar_core.runs.store import RunWriter, load_run, resolve_run_ref

    if len(configs) != 1 or configs[0].model != 7:
        raise ConfigError("--resume continues a model 7 search: use it with --model 7")
    path = resolve_run_ref(ref, artifacts)
    record = load_run(path)
    if record.model_number != 7:
        raise ConfigError(f"--resume {ref}: run of model {record.model_number}, not model 7")
    if record.status not in ("stopped", "failed"):
        raise ConfigError(f"--resume {ref}: the run is {record.status}; only a stopped or "
                          "failed run can be resumed")
    config = configs[0]
    if (record.config or {}).get("labels") != config.labels:
        raise ConfigError(f"--resume {ref}: the run used --labels "
                          f"{(record.config or {}).get('labels')}")
    state_file = path / SEARCH_FILE
    if state_file.is_file():  # refuse other settings before anything in the folder changes
        saved = read_json(state_file).get("settings") or {}
        wanted = {k: v for k, v in search_settings(
            replace(config, search_mode=resolve_search_mode(config.search_mode)),
            None).items() if k != "data_sha256"}
        differ = sorted(k for k, v in wanted.items() if k in saved and saved[k] != v)
        if differ:
            listed = ", ".join(f"{k}={saved[k]!r} (now {wanted[k]!r})" for k in differ)
            raise ConfigError(f"--resume {ref}: the search was started with other settings: "
                              f"{listed}")
    writer = RunWriter(path)
    writer.record.update(error=None, ended_at=None)  # a new attempt of the same run
    return writer
