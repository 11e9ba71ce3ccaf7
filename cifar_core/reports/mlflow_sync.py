"""Mirror completed run folders into an MLflow tracking server (``cifar-core mlflow-sync``).

The run folder stays the record; MLflow gets a copy to browse and compare next to other
projects' runs. Each run folder becomes one MLflow run in one experiment (default
``cifar-core``), holding:

* parameters: ``config.json`` flattened (``cifar_core.runs.params``, the names TensorBoard's
  HParams shows too), values cut at MLflow's 6000 characters as its server would;
* metrics: every ``history.csv`` column per epoch (``step`` = epoch, timestamps from the run's
  start plus the epochs' seconds), and the final ones of ``metrics.json`` (``test_top1``...,
  ``training.*``) at the last epoch; all in one ``log_batch`` call;
* tags: ``cifar_core.run_id`` (the key), model number and title, labels, profile, the data
  set's name and SHA-256, the code version (git commit, ``-dirty`` with local changes) and
  cifar_core's version, ``mlflow.runName`` = the run id;
* artifacts: ``config.json``, ``metrics.json``, ``history.csv``, ``model.keras`` (where the
  folder has one) and ``exports/manifest.json`` (where the run was exported).

Idempotency and updates. The MLflow run of a folder is found by its ``cifar_core.run_id``
tag, never by name. Two more tags, written last (so an interrupted sync is simply redone),
record what was synced: ``cifar_core.files`` (SHA-256 of each synced file) and
``cifar_core.content_hash`` (one hash of those and of this module's ``SYNC_FORMAT``). Then:

* same content hash: nothing is sent (``unchanged``);
* the content changed by additions only (a new export, a metric or parameter that was not
  there, another model file): the MLflow run is updated in place (``updated``): the new
  parameters and metric points are logged, the tags rewritten, and only the files whose
  hash changed are uploaded again (an upload replaces the artifact of the same path);
* the content changed in what MLflow cannot overwrite (a parameter's value, the value of a
  metric at a step already logged, a step that is gone, a synced file that is gone): the
  MLflow run is deleted (MLflow keeps deleted runs restorable) and created afresh
  (``recreated``), so a mirror never holds two values for one parameter or one step. The
  MLflow run id then changes; the ``cifar_core.run_id`` tag does not.

A new MLflow run that fails half way is deleted again, so a failed sync leaves no half run
behind; the next sync creates it. Several MLflow runs tagged with one run id (two syncs at
once) are reduced to the oldest.

Errors are per run and one line each: a folder that is not a completed run, lacks a results
file or is of another schema version; a server that cannot be reached (found once, when the
experiment is looked up, then reported for every run without trying again) or that refuses a
request. The run folders are only read.

``mlflow`` is an optional dependency (``pip install -e ".[mlflow]"``), imported only here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cifar_core.checksums import file_sha256
from cifar_core.errors import CifarCoreError, RunFolderError
from cifar_core.runs.params import flat_params
from cifar_core.runs.store import (
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PREDICTIONS_FILE,
    list_runs,
    load_run,
    parse_iso,
    resolve_run_ref,
)
from cifar_core.runs.tensorboard import HISTORY_SCALARS, run_contents

SYNC_FORMAT = 1  # bump when what is sent for a run changes: every run is then re-synced
DEFAULT_EXPERIMENT = "cifar-core"
MANIFEST_FILE = "exports/manifest.json"
SYNCED_FILES = (CONFIG_FILE, METRICS_FILE, HISTORY_FILE, MODEL_FILE, MANIFEST_FILE)
OPTIONAL_FILES = (MODEL_FILE, MANIFEST_FILE)  # synced where present
TAG_RUN_ID = "cifar_core.run_id"
TAG_CONTENT_HASH = "cifar_core.content_hash"
TAG_FILES = "cifar_core.files"
FINAL_METRICS = ("test_top1", "test_top5", "test_superclass_top1", "evaluation_seconds")
# Not needed to mirror a run: a folder without them is still synced.
TOLERATED_PROBLEMS = (f"{MODEL_FILE}: missing", f"{PREDICTIONS_FILE}: missing")
MAX_ERROR_CHARS = 300
# MLflow cuts a longer parameter value; cut here alike, so a re-sync compares like with like.
MAX_PARAM_CHARS = 6000


class MlflowSyncError(CifarCoreError):
    """MLflow is not installed, or the tracking server cannot be used at all."""


@dataclass
class SyncResult:
    """What happened to one run: ``created``, ``updated``, ``recreated``, ``unchanged`` or
    ``failed`` (with ``error``, one line)."""

    run_id: str
    action: str
    mlflow_run_id: str | None = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.action == "failed"


@dataclass
class _Plan:
    """Everything one run folder sends to MLflow, computed from its files alone."""

    run_id: str
    params: dict[str, str]
    metrics: dict[tuple[str, int], tuple[float, int]]  # (key, step) -> (value, timestamp ms)
    tags: dict[str, str]
    files: dict[str, Path]  # artifact path -> local file
    file_hashes: dict[str, str]
    content_hash: str
    start_ms: int | None
    end_ms: int | None


def _import_mlflow():
    try:
        import mlflow  # noqa: F401
        from mlflow import MlflowClient
    except ImportError:
        raise MlflowSyncError('mlflow-sync needs MLflow: pip install -e ".[mlflow]"') from None
    return MlflowClient


def one_line(exc: BaseException) -> str:
    """An exception as one short line (MLflow's messages carry response bodies)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 3] + "..."


def server_error(uri: str, exc: BaseException) -> str:
    """A failed request to the server in one line, naming the server; for one that cannot be
    reached, why (MLflow's own message buries it under the retried URL)."""
    text = " ".join(str(exc).split())
    if "Max retries exceeded" in text or "ConnectionError" in text or "timed out" in text:
        reason = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
        why = reason.group(1).strip() if reason else \
            "timed out" if "timed out" in text else "no connection"
        return f"cannot reach the tracking server {uri} ({why})"
    return f"tracking server {uri}: {one_line(exc)}"


def _ms(iso: str | None) -> int | None:
    seconds = parse_iso(iso)
    return None if seconds is None else int(seconds * 1000)


def plan_run(run_dir: Path) -> _Plan:
    """What to send for the run in ``run_dir``; ``RunFolderError`` if it cannot be synced."""
    record = load_run(Path(run_dir))
    problems = [p for p in record.problems if p not in TOLERATED_PROBLEMS]
    if record.status == "unreadable" or not record.readable:
        raise RunFolderError("; ".join(problems) or "unreadable run folder")
    if record.status != "completed":
        raise RunFolderError(f"status {record.status}: only completed runs are synced")
    if problems:
        raise RunFolderError("; ".join(problems))
    config, metrics, history = run_contents(record.path)

    start_ms = _ms(record.run.get("started_at")) or _ms(record.run.get("created_at")) or 0
    end_ms = _ms(record.run.get("ended_at"))
    points: dict[tuple[str, int], tuple[float, int]] = {}
    elapsed = 0.0
    for row in history:
        step = int(row["epoch"])
        elapsed += row.get("seconds") or 0.0
        for key in HISTORY_SCALARS:
            if row.get(key) is not None:
                points[(key, step)] = (float(row[key]), start_ms + int(elapsed * 1000))
    last_step = int(history[-1]["epoch"])
    final_ms = end_ms or start_ms + int(elapsed * 1000)
    finals = {key: metrics.get(key) for key in FINAL_METRICS}
    finals.update({f"training.{k}": v for k, v in (metrics.get("training") or {}).items()})
    for key, value in finals.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            points[(key, last_step)] = (float(value), final_ms)

    model = config.get("model") or {}
    dataset = config.get("dataset") or {}
    environment = config.get("environment") or {}
    git = environment.get("git") or {}
    commit = git.get("commit") or "unknown"
    tags = {
        TAG_RUN_ID: record.run_id,
        "mlflow.runName": record.run_id,
        "cifar_core.model": str(model.get("number")),
        "cifar_core.model_title": str(model.get("title")),
        "cifar_core.labels": str(config.get("labels")),
        "cifar_core.profile": str(config.get("profile")),
        "cifar_core.data_name": str(dataset.get("name")),
        "cifar_core.data_sha256": str(dataset.get("sha256")),
        "cifar_core.code_version": commit + ("-dirty" if git.get("dirty") else ""),
        "cifar_core.version": str((environment.get("packages") or {}).get("cifar-core")),
    }
    files = {name: record.path / name for name in SYNCED_FILES
             if name not in OPTIONAL_FILES or (record.path / name).is_file()}
    for name, path in files.items():
        if path.is_symlink() or not path.is_file():
            raise RunFolderError(f"{name}: missing or a link")
    hashes = {name: file_sha256(path) for name, path in files.items()}
    content = json.dumps({"format": SYNC_FORMAT, "files": hashes}, sort_keys=True)
    return _Plan(run_id=record.run_id,
                 params={k: str(v)[:MAX_PARAM_CHARS] for k, v in flat_params(config).items()},
                 metrics=points, tags=tags, files=files, file_hashes=hashes,
                 content_hash=hashlib.sha256(content.encode()).hexdigest(),
                 start_ms=start_ms or None, end_ms=end_ms)


class _Mirror:
    """One experiment on one tracking server; ``sync`` mirrors one planned run into it."""

    def __init__(self, client, experiment: str):
        self.client = client
        self.experiment = experiment
        self._experiment_id: str | None = None
        self._setup_error: str | None = None

    def experiment_id(self) -> str:
        """The experiment's id, created if new. A failure is kept: every run reports it
        without asking the server again (an unreachable server costs its retries once)."""
        if self._setup_error:
            raise MlflowSyncError(self._setup_error)
        if self._experiment_id is None:
            try:
                found = self.client.get_experiment_by_name(self.experiment)
                if found is not None and found.lifecycle_stage == "deleted":
                    raise MlflowSyncError(f"experiment {self.experiment!r} is deleted on the "
                                          "server: restore it or give another --experiment")
                self._experiment_id = found.experiment_id if found is not None else \
                    self.client.create_experiment(self.experiment)
            except MlflowSyncError as exc:
                self._setup_error = str(exc)
                raise
            except Exception as exc:
                self._setup_error = server_error(self.client.tracking_uri, exc)
                raise MlflowSyncError(self._setup_error) from None
        return self._experiment_id

    def find(self, run_id: str):
        """The active MLflow run tagged with ``run_id`` (the oldest if several), or None."""
        runs = list(self.client.search_runs(
            [self.experiment_id()], filter_string=f"tags.`{TAG_RUN_ID}` = '{run_id}'",
            order_by=["attributes.start_time ASC"], max_results=50))
        for extra in runs[1:]:
            self.client.delete_run(extra.info.run_id)
        return runs[0] if runs else None

    def sync(self, plan: _Plan) -> SyncResult:
        existing = self.find(plan.run_id)
        if existing is not None and \
                existing.data.tags.get(TAG_CONTENT_HASH) == plan.content_hash:
            return SyncResult(plan.run_id, "unchanged", existing.info.run_id)
        if existing is None:
            return SyncResult(plan.run_id, "created", self._create(plan))
        missing = self._missing_points(existing, plan)
        if missing is None:  # MLflow cannot overwrite what changed: start the run again
            self.client.delete_run(existing.info.run_id)
            return SyncResult(plan.run_id, "recreated", self._create(plan))
        self._update(existing, plan, missing)
        return SyncResult(plan.run_id, "updated", existing.info.run_id)

    def _create(self, plan: _Plan) -> str:
        from mlflow.entities import Metric, Param, RunTag

        run = self.client.create_run(self.experiment_id(), start_time=plan.start_ms,
                                     tags={TAG_RUN_ID: plan.run_id}, run_name=plan.run_id)
        mlflow_id = run.info.run_id
        try:
            self.client.log_batch(
                mlflow_id,
                metrics=[Metric(key, value, ts, step)
                         for (key, step), (value, ts) in sorted(plan.metrics.items())],
                params=[Param(k, v) for k, v in plan.params.items()],
                tags=[RunTag(k, v) for k, v in plan.tags.items()])
            self._upload(mlflow_id, plan, plan.files)
            self.client.set_terminated(mlflow_id, "FINISHED", end_time=plan.end_ms)
            self._mark_synced(mlflow_id, plan)
        except BaseException:
            # No half run left behind: the next sync creates it whole. The original error
            # is the one to report.
            with contextlib.suppress(Exception):
                self.client.delete_run(mlflow_id)
            raise
        return mlflow_id

    def _missing_points(self, existing, plan: _Plan) -> list | None:
        """The metric points MLflow lacks, or None if anything logged differs from the
        folder (a parameter's value, a point's value, a step or a file that is gone)."""
        params = existing.data.params
        if any(plan.params.get(k) != v for k, v in params.items()):
            return None
        synced = _json_tag(existing.data.tags.get(TAG_FILES))
        if any(name not in plan.files for name in synced):
            return None
        if all(synced.get(name) == plan.file_hashes.get(name)
               for name in (HISTORY_FILE, METRICS_FILE)) and synced:
            return []  # the metrics' sources are the ones synced: every point is there
        logged = {}
        for key in {k for k, _ in plan.metrics} | set(existing.data.metrics):
            for point in self.client.get_metric_history(existing.info.run_id, key):
                logged.setdefault((key, point.step), []).append(point.value)
        missing = []
        for key_step, values in logged.items():
            if key_step not in plan.metrics or len(values) > 1 or \
                    not _same(values[0], plan.metrics[key_step][0]):
                return None
        for key_step, point in plan.metrics.items():
            if key_step not in logged:
                missing.append((key_step, point))
        return missing

    def _update(self, existing, plan: _Plan, missing: list) -> None:
        from mlflow.entities import Metric, Param, RunTag

        mlflow_id = existing.info.run_id
        new_params = {k: v for k, v in plan.params.items() if k not in existing.data.params}
        self.client.log_batch(
            mlflow_id,
            metrics=[Metric(key, value, ts, step) for (key, step), (value, ts) in missing],
            params=[Param(k, v) for k, v in new_params.items()],
            tags=[RunTag(k, v) for k, v in plan.tags.items()])
        synced = _json_tag(existing.data.tags.get(TAG_FILES))
        self._upload(mlflow_id, plan, {name: path for name, path in plan.files.items()
                                       if synced.get(name) != plan.file_hashes[name]})
        self._mark_synced(mlflow_id, plan)

    def _upload(self, mlflow_id: str, plan: _Plan, files: dict[str, Path]) -> None:
        for name, path in files.items():
            folder = str(Path(name).parent)
            self.client.log_artifact(mlflow_id, str(path),
                                     artifact_path=None if folder == "." else folder)

    def _mark_synced(self, mlflow_id: str, plan: _Plan) -> None:
        """Written last: a sync cut short before this is redone in full next time."""
        self.client.set_tag(mlflow_id, TAG_FILES,
                            json.dumps(plan.file_hashes, sort_keys=True, separators=(",", ":")))
        self.client.set_tag(mlflow_id, TAG_CONTENT_HASH, plan.content_hash)


def _json_tag(text: str | None) -> dict:
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=0)


def _selected_runs(refs: Iterable[str] | None, artifacts) -> tuple[list, list[SyncResult]]:
    """(run folders to sync, failures of refs that name no run). Without ``refs``: every
    completed run, and every folder whose run.json cannot be read (to say why); queued,
    running, failed and stopped runs are left out."""
    if refs:
        paths, failures = [], []
        for ref in refs:
            try:
                paths.append(resolve_run_ref(ref, artifacts))
            except CifarCoreError as exc:
                failures.append(SyncResult(Path(ref).name or ref, "failed", error=str(exc)))
        return paths, failures
    return [r.path for r in sorted(list_runs(artifacts), key=lambda r: r.run_id)
            if r.status in ("completed", "unreadable")], []


def sync_runs(refs: Iterable[str] | None = None, *, artifacts=None,
              tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT,
              on_result: Callable[[SyncResult], None] | None = None) -> list[SyncResult]:
    """Mirror the runs ``refs`` (ids or paths; default: every completed run) into
    ``experiment`` on ``tracking_uri`` (default: MLflow's, e.g. ``MLFLOW_TRACKING_URI``).

    One result per run, each also passed to ``on_result`` as it is known; one run's failure
    never stops the others. Raises only if MLflow is not installed.
    """
    client_class = _import_mlflow()
    # MLflow prints two "View run" links per finished run; the CLI prints its own line.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    paths, results = _selected_runs(refs, artifacts)
    for result in results:
        if on_result:
            on_result(result)
    mirror = _Mirror(client_class(tracking_uri=tracking_uri), experiment)
    for path in paths:
        try:
            plan = plan_run(path)
        except (CifarCoreError, OSError) as exc:  # the folder's fault: nothing was sent
            result = SyncResult(path.name, "failed", error=one_line(exc))
        else:
            try:
                result = mirror.sync(plan)
            except MlflowSyncError as exc:
                result = SyncResult(path.name, "failed", error=str(exc))
            except Exception as exc:  # a refused request, a server gone mid-way
                result = SyncResult(path.name, "failed",
                                    error=server_error(mirror.client.tracking_uri, exc))
        results.append(result)
        if on_result:
            on_result(result)
    return results
